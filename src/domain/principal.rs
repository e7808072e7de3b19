//! Authentication: turning a bearer token into the calling principal, checked against current
//! state; and the one rule for "active now" that the exchange, authentication and
//! introspection share.

use crate::domain::Tokenmint;
use crate::domain::roles::{ResourceScope, Role, TokenScope, roles_in, roles_on};
use crate::error::{Error, Resource, Result};
use crate::ids::{ApiKeyId, OrganizationId, ServiceUserId};
use chrono::{DateTime, Utc};
use tokenmint_store::{KeyPrincipal, ProjectRole, RoleBinding, ServiceUserState, Tx};

/// The one message every authentication failure gets, so a caller learns nothing from it.
pub const UNAUTHENTICATED: &str = "invalid or expired credentials";

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The caller's service user.
    pub service_user_id: ServiceUserId,
    pub service_user_name: String,
    pub organization_id: OrganizationId,
    /// The key its token came from.
    pub api_key_id: ApiKeyId,
    /// The roles its current bindings give it in its organization (and `superuser`).
    pub roles: Vec<Role>,
    /// Its current role bindings in every scope, to resolve roles for a project.
    pub bindings: Vec<RoleBinding>,
    /// The organization roles its token carries; what it may use is the intersection with
    /// `roles`.
    pub token_scope: Vec<Role>,
    /// The project roles its token carries.
    pub token_projects: Vec<ProjectRole>,
    /// When its token expires (seconds since the epoch).
    pub token_expiry: i64,
    /// Where this call came from, for the audit trail.
    pub origin: crate::domain::audit::Origin,
}

impl Principal {
    /// The roles the token carries that the caller's current bindings still cover.
    pub fn effective_roles(&self) -> Vec<Role> {
        super::roles::narrow(&self.roles, &self.token_scope)
    }

    /// The roles the token carries that the caller's current bindings cover at `scope`. A scope
    /// outside the caller's organization gives none.
    pub fn effective_roles_in(&self, scope: &ResourceScope) -> Vec<Role> {
        let organization = match scope {
            ResourceScope::Organization(org) => org,
            ResourceScope::Project {
                organization_id, ..
            } => organization_id,
        };
        // A superuser counts as owner in every organization, its own included.
        if self.is_superuser() {
            return vec![Role::Owner, Role::Superuser];
        }
        if organization != self.organization_id.as_str() {
            return Vec::new();
        }
        let mut carried = self.token_scope.clone();
        if let ResourceScope::Project { project_id, .. } = scope {
            carried.extend(roles_on(&self.token_projects, project_id));
        }
        super::roles::narrow(&roles_in(&self.bindings, scope), &carried)
    }

    /// The token's scope as the token carries it.
    pub fn token_scope_string(&self) -> String {
        TokenScope {
            roles: self.token_scope.clone(),
            projects: self.token_projects.clone(),
        }
        .to_string()
    }

    /// The caller holds, and its token carries, the platform `superuser` role.
    pub fn is_superuser(&self) -> bool {
        self.effective_roles().contains(&Role::Superuser)
    }

    /// The organization `organization_id` of a resource, if the caller may see it: its own, or
    /// any for a superuser. Anything else is reported as the resource not existing.
    pub fn visible(
        &self,
        organization_id: String,
        kind: Resource,
        id: &str,
    ) -> Result<OrganizationId> {
        if organization_id == self.organization_id.as_str() || self.is_superuser() {
            Ok(OrganizationId::from_stored(organization_id))
        } else {
            Err(Error::NotFound {
                kind,
                id: id.to_owned(),
            })
        }
    }

    /// The caller's highest effective role at `scope` (`superuser` is platform-level).
    pub fn highest_role_in(&self, scope: &ResourceScope) -> Option<Role> {
        self.effective_roles_in(scope)
            .into_iter()
            .filter(|r| *r != Role::Superuser)
            .max()
    }

