//! Role bindings and administrators through the API: who may grant what, the last owner, and
//! changes that take effect on the next call.

use crate::harness::{Admin, Backend, Server, create_key, create_user, violated_fields};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    AddAdministratorRequest, AddRoleBindingRequest, CreateServiceUserRequest,
    ListRoleBindingsRequest, RemoveAdministratorRequest, RemoveRoleBindingRequest, Role,
    RoleBinding, ServiceUser,
};
use tonic::Code;
use tonic_types::StatusExt;

fn binding(principal_id: &str, role: Role) -> AddRoleBindingRequest {
    AddRoleBindingRequest {
        role_binding: Some(RoleBinding {
            principal_id: principal_id.into(),
            role: role as i32,
            ..Default::default()
        }),
    }
}

async fn bindings_of(admin: &mut Admin, principal_id: &str) -> Vec<RoleBinding> {
    admin
        .list_role_bindings(ListRoleBindingsRequest {
            principal_id: principal_id.into(),
            ..Default::default()
        })
        .await
        .expect("list role bindings")
        .into_inner()
        .role_bindings
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

async fn an_owner_grants_a_role_and_the_users_new_key_carries_it(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "deployer").await;
    let granted = admin
        .add_role_binding(binding(&user.id, Role::Admin))
        .await
        .unwrap()
        .into_inner();
    assert!(granted.id.starts_with("rb_"));
    assert_eq!(
        (
            granted.organization_id.as_str(),
            granted.project_id.as_str(),
            granted.role
        ),
        (
            server.admin.organization_id.as_str(),
            "",
            Role::Admin as i32
        )
    );
    assert_eq!(bindings_of(&mut admin, &user.id).await, [granted]);

    let (key, secret) = create_key(&mut admin, &user.id, "main").await;
    assert_eq!(key.scopes, ["admin"]);
    let token = server.exchange(&key.id, &secret, "").await.unwrap();
    assert_eq!(token.scope, "admin");
}

