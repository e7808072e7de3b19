//! Translation between protobuf messages and domain values.

use crate::domain::access::NewRoleBinding;
use crate::domain::api_keys::{KeyState, key_state};
use crate::domain::organizations::OrganizationFields;
use crate::domain::service_users::etag;
use crate::error::{Error, Result};
use crate::proto::admin::v1 as pb;
use chrono::{DateTime, Utc};
use tokenmint_store::{
    ApiKey, Organization, Project, Role, RoleBinding, RoleScope, ServiceUserRecord,
    ServiceUserState,
};
use tonic::metadata::MetadataMap;

/// A protobuf timestamp.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf timestamp from seconds since the epoch.
pub fn timestamp_from_seconds(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

/// A protobuf duration as a std one; negative or malformed is an invalid `field`.
pub fn duration(
    field: &str,
    value: Option<prost_types::Duration>,
) -> Result<Option<std::time::Duration>> {
    match value {
        None => Ok(None),
        Some(d) if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 => {
            Err(Error::invalid(field, "must be a non-negative duration"))
        }
        Some(d) => Ok(Some(std::time::Duration::new(
            d.seconds as u64,
            d.nanos as u32,
        ))),
    }
}

/// The caller's address (see [`crate::listener::client_address`]).
pub fn client_address<T>(
    request: &tonic::Request<T>,
    trusted_proxies: &[ipnet::IpNet],
) -> Option<std::net::IpAddr> {
    let peer = crate::listener::peer_info(request.extensions()).and_then(|p| p.addr);
    crate::listener::client_address(
        peer,
        request
            .metadata()
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().ok()),
        trusted_proxies,
    )
}

/// Where a call came from: the client's address and its `x-request-id` (kept only when it is
/// at most 128 visible ASCII characters, so it cannot smuggle anything into the audit trail).
pub fn origin<T>(
    request: &tonic::Request<T>,
    trusted_proxies: &[ipnet::IpNet],
) -> crate::domain::audit::Origin {
    let request_id = request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_default()
        .to_owned();
    crate::domain::audit::Origin {
        address: client_address(request, trusted_proxies),
        request_id,
    }
}

/// The token in `authorization: Bearer <token>`, if any. More than one `authorization` header
/// is refused: proxies and servers disagree on which one counts.
pub fn bearer(metadata: &MetadataMap) -> Result<Option<&str>> {
    let mut values = metadata.get_all("authorization").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::invalid(
            "authorization",
            "send exactly one authorization header",
        ));
    }
    let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return Ok(None);
    };
    Ok(scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty()))
}

/// A role from the API; `None` for `ROLE_UNSPECIFIED` or an unknown value.
pub fn role(value: i32) -> Option<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Viewer) => Some(Role::Viewer),
        Ok(pb::Role::Admin) => Some(Role::Admin),
        Ok(pb::Role::Owner) => Some(Role::Owner),
        _ => None,
    }
}

/// A role binding from the API.
pub fn new_role_binding(binding: pb::RoleBinding) -> NewRoleBinding {
    NewRoleBinding {
        role: role(binding.role),
        principal_id: binding.principal_id,
        project_id: binding.project_id,
        organization_id: binding.organization_id,
    }
}

/// A role binding as the API shows it.
impl From<RoleBinding> for pb::RoleBinding {
    fn from(binding: RoleBinding) -> Self {
        pb::RoleBinding {
            id: binding.id,
            organization_id: binding.organization_id,
            project_id: match binding.scope {
                RoleScope::Project(project) => project,
                RoleScope::Organization(_) | RoleScope::Platform => String::new(),
            },
            principal_id: binding.principal_id,
            role: match binding.role {
                Role::Viewer => pb::Role::Viewer,
                Role::Admin => pb::Role::Admin,
                Role::Owner => pb::Role::Owner,
                Role::Superuser => pb::Role::Unspecified,
            } as i32,
            create_time: Some(timestamp(binding.create_time)),
        }
    }
}

/// A project as the API shows it.
impl From<Project> for pb::Project {
    fn from(project: Project) -> Self {
        pb::Project {
            id: project.id,
            organization_id: project.organization_id,
            name: project.name,
            display_name: project.display_name,
            create_time: Some(timestamp(project.create_time)),
        }
    }
}

/// An organization as the API shows it.
impl From<Organization> for pb::Organization {
    fn from(organization: Organization) -> Self {
        pb::Organization {
            etag: crate::domain::organizations::etag(&organization),
            id: organization.id,
            name: organization.name,
            display_name: organization.display_name,
            max_service_users: organization.max_service_users,
            max_api_keys_per_service_user: organization.max_api_keys_per_service_user,
            create_time: Some(timestamp(organization.create_time)),
            update_time: Some(timestamp(organization.update_time)),
        }
    }
}

