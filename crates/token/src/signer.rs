//! Signs access tokens with the active signing key.

use crate::{ACCESS_TOKEN_TYPE, AccessTokenClaims, CryptoError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Signs RFC 9068 access tokens with one Ed25519 key.
pub struct TokenSigner {
    header: Header,
    key: EncodingKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.header.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for the Ed25519 private key `pkcs8` published under `kid`.
    pub fn ed25519(kid: &str, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(kid.to_owned());
        Ok(Self {
            header,
            key: EncodingKey::from_ed_der(pkcs8),
        })
    }

    /// The key ID written into every token's header.
    pub fn kid(&self) -> &str {
        self.header.kid.as_deref().unwrap_or_default()
    }

    /// A signed compact JWT carrying `claims`.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, CryptoError> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
            .map_err(|e| CryptoError::Sign(e.to_string()))
    }
}