    /// The scope of everything in the caller's own organization.
    pub fn organization_scope(&self) -> ResourceScope {
        ResourceScope::Organization(self.organization_id.to_string())
    }
}

/// A key read as whole rows can be used right now (see [`key_active_at`]).
pub fn active_now(found: &KeyPrincipal, now: DateTime<Utc>) -> bool {
    key_active_at(
        found.api_key.revoke_time,
        found.api_key.expire_time,
        found.user.state,
        now,
    )
}

/// Whether a key with these facts may be used at `now`: not revoked, not expired, and its user
/// active. The exchange, admin authentication and introspection all decide with this.
pub fn key_active_at(
    revoke_time: Option<DateTime<Utc>>,
    expire_time: DateTime<Utc>,
    user_state: ServiceUserState,
    now: DateTime<Utc>,
) -> bool {
    revoke_time.is_none() && expire_time > now && user_state == ServiceUserState::Active
}

impl Tokenmint {
    /// Authenticates the bearer token of a call to Tokenmint's own APIs.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal> {
        let token = bearer.ok_or(Error::Unauthenticated(UNAUTHENTICATED))?;
        let claims = self
            .keyring
            .verify(token, Some(&self.settings.issuer), self.now().timestamp())
            .await
            .map_err(|_| Error::Unauthenticated(UNAUTHENTICATED))?;
        let found = self.store.find_key_principal(&claims.client_id).await?;
        let principal = found
            .filter(|p| {
                active_now(p, self.now())
                    && p.user.id == claims.sub
                    && p.user.organization_id == claims.organization_id
            })
            .map(|p| principal_from(p, &claims.scope, claims.exp))
            .ok_or(Error::Unauthenticated(UNAUTHENTICATED))?;
        Ok(principal)
    }

    /// Re-reads the caller inside a unit of work, after locking its own row and `also_lock`'s,
    /// so the authority a change is decided on is the authority at commit: a caller disabled
    /// or deleted a moment ago, or by a concurrent unit, cannot finish one last change.
    pub(crate) async fn reauthorize(
        &self,
        tx: &Tx,
        caller: &Principal,
        organization: &OrganizationId,
        also_lock: &[&ServiceUserId],
    ) -> Result<Principal> {
        // Always the organization first, then users in ID order: every unit locks in this order,
        // so none can deadlock another, and owner-count checks see every concurrent change.
        tx.lock_organization(organization.as_str()).await?;
        let mut lock: Vec<&str> = also_lock.iter().map(|id| id.as_str()).collect();
        lock.push(caller.service_user_id.as_str());
        tx.lock_service_users(&lock).await?;
        let found = tx.key_principal(caller.api_key_id.as_str()).await?;
        found
            .filter(|p| {
                active_now(p, self.now())
                    && p.user.id == caller.service_user_id.as_str()
                    && p.user.organization_id == caller.organization_id.as_str()
            })
            .map(|p| Principal {
                origin: caller.origin.clone(),
                ..principal_from(p, &caller.token_scope_string(), caller.token_expiry)
            })
            .ok_or(Error::Unauthenticated(UNAUTHENTICATED))
    }
}

fn principal_from(found: KeyPrincipal, token_scope: &str, token_expiry: i64) -> Principal {
    // A scope we minted always parses; anything else carries nothing.
    let parsed_scope = TokenScope::parse(token_scope).unwrap_or_default();
    let organization = ResourceScope::Organization(found.user.organization_id.clone());
    Principal {
        roles: roles_in(&found.role_bindings, &organization),
        bindings: found.role_bindings,
        token_scope: parsed_scope.roles,
        token_projects: parsed_scope.projects,
        service_user_id: ServiceUserId::from_stored(found.user.id),
        service_user_name: found.user.name,
        organization_id: OrganizationId::from_stored(found.user.organization_id),
        api_key_id: ApiKeyId::from_stored(found.api_key.id),
        token_expiry,
        origin: Default::default(),
    }
}
