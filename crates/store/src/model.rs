//! The plain, typed values the store takes and returns. sea-orm rows never leave the crate:
//! they are converted here, and a stored value that cannot be read back is an error
//! ([`StoreError::Corrupt`]), never a default that could widen a key.

use crate::entity::{
    api_key, audit_event, organization, project, role_binding, service_user, signing_key,
};
use crate::{StoreError, StoreResult};
use chrono::{DateTime, TimeDelta, Utc};
use ipnet::IpNet;
use std::fmt;

/// A role a principal holds. Ordered: a higher role can do everything a lower one can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read only.
    Viewer,
    /// Manages the service users it administers and their keys.
    Admin,
    /// Everything in the organization.
    Owner,
    /// Platform level: creates organizations.
    Superuser,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Admin, Role::Owner, Role::Superuser];

    /// The role's name as stored and as it appears in scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Superuser => "superuser",
        }
    }

    /// Parses a role name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role on one project, as it appears in scope strings: `prj_…:admin`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjectRole {
    /// The project.
    pub project_id: String,
    /// The role there (never `superuser`).
    pub role: Role,
}

impl ProjectRole {
    /// Parses `prj_…:role`.
    pub fn parse(text: &str) -> Option<Self> {
        let (project_id, role) = text.split_once(':')?;
        let role = Role::parse(role).filter(|r| *r != Role::Superuser)?;
        (project_id.starts_with("prj_") && project_id.len() > 4).then(|| Self {
            project_id: project_id.to_owned(),
            role,
        })
    }
}

impl fmt::Display for ProjectRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.project_id, self.role)
    }
}

/// Where a role binding applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RoleScope {
    /// The whole platform (only `superuser`).
    Platform,
    /// One organization.
    Organization(String),
    /// One project inside an organization.
    Project(String),
}

impl RoleScope {
    const PLATFORM: &'static str = "platform";

    pub(crate) fn to_stored(&self) -> String {
        match self {
            RoleScope::Platform => Self::PLATFORM.to_owned(),
            RoleScope::Organization(id) | RoleScope::Project(id) => id.clone(),
        }
    }

    pub(crate) fn from_stored(text: &str) -> StoreResult<Self> {
        if text == Self::PLATFORM {
            Ok(RoleScope::Platform)
        } else if text.starts_with("org_") {
            Ok(RoleScope::Organization(text.to_owned()))
        } else if text.starts_with("prj_") {
            Ok(RoleScope::Project(text.to_owned()))
        } else {
            Err(StoreError::Corrupt(format!("unknown role scope {text:?}")))
        }
    }
}

/// Lifecycle state of a service user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceUserState {
    /// Can exchange keys; its tokens introspect as active.
    Active,
    /// Cannot exchange keys; its tokens introspect as inactive.
    Disabled,
}

impl ServiceUserState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ServiceUserState::Active => "ACTIVE",
            ServiceUserState::Disabled => "DISABLED",
        }
    }

    pub(crate) fn from_stored(text: &str) -> StoreResult<Self> {
        match text {
            "ACTIVE" => Ok(ServiceUserState::Active),
            "DISABLED" => Ok(ServiceUserState::Disabled),
            other => Err(StoreError::Corrupt(format!(
                "unknown service user state {other:?}"
            ))),
        }
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Organization {
    /// `org_…`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Quota of service users.
    pub max_service_users: i32,
    /// Quota of keys per service user.
    pub max_api_keys_per_service_user: i32,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
    /// Bumped on every change; the etag.
    pub revision: i64,
}

/// A named scope inside an organization, for project-level roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    /// `prj_…`.
    pub id: String,
    /// Its organization.
    pub organization_id: String,
    /// Unique in the organization.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Creation time.
    pub create_time: DateTime<Utc>,
}

impl From<project::Model> for Project {
    fn from(m: project::Model) -> Self {
        Self {
            id: m.id,
            organization_id: m.organization_id,
            name: m.name,
            display_name: m.display_name,
            create_time: m.create_time,
        }
    }
}

impl From<Project> for project::Model {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            organization_id: p.organization_id,
            name: p.name,
            display_name: p.display_name,
            create_time: p.create_time,
        }
    }
}

