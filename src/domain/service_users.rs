//! Service users: creation, reads, updates with etags, state changes and deletion.

use crate::domain::access::{
    NewRoleBinding, ensure_another_owner, insert_binding, new_binding, parse_binding,
};
use crate::domain::api_keys::{KeyState, key_state};
use crate::domain::audit::details;
use crate::domain::roles::{ResourceScope, Role, narrow, roles_in};
use crate::domain::validation::{self as check, Violations};
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Reason, Resource, Result};
use crate::ids::{OrganizationId, ServiceUserId};
use tokenmint_store::{
    Invalidation, RoleScope, ServiceUser, ServiceUserRecord, ServiceUserState, StoreError, Tx,
};

/// The caller-supplied fields of a service user.
#[derive(Clone, Debug, Default)]
pub struct ServiceUserFields {
    /// Unique name in the organization.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Contact email.
    pub email: String,
    /// Free text.
    pub description: String,
}

/// One page of service users.
#[derive(Debug)]
pub struct ServiceUserPage {
    pub service_users: Vec<ServiceUserRecord>,
    /// Token for the next page, empty on the last.
    pub next_page_token: String,
}

/// Most role bindings a CreateServiceUser request may carry (there are three grantable roles).
pub const MAX_INITIAL_BINDINGS: usize = 8;

/// The fields UpdateServiceUser may change.
pub const UPDATABLE_FIELDS: [&str; 3] = ["display_name", "email", "description"];

/// The etag of a stored user.
pub fn etag(user: &ServiceUser) -> String {
    format!("\"{}\"", user.revision)
}

fn parse_id(field: &str, id: &str) -> Result<ServiceUserId> {
    check::id(field, id, ServiceUserId::parse, ServiceUserId::PREFIX)
}

fn validate_details(v: &mut Violations, fields: &ServiceUserFields) {
    v.check(
        "service_user.display_name",
        check::text(&fields.display_name, check::MAX_DISPLAY_NAME_LEN),
    );
    v.check("service_user.email", check::email(&fields.email));
    v.check(
        "service_user.description",
        check::text(&fields.description, check::MAX_DESCRIPTION_LEN),
    );
}

