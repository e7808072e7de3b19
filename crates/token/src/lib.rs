//! Tokenmint credentials: API-key secrets (format, checksum, keyed hashing), signing keys (Ed25519,
//! ES256, RS256: generation, encryption at rest), RFC 9068 access tokens (signing and verification) and the
//! JWKS. Knows nothing of gRPC or the database.

mod claims;
mod ecdsa;
mod jwks;
mod keys;
mod secret;
mod signer;
mod verifier;

pub use claims::AccessTokenClaims;
pub use jwks::{Jwk, JwkSet};
pub use keys::{
    KeyEncryptionKey, SigningAlgorithm, SigningKeyPair, generate_ed25519, generate_signing_key,
};
pub use secret::{ApiSecret, SECRET_PREFIX, SecretFormatError, SecretHasher};
pub use signer::TokenSigner;
pub use verifier::{PublicKey, TokenVerifier, VerifyError};

/// The JWT `typ` header of access tokens (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Failures of the cryptographic building blocks (not of token verification).
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// A key could not be parsed or used.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Decryption failed: wrong key-encryption key or tampered ciphertext.
    #[error("decryption failed: wrong key-encryption key or corrupt data")]
    Decrypt,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// base64url without padding, the JOSE encoding.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}
