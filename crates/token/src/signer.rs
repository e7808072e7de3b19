//! Signs access tokens with the active signing key (Ed25519, P-256 or RSA).
//!
//! `jsonwebtoken::encode` re-parses the private key on every call (perf-notes: about 8 µs, close
//! to half the cost of an Ed25519 signature), so the signer keeps the parsed aws-lc key pair (the
//! same backend jsonwebtoken uses) and assembles the compact JWS itself: a precomputed header, the
//! claims, and the signature, all base64url. Verification stays with jsonwebtoken.

use crate::{ACCESS_TOKEN_TYPE, AccessTokenClaims, CryptoError, SigningAlgorithm, b64url};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256,
};

enum KeyPair {
    Ed25519(Ed25519KeyPair),
    Ecdsa(EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

/// Signs RFC 9068 access tokens with one key.
pub struct TokenSigner {
    kid: String,
    algorithm: SigningAlgorithm,
    /// base64url of the JOSE header, identical for every token of this key.
    encoded_header: String,
    key_pair: KeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A signer for the Ed25519 private key `pkcs8` published under `kid`.
    pub fn ed25519(kid: &str, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        Self::new(SigningAlgorithm::EdDsa, kid, pkcs8)
    }

    /// A signer for the `algorithm` private key `pkcs8` published under `kid`.
    pub fn new(algorithm: SigningAlgorithm, kid: &str, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let invalid = |e: aws_lc_rs::error::KeyRejected| CryptoError::InvalidKey(e.to_string());
        let key_pair = match algorithm {
            SigningAlgorithm::EdDsa => {
                KeyPair::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(invalid)?)
            }
            SigningAlgorithm::Es256 => KeyPair::Ecdsa(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(invalid)?,
            ),
            SigningAlgorithm::Rs256 => {
                KeyPair::Rsa(aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(invalid)?)
            }
        };
        let header = serde_json::json!({
            "alg": algorithm.jose_name(),
            "typ": ACCESS_TOKEN_TYPE,
            "kid": kid,
        });
        Ok(Self {
            kid: kid.to_owned(),
            algorithm,
            encoded_header: b64url(header.to_string().as_bytes()),
            key_pair,
            rng: SystemRandom::new(),
        })
    }

    /// The key ID written into every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// A signed compact JWT carrying `claims`.
    pub fn sign(&self, claims: &AccessTokenClaims) -> Result<String, CryptoError> {
        let payload = serde_json::to_vec(claims).map_err(|e| CryptoError::Sign(e.to_string()))?;
        let mut token =
            String::with_capacity(self.encoded_header.len() + payload.len() * 4 / 3 + 400);
        token.push_str(&self.encoded_header);
        token.push('.');
        token.push_str(&b64url(&payload));
        let failed = |_| CryptoError::Sign("the signature could not be made".into());
        let signature = match &self.key_pair {
            KeyPair::Ed25519(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
            KeyPair::Ecdsa(pair) => {
                let mut signature = pair
                    .sign(&self.rng, token.as_bytes())
                    .map_err(failed)?
                    .as_ref()
                    .to_vec();
                crate::ecdsa::normalize(&mut signature);
                signature
            }
            KeyPair::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &self.rng,
                    token.as_bytes(),
                    &mut signature,
                )
                .map_err(failed)?;
                signature
            }
        };
        token.push('.');
        token.push_str(&b64url(&signature));
        Ok(token)
    }
}
