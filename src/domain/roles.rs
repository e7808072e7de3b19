//! Roles, lowest to highest, and the scopes tokens carry.

pub use tokenmint_store::Role;
use tokenmint_store::{ProjectRole, RoleBinding, RoleScope};

/// What a decision is about: the organization, or one project inside it. Roles are resolved
/// for that scope only, so a project-level binding never acts organization-wide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceScope {
    /// The whole organization (service users, keys, its settings).
    Organization(String),
    /// One project of the organization.
    Project {
        /// The project's organization.
        organization_id: String,
        project_id: String,
    },
}

/// The roles `bindings` give at `scope`: organization bindings of that organization, bindings
/// of that project (for a project), and the platform `superuser`. `superuser` counts only when
/// bound to the platform, and a binding whose own organization is not the scope's counts for
/// nothing: an inconsistent row never grants.
pub fn roles_in(bindings: &[RoleBinding], scope: &ResourceScope) -> Vec<Role> {
    let organization = match scope {
        ResourceScope::Organization(org) => org,
        ResourceScope::Project {
            organization_id, ..
        } => organization_id,
    };
    let mut roles: Vec<Role> = bindings
        .iter()
        .filter(|b| match (&b.scope, scope) {
            (RoleScope::Platform, _) => b.role == Role::Superuser,
            (_, _) if b.role == Role::Superuser || &b.organization_id != organization => false,
            (RoleScope::Organization(org), ResourceScope::Organization(wanted)) => org == wanted,
            (
                RoleScope::Organization(org),
                ResourceScope::Project {
                    organization_id, ..
                },
            ) => org == organization_id,
            (RoleScope::Project(project), ResourceScope::Project { project_id, .. }) => {
                project == project_id
            }
            (RoleScope::Project(_), ResourceScope::Organization(_)) => false,
        })
        .map(|b| b.role)
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// The roles of `wanted` that `held` covers: a role held, or an organization role at or below
/// the highest organization role held (an owner may ask for a viewer-only token). `superuser`
/// is platform-level and covers only itself.
pub fn narrow(held: &[Role], wanted: &[Role]) -> Vec<Role> {
    let highest_org_role = held.iter().copied().filter(|r| *r != Role::Superuser).max();
    let mut covered: Vec<Role> = wanted
        .iter()
        .copied()
        .filter(|r| {
            held.contains(r) || (*r != Role::Superuser && highest_org_role.is_some_and(|h| h >= *r))
        })
        .collect();
    covered.sort();
    covered.dedup();
    covered
}

/// The roles a token or an exchange request names: organization roles as bare words, project
/// roles as `prj_…:role`, space-separated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenScope {
    /// Organization roles (and `superuser`), lowest first.
    pub roles: Vec<Role>,
    /// Project roles, sorted.
    pub projects: Vec<ProjectRole>,
}

impl TokenScope {
    /// Parses a scope string; `Err` names the first entry that is neither.
    pub fn parse(scope: &str) -> Result<Self, String> {
        let mut parsed = TokenScope::default();
        for entry in scope.split_ascii_whitespace() {
            if entry.contains(':') {
                parsed
                    .projects
                    .push(ProjectRole::parse(entry).ok_or_else(|| entry.to_owned())?);
            } else {
                parsed
                    .roles
                    .push(Role::parse(entry).ok_or_else(|| entry.to_owned())?);
            }
        }
        parsed.roles.sort();
        parsed.roles.dedup();
        parsed.projects.sort();
        parsed.projects.dedup();
        Ok(parsed)
    }

    /// Nothing named.
    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.projects.is_empty()
    }
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: Vec<String> = self
            .roles
            .iter()
            .map(ToString::to_string)
            .chain(self.projects.iter().map(ToString::to_string))
            .collect();
        f.write_str(&entries.join(" "))
    }
}