/// A service user, without its administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUser {
    /// `su_…`.
    pub id: String,
    /// Its organization; never changes.
    pub organization_id: String,
    /// Unique in the organization.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Contact email, or empty.
    pub email: String,
    /// Free text.
    pub description: String,
    /// Active or disabled.
    pub state: ServiceUserState,
    /// The principal that created it.
    pub creator: String,
    /// Bumped on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change.
    pub update_time: DateTime<Utc>,
    /// Last exchange of one of its keys (written in batches, so up to a flush interval late).
    pub last_active_time: Option<DateTime<Utc>>,
}

/// A service user together with its administrators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceUserRecord {
    pub user: ServiceUser,
    /// Principal IDs allowed to manage it, sorted.
    pub administrators: Vec<String>,
}

/// A role granted to a principal at a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleBinding {
    /// `rb_…`.
    pub id: String,
    /// The organization the binding belongs to.
    pub organization_id: String,
    /// The service user holding the role.
    pub principal_id: String,
    /// Where it applies.
    pub scope: RoleScope,
    pub role: Role,
    /// Creation time.
    pub create_time: DateTime<Utc>,
}

/// An API key: verification data and metadata, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// `ak_…`.
    pub id: String,
    /// Its service user.
    pub service_user_id: String,
    /// The user's organization.
    pub organization_id: String,
    /// Unique among the user's keys.
    pub name: String,
    /// Free text.
    pub description: String,
    /// HMAC-SHA-256 of the secret under the pepper.
    pub secret_hash: Vec<u8>,
    /// Lifetime of the tokens it mints.
    pub token_lifetime: TimeDelta,
    /// Where it may be exchanged from; empty means anywhere.
    pub allowed_cidrs: Vec<IpNet>,
    /// The organization roles its tokens may carry, fixed at creation.
    pub scopes: Vec<Role>,
    /// The project roles its tokens may carry, fixed at creation.
    pub project_scopes: Vec<ProjectRole>,
    /// The principal that created it.
    pub creator: String,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// When it stops working.
    pub expire_time: DateTime<Utc>,
    /// Last exchange.
    pub last_used_time: Option<DateTime<Utc>>,
    /// Address of the last exchange.
    pub last_used_address: Option<String>,
    /// Revocation time.
    pub revoke_time: Option<DateTime<Utc>>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
    /// The secret it had before its last rotation, while that still works.
    pub previous_secret: Option<PreviousSecret>,
    /// When its secret was last rotated.
    pub rotate_time: Option<DateTime<Utc>>,
}

/// Where an API key stands at a given moment, computed from its times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyState {
    /// Can be exchanged.
    Active,
    Revoked,
    /// Past its expiry (and not revoked).
    Expired,
}

/// A rotated-out secret, accepted for exchange until its grace period ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousSecret {
    /// HMAC-SHA-256 of the secret under the pepper.
    pub hash: Vec<u8>,
    /// The end of its grace period.
    pub expire_time: DateTime<Utc>,
}

/// A JWT signing key pair; the private half encrypted under the key-encryption key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// JOSE algorithm, e.g. `EdDSA`.
    pub algorithm: String,
    /// The raw public key.
    pub public_key: Vec<u8>,
    /// nonce || AES-256-GCM(private key PKCS#8) || tag.
    pub encrypted_private_key: Vec<u8>,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Set when the key is withdrawn by hand: it neither signs nor is published.
    pub retire_time: Option<DateTime<Utc>>,
    /// When it starts signing. It is published from `create_time`, so verifiers that cache the
    /// JWKS know it before they see a token it signed.
    pub activate_time: DateTime<Utc>,
}

/// What the exchange and authentication paths need to know about one key, read in one go.
#[derive(Clone, Debug)]
pub struct KeyPrincipal {
    pub api_key: ApiKey,
    /// The key's service user.
    pub user: ServiceUser,
    /// The user's role bindings, in every scope.
    pub role_bindings: Vec<RoleBinding>,
}

/// What an exchange needs to know about one key and nothing more: the cache's copy is built
/// from it. Read in one narrow statement, decoded by position, because every cache miss pays
/// for it on the hot path ([`KeyPrincipal`] carries whole rows, for authentication).
#[derive(Clone, Debug)]
pub struct ExchangeKey {
    /// `ak_…`.
    pub id: String,
    /// Its service user.
    pub service_user_id: String,
    /// The service user's organization.
    pub organization_id: String,
    /// HMAC-SHA-256 of the secret under the pepper.
    pub secret_hash: Vec<u8>,
    /// The secret before the last rotation, while it still works.
    pub previous_secret: Option<PreviousSecret>,
    /// Lifetime of the tokens it mints.
    pub token_lifetime: TimeDelta,
    /// Where it may be exchanged from; empty means anywhere.
    pub allowed_cidrs: Vec<IpNet>,
    /// The organization roles its tokens may carry, fixed at creation.
    pub scopes: Vec<Role>,
    /// The project roles its tokens may carry, fixed at creation.
    pub project_scopes: Vec<ProjectRole>,
    /// When it stops working.
    pub expire_time: DateTime<Utc>,
    /// Revocation time.
    pub revoke_time: Option<DateTime<Utc>>,
    /// The service user's state.
    pub user_state: ServiceUserState,
    /// The service user's role bindings, in every scope.
    pub role_bindings: Vec<RoleBinding>,
}

