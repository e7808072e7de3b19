//! Who holds which role, and who administers whom: granting and removing role bindings, adding
//! and removing administrators, and keeping every organization with at least one owner.

use crate::domain::audit::details;
use crate::domain::roles::{ResourceScope, Role, roles_in};
use crate::domain::validation::{self as check, Violations};
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Reason, Resource, Result};
use crate::ids::{OrganizationId, ProjectId, RoleBindingId, ServiceUserId};
use tokenmint_store::{Invalidation, RoleBinding, RoleScope, ServiceUserRecord, StoreError, Tx};

/// A role binding as a request asks for it.
#[derive(Clone, Debug, Default)]
pub struct NewRoleBinding {
    /// The service user to hold the role (empty when it is the user being created).
    pub principal_id: String,
    /// The project, or empty for the whole organization.
    pub project_id: String,
    /// The role; `None` when the request left it unspecified.
    pub role: Option<Role>,
    /// Empty, or the organization the binding must be in (it is always the principal's).
    pub organization_id: String,
}

/// One page of role bindings.
#[derive(Debug)]
pub struct RoleBindingPage {
    /// The bindings.
    pub role_bindings: Vec<RoleBinding>,
    /// Token for the next page, empty on the last.
    pub next_page_token: String,
}

/// Validates the role and project of a binding under `field` (e.g. `role_binding`), recording
/// violations; the role is `None` when invalid.
pub(crate) fn parse_binding(
    v: &mut Violations,
    field: &str,
    binding: &NewRoleBinding,
) -> (Option<Role>, Option<ProjectId>) {
    let role = match binding.role {
        Some(role) if role != Role::Superuser => Some(role),
        _ => {
            v.add(
                &format!("{field}.role"),
                "is required: VIEWER, ADMIN or OWNER",
            );
            None
        }
    };
    let project = if binding.project_id.is_empty() {
        None
    } else {
        let parsed = ProjectId::parse(&binding.project_id);
        if parsed.is_none() {
            v.add(
                &format!("{field}.project_id"),
                "must be empty (the whole organization) or an ID like prj_…",
            );
        }
        parsed
    };
    (role, project)
}

impl Tokenmint {
    /// Grants a role to a service user the caller manages, at most the caller's own role.
    pub async fn add_role_binding(
        &self,
        caller: &Principal,
        request: NewRoleBinding,
    ) -> Result<RoleBinding> {
        let mut v = Violations::new();
        let principal = ServiceUserId::parse(&request.principal_id);
        if principal.is_none() {
            v.add("role_binding.principal_id", "must be an ID like su_…");
        }
        let (role, project) = parse_binding(&mut v, "role_binding", &request);
        v.finish()?;
        let (Some(principal), Some(role)) = (principal, role) else {
            return Err(Error::Internal("validated fields missing".into()));
        };
        if let Some(project) = project {
            return self
                .add_project_binding(caller, principal, project, role, &request.organization_id)
                .await;
        }
        authz::manage(caller, &caller.organization_scope())?;
        let tx = self.store.begin().await?;
        let (caller, user, _) = self.managed_service_user(&tx, caller, &principal).await?;
        let organization = user.user.organization_id;
        check_binding_organization("role_binding", &request.organization_id, &organization)?;
        let scope = ResourceScope::Organization(organization.clone());
        authz::grant_scopes(&caller, &scope, &[role])?;
        let binding = new_binding(
            &organization,
            principal.as_str(),
            RoleScope::Organization(organization.clone()),
            role,
            self.now(),
        );
        self.grant(tx, &caller, binding).await
    }

