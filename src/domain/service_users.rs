//! Service users: creation, reads, updates with etags, state changes and deletion.

use crate::domain::roles::Role;
use crate::domain::validation::{self as check, Violations};
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Result};
use crate::ids::{OrganizationId, ServiceUserId};
use tokenmint_store::entity::service_user;
use tokenmint_store::{
    STATE_ACTIVE, STATE_DISABLED, ServiceUserChanges, ServiceUserRecord, StoreError,
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
    /// The users.
    pub service_users: Vec<ServiceUserRecord>,
    /// Token for the next page, empty on the last.
    pub next_page_token: String,
}

/// The fields UpdateServiceUser may change.
pub const UPDATABLE_FIELDS: [&str; 3] = ["display_name", "email", "description"];

/// The etag of a stored user.
pub fn etag(user: &service_user::Model) -> String {
    format!("\"{}\"", user.revision)
}

fn parse_etag(etag: &str) -> Result<Option<i64>> {
    if etag.is_empty() {
        return Ok(None);
    }
    etag.trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| {
            Error::invalid(
                "service_user.etag",
                "is not an etag returned by this service",
            )
        })
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
    ) -> Result<ServiceUserRecord> {
        let mut v = Violations::new();
        v.check("service_user.name", check::name(&fields.name));
        validate_details(&mut v, &fields);
        v.finish()?;
        let organization = authz::organization(caller, organization_id)?;
        authz::create_service_user(caller)?;
        let now = super::now();
        let user = service_user::Model {
            id: ServiceUserId::generate().to_string(),
            organization_id: organization.to_string(),
            name: fields.name,
            display_name: fields.display_name,
            email: fields.email,
            description: fields.description,
            state: STATE_ACTIVE.to_owned(),
            creator: caller.service_user_id.to_string(),
            revision: 1,
            create_time: now,
            update_time: now,
        };
        let name = user.name.clone();
        self.store
            .create_service_user(user)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => Error::AlreadyExists(format!(
                    "a service user named {name:?} already exists in this organization"
                )),
                other => Error::from_store(other, "organization", organization.as_str()),
            })
    }

    /// Gets a service user of the caller's organization.
    pub async fn get_service_user(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<ServiceUserRecord> {
        let id = parse_id("id", id)?;
        authz::read(caller)?;
        self.find_service_user(caller, &id).await
    }

    async fn find_service_user(
        &self,
        caller: &Principal,
        id: &ServiceUserId,
    ) -> Result<ServiceUserRecord> {
        self.store
            .get_service_user(caller.organization_id.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, "service user", id.as_str()))
    }

    /// A user of the caller's organization that the caller may manage (change it or its keys),
    /// with the roles it holds.
    pub(crate) async fn managed_service_user(
        &self,
        caller: &Principal,
        id: &ServiceUserId,
    ) -> Result<(ServiceUserRecord, Vec<Role>)> {
        authz::manage(caller)?;
        let user = self.find_service_user(caller, id).await?;
        let roles = self.roles_of(id).await?;
        authz::manage_service_user(caller, &user.administrators, &roles)?;
        Ok((user, roles))
    }

    /// The roles a service user holds. A stored role this server does not know fails closed:
    /// its holder might outrank the caller.
    async fn roles_of(&self, id: &ServiceUserId) -> Result<Vec<Role>> {
        let mut roles = self
            .store
            .role_names_of(id.as_str())
            .await?
            .iter()
            .map(|name| {
                Role::parse(name).ok_or_else(|| {
                    Error::Internal(format!("service user {id} holds an unknown role {name:?}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        roles.sort();
        roles.dedup();
        Ok(roles)
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
        authz::read(caller)?;
        let query = format!("service_users|{organization}|{}", state.unwrap_or(""));
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
        let expected_revision = parse_etag(etag)?;
        let mut v = Violations::new();
        if mask.is_empty() {
            v.add(
                "update_mask",
                format!(
                    "is required; updatable fields: {}",
                    UPDATABLE_FIELDS.join(", ")
                ),
            );
        }
        for path in mask
            .iter()
            .filter(|p| !UPDATABLE_FIELDS.contains(&p.as_str()))
        {
            v.add(
                "update_mask",
                format!(
                    "{path:?} cannot be updated; updatable fields: {}",
                    UPDATABLE_FIELDS.join(", ")
                ),
            );
        }
        validate_details(&mut v, &fields);
        v.finish()?;
        self.managed_service_user(caller, &id).await?;
        let wants = |field: &str| mask.iter().any(|p| p == field);
        let changes = ServiceUserChanges {
            display_name: wants("display_name").then_some(fields.display_name),
            email: wants("email").then_some(fields.email),
            description: wants("description").then_some(fields.description),
        };
        self.store
            .update_service_user(
                caller.organization_id.as_str(),
                id.as_str(),
                expected_revision,
                changes,
                super::now(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Stale => Error::Aborted(
                    "the etag does not match: the service user changed since it was read".into(),
                ),
                other => Error::from_store(other, "service user", id.as_str()),
            })
    }

    /// Disables or enables a service user. Disabling stops its keys and tokens at once.
    pub async fn set_service_user_enabled(
        &self,
        caller: &Principal,
        id: &str,
        enabled: bool,
    ) -> Result<ServiceUserRecord> {
        let id = parse_id("id", id)?;
        self.managed_service_user(caller, &id).await?;
        if !enabled && id == caller.service_user_id {
            // It would lock the caller out with no way back but another administrator.
            return Err(Error::FailedPrecondition(
                "a service user cannot disable itself".into(),
            ));
        }
        let state = if enabled {
            STATE_ACTIVE
        } else {
            STATE_DISABLED
        };
        let record = self
            .store
            .set_service_user_state(
                caller.organization_id.as_str(),
                id.as_str(),
                state,
                super::now(),
            )
            .await
            .map_err(|e| Error::from_store(e, "service user", id.as_str()))?;
        self.key_cache.forget_user(id.as_str());
        Ok(record)
    }

    /// Deletes a service user; refused while it has active keys unless `force`.
    pub async fn delete_service_user(
        &self,
        caller: &Principal,
        id: &str,
        force: bool,
    ) -> Result<()> {
        let id = parse_id("id", id)?;
        self.managed_service_user(caller, &id).await?;
        if id == caller.service_user_id {
            return Err(Error::FailedPrecondition(
                "a service user cannot delete itself".into(),
            ));
        }
        self.store
            .delete_service_user(
                caller.organization_id.as_str(),
                id.as_str(),
                force,
                super::now(),
            )
            .await
            .map_err(|e| Error::from_store(e, "service user", id.as_str()))?;
        self.key_cache.forget_user(id.as_str());
        Ok(())
    }
}

fn parse_state_filter(filter: &str) -> Result<Option<&'static str>> {
    let compact: String = filter.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.as_str() {
        "" => Ok(None),
        "state=ACTIVE" => Ok(Some(STATE_ACTIVE)),
        "state=DISABLED" => Ok(Some(STATE_DISABLED)),
        _ => Err(Error::invalid(
            "filter",
            "supported filters: `state = ACTIVE`, `state = DISABLED`",
        )),
    }
}