// --- conversions to and from rows ---

/// A key's stored scope list: organization roles by name, project roles as `prj_…:role`.
pub(crate) fn parse_scopes(key_id: &str, json: &str) -> StoreResult<(Vec<Role>, Vec<ProjectRole>)> {
    let entries = parse_list("the scope list", key_id, json, |entry| {
        if entry.contains(':') {
            ProjectRole::parse(entry).map(ScopeEntry::Project)
        } else {
            Role::parse(entry).map(ScopeEntry::Organization)
        }
    })?;
    let mut scopes = Vec::new();
    let mut project_scopes = Vec::new();
    for entry in entries {
        match entry {
            ScopeEntry::Organization(role) => scopes.push(role),
            ScopeEntry::Project(role) => project_scopes.push(role),
        }
    }
    Ok((scopes, project_scopes))
}

/// A key's stored CIDR allowlist.
pub(crate) fn parse_cidrs(key_id: &str, json: &str) -> StoreResult<Vec<IpNet>> {
    parse_list("the CIDR allowlist", key_id, json, |c| {
        c.parse::<IpNet>().ok()
    })
}

/// A key's stored token lifetime, which must be positive.
pub(crate) fn token_lifetime(key_id: &str, seconds: i64) -> StoreResult<TimeDelta> {
    TimeDelta::try_seconds(seconds)
        .filter(|lifetime| *lifetime > TimeDelta::zero())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the token lifetime of API key {key_id} is out of range"
            ))
        })
}

/// A rotated-out secret, when both of its columns are set.
pub(crate) fn previous_secret(
    hash: Option<Vec<u8>>,
    expire_time: Option<DateTime<Utc>>,
) -> Option<PreviousSecret> {
    match (hash, expire_time) {
        (Some(hash), Some(expire_time)) => Some(PreviousSecret { hash, expire_time }),
        _ => None,
    }
}

/// A stored role name.
pub(crate) fn parse_role(text: &str) -> StoreResult<Role> {
    Role::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown role {text:?}")))
}

enum ScopeEntry {
    Organization(Role),
    Project(ProjectRole),
}

fn json_list<T: ToString>(items: &[T]) -> String {
    let strings: Vec<String> = items.iter().map(ToString::to_string).collect();
    serde_json::Value::from(strings).to_string()
}

fn parse_list<T>(
    what: &str,
    id: &str,
    json: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> StoreResult<Vec<T>> {
    let corrupt = || StoreError::Corrupt(format!("{what} of API key {id} is unreadable"));
    let items: Vec<String> = serde_json::from_str(json).map_err(|_| corrupt())?;
    items
        .iter()
        .map(|item| parse(item))
        .collect::<Option<Vec<T>>>()
        .ok_or_else(corrupt)
}

impl From<organization::Model> for Organization {
    fn from(m: organization::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            display_name: m.display_name,
            max_service_users: m.max_service_users,
            max_api_keys_per_service_user: m.max_keys_per_user,
            create_time: m.create_time,
            update_time: m.update_time,
            revision: m.revision,
        }
    }
}

impl From<Organization> for organization::Model {
    fn from(o: Organization) -> Self {
        Self {
            id: o.id,
            name: o.name,
            display_name: o.display_name,
            max_service_users: o.max_service_users,
            max_keys_per_user: o.max_api_keys_per_service_user,
            create_time: o.create_time,
            update_time: o.update_time,
            revision: o.revision,
        }
    }
}

impl TryFrom<service_user::Model> for ServiceUser {
    type Error = StoreError;

    fn try_from(m: service_user::Model) -> StoreResult<Self> {
        Ok(Self {
            state: ServiceUserState::from_stored(&m.state)?,
            id: m.id,
            organization_id: m.organization_id,
            name: m.name,
            display_name: m.display_name,
            email: m.email,
            description: m.description,
            creator: m.creator,
            revision: m.revision,
            create_time: m.create_time,
            update_time: m.update_time,
            last_active_time: m.last_active_time,
        })
    }
}