    /// Removes a role binding of a service user the caller manages. The last active owner of the
    /// organization keeps its binding.
    pub async fn remove_role_binding(&self, caller: &Principal, id: &str) -> Result<()> {
        let id = check::id("id", id, RoleBindingId::parse, RoleBindingId::PREFIX)?;
        manages_some_bindings(caller)?;
        let organization = self
            .store
            .organization_of_role_binding(id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::RoleBinding, id.as_str()))?;
        let organization = caller.visible(organization, Resource::RoleBinding, id.as_str())?;
        let tx = self.store.begin().await?;
        let binding = tx
            .role_binding(organization.as_str(), id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::RoleBinding, id.as_str()))?;
        let principal = ServiceUserId::from_stored(binding.principal_id.clone());
        if let RoleScope::Project(project) = &binding.scope {
            // A project binding is the project's: its admins and owners remove bindings up to
            // their own role there; the principal itself is not managed.
            let scope = ResourceScope::Project {
                organization_id: organization.to_string(),
                project_id: project.clone(),
            };
            let caller = self
                .reauthorize(&tx, caller, &organization, &[&principal])
                .await?;
            manage_project_bindings(&caller, &scope, binding.role)?;
        } else {
            self.managed_service_user(&tx, caller, &principal).await?;
        }
        if binding.role == Role::Owner
            && binding.scope == RoleScope::Organization(organization.to_string())
        {
            ensure_another_owner(&tx, &organization, &principal).await?;
        }
        tx.delete_role_binding(id.as_str()).await?;
        self.audit_change(
            &tx,
            organization.as_str(),
            caller,
            "RemoveRoleBinding",
            id.as_str(),
            details([
                ("principal_id", principal.to_string()),
                ("role", binding.role.to_string()),
                ("scope", scope_name(&binding.scope)),
            ]),
        )
        .await?;
        self.commit_invalidating(tx, &[Invalidation::ServiceUser(principal.to_string())])
            .await
    }

    /// Lists an organization's role bindings, optionally of one principal or one project.
    pub async fn list_role_bindings(
        &self,
        caller: &Principal,
        organization_id: &str,
        principal_id: &str,
        project_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<RoleBindingPage> {
        let mut v = Violations::new();
        let limit = check::page_size(page_size)
            .map_err(|d| v.add("page_size", d))
            .ok();
        let principal = (!principal_id.is_empty())
            .then(|| ServiceUserId::parse(principal_id))
            .map(|p| p.ok_or_else(|| v.add("principal_id", "must be an ID like su_…")));
        let project = (!project_id.is_empty())
            .then(|| ProjectId::parse(project_id))
            .map(|p| p.ok_or_else(|| v.add("project_id", "must be an ID like prj_…")));
        v.finish()?;
        let limit = limit.unwrap_or(check::DEFAULT_PAGE_SIZE);
        let principal = principal.and_then(|p| p.ok());
        let project = project.and_then(|p| p.ok());
        let organization: OrganizationId = authz::organization(caller, organization_id)?;
        // A project's bindings are readable by the project's viewers too.
        let read_scope = match &project {
            Some(project) => ResourceScope::Project {
                organization_id: organization.to_string(),
                project_id: project.to_string(),
            },
            None => ResourceScope::Organization(organization.to_string()),
        };
        authz::read(caller, &read_scope)?;
        self.existing_organization(&organization).await?;
        let query = format!(
            "role_bindings|{organization}|{}|{}",
            principal.as_ref().map_or("", |p| p.as_str()),
            project.as_ref().map_or("", |p| p.as_str()),
        );
        let after = self
            .page_tokens
            .decode(&query, page_token, |id| RoleBindingId::parse(id).is_some())?;
        let scope = project.map(|p| RoleScope::Project(p.to_string()));
        let mut role_bindings = self
            .store
            .list_role_bindings(
                organization.as_str(),
                principal.as_ref().map(|p| p.as_str()),
                scope.as_ref(),
                after.as_deref(),
                limit + 1,
            )
            .await?;
        let next_page_token = self
            .page_tokens
            .next_page(&mut role_bindings, limit, &query, |b| &b.id);
        Ok(RoleBindingPage {
            role_bindings,
            next_page_token,
        })
    }

    /// Makes `principal_id`, which must hold `admin` or `owner` in the organization, an
    /// administrator of a service user the caller manages.
    pub async fn add_administrator(
        &self,
        caller: &Principal,
        service_user_id: &str,
        principal_id: &str,
    ) -> Result<ServiceUserRecord> {
        let (user_id, principal) = parse_pair(service_user_id, principal_id)?;
        if user_id == principal {
            // Someone else must keep control of a principal's credentials.
            return Err(Error::invalid(
                "principal_id",
                "a service user cannot administer itself",
            ));
        }
        let tx = self.store.begin().await?;
        let (_, user, _) = self.managed_service_user(&tx, caller, &user_id).await?;
        let organization = user.user.organization_id;
        let scope = ResourceScope::Organization(organization.clone());
        tx.service_user(&organization, principal.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ServiceUser, principal.as_str()))?;
        let roles = roles_in(&tx.role_bindings_of(principal.as_str()).await?, &scope);
        if !roles.iter().any(|r| matches!(r, Role::Admin | Role::Owner)) {
            return Err(Error::FailedPrecondition(
                Reason::PrincipalLacksAdminRole,
                "only a principal holding admin or owner in the organization can administer a service user"
                    .into(),
            ));
        }
        tx.add_administrator(user_id.as_str(), principal.as_str(), self.now())
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => Error::AlreadyExists(
                    Reason::AdministratorAlreadyExists,
                    format!("{principal} already administers {user_id}"),
                ),
                other => other.into(),
            })?;
        let record = tx.service_user(&organization, user_id.as_str()).await?;
        self.audit_change(
            &tx,
            &organization,
            caller,
            "AddAdministrator",
            user_id.as_str(),
            details([("principal_id", principal.to_string())]),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The service users the caller is an administrator of.
    pub async fn administered_by(&self, caller: &Principal) -> Result<Vec<String>> {
        Ok(self
            .store
            .administered_by(caller.service_user_id.as_str())
            .await?)
    }

    /// Removes an administrator of a service user the caller manages.
    pub async fn remove_administrator(
        &self,
        caller: &Principal,
        service_user_id: &str,
        principal_id: &str,
    ) -> Result<ServiceUserRecord> {
        let (user_id, principal) = parse_pair(service_user_id, principal_id)?;
        let tx = self.store.begin().await?;
        let (_, user, _) = self.managed_service_user(&tx, caller, &user_id).await?;
        tx.remove_administrator(user_id.as_str(), principal.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::Administrator, principal.as_str()))?;
        let record = tx
            .service_user(&user.user.organization_id, user_id.as_str())
            .await?;
        self.audit_change(
            &tx,
            &user.user.organization_id,
            caller,
            "RemoveAdministrator",
            user_id.as_str(),
            details([("principal_id", principal.to_string())]),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }
}

