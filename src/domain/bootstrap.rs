//! The first start: organization `default`, service user `admin` (owner and superuser) and one
//! API key, written in one transaction, only on a database without service users.

use crate::domain::{Tokenmint, roles::Role};
use crate::error::{Error, Result};
use crate::ids::{ApiKeyId, OrganizationId, RoleBindingId, ServiceUserId};
use tokenmint_store::{
    ApiKey, Bootstrap, Organization, RoleBinding, RoleScope, ServiceUser, ServiceUserState,
    StoreError,
};
use tokenmint_token::ApiSecret;

/// How long the bootstrap key works.
pub const BOOTSTRAP_KEY_DAYS: i64 = 365;

/// The credential the bootstrap prints once.
#[derive(Debug)]
pub struct BootstrapCredential {
    /// The `default` organization.
    pub organization_id: OrganizationId,
    /// The `admin` service user.
    pub service_user_id: ServiceUserId,
    /// Its API key.
    pub key_id: ApiKeyId,
    /// The key's secret.
    pub secret: ApiSecret,
}

impl Tokenmint {
    /// Bootstraps an empty database; `None` when it already has service users.
    pub async fn bootstrap(&self) -> Result<Option<BootstrapCredential>> {
        if self.store.has_service_users().await? {
            return Ok(None);
        }
        let now = self.now();
        let organization_id = OrganizationId::generate();
        let service_user_id = ServiceUserId::generate();
        let key_id = ApiKeyId::generate();
        let secret = ApiSecret::generate(&self.rng)?;
        let binding = |scope: RoleScope, role: Role| RoleBinding {
            id: RoleBindingId::generate().to_string(),
            organization_id: organization_id.to_string(),
            principal_id: service_user_id.to_string(),
            scope,
            role,
            create_time: now,
        };
        // The first event of the new organization's chain, written with everything else.
        let mut event = tokenmint_store::AuditEvent {
            id: crate::domain::audit::next_id(None),
            organization_id: organization_id.to_string(),
            time: now,
            actor_id: String::new(),
            actor_key_id: String::new(),
            action: "Bootstrap".into(),
            target_id: service_user_id.to_string(),
            outcome: "OK".into(),
            source_address: String::new(),
            request_id: String::new(),
            details: crate::domain::audit::details([
                ("api_key_id", key_id.to_string()),
                ("roles", "owner superuser".into()),
            ]),
            previous_hash: String::new(),
            hash: String::new(),
        };
        event.hash = crate::domain::audit::event_hash(&event);
        let bootstrap = Bootstrap {
            organization: Organization {
                id: organization_id.to_string(),
                name: "default".into(),
                display_name: "Default organization".into(),
                max_service_users: self.settings.default_max_service_users,
                max_api_keys_per_service_user: self.settings.default_max_api_keys_per_service_user,
                create_time: now,
                update_time: now,
                revision: 1,
            },
            user: ServiceUser {
                id: service_user_id.to_string(),
                organization_id: organization_id.to_string(),
                name: "admin".into(),
                display_name: "Bootstrap administrator".into(),
                email: String::new(),
                description: "Created on first start. Use it to create your own service users, then revoke its key.".into(),
                state: ServiceUserState::Active,
                creator: service_user_id.to_string(),
                revision: 1,
                create_time: now,
                update_time: now,
                last_active_time: None,
            },
            role_bindings: vec![
                binding(RoleScope::Organization(organization_id.to_string()), Role::Owner),
                binding(RoleScope::Platform, Role::Superuser),
            ],
            api_key: ApiKey {
                id: key_id.to_string(),
                service_user_id: service_user_id.to_string(),
                organization_id: organization_id.to_string(),
                name: "bootstrap".into(),
                description: "Bootstrap key".into(),
                secret_hash: self.hasher.hash(&secret),
                token_lifetime: chrono::TimeDelta::seconds(
                    i64::try_from(self.settings.default_token_lifetime.as_secs()).unwrap_or(3600),
                ),
                allowed_cidrs: Vec::new(),
                // Keys store their roles explicitly; see `api_keys::create_api_key`.
                scopes: vec![Role::Owner, Role::Superuser],
                project_scopes: Vec::new(),
                creator: service_user_id.to_string(),
                create_time: now,
                expire_time: now + chrono::TimeDelta::days(BOOTSTRAP_KEY_DAYS),
                last_used_time: None,
                last_used_address: None,
                revoke_time: None,
                revoke_reason: None,
                previous_secret: None,
                rotate_time: None,
            },
            audit_event: event,
        };
        match self.store.bootstrap(bootstrap).await {
            Ok(()) => Ok(Some(BootstrapCredential {
                organization_id,
                service_user_id,
                key_id,
                secret,
            })),
            // Another replica bootstrapped first.
            Err(StoreError::AlreadyExists) => Ok(None),
            Err(other) => Err(Error::from(other)),
        }
    }
}