impl From<ServiceUser> for service_user::Model {
    fn from(u: ServiceUser) -> Self {
        Self {
            state: u.state.as_str().to_owned(),
            id: u.id,
            organization_id: u.organization_id,
            name: u.name,
            display_name: u.display_name,
            email: u.email,
            description: u.description,
            creator: u.creator,
            revision: u.revision,
            create_time: u.create_time,
            update_time: u.update_time,
            last_active_time: u.last_active_time,
        }
    }
}

impl TryFrom<role_binding::Model> for RoleBinding {
    type Error = StoreError;

    fn try_from(m: role_binding::Model) -> StoreResult<Self> {
        Ok(Self {
            scope: RoleScope::from_stored(&m.scope)?,
            role: parse_role(&m.role)?,
            id: m.id,
            organization_id: m.organization_id,
            principal_id: m.principal_id,
            create_time: m.create_time,
        })
    }
}

impl From<RoleBinding> for role_binding::Model {
    fn from(b: RoleBinding) -> Self {
        Self {
            scope: b.scope.to_stored(),
            role: b.role.as_str().to_owned(),
            id: b.id,
            organization_id: b.organization_id,
            principal_id: b.principal_id,
            create_time: b.create_time,
        }
    }
}

impl TryFrom<api_key::Model> for ApiKey {
    type Error = StoreError;

    fn try_from(m: api_key::Model) -> StoreResult<Self> {
        let (scopes, project_scopes) = parse_scopes(&m.id, &m.scopes)?;
        Ok(Self {
            scopes,
            project_scopes,
            allowed_cidrs: parse_cidrs(&m.id, &m.allowed_cidrs)?,
            token_lifetime: token_lifetime(&m.id, m.token_lifetime_seconds)?,
            previous_secret: previous_secret(m.previous_secret_hash, m.previous_secret_expire_time),
            id: m.id,
            service_user_id: m.service_user_id,
            organization_id: m.organization_id,
            name: m.name,
            description: m.description,
            secret_hash: m.secret_hash,
            rotate_time: m.rotate_time,
            creator: m.creator,
            create_time: m.create_time,
            expire_time: m.expire_time,
            last_used_time: m.last_used_time,
            last_used_address: m.last_used_address,
            revoke_time: m.revoke_time,
            revoke_reason: m.revoke_reason,
        })
    }
}

impl From<ApiKey> for api_key::Model {
    fn from(k: ApiKey) -> Self {
        Self {
            scopes: {
                let mut entries: Vec<String> = k.scopes.iter().map(ToString::to_string).collect();
                entries.extend(k.project_scopes.iter().map(ToString::to_string));
                json_list(&entries)
            },
            allowed_cidrs: json_list(&k.allowed_cidrs),
            token_lifetime_seconds: k.token_lifetime.num_seconds(),
            id: k.id,
            service_user_id: k.service_user_id,
            organization_id: k.organization_id,
            name: k.name,
            description: k.description,
            secret_hash: k.secret_hash,
            creator: k.creator,
            create_time: k.create_time,
            expire_time: k.expire_time,
            last_used_time: k.last_used_time,
            last_used_address: k.last_used_address,
            revoke_time: k.revoke_time,
            revoke_reason: k.revoke_reason,
            previous_secret_expire_time: k.previous_secret.as_ref().map(|p| p.expire_time),
            previous_secret_hash: k.previous_secret.map(|p| p.hash),
            rotate_time: k.rotate_time,
            expiry_warned_time: None,
            expired_notice_time: None,
        }
    }
}

impl From<signing_key::Model> for SigningKey {
    fn from(m: signing_key::Model) -> Self {
        Self {
            kid: m.kid,
            algorithm: m.algorithm,
            public_key: m.public_key,
            encrypted_private_key: m.encrypted_private_key,
            activate_time: m.activate_time.unwrap_or(m.create_time),
            create_time: m.create_time,
            retire_time: m.retire_time,
        }
    }
}

impl From<SigningKey> for signing_key::Model {
    fn from(k: SigningKey) -> Self {
        Self {
            kid: k.kid,
            algorithm: k.algorithm,
            public_key: k.public_key,
            encrypted_private_key: k.encrypted_private_key,
            create_time: k.create_time,
            retire_time: k.retire_time,
            activate_time: Some(k.activate_time),
        }
    }
}