impl Tokenmint {
    /// Grants a role on a project: by its admins and owners (of the organization or the
    /// project), up to their own role there; the principal must belong to the organization.
    async fn add_project_binding(
        &self,
        caller: &Principal,
        principal: ServiceUserId,
        project: ProjectId,
        role: Role,
        requested_organization: &str,
    ) -> Result<RoleBinding> {
        manages_some_bindings(caller)?;
        let organization = self.organization_of_project(caller, &project).await?;
        check_binding_organization(
            "role_binding",
            requested_organization,
            organization.as_str(),
        )?;
        let scope = ResourceScope::Project {
            organization_id: organization.to_string(),
            project_id: project.to_string(),
        };
        let tx = self.store.begin().await?;
        let caller = self
            .reauthorize(&tx, caller, &organization, &[&principal])
            .await?;
        // Again under the organization's lock: a project deleted meanwhile takes no binding.
        tx.project(organization.as_str(), project.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::Project, project.as_str()))?;
        tx.service_user(organization.as_str(), principal.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::ServiceUser, principal.as_str()))?;
        manage_project_bindings(&caller, &scope, role)?;
        let binding = new_binding(
            organization.as_str(),
            principal.as_str(),
            RoleScope::Project(project.to_string()),
            role,
            self.now(),
        );
        self.grant(tx, &caller, binding).await
    }

    /// Writes a decided grant and commits; the principal's keys carry their fixed scopes
    /// narrowed to its roles, so its cached keys are dropped to be re-read.
    async fn grant(&self, tx: Tx, caller: &Principal, binding: RoleBinding) -> Result<RoleBinding> {
        insert_binding(&tx, binding.clone()).await?;
        self.audit_change(
            &tx,
            &binding.organization_id,
            caller,
            "AddRoleBinding",
            &binding.id,
            details([
                ("principal_id", binding.principal_id.clone()),
                ("role", binding.role.to_string()),
                ("scope", scope_name(&binding.scope)),
            ]),
        )
        .await?;
        let stale = Invalidation::ServiceUser(binding.principal_id.clone());
        self.commit_invalidating(tx, &[stale]).await?;
        Ok(binding)
    }
}

