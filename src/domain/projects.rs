//! Projects: named scopes inside an organization for project-level roles, created and deleted
//! by owners.

use crate::domain::audit::details;
use crate::domain::roles::{ResourceScope, Role};
use crate::domain::validation::{self as check, Violations};
use crate::domain::{Tokenmint, authz, principal::Principal};
use crate::error::{Error, Reason, Resource, Result};
use crate::ids::{OrganizationId, ProjectId};
use tokenmint_store::{Invalidation, Project, StoreError};

/// One page of projects.
#[derive(Debug)]
pub struct ProjectPage {
    /// The projects.
    pub projects: Vec<Project>,
    /// Token for the next page, empty on the last.
    pub next_page_token: String,
}

fn owner_only(caller: &Principal, scope: &ResourceScope, action: &str) -> Result<()> {
    if caller.highest_role_in(scope) == Some(Role::Owner) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            Reason::RoleTooLow,
            format!("you need the owner role to {action}"),
        ))
    }
}

impl Tokenmint {
    /// Creates a project in an organization the caller owns.
    pub async fn create_project(
        &self,
        caller: &Principal,
        organization_id: &str,
        name: String,
        display_name: String,
    ) -> Result<Project> {
        let mut v = Violations::new();
        v.check("project.name", check::name(&name));
        v.check(
            "project.display_name",
            check::text(&display_name, check::MAX_DISPLAY_NAME_LEN),
        );
        v.finish()?;
        let organization = authz::organization(caller, organization_id)?;
        let scope = ResourceScope::Organization(organization.to_string());
        owner_only(caller, &scope, "create projects")?;
        self.existing_organization(&organization).await?;
        let tx = self.store.begin().await?;
        let caller = self.reauthorize(&tx, caller, &organization, &[]).await?;
        owner_only(&caller, &scope, "create projects")?;
        let project = Project {
            id: ProjectId::generate().to_string(),
            organization_id: organization.to_string(),
            name,
            display_name,
            create_time: self.now(),
        };
        let name = project.name.clone();
        tx.insert_project(project.clone())
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists => Error::AlreadyExists(
                    Reason::ProjectAlreadyExists,
                    format!(
                        "a project named {} exists in this organization",
                        check::echo(&name)
                    ),
                ),
                other => other.into(),
            })?;
        self.audit_change(
            &tx,
            &project.organization_id,
            &caller,
            "CreateProject",
            &project.id,
            details([("name", project.name.clone())]),
        )
        .await?;
        tx.commit().await?;
        Ok(project)
    }

    /// Lists the projects of an organization the caller may read.
    pub async fn list_projects(
        &self,
        caller: &Principal,
        organization_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<ProjectPage> {
        let limit = check::page_size(page_size).map_err(|d| Error::invalid("page_size", d))?;
        let organization = authz::organization(caller, organization_id)?;
        // Readers of the organization see every project; a principal whose roles are on
        // projects only sees those projects.
        let org_reader = authz::read(
            caller,
            &ResourceScope::Organization(organization.to_string()),
        );
        let project_reader = caller.organization_id == organization
            && caller
                .bindings
                .iter()
                .any(|b| matches!(b.scope, tokenmint_store::RoleScope::Project(_)));
        if !project_reader && let Err(denied) = org_reader {
            return Err(denied);
        }
        self.existing_organization(&organization).await?;
        let query = format!("projects|{organization}");
        let after = self
            .page_tokens
            .decode(&query, page_token, |id| ProjectId::parse(id).is_some())?;
        let mut projects = self
            .store
            .list_projects(organization.as_str(), after.as_deref(), limit + 1)
            .await?;
        let next_page_token = self
            .page_tokens
            .next_page(&mut projects, limit, &query, |p| &p.id);
        if org_reader.is_err() {
            projects.retain(|p| {
                let scope = ResourceScope::Project {
                    organization_id: organization.to_string(),
                    project_id: p.id.clone(),
                };
                !caller.effective_roles_in(&scope).is_empty()
            });
        }
        Ok(ProjectPage {
            projects,
            next_page_token,
        })
    }

    /// Deletes a project; refused while role bindings point at it unless `force`, which removes
    /// them in the same unit of work.
    pub async fn delete_project(&self, caller: &Principal, id: &str, force: bool) -> Result<()> {
        let id = check::id("id", id, ProjectId::parse, ProjectId::PREFIX)?;
        authz::manage(caller, &caller.organization_scope())?;
        let organization = self.organization_of_project(caller, &id).await?;
        let scope = ResourceScope::Organization(organization.to_string());
        let tx = self.store.begin().await?;
        let caller = self.reauthorize(&tx, caller, &organization, &[]).await?;
        owner_only(&caller, &scope, "delete projects")?;
        let bindings = tx.count_project_bindings(id.as_str()).await?;
        if bindings > 0 && !force {
            return Err(Error::FailedPrecondition(
                Reason::ProjectHasBindings,
                format!(
                    "{bindings} role binding(s) point at the project; remove them or set force"
                ),
            ));
        }
        let lost_a_role = tx.delete_project(id.as_str()).await?;
        self.audit_change(
            &tx,
            organization.as_str(),
            &caller,
            "DeleteProject",
            id.as_str(),
            details([("removed_bindings", bindings.to_string())]),
        )
        .await?;
        // Their keys may carry a role on the project: exchanges re-read them now.
        let stale: Vec<_> = lost_a_role
            .into_iter()
            .map(Invalidation::ServiceUser)
            .collect();
        self.commit_invalidating(tx, &stale).await
    }

    /// The organization of project `id`, if the caller may see it.
    pub(crate) async fn organization_of_project(
        &self,
        caller: &Principal,
        id: &ProjectId,
    ) -> Result<OrganizationId> {
        let organization = self
            .store
            .organization_of_project(id.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::Project, id.as_str()))?;
        caller.visible(organization, Resource::Project, id.as_str())
    }
}