/// The roles `projects` name on `project_id`.
pub fn roles_on(projects: &[ProjectRole], project_id: &str) -> Vec<Role> {
    projects
        .iter()
        .filter(|p| p.project_id == project_id)
        .map(|p| p.role)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_lowest_to_highest() {
        assert!(
            Role::Viewer < Role::Admin
                && Role::Admin < Role::Owner
                && Role::Owner < Role::Superuser
        );
    }

    #[test]
    fn higher_organization_roles_cover_lower_ones_but_not_superuser() {
        assert_eq!(
            narrow(&[Role::Owner], &[Role::Viewer, Role::Admin]),
            vec![Role::Viewer, Role::Admin]
        );
        assert_eq!(narrow(&[Role::Viewer], &[Role::Admin]), vec![]);
        assert_eq!(narrow(&[Role::Owner], &[Role::Superuser]), vec![]);
        assert_eq!(narrow(&[Role::Superuser], &[Role::Viewer]), vec![]);
        assert_eq!(
            narrow(&[Role::Superuser], &[Role::Superuser]),
            vec![Role::Superuser]
        );
    }

    fn binding(scope: RoleScope, role: Role) -> RoleBinding {
        RoleBinding {
            id: "rb_1".into(),
            organization_id: "org_a".into(),
            principal_id: "su_1".into(),
            scope,
            role,
            create_time: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_project_binding_does_not_act_organization_wide() {
        let bindings = [
            binding(RoleScope::Project("prj_x".into()), Role::Owner),
            binding(RoleScope::Organization("org_a".into()), Role::Viewer),
        ];
        let org = ResourceScope::Organization("org_a".into());
        assert_eq!(roles_in(&bindings, &org), [Role::Viewer]);
        let project = ResourceScope::Project {
            organization_id: "org_a".into(),
            project_id: "prj_x".into(),
        };
        assert_eq!(roles_in(&bindings, &project), [Role::Viewer, Role::Owner]);
        let other_project = ResourceScope::Project {
            organization_id: "org_a".into(),
            project_id: "prj_y".into(),
        };
        assert_eq!(roles_in(&bindings, &other_project), [Role::Viewer]);
    }

    #[test]
    fn bindings_of_another_organization_give_nothing_but_superuser_is_platform_wide() {
        let bindings = [
            binding(RoleScope::Organization("org_b".into()), Role::Owner),
            binding(RoleScope::Platform, Role::Superuser),
        ];
        let org = ResourceScope::Organization("org_a".into());
        assert_eq!(roles_in(&bindings, &org), [Role::Superuser]);
    }

    #[test]
    fn superuser_counts_only_on_the_platform_and_foreign_rows_count_for_nothing() {
        let org = ResourceScope::Organization("org_a".into());
        let org_superuser = binding(RoleScope::Organization("org_a".into()), Role::Superuser);
        assert_eq!(roles_in(&[org_superuser], &org), []);
        let mut inconsistent = binding(RoleScope::Organization("org_a".into()), Role::Owner);
        inconsistent.organization_id = "org_b".into();
        assert_eq!(roles_in(&[inconsistent], &org), []);
    }

    #[test]
    fn token_scopes_carry_project_roles() {
        let scope = TokenScope::parse("prj_x:admin viewer prj_x:admin").unwrap();
        assert_eq!(scope.roles, [Role::Viewer]);
        assert_eq!(roles_on(&scope.projects, "prj_x"), [Role::Admin]);
        assert_eq!(scope.to_string(), "viewer prj_x:admin");
        assert!(TokenScope::parse("prj_x:superuser").is_err());
        assert!(TokenScope::parse("org_x:admin").is_err());
    }

    #[test]
    fn scope_strings_round_trip_sorted_and_deduplicated() {
        let scope = TokenScope::parse("owner viewer owner").unwrap();
        assert_eq!(scope.roles, [Role::Viewer, Role::Owner]);
        assert_eq!(scope.to_string(), "viewer owner");
        assert_eq!(TokenScope::parse("owner root"), Err("root".to_owned()));
        assert!(TokenScope::parse("").unwrap().is_empty());
    }
}
