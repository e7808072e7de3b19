//! The public key set (RFC 7517) that verifiers fetch.

use crate::{CryptoError, SigningAlgorithm, b64url};
use serde::{Deserialize, Serialize};

/// One public key: an OKP (Ed25519), EC (P-256) or RSA key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type.
    pub kty: String,
    /// Curve, for OKP and EC keys.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub crv: String,
    /// Key ID.
    pub kid: String,
    pub alg: String,
    /// Public key use.
    #[serde(rename = "use")]
    pub use_: String,
    /// OKP public key or EC x coordinate, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub x: String,
    /// EC y coordinate, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub y: String,
    /// RSA modulus, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub n: String,
    /// RSA public exponent, base64url.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub e: String,
}

impl Jwk {
    /// The JWK of a stored public key: raw Ed25519 bytes, an uncompressed P-256 point, or an RSA
    /// public key in PKCS#1 DER.
    pub fn new(
        algorithm: SigningAlgorithm,
        kid: &str,
        public_key: &[u8],
    ) -> Result<Self, CryptoError> {
        let mut jwk = Self {
            kty: String::new(),
            crv: String::new(),
            kid: kid.into(),
            alg: algorithm.jose_name().into(),
            use_: "sig".into(),
            x: String::new(),
            y: String::new(),
            n: String::new(),
            e: String::new(),
        };
        match algorithm {
            SigningAlgorithm::EdDsa => {
                if public_key.len() != 32 {
                    return Err(CryptoError::InvalidKey("Ed25519 keys are 32 bytes".into()));
                }
                jwk.kty = "OKP".into();
                jwk.crv = "Ed25519".into();
                jwk.x = b64url(public_key);
            }
            SigningAlgorithm::Es256 => {
                let point = public_key
                    .strip_prefix(&[4u8])
                    .filter(|p| p.len() == 64)
                    .ok_or_else(|| {
                        CryptoError::InvalidKey("P-256 keys are 65-byte uncompressed points".into())
                    })?;
                jwk.kty = "EC".into();
                jwk.crv = "P-256".into();
                jwk.x = b64url(&point[..32]);
                jwk.y = b64url(&point[32..]);
            }
            SigningAlgorithm::Rs256 => {
                let key = aws_lc_rs::rsa::PublicKey::from_der(public_key)
                    .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
                let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&key);
                jwk.kty = "RSA".into();
                jwk.n = b64url(&components.n);
                jwk.e = b64url(&components.e);
            }
        }
        Ok(jwk)
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
    pub fn thumbprint(&self) -> String {
        let canonical = match self.kty.as_str() {
            "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, self.crv, self.x),
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                self.crv, self.x, self.y
            ),
            _ => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, self.e, self.n),
        };
        b64url(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }
}

/// A key set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// The JSON document served at `/.well-known/jwks.json`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"keys":[]}"#.to_owned())
    }
}
