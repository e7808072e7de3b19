//! Nobody climbs above what they were given: keys never carry more than their creator holds,
//! nobody manages a principal that outranks them, and a caller without a role learns nothing
//! about which IDs exist.

use crate::harness::{Admin, Backend, Server, create_key, create_user, key_request};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    DeleteServiceUserRequest, DisableServiceUserRequest, EnableServiceUserRequest,
    GetApiKeyRequest, GetServiceUserRequest, ListApiKeysRequest, RevokeApiKeyRequest, ServiceUser,
    UpdateServiceUserRequest, service_user::State,
};
use tonic::Code;

async fn exchange_scope(server: &Server, key_id: &str, secret: &str) -> String {
    server
        .exchange(key_id, secret, "")
        .await
        .expect("key exchanges")
        .scope
}

async fn key_count(admin: &mut Admin, service_user_id: &str) -> usize {
    admin
        .list_api_keys(ListApiKeysRequest {
            service_user_id: service_user_id.into(),
            ..Default::default()
        })
        .await
        .expect("list keys")
        .into_inner()
        .api_keys
        .len()
}

async fn a_narrowed_token_cannot_make_a_wider_key_for_itself(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    for narrowed in ["admin", "owner"] {
        let token = server
            .exchange(&server.admin.key_id, &server.admin.secret, narrowed)
            .await
            .unwrap()
            .access_token;
        let mut narrowed_admin = server.admin_as(&token).await;
        let status = narrowed_admin
            .create_api_key(key_request(&server.admin.service_user_id, "widen"))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{narrowed}: {status:?}"
        );
    }
    let mut admin = server.admin().await;
    assert_eq!(
        key_count(&mut admin, &server.admin.service_user_id).await,
        1,
        "no key was stored"
    );
}