/// One audit event, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// `ev_…`.
    pub id: String,
    /// Empty for the platform-level chain.
    pub organization_id: String,
    pub time: DateTime<Utc>,
    /// The service user that acted; empty when unknown.
    pub actor_id: String,
    /// The API key it acted with; empty when unknown.
    pub actor_key_id: String,
    /// The RPC name, e.g. `CreateApiKey`.
    pub action: String,
    /// What was acted on.
    pub target_id: String,
    /// The gRPC code name, `OK` on success.
    pub outcome: String,
    pub source_address: String,
    pub request_id: String,
    /// Extra facts, never a secret or a token.
    pub details: std::collections::BTreeMap<String, String>,
    /// Hash of the previous event of its chain; empty for the first.
    pub previous_hash: String,
    /// Hash over `previous_hash` and this event.
    pub hash: String,
}

/// A notice about a key that is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyNotice {
    /// It expires within the warning window.
    Expiring,
    /// It has expired.
    Expired,
}

/// Which audit events to read, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// The chain (empty: the platform's).
    pub organization_id: String,
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Option<String>,
    /// Inclusive.
    pub time_from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub time_to: Option<DateTime<Utc>>,
    /// Page cursor: only events older than this ID.
    pub before_id: Option<String>,
}

impl TryFrom<audit_event::Model> for AuditEvent {
    type Error = StoreError;

    fn try_from(m: audit_event::Model) -> StoreResult<Self> {
        let details = serde_json::from_str(&m.details).map_err(|_| {
            StoreError::Corrupt(format!(
                "the details of audit event {} are unreadable",
                m.id
            ))
        })?;
        Ok(Self {
            id: m.id,
            organization_id: m.organization_id,
            time: m.time,
            actor_id: m.actor_id,
            actor_key_id: m.actor_key_id,
            action: m.action,
            target_id: m.target_id,
            outcome: m.outcome,
            source_address: m.source_address,
            request_id: m.request_id,
            details,
            previous_hash: m.previous_hash,
            hash: m.hash,
        })
    }
}

impl From<AuditEvent> for audit_event::Model {
    fn from(e: AuditEvent) -> Self {
        Self {
            details: serde_json::to_string(&e.details).unwrap_or_else(|_| "{}".to_owned()),
            id: e.id,
            organization_id: e.organization_id,
            time: e.time,
            actor_id: e.actor_id,
            actor_key_id: e.actor_key_id,
            action: e.action,
            target_id: e.target_id,
            outcome: e.outcome,
            source_address: e.source_address,
            request_id: e.request_id,
            previous_hash: e.previous_hash,
            hash: e.hash,
        }
    }
}

/// Cached verification data made stale by a change, announced to every replica (on PostgreSQL
/// through NOTIFY, in the change's own transaction) so each drops its copy at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// One API key.
    ApiKey(String),
    /// Every key of a service user.
    ServiceUser(String),
    /// Everything: notifications may have been missed.
    Everything,
}

impl Invalidation {
    /// The NOTIFY payload.
    pub fn to_payload(&self) -> String {
        match self {
            Invalidation::ApiKey(id) => format!("key:{id}"),
            Invalidation::ServiceUser(id) => format!("user:{id}"),
            Invalidation::Everything => "all".to_owned(),
        }
    }

    /// Reads a payload back; anything unreadable means everything, so a replica that cannot
    /// understand a message errs on the side of re-reading.
    pub fn from_payload(payload: &str) -> Self {
        match payload.split_once(':') {
            Some(("key", id)) if !id.is_empty() => Invalidation::ApiKey(id.to_owned()),
            Some(("user", id)) if !id.is_empty() => Invalidation::ServiceUser(id.to_owned()),
            _ => Invalidation::Everything,
        }
    }
}

#[cfg(test)]
mod invalidation_tests {
    use super::Invalidation;

    #[test]
    fn payloads_round_trip() {
        for stale in [
            Invalidation::ApiKey("ak_1".into()),
            Invalidation::ServiceUser("su_1".into()),
            Invalidation::Everything,
        ] {
            assert_eq!(Invalidation::from_payload(&stale.to_payload()), stale);
        }
    }

    #[test]
    fn an_unreadable_payload_invalidates_everything() {
        for payload in ["", "key:", "other:x", "garbage"] {
            assert_eq!(
                Invalidation::from_payload(payload),
                Invalidation::Everything
            );
        }
    }
}
