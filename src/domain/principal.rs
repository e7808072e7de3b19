//! Authentication: turning a bearer token into the calling principal, checked against current
//! state (the key and the user must still be active right now).

use crate::domain::{Tokenmint, roles::Role};
use crate::error::{Error, Result};
use crate::ids::{ApiKeyId, OrganizationId, ServiceUserId};
use tokenmint_store::STATE_ACTIVE;

/// The one message every authentication failure gets, so a caller learns nothing from it.
pub const UNAUTHENTICATED: &str = "invalid or expired credentials";

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The caller's service user.
    pub service_user_id: ServiceUserId,
    /// Its name.
    pub service_user_name: String,
    /// Its organization.
    pub organization_id: OrganizationId,
    /// The key its token came from.
    pub api_key_id: ApiKeyId,
    /// Its current role bindings.
    pub roles: Vec<Role>,
    /// The roles its token carries; what it may use is the intersection with `roles`.
    pub token_scope: Vec<Role>,
    /// When its token expires (seconds since the epoch).
    pub token_expiry: i64,
}

impl Principal {
    /// The roles the token carries that the caller's current bindings still cover.
    pub fn effective_roles(&self) -> Vec<Role> {
        super::roles::narrow(&self.roles, &self.token_scope)
    }

    /// The caller's highest effective organization role (`superuser` is platform-level).
    pub fn highest_role(&self) -> Option<Role> {
        self.effective_roles()
            .into_iter()
            .filter(|r| *r != Role::Superuser)
            .max()
    }
}

impl Tokenmint {
    /// Authenticates the bearer token of a call to Tokenmint's own APIs.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal> {
        let token = bearer.ok_or(Error::Unauthenticated(UNAUTHENTICATED))?;
        let claims = self
            .keyring
            .verifier
            .verify(token, Some(&self.settings.issuer))
            .map_err(|_| Error::Unauthenticated(UNAUTHENTICATED))?;
        let found = self.store.find_key_principal(&claims.client_id).await?;
        let now = super::now();
        let current = found.filter(|p| {
            p.api_key.revoke_time.is_none()
                && p.api_key.expire_time > now
                && p.user.state == STATE_ACTIVE
                && p.user.id == claims.sub
                && p.user.organization_id == claims.organization_id
        });
        let Some(current) = current else {
            return Err(Error::Unauthenticated(UNAUTHENTICATED));
        };
        let token_scope = super::roles::parse_scope(&claims.scope).unwrap_or_default();
        Ok(Principal {
            service_user_id: ServiceUserId::from_stored(current.user.id),
            service_user_name: current.user.name,
            organization_id: OrganizationId::from_stored(current.user.organization_id),
            api_key_id: ApiKeyId::from_stored(current.api_key.id),
            roles: current
                .role_bindings
                .iter()
                .filter_map(|b| Role::parse(&b.role))
                .collect(),
            token_scope,
            token_expiry: claims.exp,
        })
    }
}