async fn an_owner_cannot_act_on_a_superuser(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let owner = server.principal_with_roles("org-owner", &["owner"]).await;
    let mut as_owner = server.admin_for(&owner).await;
    let superuser = server.admin.service_user_id.clone();

    let refused = [
        as_owner
            .create_api_key(key_request(&superuser, "takeover"))
            .await
            .map(|_| ()),
        as_owner
            .revoke_api_key(RevokeApiKeyRequest {
                id: server.admin.key_id.clone(),
                reason: "takeover".into(),
            })
            .await
            .map(|_| ()),
        as_owner
            .disable_service_user(DisableServiceUserRequest {
                id: superuser.clone(),
            })
            .await
            .map(|_| ()),
        as_owner
            .update_service_user(UpdateServiceUserRequest {
                service_user: Some(ServiceUser {
                    id: superuser.clone(),
                    display_name: "owned".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            })
            .await
            .map(|_| ()),
        as_owner
            .delete_service_user(DeleteServiceUserRequest {
                id: superuser.clone(),
                force: true,
            })
            .await
            .map(|_| ()),
    ];
    for (i, result) in refused.into_iter().enumerate() {
        let status = result.expect_err("an owner must not act on a superuser");
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "call {i}: {status:?}"
        );
    }

    let mut admin = server.admin().await;
    let stored = admin
        .get_service_user(GetServiceUserRequest {
            id: superuser.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.state, State::Active as i32);
    assert_ne!(stored.display_name, "owned");
    assert_eq!(key_count(&mut admin, &superuser).await, 1);
    let bootstrap_key = admin
        .get_api_key(GetApiKeyRequest {
            id: server.admin.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        bootstrap_key.revoke_time.is_none(),
        "the superuser's key still works"
    );
}

async fn an_admin_cannot_make_keys_for_an_owner_it_administers(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let admin_principal = server.principal_with_roles("team-admin", &["admin"]).await;
    let boss = server.principal_with_roles("big-boss", &["owner"]).await;
    let watcher = server.principal_with_roles("watcher", &["viewer"]).await;
    for target in [&boss, &watcher] {
        server
            .add_administrator(&target.service_user_id, &admin_principal.service_user_id)
            .await;
    }
    let mut as_admin = server.admin_for(&admin_principal).await;

    let status = as_admin
        .create_api_key(key_request(&boss.service_user_id, "escalate"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let mut admin = server.admin().await;
    assert_eq!(key_count(&mut admin, &boss.service_user_id).await, 1);

    // The same admin may still give a key to a user it administers that does not outrank it.
    let (key, secret) = create_key(&mut as_admin, &watcher.service_user_id, "second").await;
    assert_eq!(key.scopes, ["viewer"]);
    assert_eq!(exchange_scope(&server, &key.id, &secret).await, "viewer");
}

async fn an_unscoped_key_stores_its_users_roles_and_later_grants_do_not_widen_it(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let watcher = server.principal_with_roles("watcher", &["viewer"]).await;
    let mut admin = server.admin().await;
    let key = admin
        .get_api_key(GetApiKeyRequest {
            id: watcher.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key.scopes, ["viewer"], "the empty request became explicit");

    server.grant_role(&watcher.service_user_id, "owner").await;
    assert_eq!(
        exchange_scope(&server, &watcher.key_id, &watcher.secret).await,
        "viewer",
        "a later grant does not widen an existing key"
    );
}

async fn the_bootstrap_key_carries_its_roles_explicitly(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let key = admin
        .get_api_key(GetApiKeyRequest {
            id: server.admin.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(key.scopes, ["owner", "superuser"]);
    assert_eq!(
        exchange_scope(&server, &server.admin.key_id, &server.admin.secret).await,
        "owner superuser"
    );
}

async fn a_key_cannot_name_a_role_its_user_does_not_hold(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "ci-bot").await;
    let mut request = key_request(&user.id, "dormant");
    request.scopes = vec!["admin".into()];
    let status = admin.create_api_key(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(crate::harness::violated_fields(&status), ["scopes"]);
    assert_eq!(key_count(&mut admin, &user.id).await, 0);

    // Holding a higher role covers a lower scope.
    server.grant_role(&user.id, "owner").await;
    let mut request = key_request(&user.id, "reader");
    request.scopes = vec!["viewer".into()];
    let created = admin.create_api_key(request).await.unwrap().into_inner();
    assert_eq!(created.api_key.unwrap().scopes, ["viewer"]);
}

async fn an_empty_scope_entry_is_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "blank").await;
    let mut request = key_request(&user.id, "blank");
    request.scopes = vec![String::new()];
    let status = admin.create_api_key(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(crate::harness::violated_fields(&status), ["scopes[0]"]);
    assert_eq!(key_count(&mut admin, &user.id).await, 0);
}

async fn a_caller_without_a_role_gets_the_same_answer_for_existing_and_missing_ids(
    backend: Backend,
) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let nobody = server.principal_with_roles("nobody", &[]).await;
    let mut admin = server.admin().await;
    let target = create_user(&mut admin, "target").await;
    let (target_key, _) = create_key(&mut admin, &target.id, "k").await;
    let missing_user = tokenmint::ids::ServiceUserId::generate().to_string();
    let missing_key = tokenmint::ids::ApiKeyId::generate().to_string();
    let mut as_nobody = server.admin_for(&nobody).await;

    for (user_id, key_id) in [(&target.id, &target_key.id), (&missing_user, &missing_key)] {
        let answers = [
            as_nobody
                .revoke_api_key(RevokeApiKeyRequest {
                    id: key_id.clone(),
                    reason: String::new(),
                })
                .await
                .map(|_| ()),
            as_nobody
                .update_service_user(UpdateServiceUserRequest {
                    service_user: Some(ServiceUser {
                        id: user_id.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["description".into()],
                    }),
                })
                .await
                .map(|_| ()),
            as_nobody
                .disable_service_user(DisableServiceUserRequest {
                    id: user_id.clone(),
                })
                .await
                .map(|_| ()),
            as_nobody
                .enable_service_user(EnableServiceUserRequest {
                    id: user_id.clone(),
                })
                .await
                .map(|_| ()),
            as_nobody
                .delete_service_user(DeleteServiceUserRequest {
                    id: user_id.clone(),
                    force: false,
                })
                .await
                .map(|_| ()),
            as_nobody
                .create_api_key(key_request(user_id, "k2"))
                .await
                .map(|_| ()),
        ];
        for (i, answer) in answers.into_iter().enumerate() {
            let status = answer.expect_err("a caller without a role is refused");
            assert_eq!(
                (status.code(), status.message()),
                (
                    Code::PermissionDenied,
                    "you need the admin role or higher to manage service users and their keys"
                ),
                "call {i} for {user_id}"
            );
        }
    }
}

async fn a_disabled_user_gets_no_new_key(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "sleeper").await;
    admin
        .disable_service_user(DisableServiceUserRequest {
            id: user.id.clone(),
        })
        .await
        .unwrap();
    let status = admin
        .create_api_key(key_request(&user.id, "k"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(key_count(&mut admin, &user.id).await, 0);
}

async fn a_fractional_duration_is_refused_not_truncated(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "precise").await;
    let mut request = key_request(&user.id, "k");
    request.expires_in = Some(prost_types::Duration {
        seconds: 2 * 86_400,
        nanos: 500_000_000,
    });
    request.token_lifetime = Some(prost_types::Duration {
        seconds: 600,
        nanos: 1,
    });
    let status = admin.create_api_key(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        crate::harness::violated_fields(&status),
        ["expires_in", "token_lifetime"]
    );
    assert_eq!(key_count(&mut admin, &user.id).await, 0);
}

async fn an_id_beyond_the_ulid_range_is_malformed(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let status = admin
        .get_service_user(GetServiceUserRequest {
            id: "su_8zzzzzzzzzzzzzzzzzzzzzzzzz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(crate::harness::violated_fields(&status), ["id"]);
}

/// Authority is re-read inside the change's own transaction, after locking both principals:
/// of two owners deleting each other at the same moment, at most one succeeds.
async fn two_owners_deleting_each_other_at_once_do_not_both_succeed(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut pairs = Vec::new();
    for i in 0..6 {
        let a = server
            .principal_with_roles(&format!("owner-a{i}"), &["owner"])
            .await;
        let b = server
            .principal_with_roles(&format!("owner-b{i}"), &["owner"])
            .await;
        pairs.push((server.admin_for(&a).await, a, server.admin_for(&b).await, b));
    }
    let mut races = Vec::new();
    for (mut as_a, a, mut as_b, b) in pairs {
        let a_deletes_b = tokio::spawn(async move {
            as_a.delete_service_user(DeleteServiceUserRequest {
                id: b.service_user_id,
                force: true,
            })
            .await
        });
        let b_deletes_a = tokio::spawn(async move {
            as_b.delete_service_user(DeleteServiceUserRequest {
                id: a.service_user_id,
                force: true,
            })
            .await
        });
        races.push((a_deletes_b, b_deletes_a));
    }
    for (i, (first, second)) in races.into_iter().enumerate() {
        let (first, second) = (first.await.unwrap(), second.await.unwrap());
        assert!(
            !(first.is_ok() && second.is_ok()),
            "pair {i}: both owners deleted each other"
        );
        assert!(
            first.is_ok() || second.is_ok(),
            "pair {i}: one of them wins"
        );
        let loser = if first.is_ok() { second } else { first };
        assert_eq!(loser.unwrap_err().code(), Code::Unauthenticated);
    }
}

/// Of two revocations of one key at the same moment, the first is kept: the second reads the
/// key again under its owner's lock and finds it revoked.
async fn concurrent_revocations_keep_the_first(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "twice").await;
    for round in 0..5 {
        let (key, _) = create_key(&mut admin, &user.id, &format!("k{round}")).await;
        let revoke = |reason: &str| {
            let request = RevokeApiKeyRequest {
                id: key.id.clone(),
                reason: reason.into(),
            };
            let server_admin = server.admin();
            async move { server_admin.await.revoke_api_key(request).await }
        };
        let (first, second) = tokio::join!(revoke("first"), revoke("second"));
        let (first, second) = (first.unwrap().into_inner(), second.unwrap().into_inner());
        assert_eq!(
            (&first.revoke_reason, first.revoke_time),
            (&second.revoke_reason, second.revoke_time),
            "round {round}: both answers show the one revocation that happened"
        );
        let stored = admin
            .get_api_key(GetApiKeyRequest { id: key.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stored.revoke_reason, first.revoke_reason);
    }
}

on_both_backends!(
    a_narrowed_token_cannot_make_a_wider_key_for_itself,
    an_owner_cannot_act_on_a_superuser,
    an_admin_cannot_make_keys_for_an_owner_it_administers,
    an_unscoped_key_stores_its_users_roles_and_later_grants_do_not_widen_it,
    the_bootstrap_key_carries_its_roles_explicitly,
    an_empty_scope_entry_is_refused,
    a_key_cannot_name_a_role_its_user_does_not_hold,
    a_caller_without_a_role_gets_the_same_answer_for_existing_and_missing_ids,
    a_disabled_user_gets_no_new_key,
    a_fractional_duration_is_refused_not_truncated,
    an_id_beyond_the_ulid_range_is_malformed,
    two_owners_deleting_each_other_at_once_do_not_both_succeed,
    concurrent_revocations_keep_the_first,
);
