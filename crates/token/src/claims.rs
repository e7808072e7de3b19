//! The claims of a Tokenmint access token (RFC 9068 section 2.2).

use serde::{Deserialize, Serialize};

/// Claims of an access token. `sub` is the service user, `client_id` the API key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer URL.
    pub iss: String,
    /// Service user ID.
    pub sub: String,
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Not before, seconds since the epoch.
    pub nbf: i64,
    /// Unique token ID.
    pub jti: String,
    /// API key ID.
    pub client_id: String,
    /// Space-separated roles.
    pub scope: String,
    /// Organization of the service user.
    pub organization_id: String,
}