impl Tokenmint {
    /// Creates a service user in the caller's organization; the caller becomes its administrator.
    pub async fn create_service_user(
        &self,
        caller: &Principal,
        organization_id: &str,
        fields: ServiceUserFields,
        role_bindings: Vec<NewRoleBinding>,
    ) -> Result<ServiceUserRecord> {
        let mut v = Violations::new();
        v.check("service_user.name", check::name(&fields.name));
        validate_details(&mut v, &fields);
        let mut roles = Vec::new();
        if role_bindings.len() > MAX_INITIAL_BINDINGS {
            v.add(
                "role_bindings",
                format!("at most {MAX_INITIAL_BINDINGS} entries"),
            );
        }
        for (i, binding) in role_bindings.iter().enumerate().take(MAX_INITIAL_BINDINGS) {
            let field = format!("role_bindings[{i}]");
            if !binding.principal_id.is_empty() {
                v.add(
                    &format!("{field}.principal_id"),
                    "must be empty: the binding is for the user being created",
                );
            }
            match parse_binding(&mut v, &field, binding) {
                (_, Some(project)) => {
                    // Projects arrive with the tenancy RPCs; until then none exists.
                    return Err(Error::NotFound {
                        kind: Resource::Project,
                        id: project.to_string(),
                    });
                }
                (Some(role), None) if roles.contains(&role) => {
                    v.add(&format!("{field}.role"), format!("{role} is listed twice"))
                }
                (Some(role), None) => roles.push(role),
                (None, None) => {}
            }
        }
        v.finish()?;
        let organization = authz::organization(caller, organization_id)?;
        for (i, binding) in role_bindings.iter().enumerate() {
            crate::domain::access::check_binding_organization(
                &format!("role_bindings[{i}]"),
                &binding.organization_id,
                organization.as_str(),
            )?;
        }
        let scope = ResourceScope::Organization(organization.to_string());
        authz::create_service_user(caller, &scope)?;
        let tx = self.store.begin().await?;
        let caller = self.reauthorize(&tx, caller, &organization, &[]).await?;
        authz::create_service_user(&caller, &scope)?;
        // Nobody creates a user bound above their own role.
        authz::grant_scopes(&caller, &scope, &roles)?;
        let quota = tx
            .organization(organization.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::Organization, organization.as_str()))?
            .max_service_users;
        // The organization's row is locked (reauthorize), so concurrent creates count in turn.
        if tx.count_service_users(organization.as_str()).await? >= u64::try_from(quota).unwrap_or(0)
        {
            return Err(Error::ResourceExhausted(format!(
                "the organization's quota max_service_users ({quota}) is reached"
            )));
        }
        let now = self.now();
        let user = ServiceUser {
            id: ServiceUserId::generate().to_string(),
            organization_id: organization.to_string(),
            name: fields.name,
            display_name: fields.display_name,
            email: fields.email,
            description: fields.description,
            state: ServiceUserState::Active,
            creator: caller.service_user_id.to_string(),
            revision: 1,
            create_time: now,
            update_time: now,
            last_active_time: None,
        };
        let name = user.name.clone();
        let mut record = tx.insert_service_user(user).await.map_err(|e| match e {
            StoreError::AlreadyExists => Error::AlreadyExists(
                Reason::ServiceUserAlreadyExists,
                format!(
                    "a service user named {} already exists in this organization",
                    check::echo(&name)
                ),
            ),
            other => other.into(),
        })?;
        let granted: Vec<String> = roles.iter().map(ToString::to_string).collect();
        for role in roles {
            let binding = new_binding(
                organization.as_str(),
                &record.user.id,
                RoleScope::Organization(organization.to_string()),
                role,
                now,
            );
            insert_binding(&tx, binding).await?;
        }
        // The creator administers the new user when it holds admin or owner there by a binding
        // (a superuser creating users in another organization does not).
        let bound_here = narrow(&roles_in(&caller.bindings, &scope), &caller.token_scope);
        if bound_here
            .iter()
            .any(|r| matches!(r, Role::Admin | Role::Owner))
        {
            tx.add_administrator(&record.user.id, caller.service_user_id.as_str(), now)
                .await?;
            record
                .administrators
                .push(caller.service_user_id.to_string());
        }
        self.audit_change(
            &tx,
            &record.user.organization_id,
            &caller,
            "CreateServiceUser",
            &record.user.id,
            details([
                ("name", record.user.name.clone()),
                ("roles", granted.join(" ")),
            ]),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Gets a service user of the caller's organization.
    pub async fn get_service_user(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<ServiceUserRecord> {
        let id = parse_id("id", id)?;
        authz::read(caller, &caller.organization_scope())?;
        let organization = self.organization_of_user(caller, &id).await?;
        authz::read(
            caller,
            &ResourceScope::Organization(organization.to_string()),
        )?;
        self.store
            .service_user(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ServiceUser, id.as_str()))
    }

    /// The organization of service user `id`, if the caller may see it.
    pub(crate) async fn organization_of_user(
        &self,
        caller: &Principal,
        id: &ServiceUserId,
    ) -> Result<OrganizationId> {
        let organization = self
            .store
            .organization_of_service_user(id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ServiceUser, id.as_str()))?;
        caller.visible(organization, Resource::ServiceUser, id.as_str())
    }

