//! API-key secrets: a recognisable prefix, 190 random bits and a CRC32 checksum (so scanners
//! find leaked ones and typos fail before any lookup), stored only as HMAC-SHA-256 under a pepper.

use crate::CryptoError;
use ring::{hmac, rand::SecureRandom};
use std::fmt;

/// Every secret starts with this, so secret scanners can find leaked ones.
pub const SECRET_PREFIX: &str = "tmsk_";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 32 base62 characters carry about 190 bits.
const BODY_LEN: usize = 32;
/// 62^6 > 2^32, so six base62 characters hold a CRC32.
const CHECKSUM_LEN: usize = 6;
const SECRET_LEN: usize = SECRET_PREFIX.len() + BODY_LEN + CHECKSUM_LEN;

/// Why a string is not a well-formed secret.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretFormatError {
    /// Wrong prefix, length or characters.
    #[error("not a Tokenmint secret")]
    Malformed,
    /// The checksum does not match: a typo or a truncated copy.
    #[error("secret checksum mismatch")]
    Checksum,
}

/// A well-formed API-key secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiSecret(String);

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiSecret(<redacted>)")
    }
}

impl ApiSecret {
    /// A fresh secret from the system RNG.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, CryptoError> {
        let mut body = String::with_capacity(BODY_LEN);
        let mut buf = [0u8; 64];
        while body.len() < BODY_LEN {
            rng.fill(&mut buf).map_err(|_| CryptoError::Random)?;
            // Rejection sampling keeps every character equally likely.
            for byte in buf.iter().filter(|b| **b < 248) {
                if body.len() == BODY_LEN {
                    break;
                }
                body.push(BASE62[usize::from(*byte % 62)] as char);
            }
        }
        let mut secret = String::with_capacity(SECRET_LEN);
        secret.push_str(SECRET_PREFIX);
        secret.push_str(&body);
        secret.extend(checksum(&body).map(char::from));
        Ok(Self(secret))
    }

    /// Checks prefix, length, alphabet and checksum.
    pub fn parse(text: &str) -> Result<Self, SecretFormatError> {
        let rest = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretFormatError::Malformed)?;
        // BASE62 is exactly the ASCII letters and digits.
        if text.len() != SECRET_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(SecretFormatError::Malformed);
        }
        let (body, sum) = rest.split_at(BODY_LEN);
        if checksum(body) != sum.as_bytes() {
            return Err(SecretFormatError::Checksum);
        }
        Ok(Self(text.to_owned()))
    }

    /// The secret itself, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The body's CRC32 in base62 characters.
fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut value = u64::from(crc32fast::hash(body.as_bytes()));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// Hashes secrets with HMAC-SHA-256 under the server's pepper and checks them in constant time.
pub struct SecretHasher {
    key: hmac::Key,
}

impl fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHasher(<pepper>)")
    }
}

impl SecretHasher {
    /// A hasher keyed with `pepper`.
    pub fn new(pepper: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, pepper),
        }
    }

    /// The value to store for `secret`.
    pub fn hash(&self, secret: &ApiSecret) -> Vec<u8> {
        hmac::sign(&self.key, secret.0.as_bytes()).as_ref().to_vec()
    }

    /// Whether `secret` hashes to `stored`, compared in constant time.
    pub fn verify(&self, secret: &ApiSecret, stored: &[u8]) -> bool {
        hmac::verify(&self.key, secret.0.as_bytes(), stored).is_ok()
    }

    /// The same work as [`verify`](Self::verify) for a key that does not exist, so an unknown
    /// key ID cannot be told from a wrong secret by timing. Always `false`.
    pub fn verify_unknown(&self, secret: &ApiSecret) -> bool {
        let _ = hmac::verify(&self.key, secret.0.as_bytes(), &[0u8; 32]);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn generated_secret_parses_and_has_prefix() {
        let secret = ApiSecret::generate(&SystemRandom::new()).unwrap();
        assert!(secret.expose().starts_with(SECRET_PREFIX));
        assert_eq!(secret.expose().len(), SECRET_LEN);
        assert_eq!(ApiSecret::parse(secret.expose()).unwrap(), secret);
    }

    #[test]
    fn generated_secrets_differ() {
        let rng = SystemRandom::new();
        let a = ApiSecret::generate(&rng).unwrap();
        let b = ApiSecret::generate(&rng).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_single_typo_fails_the_checksum() {
        let secret = ApiSecret::generate(&SystemRandom::new()).unwrap();
        let mut chars: Vec<char> = secret.expose().chars().collect();
        let i = SECRET_PREFIX.len() + 3;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(ApiSecret::parse(&typo), Err(SecretFormatError::Checksum));
    }

    #[test]
    fn wrong_prefix_length_or_alphabet_is_malformed() {
        let secret = ApiSecret::generate(&SystemRandom::new()).unwrap();
        let s = secret.expose();
        assert_eq!(
            ApiSecret::parse(&s.replacen("tmsk_", "ghp_x", 1)),
            Err(SecretFormatError::Malformed)
        );
        assert_eq!(
            ApiSecret::parse(&s[..s.len() - 1]),
            Err(SecretFormatError::Malformed)
        );
        assert_eq!(
            ApiSecret::parse(&format!("{}-", &s[..s.len() - 1])),
            Err(SecretFormatError::Malformed)
        );
        assert_eq!(ApiSecret::parse(""), Err(SecretFormatError::Malformed));
    }

    #[test]
    fn the_alphabet_is_every_ascii_letter_and_digit_once() {
        let mut alphabet = BASE62.to_vec();
        alphabet.sort_unstable();
        alphabet.dedup();
        assert_eq!(alphabet.len(), 62);
        assert!(alphabet.iter().all(u8::is_ascii_alphanumeric));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let secret = ApiSecret::generate(&SystemRandom::new()).unwrap();
        assert!(!format!("{secret:?}").contains(&secret.expose()[SECRET_PREFIX.len()..]));
    }

    #[test]
    fn hash_verifies_only_under_the_same_pepper() {
        let secret = ApiSecret::generate(&SystemRandom::new()).unwrap();
        let hasher = SecretHasher::new(b"pepper-one");
        let stored = hasher.hash(&secret);
        assert_eq!(stored.len(), 32);
        assert!(hasher.verify(&secret, &stored));
        assert!(!SecretHasher::new(b"pepper-two").verify(&secret, &stored));
        assert!(!hasher.verify_unknown(&secret));
        let other = ApiSecret::generate(&SystemRandom::new()).unwrap();
        assert!(!hasher.verify(&other, &stored));
    }

    #[test]
    fn stored_hash_does_not_contain_the_secret() {
        let secret = ApiSecret::generate(&SystemRandom::new()).unwrap();
        let stored = SecretHasher::new(b"p").hash(&secret);
        assert!(
            !stored
                .windows(8)
                .any(|w| secret.expose().as_bytes().windows(8).any(|s| s == w))
        );
    }
}
