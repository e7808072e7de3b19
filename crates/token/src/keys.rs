//! Signing key pairs and the key-encryption key that protects their private halves at rest.

use crate::CryptoError;
use ring::{
    aead,
    rand::SecureRandom,
    signature::{Ed25519KeyPair, KeyPair},
};
use std::fmt;

/// The JOSE algorithms Tokenmint signs with. EdDSA (Ed25519) is the default; ES256 and RS256
/// are for verifiers without EdDSA support.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    Rs256,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// The algorithm named `name` (its JOSE name, any case).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::EdDsa, Self::Es256, Self::Rs256]
            .into_iter()
            .find(|a| a.jose_name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

/// A freshly generated signing key pair.
pub struct SigningKeyPair {
    /// RFC 7638 JWK thumbprint of the public key.
    pub kid: String,
    /// JOSE algorithm name.
    pub algorithm: &'static str,
    /// The public key: raw 32 bytes (Ed25519), the uncompressed point (P-256), or PKCS#1 DER
    /// (RSA); what [`Jwk::new`](crate::Jwk::new) takes.
    pub public_key: Vec<u8>,
    /// The private key as PKCS#8 (never store it unencrypted).
    pub private_pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Generates an Ed25519 key pair.
pub fn generate_ed25519(rng: &dyn SecureRandom) -> Result<SigningKeyPair, CryptoError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| CryptoError::Random)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
    let public_key = pair.public_key().as_ref().to_vec();
    finish(SigningAlgorithm::EdDsa, public_key, pkcs8.as_ref().to_vec())
}

/// Generates a key pair for `algorithm`.
pub fn generate_signing_key(
    algorithm: SigningAlgorithm,
    rng: &dyn SecureRandom,
) -> Result<SigningKeyPair, CryptoError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    match algorithm {
        SigningAlgorithm::EdDsa => generate_ed25519(rng),
        SigningAlgorithm::Es256 => {
            let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            )
            .map_err(|_| CryptoError::Random)?;
            let pkcs8 = pair.to_pkcs8v1().map_err(|_| CryptoError::Random)?;
            finish(
                algorithm,
                pair.public_key().as_ref().to_vec(),
                pkcs8.as_ref().to_vec(),
            )
        }
        SigningAlgorithm::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| CryptoError::Random)?;
            let pkcs8 = pair.as_der().map_err(|_| CryptoError::Random)?;
            finish(
                algorithm,
                pair.public_key().as_ref().to_vec(),
                pkcs8.as_ref().to_vec(),
            )
        }
    }
}

fn finish(
    algorithm: SigningAlgorithm,
    public_key: Vec<u8>,
    private_pkcs8: Vec<u8>,
) -> Result<SigningKeyPair, CryptoError> {
    let jwk = crate::Jwk::new(algorithm, "", &public_key)?;
    Ok(SigningKeyPair {
        kid: jwk.thumbprint(),
        algorithm: algorithm.jose_name(),
        public_key,
        private_pkcs8,
    })
}

/// AES-256-GCM key that encrypts signing keys at rest, so every replica sharing the database
/// and this key can use them and a database dump alone cannot.
pub struct KeyEncryptionKey {
    key: aead::LessSafeKey,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}

impl KeyEncryptionKey {
    /// Length of the key in bytes.
    pub const LEN: usize = 32;

    /// A key from 32 bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, CryptoError> {
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, bytes).map_err(|_| {
            CryptoError::InvalidKey(format!("key-encryption key must be {} bytes", Self::LEN))
        })?;
        Ok(Self {
            key: aead::LessSafeKey::new(unbound),
        })
    }

    /// Encrypts `plaintext` bound to `context` (the kid): returns nonce || ciphertext || tag.
    pub fn seal(
        &self,
        rng: &dyn SecureRandom,
        context: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Sign("encryption failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Decrypts what [`seal`](Self::seal) produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < aead::NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(aead::NONCE_LEN);
        let nonce =
            aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, aead::Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn sealed_private_key_opens_with_the_same_key_and_kid() {
        let rng = SystemRandom::new();
        let pair = generate_ed25519(&rng).unwrap();
        let kek = KeyEncryptionKey::new(&[7u8; 32]).unwrap();
        let sealed = kek.seal(&rng, &pair.kid, &pair.private_pkcs8).unwrap();
        assert!(
            !sealed
                .windows(16)
                .any(|w| pair.private_pkcs8.windows(16).any(|p| p == w))
        );
        assert_eq!(kek.open(&pair.kid, &sealed).unwrap(), pair.private_pkcs8);
    }

    #[test]
    fn opening_with_another_key_or_kid_fails() {
        let rng = SystemRandom::new();
        let pair = generate_ed25519(&rng).unwrap();
        let sealed = KeyEncryptionKey::new(&[7u8; 32])
            .unwrap()
            .seal(&rng, &pair.kid, &pair.private_pkcs8)
            .unwrap();
        assert!(
            KeyEncryptionKey::new(&[8u8; 32])
                .unwrap()
                .open(&pair.kid, &sealed)
                .is_err()
        );
        assert!(
            KeyEncryptionKey::new(&[7u8; 32])
                .unwrap()
                .open("other", &sealed)
                .is_err()
        );
    }

    #[test]
    fn key_encryption_key_must_be_32_bytes() {
        assert!(KeyEncryptionKey::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn kid_is_a_stable_thumbprint() {
        let pair = generate_ed25519(&SystemRandom::new()).unwrap();
        assert_eq!(pair.kid.len(), 43);
        // RFC 8037 appendix A.3.
        use base64::Engine;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            crate::Jwk::new(SigningAlgorithm::EdDsa, "", &x)
                .unwrap()
                .thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(pair.public_key.len(), 32);
    }
}
