//! API-key secrets as a client sends them: a secret or a format error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(secret) = tokenmint_token::ApiSecret::parse(text) {
        assert_eq!(secret.expose(), text);
    }
});
