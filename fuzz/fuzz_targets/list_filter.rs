//! List filters (audit events, service users, API keys): a query or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|filter: &str| {
    let _ = tokenmint::domain::audit::parse_filter(filter, "org_1");
    let _ = tokenmint::domain::service_users::parse_state_filter(filter);
    let _ = tokenmint::domain::api_keys::parse_key_state_filter(filter);
});
