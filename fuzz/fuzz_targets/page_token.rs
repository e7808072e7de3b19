//! Page tokens as a client sends them back: only a token this server signed for this query is
//! accepted, and nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokenmint::domain::page_token::PageTokens;

fuzz_target!(|input: (&str, &str)| {
    let (query, token) = input;
    let tokens = PageTokens::new(b"fuzzing page tokens");
    match tokens.decode(query, token, |_| true) {
        Ok(None) => assert!(token.is_empty()),
        Ok(Some(_)) => panic!("an unsigned page token was accepted"),
        Err(_) => {}
    }
});
