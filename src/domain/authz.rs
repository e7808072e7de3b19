//! Authorization: every rule about who may do what, in one place.
//!
//! A caller acts only inside its own organization; anything outside it is reported as not
//! found, so its existence does not leak. Reading needs `viewer`; managing a service user and its
//! keys needs `owner`, or `admin` plus being one of that user's administrators, and nobody
//! manages a principal that holds a role above the caller's own.

use crate::domain::principal::Principal;
use crate::domain::roles::{ResourceScope, Role};
use crate::error::{Error, Reason, Resource, Result};
use crate::ids::OrganizationId;

/// Resolves the organization a request names (empty means the caller's) and checks the caller
/// belongs to it; another organization is reported as not found.
pub fn organization(caller: &Principal, requested: &str) -> Result<OrganizationId> {
    if requested.is_empty() || requested == caller.organization_id.as_str() {
        return Ok(caller.organization_id.clone());
    }
    let Some(requested_id) = OrganizationId::parse(requested) else {
        return Err(Error::invalid(
            "organization_id",
            "must be an ID like org_…",
        ));
    };
    // A superuser counts as owner in every organization; whether it exists is the caller's
    // next lookup.
    if caller.is_superuser() {
        return Ok(requested_id);
    }
    Err(Error::NotFound {
        kind: Resource::Organization,
        id: requested.to_owned(),
    })
}

/// The caller may read at `scope`.
pub fn read(caller: &Principal, scope: &ResourceScope) -> Result<()> {
    require(caller, scope, Role::Viewer, "read")
}

/// The caller may create service users at `scope`.
pub fn create_service_user(caller: &Principal, scope: &ResourceScope) -> Result<()> {
    require(caller, scope, Role::Admin, "create service users")
}

/// The caller holds a role that can manage some service users. Checked before any lookup, so
/// a caller without it gets the same answer whether or not the ID it names exists.
pub fn manage(caller: &Principal, scope: &ResourceScope) -> Result<()> {
    require(
        caller,
        scope,
        Role::Admin,
        "manage service users and their keys",
    )
}

/// The caller may change the service user with these administrators and roles, and its keys:
/// `owner`, or `admin` and one of its administrators, and in both cases covering every role the
/// user holds (an owner does not manage a superuser, an admin does not manage an owner).
pub fn manage_service_user(
    caller: &Principal,
    scope: &ResourceScope,
    administrators: &[String],
    target_roles: &[Role],
) -> Result<()> {
    match caller.highest_role_in(scope) {
        Some(role) if role >= Role::Owner => {}
        Some(Role::Admin)
            if administrators
                .iter()
                .any(|a| a == caller.service_user_id.as_str()) => {}
        Some(Role::Admin) => {
            return Err(Error::PermissionDenied(
                Reason::NotAnAdministrator,
                "only an owner or one of this service user's administrators may manage it".into(),
            ));
        }
        _ => {
            return Err(Error::PermissionDenied(
                Reason::RoleTooLow,
                "managing service users needs the admin or owner role".into(),
            ));
        }
    }
    let covered = super::roles::narrow(&caller.effective_roles_in(scope), target_roles);
    match target_roles.iter().find(|r| !covered.contains(r)) {
        Some(role) => Err(Error::PermissionDenied(
            Reason::TargetOutranksCaller,
            format!("this service user holds the {role} role, above your own"),
        )),
        None => Ok(()),
    }
}

/// The caller may put `roles` into a key's scope at `scope`: nobody grants above their own role.
pub fn grant_scopes(caller: &Principal, scope: &ResourceScope, roles: &[Role]) -> Result<()> {
    let grantable = super::roles::narrow(&caller.effective_roles_in(scope), roles);
    match roles.iter().find(|r| !grantable.contains(r)) {
        Some(role) => Err(Error::PermissionDenied(
            Reason::ScopeNotGrantable,
            format!("cannot grant {role}, above your own role"),
        )),
        None => Ok(()),
    }
}

/// The caller may see the claims of a token of `organization_id`: its own organization, or any
/// organization for a superuser. Anything else introspects as inactive.
pub fn introspect(caller: &Principal, organization_id: &str) -> bool {
    caller.organization_id.as_str() == organization_id
        || caller.effective_roles().contains(&Role::Superuser)
}

fn require(caller: &Principal, scope: &ResourceScope, minimum: Role, action: &str) -> Result<()> {
    if caller.highest_role_in(scope).is_some_and(|r| r >= minimum) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            Reason::RoleTooLow,
            format!("you need the {minimum} role or higher to {action}"),
        ))
    }
}

/// Reading an organization's audit trail: its owners (a superuser is one everywhere).
pub fn read_audit(caller: &Principal, scope: &ResourceScope) -> Result<()> {
    if caller.effective_roles_in(scope).contains(&Role::Owner) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            Reason::RoleTooLow,
            "reading the audit trail needs the owner role".into(),
        ))
    }
}

