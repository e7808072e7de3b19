//! Organizations (tenants): created by superusers, read by their members, display name changed
//! by owners and quotas only by superusers.

use crate::domain::audit::details;
use crate::domain::roles::{ResourceScope, Role};
use crate::domain::validation::{self as check, Violations};
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Reason, Resource, Result};
use crate::ids::OrganizationId;
use tokenmint_store::{Organization, StoreError};

/// The caller-supplied fields of an organization.
#[derive(Clone, Debug, Default)]
pub struct OrganizationFields {
    /// Unique name.
    pub name: String,
    /// Human-readable name.
    pub display_name: String,
    /// Service-user quota; 0 means the default (at creation).
    pub max_service_users: i32,
    /// Active-key quota per service user; 0 means the default (at creation).
    pub max_api_keys_per_service_user: i32,
}

/// One page of organizations.
#[derive(Debug)]
pub struct OrganizationPage {
    /// The organizations.
    pub organizations: Vec<Organization>,
    /// Token for the next page, empty on the last.
    pub next_page_token: String,
}

/// The fields UpdateOrganization may change, and who may change them.
pub const UPDATABLE_FIELDS: [&str; 3] = [
    "display_name",
    "max_service_users",
    "max_api_keys_per_service_user",
];

/// The etag of a stored organization.
pub fn etag(organization: &Organization) -> String {
    format!("\"{}\"", organization.revision)
}

fn quota(v: &mut Violations, field: &str, value: i32, default: i32) -> i32 {
    match value {
        0 => default,
        1..=1_000_000 => value,
        _ => {
            v.add(field, "must be between 1 and 1000000 (0 means the default)");
            default
        }
    }
}