/// How a binding's scope reads in an audit event: `organization` or the project's ID.
fn scope_name(scope: &RoleScope) -> String {
    match scope {
        RoleScope::Project(project) => project.clone(),
        _ => "organization".to_owned(),
    }
}

/// INVALID_ARGUMENT unless a binding's `organization_id` is empty or `organization`, the
/// principal's: a binding never lands anywhere but where its principal is.
pub(crate) fn check_binding_organization(
    field: &str,
    requested: &str,
    organization: &str,
) -> Result<()> {
    if requested.is_empty() || requested == organization {
        return Ok(());
    }
    Err(Error::invalid(
        format!("{field}.organization_id"),
        "must be empty or the service user's own organization",
    ))
}

/// A new binding of `role` at `scope` for `principal_id`.
pub(crate) fn new_binding(
    organization_id: &str,
    principal_id: &str,
    scope: RoleScope,
    role: Role,
    now: chrono::DateTime<chrono::Utc>,
) -> RoleBinding {
    RoleBinding {
        id: RoleBindingId::generate().to_string(),
        organization_id: organization_id.to_owned(),
        principal_id: principal_id.to_owned(),
        scope,
        role,
        create_time: now,
    }
}

/// Before any lookup: the caller holds `admin` or `owner` in its organization or in some
/// project, so a caller without one learns nothing about which IDs exist.
fn manages_some_bindings(caller: &Principal) -> Result<()> {
    let in_a_project = caller.bindings.iter().any(|b| {
        matches!(b.scope, RoleScope::Project(_)) && matches!(b.role, Role::Admin | Role::Owner)
    });
    if in_a_project {
        return Ok(());
    }
    authz::manage(caller, &caller.organization_scope())
}

/// The caller may add or remove a binding of `role` on the project at `scope`: it holds
/// `admin` or `owner` there, and `role` is not above its own.
fn manage_project_bindings(caller: &Principal, scope: &ResourceScope, role: Role) -> Result<()> {
    if caller
        .highest_role_in(scope)
        .is_none_or(|r| r < Role::Admin)
    {
        return Err(Error::PermissionDenied(
            Reason::RoleTooLow,
            "managing a project's bindings needs the admin or owner role there".into(),
        ));
    }
    authz::grant_scopes(caller, scope, &[role])
}

fn parse_pair(service_user_id: &str, principal_id: &str) -> Result<(ServiceUserId, ServiceUserId)> {
    let mut v = Violations::new();
    let user = ServiceUserId::parse(service_user_id);
    if user.is_none() {
        v.add("service_user_id", "must be an ID like su_…");
    }
    let principal = ServiceUserId::parse(principal_id);
    if principal.is_none() {
        v.add("principal_id", "must be an ID like su_…");
    }
    v.finish()?;
    user.zip(principal)
        .ok_or_else(|| Error::Internal("validated fields missing".into()))
}

/// Inserts a binding inside a unit of work; a duplicate is ALREADY_EXISTS.
pub(crate) async fn insert_binding(tx: &Tx, binding: RoleBinding) -> Result<()> {
    let (principal, role) = (binding.principal_id.clone(), binding.role);
    tx.add_role_binding(binding).await.map_err(|e| match e {
        StoreError::AlreadyExists => Error::AlreadyExists(
            Reason::RoleBindingAlreadyExists,
            format!("{principal} already holds {role} there"),
        ),
        other => other.into(),
    })
}

/// Refuses a change that would leave the organization without an active owner: `leaving` is
/// about to lose its owner role, be disabled or be deleted. The caller's unit of work holds the
/// organization's lock (see `reauthorize`), so two such changes cannot both pass.
pub(crate) async fn ensure_another_owner(
    tx: &Tx,
    organization_id: &OrganizationId,
    leaving: &ServiceUserId,
) -> Result<()> {
    let owners = tx.active_owners(organization_id.as_str()).await?;
    if owners.iter().any(|owner| owner != leaving.as_str()) {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(
            Reason::LastOwner,
            "this is the last active owner of the organization; make another owner first".into(),
        ))
    }
}
