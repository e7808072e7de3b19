//! The public key set (RFC 7517) that verifiers fetch.

use crate::b64url;
use serde::{Deserialize, Serialize};

/// One public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type.
    pub kty: String,
    pub crv: String,
    /// Key ID.
    pub kid: String,
    pub alg: String,
    /// Public key use.
    #[serde(rename = "use")]
    pub use_: String,
    /// Public key, base64url.
    pub x: String,
}

impl Jwk {
    /// The JWK of a raw Ed25519 public key.
    pub fn ed25519(kid: &str, public_key: &[u8]) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: kid.into(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
            x: b64url(public_key),
        }
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
