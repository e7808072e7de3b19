//! CIDR blocks of key allowlists and trusted proxies: a normalised block or none, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokenmint::domain::api_keys::parse_cidr;

fuzz_target!(|text: &str| {
    if let Some(net) = parse_cidr(text) {
        assert_eq!(parse_cidr(&net.to_string()), Some(net));
    }
});