/// The caller-supplied fields of an organization.
pub fn organization_fields(organization: pb::Organization) -> OrganizationFields {
    OrganizationFields {
        name: organization.name,
        display_name: organization.display_name,
        max_service_users: organization.max_service_users,
        max_api_keys_per_service_user: organization.max_api_keys_per_service_user,
    }
}

/// A service user as the API shows it.
impl From<ServiceUserRecord> for pb::ServiceUser {
    fn from(record: ServiceUserRecord) -> Self {
        let user = record.user;
        pb::ServiceUser {
            etag: etag(&user),
            state: match user.state {
                ServiceUserState::Active => pb::service_user::State::Active,
                ServiceUserState::Disabled => pb::service_user::State::Disabled,
            } as i32,
            id: user.id,
            organization_id: user.organization_id,
            name: user.name,
            display_name: user.display_name,
            email: user.email,
            description: user.description,
            administrators: record.administrators,
            create_time: Some(timestamp(user.create_time)),
            update_time: Some(timestamp(user.update_time)),
            creator: user.creator,
            last_active_time: user.last_active_time.map(timestamp),
        }
    }
}

/// An API key as the API shows it at `now` (never with its secret or hash).
pub fn api_key(key: ApiKey, now: DateTime<Utc>) -> pb::ApiKey {
    let state = match key_state(&key, now) {
        KeyState::Active => pb::api_key::State::Active,
        KeyState::Revoked => pb::api_key::State::Revoked,
        KeyState::Expired => pb::api_key::State::Expired,
    };
    pb::ApiKey {
        id: key.id,
        service_user_id: key.service_user_id,
        organization_id: key.organization_id,
        name: key.name,
        description: key.description,
        state: state as i32,
        create_time: Some(timestamp(key.create_time)),
        expire_time: Some(timestamp(key.expire_time)),
        token_lifetime: Some(prost_types::Duration {
            seconds: key.token_lifetime.num_seconds(),
            nanos: 0,
        }),
        allowed_cidrs: key.allowed_cidrs.iter().map(ToString::to_string).collect(),
        scopes: key
            .scopes
            .iter()
            .map(ToString::to_string)
            .chain(key.project_scopes.iter().map(ToString::to_string))
            .collect(),
        last_used_time: key.last_used_time.map(timestamp),
        last_used_address: key.last_used_address.unwrap_or_default(),
        revoke_time: key.revoke_time.map(timestamp),
        revoke_reason: key.revoke_reason.unwrap_or_default(),
        rotate_time: key.rotate_time.map(timestamp),
        previous_secret_expire_time: key
            .previous_secret
            .map(|p| p.expire_time)
            .filter(|until| *until > now)
            .map(timestamp),
    }
}

/// The response to a rotation, carrying the new secret this once.
pub fn rotated_api_key(
    rotated: crate::domain::api_keys::RotatedApiKey,
    now: DateTime<Utc>,
) -> pb::RotateApiKeyResponse {
    pb::RotateApiKeyResponse {
        secret: rotated.secret.expose().to_owned(),
        previous_secret_expire_time: rotated.previous_secret_expire_time.map(timestamp),
        api_key: Some(api_key(rotated.api_key, now)),
    }
}

/// A signing key with its place in the schedule.
pub fn signing_key(key: crate::domain::keyring::ScheduledKey) -> pb::SigningKey {
    use crate::domain::keyring::SigningKeyState as S;
    let state = match key.state {
        S::Pending => pb::signing_key::State::Pending,
        S::Active => pb::signing_key::State::Active,
        S::Retired => pb::signing_key::State::Retired,
        S::Expired => pb::signing_key::State::Expired,
    };
    pb::SigningKey {
        kid: key.key.kid,
        algorithm: key.key.algorithm,
        state: state as i32,
        create_time: Some(timestamp(key.key.create_time)),
        activate_time: Some(timestamp(key.key.activate_time)),
        replace_time: key.replace_time.map(timestamp),
    }
}

/// An audit event as the API shows it.
impl From<tokenmint_store::AuditEvent> for pb::AuditEvent {
    fn from(e: tokenmint_store::AuditEvent) -> Self {
        pb::AuditEvent {
            id: e.id,
            organization_id: e.organization_id,
            time: Some(timestamp(e.time)),
            actor_id: e.actor_id,
            actor_key_id: e.actor_key_id,
            action: e.action,
            target_id: e.target_id,
            outcome: e.outcome,
            source_address: e.source_address,
            request_id: e.request_id,
            details: e.details.into_iter().collect(),
            previous_hash: e.previous_hash,
            hash: e.hash,
        }
    }
}
