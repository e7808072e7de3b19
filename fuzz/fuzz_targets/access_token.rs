//! Access tokens as introspection and other services receive them: none that this signer did
//! not make verifies, and nothing panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use tokenmint_token::{PublicKey, SigningAlgorithm, TokenVerifier};

static VERIFIER: LazyLock<TokenVerifier> = LazyLock::new(|| {
    let pair =
        tokenmint_token::generate_ed25519(&ring::rand::SystemRandom::new()).expect("a key pair");
    TokenVerifier::new(
        "https://tokenmint.test",
        [PublicKey {
            kid: &pair.kid,
            algorithm: SigningAlgorithm::EdDsa,
            public_key: &pair.public_key,
        }],
    )
});

fuzz_target!(|text: &str| {
    assert!(VERIFIER.verify(text, None, 2_000_000_000).is_err());
});