async fn nobody_grants_or_creates_above_their_own_role(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let team_admin = server.principal_with_roles("team-admin", &["admin"]).await;
    let mut as_admin = server.admin_for(&team_admin).await;
    let managed = create_user(&mut as_admin, "managed").await;
    assert!(
        managed.administrators.contains(&team_admin.service_user_id),
        "an admin creating a user administers it"
    );

    let status = as_admin
        .add_role_binding(binding(&managed.id, Role::Owner))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(&status), "SCOPE_NOT_GRANTABLE");

    let status = as_admin
        .create_service_user(CreateServiceUserRequest {
            role_bindings: vec![RoleBinding {
                role: Role::Owner as i32,
                ..Default::default()
            }],
            organization_id: String::new(),
            service_user: Some(ServiceUser {
                name: "would-be-owner".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    let mut admin = server.admin().await;
    assert!(bindings_of(&mut admin, &managed.id).await.is_empty());
    let names: Vec<String> = crate::harness::list_users(&mut admin)
        .await
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert!(
        !names.contains(&"would-be-owner".to_owned()),
        "nothing stored"
    );

    // Up to its own role is fine.
    as_admin
        .add_role_binding(binding(&managed.id, Role::Viewer))
        .await
        .unwrap();
}

async fn a_created_users_role_bindings_are_granted_with_it(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let created = admin
        .create_service_user(CreateServiceUserRequest {
            role_bindings: vec![RoleBinding {
                role: Role::Viewer as i32,
                ..Default::default()
            }],
            organization_id: String::new(),
            service_user: Some(ServiceUser {
                name: "monitor".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let roles: Vec<i32> = bindings_of(&mut admin, &created.id)
        .await
        .into_iter()
        .map(|b| b.role)
        .collect();
    assert_eq!(roles, [Role::Viewer as i32]);
    assert_eq!(
        created.administrators,
        vec![server.admin.service_user_id.clone()]
    );
}

async fn the_last_owner_keeps_its_role(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let own = bindings_of(&mut admin, &server.admin.service_user_id).await;
    let own_owner = own
        .iter()
        .find(|b| b.role == Role::Owner as i32)
        .expect("the bootstrap admin is an owner");
    let status = admin
        .remove_role_binding(RemoveRoleBindingRequest {
            id: own_owner.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "LAST_OWNER");

    // With a second owner, the first may step down.
    let second = server
        .principal_with_roles("second-owner", &["owner"])
        .await;
    admin
        .remove_role_binding(RemoveRoleBindingRequest {
            id: own_owner.id.clone(),
        })
        .await
        .unwrap();
    // Now the second is the last one: it cannot step down.
    let mut as_second = server.admin_for(&second).await;
    let second_owner = bindings_of(&mut as_second, &second.service_user_id).await;
    let status = as_second
        .remove_role_binding(RemoveRoleBindingRequest {
            id: second_owner[0].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "LAST_OWNER");
    assert!(
        bindings_of(&mut as_second, &server.admin.service_user_id)
            .await
            .is_empty(),
        "the platform superuser binding is not listed as an organization binding"
    );
}

async fn removing_a_role_takes_effect_on_the_next_call(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let team_admin = server.principal_with_roles("team-admin", &["admin"]).await;
    let mut as_admin = server.admin_for(&team_admin).await;
    create_user(&mut as_admin, "before").await;
    let mut admin = server.admin().await;
    let granted = bindings_of(&mut admin, &team_admin.service_user_id).await;
    admin
        .remove_role_binding(RemoveRoleBindingRequest {
            id: granted[0].id.clone(),
        })
        .await
        .unwrap();
    let status = as_admin
        .create_service_user(CreateServiceUserRequest {
            role_bindings: Vec::new(),
            organization_id: String::new(),
            service_user: Some(ServiceUser {
                name: "after".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn only_admins_and_owners_can_be_made_administrators(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let target = create_user(&mut admin, "target").await;
    let viewer = server.principal_with_roles("watcher", &["viewer"]).await;
    let team_admin = server.principal_with_roles("team-admin", &["admin"]).await;
    let add = |principal: &str| AddAdministratorRequest {
        service_user_id: target.id.clone(),
        principal_id: principal.into(),
    };

    let status = admin
        .add_administrator(add(&viewer.service_user_id))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "PRINCIPAL_LACKS_ADMIN_ROLE");

    let updated = admin
        .add_administrator(add(&team_admin.service_user_id))
        .await
        .unwrap()
        .into_inner();
    assert!(updated.administrators.contains(&team_admin.service_user_id));
    let again = admin
        .add_administrator(add(&team_admin.service_user_id))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    // The new administrator can now manage the user, and WhoAmI says so.
    let mut as_admin = server.admin_for(&team_admin).await;
    create_key(&mut as_admin, &target.id, "from-admin").await;
    let token = server
        .token_for(&team_admin.key_id, &team_admin.secret)
        .await
        .unwrap();
    let whoami = server
        .auth_as(&token)
        .await
        .who_am_i(tokenmint::proto::auth::v1::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        whoami.administered_service_user_ids,
        vec![target.id.clone()]
    );
    assert_eq!(whoami.roles, ["admin"]);

    let remove = RemoveAdministratorRequest {
        service_user_id: target.id.clone(),
        principal_id: team_admin.service_user_id.clone(),
    };
    let updated = admin
        .remove_administrator(remove.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.administrators.contains(&team_admin.service_user_id));
    let gone = admin.remove_administrator(remove).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let status = as_admin
        .create_api_key(crate::harness::key_request(&target.id, "after-removal"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn bad_role_binding_input_is_named_and_changes_nothing(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "subject").await;
    let status = admin
        .add_role_binding(AddRoleBindingRequest {
            role_binding: Some(RoleBinding {
                principal_id: "nobody".into(),
                project_id: "prj_bad".into(),
                role: Role::Unspecified as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "role_binding.principal_id",
            "role_binding.role",
            "role_binding.project_id"
        ]
    );

    admin
        .add_role_binding(binding(&user.id, Role::Viewer))
        .await
        .unwrap();
    let duplicate = admin
        .add_role_binding(binding(&user.id, Role::Viewer))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert_eq!(bindings_of(&mut admin, &user.id).await.len(), 1);

    let missing = admin
        .remove_role_binding(RemoveRoleBindingRequest {
            id: tokenmint::ids::RoleBindingId::generate().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let foreign = server.foreign_principal().await;
    let owner = server.principal_with_roles("org-owner", &["owner"]).await;
    let status = server
        .admin_for(&owner)
        .await
        .add_role_binding(binding(&foreign.service_user_id, Role::Viewer))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::NotFound,
        "another tenant's user does not exist here"
    );
}

/// Quotas hold when creates race: 20 parallel creates against a quota of 10 leave exactly 10.
async fn quotas_hold_under_concurrency(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let Some(server) = Server::start(backend).await else {
        return;
    };
    server
        .database()
        .await
        .execute_unprepared(
            "UPDATE organizations SET max_service_users = 10, max_keys_per_user = 10",
        )
        .await
        .unwrap();
    let mut admin = server.admin().await;
    let creates = (0..20).map(|i| {
        let mut client = admin.clone();
        async move {
            client
                .create_service_user(CreateServiceUserRequest {
                    role_bindings: Vec::new(),
                    organization_id: String::new(),
                    service_user: Some(ServiceUser {
                        name: format!("bot-{i}"),
                        ..Default::default()
                    }),
                })
                .await
        }
    });
    let results = futures::future::join_all(creates).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        9,
        "the bootstrap admin is the tenth"
    );
    assert!(refused.iter().all(|s| s.code() == Code::ResourceExhausted
        && reason(s) == "QUOTA_EXCEEDED"
        && s.message().contains("max_service_users")));
    assert_eq!(crate::harness::list_users(&mut admin).await.len(), 10);

    // Which creates win is up to the race; use one that did.
    let user = results
        .iter()
        .find_map(|r| r.as_ref().ok())
        .unwrap()
        .get_ref()
        .clone();
    let keys = (0..20).map(|i| {
        let mut client = admin.clone();
        let request = crate::harness::key_request(&user.id, &format!("k{i}"));
        async move { client.create_api_key(request).await }
    });
    let results = futures::future::join_all(keys).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|s| s.code() == Code::ResourceExhausted)
    );

    // Revoking one frees its slot.
    let revoked = results.iter().find_map(|r| r.as_ref().ok()).unwrap();
    admin
        .revoke_api_key(tokenmint::proto::admin::v1::RevokeApiKeyRequest {
            id: revoked.get_ref().api_key.as_ref().unwrap().id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    create_key(&mut admin, &user.id, "after-revocation").await;
}

/// A unit of work reads only through its own transaction: with a two-connection pool, changes
/// queued behind one another's locks all complete instead of waiting for a connection that every
/// waiting unit holds.
async fn concurrent_changes_complete_on_a_small_connection_pool(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--database-max-connections", "2"]).await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "bot").await;
    let creates = (0..8).map(|i| {
        let mut client = admin.clone();
        let request = crate::harness::key_request(&user.id, &format!("k{i}"));
        async move { client.create_api_key(request).await }
    });
    let created = futures::future::join_all(creates).await;
    let failures: Vec<_> = created.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    let revokes = created.iter().flatten().map(|r| {
        let mut client = admin.clone();
        let id = r
            .get_ref()
            .api_key
            .as_ref()
            .map(|k| k.id.clone())
            .unwrap_or_default();
        async move {
            client
                .revoke_api_key(tokenmint::proto::admin::v1::RevokeApiKeyRequest {
                    id,
                    reason: String::new(),
                })
                .await
        }
    });
    let revoked = futures::future::join_all(revokes).await;
    let failures: Vec<_> = revoked.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    let stored = server
        .store()
        .await
        .list_api_keys(&user.organization_id, &user.id, None, 100, None)
        .await
        .unwrap();
    assert_eq!(stored.len(), 8);
    assert!(stored.iter().all(|k| k.revoke_time.is_some()));
}

/// A binding lands only in its principal's organization: naming another one is refused, not
/// silently ignored.
async fn a_binding_naming_another_organization_is_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let elsewhere = "org_01jzzzzzzzzzzzzzzzzzzzzzzz";
    let status = admin
        .create_service_user(CreateServiceUserRequest {
            organization_id: String::new(),
            service_user: Some(ServiceUser {
                name: "misplaced".into(),
                ..Default::default()
            }),
            role_bindings: vec![RoleBinding {
                role: Role::Viewer as i32,
                organization_id: elsewhere.into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["role_bindings[0].organization_id"]
    );
    assert!(
        crate::harness::list_users(&mut admin)
            .await
            .iter()
            .all(|u| u.name != "misplaced")
    );
    let user = create_user(&mut admin, "placed").await;
    let mut request = binding(&user.id, Role::Viewer);
    if let Some(b) = request.role_binding.as_mut() {
        b.organization_id = elsewhere.into();
    }
    let status = admin.add_role_binding(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["role_binding.organization_id"]);
    assert!(bindings_of(&mut admin, &user.id).await.is_empty());
}

on_both_backends!(
    a_binding_naming_another_organization_is_refused,
    concurrent_changes_complete_on_a_small_connection_pool,
    an_owner_grants_a_role_and_the_users_new_key_carries_it,
    nobody_grants_or_creates_above_their_own_role,
    a_created_users_role_bindings_are_granted_with_it,
    the_last_owner_keeps_its_role,
    removing_a_role_takes_effect_on_the_next_call,
    only_admins_and_owners_can_be_made_administrators,
    bad_role_binding_input_is_named_and_changes_nothing,
    quotas_hold_under_concurrency,
);

mod review {
    use crate::harness::{Backend, Server, violated_fields};
    use tokenmint::proto::admin::v1::{CreateServiceUserRequest, Role, RoleBinding, ServiceUser};
    use tonic::Code;

    /// A role listed twice, or too many initial bindings, is a named invalid field, found before
    /// anything is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn initial_bindings_are_validated_before_anything_is_written() {
        let Some(server) = Server::start(Backend::Sqlite).await else {
            return;
        };
        let mut admin = server.admin().await;
        let viewer = RoleBinding {
            role: Role::Viewer as i32,
            ..Default::default()
        };
        for (bindings, field) in [
            (
                vec![viewer.clone(), viewer.clone()],
                "role_bindings[1].role",
            ),
            (vec![viewer.clone(); 10_000], "role_bindings"),
        ] {
            let status = admin
                .create_service_user(CreateServiceUserRequest {
                    organization_id: String::new(),
                    service_user: Some(ServiceUser {
                        name: "twice".into(),
                        ..Default::default()
                    }),
                    role_bindings: bindings,
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(
                violated_fields(&status).contains(&field.to_owned()),
                "{status:?}"
            );
        }
        let names: Vec<String> = crate::harness::list_users(&mut admin)
            .await
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert!(!names.contains(&"twice".to_owned()));
    }
}
