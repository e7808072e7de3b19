//! Signs access tokens with the active signing key.
//!
//! `jsonwebtoken::encode` re-parses the private key on every call (perf-notes: about 8 µs, close
//! to half the cost of an Ed25519 signature), so the signer keeps the parsed aws-lc key pair (the
//! same backend jsonwebtoken uses) and assembles the compact JWS itself: a precomputed header, the
//! claims, and the signature, all base64url. Verification stays with jsonwebtoken.

use crate::{ACCESS_TOKEN_TYPE, AccessTokenClaims, CryptoError, b64url};
use aws_lc_rs::signature::Ed25519KeyPair;

/// Signs RFC 9068 access tokens with one Ed25519 key.
pub struct TokenSigner {
    kid: String,
    /// base64url of the JOSE header, identical for every token of this key.
    encoded_header: String,
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for the Ed25519 private key `pkcs8` published under `kid`.
    pub fn ed25519(kid: &str, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
        let header = serde_json::json!({ "alg": "EdDSA", "typ": ACCESS_TOKEN_TYPE, "kid": kid });
        Ok(Self {
            kid: kid.to_owned(),
            encoded_header: b64url(header.to_string().as_bytes()),
            key_pair,
        })
    }

    /// The key ID written into every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed compact JWT carrying `claims`.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, CryptoError> {
        let payload = serde_json::to_vec(claims).map_err(|e| CryptoError::Sign(e.to_string()))?;
        let mut token =
            String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 100);
        token.push_str(&self.encoded_header);
        token.push('.');
        token.push_str(&b64url(&payload));
        let signature = self.key_pair.sign(token.as_bytes());
        token.push('.');
        token.push_str(&b64url(signature.as_ref()));
        Ok(token)
    }
}