/// PERMISSION_DENIED unless the caller is a superuser; `action` completes "only a superuser
/// may …".
pub fn superuser_only(caller: &Principal, action: &str) -> Result<()> {
    if caller.is_superuser() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            Reason::RoleTooLow,
            format!("only a superuser may {action}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ApiKeyId, ServiceUserId};
    use tokenmint_store::{RoleBinding, RoleScope};

    fn caller(roles: &[Role]) -> Principal {
        let organization_id = OrganizationId::generate();
        let bindings = roles
            .iter()
            .map(|role| RoleBinding {
                id: "rb_test".into(),
                organization_id: organization_id.to_string(),
                principal_id: "su_test".into(),
                scope: if *role == Role::Superuser {
                    RoleScope::Platform
                } else {
                    RoleScope::Organization(organization_id.to_string())
                },
                role: *role,
                create_time: chrono::Utc::now(),
            })
            .collect();
        Principal {
            service_user_id: ServiceUserId::generate(),
            service_user_name: "caller".into(),
            organization_id,
            api_key_id: ApiKeyId::generate(),
            roles: roles.to_vec(),
            bindings,
            token_scope: Role::ALL.to_vec(),
            token_projects: Vec::new(),
            token_expiry: 0,
            origin: Default::default(),
        }
    }

    fn org(caller: &Principal) -> ResourceScope {
        caller.organization_scope()
    }

    #[test]
    fn another_organization_is_not_found() {
        let c = caller(&[Role::Owner]);
        let other = OrganizationId::generate();
        assert!(matches!(
            organization(&c, other.as_str()),
            Err(Error::NotFound { .. })
        ));
        assert_eq!(organization(&c, "").unwrap(), c.organization_id);
    }

    #[test]
    fn owner_manages_any_user_admin_only_its_own() {
        let owner = caller(&[Role::Owner]);
        let admin = caller(&[Role::Admin]);
        assert!(manage_service_user(&owner, &org(&owner), &[], &[]).is_ok());
        assert!(manage_service_user(&admin, &org(&admin), &[], &[]).is_err());
        assert!(
            manage_service_user(
                &admin,
                &org(&admin),
                &[admin.service_user_id.to_string()],
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn nobody_manages_a_user_holding_a_role_above_their_own() {
        let owner = caller(&[Role::Owner]);
        assert!(manage_service_user(&owner, &org(&owner), &[], &[Role::Owner]).is_ok());
        assert!(
            manage_service_user(&owner, &org(&owner), &[], &[Role::Owner, Role::Superuser])
                .is_err()
        );
        let admin = caller(&[Role::Admin]);
        let administers = [admin.service_user_id.to_string()];
        assert!(
            manage_service_user(
                &admin,
                &org(&admin),
                &administers,
                &[Role::Viewer, Role::Admin]
            )
            .is_ok()
        );
        assert!(manage_service_user(&admin, &org(&admin), &administers, &[Role::Owner]).is_err());
        let superuser = caller(&[Role::Owner, Role::Superuser]);
        assert!(
            manage_service_user(
                &superuser,
                &org(&superuser),
                &[],
                &[Role::Owner, Role::Superuser]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_narrowed_token_manages_only_what_its_scope_covers() {
        let mut superuser = caller(&[Role::Owner, Role::Superuser]);
        superuser.token_scope = vec![Role::Admin];
        let administers = [superuser.service_user_id.to_string()];
        assert!(
            manage_service_user(
                &superuser,
                &org(&superuser),
                &administers,
                &[Role::Owner, Role::Superuser]
            )
            .is_err()
        );
    }

    #[test]
    fn managing_needs_admin_before_anything_is_looked_up() {
        for (roles, allowed) in [
            (vec![Role::Viewer], false),
            (vec![], false),
            (vec![Role::Admin], true),
        ] {
            let c = caller(&roles);
            assert_eq!(manage(&c, &org(&c)).is_ok(), allowed, "{roles:?}");
        }
    }

    #[test]
    fn viewer_reads_but_does_not_create() {
        let viewer = caller(&[Role::Viewer]);
        assert!(read(&viewer, &org(&viewer)).is_ok());
        assert!(create_service_user(&viewer, &org(&viewer)).is_err());
        let nobody = caller(&[]);
        assert!(read(&nobody, &org(&nobody)).is_err());
    }

    #[test]
    fn token_scope_narrows_current_roles() {
        let mut owner = caller(&[Role::Owner]);
        owner.token_scope = vec![Role::Viewer];
        assert!(create_service_user(&owner, &org(&owner)).is_err());
        owner.token_scope = vec![Role::Owner];
        assert!(create_service_user(&owner, &org(&owner)).is_ok());
    }

    #[test]
    fn introspection_is_limited_to_the_callers_organization_unless_superuser() {
        let viewer = caller(&[Role::Viewer]);
        assert!(introspect(&viewer, viewer.organization_id.as_str()));
        assert!(!introspect(&viewer, OrganizationId::generate().as_str()));
        assert!(introspect(
            &caller(&[Role::Superuser]),
            OrganizationId::generate().as_str()
        ));
    }

    #[test]
    fn nobody_grants_above_their_own_role() {
        let admin = caller(&[Role::Admin]);
        assert!(grant_scopes(&admin, &org(&admin), &[Role::Viewer, Role::Admin]).is_ok());
        assert!(grant_scopes(&admin, &org(&admin), &[Role::Owner]).is_err());
    }

    #[test]
    fn roles_in_another_organization_count_for_nothing() {
        let owner = caller(&[Role::Owner]);
        let elsewhere = ResourceScope::Organization(OrganizationId::generate().to_string());
        assert!(read(&owner, &elsewhere).is_err());
        assert!(manage(&owner, &elsewhere).is_err());
    }
}