    /// Inside a unit of work: re-reads the caller (locking its row and the target's), then
    /// returns the target, with the roles it holds, if the caller may manage it (change it or
    /// its keys).
    pub(crate) async fn managed_service_user(
        &self,
        tx: &Tx,
        caller: &Principal,
        id: &ServiceUserId,
    ) -> Result<(Principal, ServiceUserRecord, Vec<Role>)> {
        authz::manage(caller, &caller.organization_scope())?;
        let organization = tx
            .organization_of_service_user(id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ServiceUser, id.as_str()))?;
        let organization = caller.visible(organization, Resource::ServiceUser, id.as_str())?;
        let scope = ResourceScope::Organization(organization.to_string());
        let caller = self.reauthorize(tx, caller, &organization, &[id]).await?;
        authz::manage(&caller, &scope)?;
        let user = tx
            .service_user(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ServiceUser, id.as_str()))?;
        let bindings = tx.role_bindings_of(id.as_str()).await?;
        let roles = roles_in(&bindings, &scope);
        authz::manage_service_user(&caller, &scope, &user.administrators, &roles)?;
        // Nor a user holding a project role above the caller's role on that project.
        for binding in &bindings {
            if let RoleScope::Project(project_id) = &binding.scope {
                let there = ResourceScope::Project {
                    organization_id: organization.to_string(),
                    project_id: project_id.clone(),
                };
                if narrow(&caller.effective_roles_in(&there), &[binding.role]).is_empty() {
                    return Err(Error::PermissionDenied(
                        Reason::TargetOutranksCaller,
                        format!(
                            "this service user holds {project_id}:{}, above your own role there",
                            binding.role
                        ),
                    ));
                }
            }
        }
        Ok((caller, user, roles))
    }

    /// Lists service users of the caller's organization, optionally filtered by state.
    pub async fn list_service_users(
        &self,
        caller: &Principal,
        organization_id: &str,
        page_size: i32,
        page_token: &str,
        filter: &str,
    ) -> Result<ServiceUserPage> {
        let limit = check::page_size(page_size).map_err(|d| Error::invalid("page_size", d))?;
        let state = parse_state_filter(filter)?;
        let organization: OrganizationId = authz::organization(caller, organization_id)?;
        authz::read(
            caller,
            &ResourceScope::Organization(organization.to_string()),
        )?;
        self.existing_organization(&organization).await?;
        let query = format!(
            "service_users|{organization}|{}",
            state.map_or("", state_name)
        );
        let after = self
            .page_tokens
            .decode(&query, page_token, |id| ServiceUserId::parse(id).is_some())?;
        let mut users = self
            .store
            .list_service_users(organization.as_str(), state, after.as_deref(), limit + 1)
            .await?;
        let next_page_token = self
            .page_tokens
            .next_page(&mut users, limit, &query, |u| &u.user.id);
        Ok(ServiceUserPage {
            service_users: users,
            next_page_token,
        })
    }

    /// Changes the fields named in `mask`; with an etag, only if the user has not changed since.
    pub async fn update_service_user(
        &self,
        caller: &Principal,
        id: &str,
        etag: &str,
        mask: &[String],
        fields: ServiceUserFields,
    ) -> Result<ServiceUserRecord> {
        let id = parse_id("service_user.id", id)?;
        let expected_revision = check::etag("service_user.etag", etag)?;
        let mut v = Violations::new();
        check::update_mask(&mut v, mask, &UPDATABLE_FIELDS);
        validate_details(&mut v, &fields);
        v.finish()?;
        let tx = self.store.begin().await?;
        let (_, mut record, _) = self.managed_service_user(&tx, caller, &id).await?;
        let read_revision = record.user.revision;
        if expected_revision.is_some_and(|expected| expected != read_revision) {
            return Err(stale());
        }
        let wants = |field: &str| mask.iter().any(|p| p == field);
        let user = &mut record.user;
        if wants("display_name") {
            user.display_name = fields.display_name;
        }
        if wants("email") {
            user.email = fields.email;
        }
        if wants("description") {
            user.description = fields.description;
        }
        user.revision = read_revision + 1;
        user.update_time = self.now();
        tx.update_service_user(user, read_revision)
            .await
            .map_err(|e| match e {
                StoreError::Stale => stale(),
                other => other.into(),
            })?;
        self.audit_change(
            &tx,
            &record.user.organization_id,
            caller,
            "UpdateServiceUser",
            &record.user.id,
            details([("update_mask", mask.join(","))]),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Disables or enables a service user. Disabling stops its keys and tokens at once.
    pub async fn set_service_user_enabled(
        &self,
        caller: &Principal,
        id: &str,
        enabled: bool,
    ) -> Result<ServiceUserRecord> {
        let id = parse_id("id", id)?;
        let tx = self.store.begin().await?;
        let (caller, mut record, roles) = self.managed_service_user(&tx, caller, &id).await?;
        if !enabled && id == caller.service_user_id {
            // It would lock the caller out with no way back but another administrator.
            return Err(Error::FailedPrecondition(
                Reason::CannotActOnSelf,
                "a service user cannot disable itself".into(),
            ));
        }
        if !enabled && roles.contains(&Role::Owner) {
            let organization = OrganizationId::from_stored(record.user.organization_id.clone());
            ensure_another_owner(&tx, &organization, &id).await?;
        }
        let state = if enabled {
            ServiceUserState::Active
        } else {
            ServiceUserState::Disabled
        };
        let changed = record.user.state != state;
        if changed {
            let read_revision = record.user.revision;
            record.user.state = state;
            record.user.revision = read_revision + 1;
            record.user.update_time = self.now();
            tx.update_service_user(&record.user, read_revision).await?;
        }
        self.audit_change(
            &tx,
            &record.user.organization_id,
            &caller,
            if enabled {
                "EnableServiceUser"
            } else {
                "DisableServiceUser"
            },
            id.as_str(),
            details([("changed", changed.to_string())]),
        )
        .await?;
        self.commit_invalidating(tx, &[Invalidation::ServiceUser(id.to_string())])
            .await?;
        Ok(record)
    }

    /// Deletes a service user; refused while it has active keys unless `force`, which revokes
    /// them in the same unit of work.
    pub async fn delete_service_user(
        &self,
        caller: &Principal,
        id: &str,
        force: bool,
    ) -> Result<()> {
        let id = parse_id("id", id)?;
        let tx = self.store.begin().await?;
        let (caller, record, roles) = self.managed_service_user(&tx, caller, &id).await?;
        if id == caller.service_user_id {
            return Err(Error::FailedPrecondition(
                Reason::CannotActOnSelf,
                "a service user cannot delete itself".into(),
            ));
        }
        let organization = OrganizationId::from_stored(record.user.organization_id);
        if roles.contains(&Role::Owner) {
            ensure_another_owner(&tx, &organization, &id).await?;
        }
        let now = self.now();
        let active: Vec<_> = tx
            .api_keys_of(id.as_str())
            .await?
            .into_iter()
            .filter(|k| key_state(k, now) == KeyState::Active)
            .collect();
        if !active.is_empty() && !force {
            return Err(Error::FailedPrecondition(
                Reason::ServiceUserHasActiveKeys,
                format!(
                    "the service user has {} active API key(s); revoke them first or set force",
                    active.len()
                ),
            ));
        }
        for key in &active {
            tx.revoke_api_key(&key.id, "service user deleted", now)
                .await?;
        }
        tx.delete_service_user(id.as_str()).await?;
        let revoked: Vec<&str> = active.iter().map(|k| k.id.as_str()).collect();
        self.audit_change(
            &tx,
            organization.as_str(),
            &caller,
            "DeleteServiceUser",
            id.as_str(),
            details([
                ("name", record.user.name.clone()),
                ("revoked_keys", revoked.join(" ")),
            ]),
        )
        .await?;
        self.commit_invalidating(tx, &[Invalidation::ServiceUser(id.to_string())])
            .await
    }
}

fn stale() -> Error {
    Error::Aborted("the etag does not match: the service user changed since it was read".into())
}

fn state_name(state: ServiceUserState) -> &'static str {
    match state {
        ServiceUserState::Active => "ACTIVE",
        ServiceUserState::Disabled => "DISABLED",
    }
}

/// Parses a ListServiceUsers filter: empty, or `state = ACTIVE|DISABLED`.
pub fn parse_state_filter(filter: &str) -> Result<Option<ServiceUserState>> {
    let compact: String = filter.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.as_str() {
        "" => Ok(None),
        "state=ACTIVE" => Ok(Some(ServiceUserState::Active)),
        "state=DISABLED" => Ok(Some(ServiceUserState::Disabled)),
        _ => Err(Error::invalid(
            "filter",
            "supported filters: `state = ACTIVE`, `state = DISABLED`",
        )),
    }
}