impl Tokenmint {
    /// Creates an organization; superusers only.
    pub async fn create_organization(
        &self,
        caller: &Principal,
        fields: OrganizationFields,
    ) -> Result<Organization> {
        let mut v = Violations::new();
        v.check("organization.name", check::name(&fields.name));
        v.check(
            "organization.display_name",
            check::text(&fields.display_name, check::MAX_DISPLAY_NAME_LEN),
        );
        let max_service_users = quota(
            &mut v,
            "organization.max_service_users",
            fields.max_service_users,
            self.settings.default_max_service_users,
        );
        let max_keys = quota(
            &mut v,
            "organization.max_api_keys_per_service_user",
            fields.max_api_keys_per_service_user,
            self.settings.default_max_api_keys_per_service_user,
        );
        v.finish()?;
        authz::superuser_only(caller, "create organizations")?;
        let tx = self.store.begin().await?;
        let caller = self
            .reauthorize(&tx, caller, &caller.organization_id, &[])
            .await?;
        authz::superuser_only(&caller, "create organizations")?;
        let now = self.now();
        let organization = Organization {
            id: OrganizationId::generate().to_string(),
            name: fields.name,
            display_name: fields.display_name,
            max_service_users,
            max_api_keys_per_service_user: max_keys,
            create_time: now,
            update_time: now,
            revision: 1,
        };
        let name = organization.name.clone();
        tx.insert_organization(organization.clone())
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => Error::AlreadyExists(
                    Reason::OrganizationAlreadyExists,
                    format!("an organization named {} exists", check::echo(&name)),
                ),
                other => other.into(),
            })?;
        // Its first event opens the new organization's chain.
        self.audit_change(
            &tx,
            &organization.id,
            &caller,
            "CreateOrganization",
            &organization.id,
            details([("name", organization.name.clone())]),
        )
        .await?;
        tx.commit().await?;
        Ok(organization)
    }

    /// Gets an organization the caller may see.
    pub async fn get_organization(&self, caller: &Principal, id: &str) -> Result<Organization> {
        let id = check::id("id", id, OrganizationId::parse, OrganizationId::PREFIX)?;
        authz::read(caller, &caller.organization_scope())?;
        let id = caller.visible(id.to_string(), Resource::Organization, id.as_str())?;
        self.store
            .organization(id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::Organization, id.as_str()))
    }

    /// Lists the organizations the caller may see.
    pub async fn list_organizations(
        &self,
        caller: &Principal,
        page_size: i32,
        page_token: &str,
    ) -> Result<OrganizationPage> {
        let limit = check::page_size(page_size).map_err(|d| Error::invalid("page_size", d))?;
        authz::read(caller, &caller.organization_scope())?;
        if !caller.is_superuser() {
            let own = self
                .get_organization(caller, caller.organization_id.as_str())
                .await?;
            return Ok(OrganizationPage {
                organizations: vec![own],
                next_page_token: String::new(),
            });
        }
        let query = "organizations";
        let after = self
            .page_tokens
            .decode(query, page_token, |id| OrganizationId::parse(id).is_some())?;
        let mut organizations = self
            .store
            .list_organizations(after.as_deref(), limit + 1)
            .await?;
        let next_page_token = self
            .page_tokens
            .next_page(&mut organizations, limit, query, |o| &o.id);
        Ok(OrganizationPage {
            organizations,
            next_page_token,
        })
    }

    /// Changes the fields named in `mask`; with an etag, only if unchanged since.
    pub async fn update_organization(
        &self,
        caller: &Principal,
        id: &str,
        etag: &str,
        mask: &[String],
        fields: OrganizationFields,
    ) -> Result<Organization> {
        let id = check::id(
            "organization.id",
            id,
            OrganizationId::parse,
            OrganizationId::PREFIX,
        )?;
        let expected = check::etag("organization.etag", etag)?;
        let mut v = Violations::new();
        check::update_mask(&mut v, mask, &UPDATABLE_FIELDS);
        let wants = |field: &str| mask.iter().any(|p| p == field);
        v.check(
            "organization.display_name",
            check::text(&fields.display_name, check::MAX_DISPLAY_NAME_LEN),
        );
        // On update there is no default to fall back to: a quota in the mask must be given.
        let updated_quota = |v: &mut Violations, field: &str, value: i32| {
            if !wants(field.trim_start_matches("organization.")) {
                return value;
            }
            if !(1..=1_000_000).contains(&value) {
                v.add(field, "must be between 1 and 1000000");
            }
            value
        };
        let max_service_users = updated_quota(
            &mut v,
            "organization.max_service_users",
            fields.max_service_users,
        );
        let max_keys = updated_quota(
            &mut v,
            "organization.max_api_keys_per_service_user",
            fields.max_api_keys_per_service_user,
        );
        v.finish()?;
        authz::read(caller, &caller.organization_scope())?;
        let id = caller.visible(id.to_string(), Resource::Organization, id.as_str())?;
        let scope = ResourceScope::Organization(id.to_string());
        let tx = self.store.begin().await?;
        let caller = self.reauthorize(&tx, caller, &id, &[]).await?;
        if caller.highest_role_in(&scope) != Some(Role::Owner) {
            return Err(Error::PermissionDenied(
                Reason::RoleTooLow,
                "you need the owner role to update the organization".into(),
            ));
        }
        if wants("max_service_users") || wants("max_api_keys_per_service_user") {
            authz::superuser_only(&caller, "change quotas")?;
        }
        let mut organization = tx
            .organization(id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::Organization, id.as_str()))?;
        let read_revision = organization.revision;
        if expected.is_some_and(|e| e != read_revision) {
            return Err(stale());
        }
        if wants("display_name") {
            organization.display_name = fields.display_name;
        }
        if wants("max_service_users") {
            organization.max_service_users = max_service_users;
        }
        if wants("max_api_keys_per_service_user") {
            organization.max_api_keys_per_service_user = max_keys;
        }
        organization.revision = read_revision + 1;
        organization.update_time = self.now();
        tx.update_organization(&organization, read_revision)
            .await
            .map_err(|e| match e {
                StoreError::Stale => stale(),
                other => other.into(),
            })?;
        self.audit_change(
            &tx,
            &organization.id,
            &caller,
            "UpdateOrganization",
            &organization.id,
            details([("update_mask", mask.join(","))]),
        )
        .await?;
        tx.commit().await?;
        Ok(organization)
    }
}

fn stale() -> Error {
    Error::Aborted("the etag does not match: the organization changed since it was read".into())
}
