//! API-key lifecycle: rotation by an administrator and by the key's holder, grace periods moved
//! through with the server's clock, key states and the state filter.

use crate::harness::{Admin, Backend, Server, create_key, create_user, violated_fields};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    ApiKey, ListApiKeysRequest, RevokeApiKeyRequest, RotateApiKeyRequest, RotateApiKeyResponse,
    api_key::State,
};
use tokenmint::proto::auth::v1::RotateOwnApiKeyRequest;
use tonic::Code;

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

async fn rotate(admin: &mut Admin, id: &str, grace: i64) -> RotateApiKeyResponse {
    admin
        .rotate_api_key(RotateApiKeyRequest {
            id: id.into(),
            grace_period: seconds(grace),
        })
        .await
        .expect("rotate")
        .into_inner()
}

async fn exchanges(server: &Server, key_id: &str, secret: &str) -> bool {
    server.token_for(key_id, secret).await.is_ok()
}

/// A service user with one key: (admin client, key, secret).
async fn keyed_user(server: &Server) -> (Admin, ApiKey, String) {
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "deployer").await;
    server.grant_role(&user.id, "viewer").await;
    let (key, secret) = create_key(&mut admin, &user.id, "ci").await;
    (admin, key, secret)
}

async fn stored_hash(server: &Server, key_id: &str) -> Vec<u8> {
    let store = server.store().await;
    store
        .api_key(&server.admin.organization_id, key_id)
        .await
        .unwrap()
        .secret_hash
}

async fn rotation_without_grace_ends_the_old_secret_at_once(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (mut admin, key, old) = keyed_user(&server).await;
    let before = stored_hash(&server, &key.id).await;
    let rotated = rotate(&mut admin, &key.id, 0).await;
    assert_ne!(rotated.secret, old);
    assert!(rotated.previous_secret_expire_time.is_none());
    let api_key = rotated.api_key.unwrap();
    assert_eq!(
        api_key.id, key.id,
        "the key keeps its ID, scopes and expiry"
    );
    assert_eq!(api_key.expire_time, key.expire_time);
    assert_eq!(api_key.scopes, key.scopes);
    assert!(api_key.rotate_time.is_some());
    assert!(!exchanges(&server, &key.id, &old).await);
    assert!(exchanges(&server, &key.id, &rotated.secret).await);
    let after = stored_hash(&server, &key.id).await;
    assert_ne!(before, after);
    assert!(
        !server
            .stored_bytes()
            .await
            .windows(rotated.secret.len())
            .any(|w| w == rotated.secret.as_bytes()),
        "the new secret is not stored in plain text"
    );
}

async fn the_old_secret_works_through_its_grace_period_and_not_after(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (mut admin, key, old) = keyed_user(&server).await;
    let rotated = rotate(&mut admin, &key.id, 3600).await;
    let until = rotated.previous_secret_expire_time.unwrap();
    let rotate_time = rotated.api_key.as_ref().unwrap().rotate_time.unwrap();
    assert_eq!(until.seconds - rotate_time.seconds, 3600);
    assert!(
        exchanges(&server, &key.id, &old).await,
        "in its grace period"
    );
    assert!(exchanges(&server, &key.id, &rotated.secret).await);

    server.advance_clock(3601);
    assert!(!exchanges(&server, &key.id, &old).await, "grace is over");
    assert!(exchanges(&server, &key.id, &rotated.secret).await);
    let read = admin
        .get_api_key(tokenmint::proto::admin::v1::GetApiKeyRequest { id: key.id })
        .await
        .unwrap()
        .into_inner();
    assert!(read.previous_secret_expire_time.is_none());
}

async fn rotating_again_ends_the_earlier_grace_at_once(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (mut admin, key, first) = keyed_user(&server).await;
    let second = rotate(&mut admin, &key.id, 3600).await.secret;
    let third = rotate(&mut admin, &key.id, 3600).await.secret;
    assert!(
        !exchanges(&server, &key.id, &first).await,
        "at most two secrets"
    );
    assert!(exchanges(&server, &key.id, &second).await);
    assert!(exchanges(&server, &key.id, &third).await);
}

async fn bad_grace_periods_are_named_and_change_nothing(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (mut admin, key, secret) = keyed_user(&server).await;
    let before = stored_hash(&server, &key.id).await;
    for grace in [
        seconds(7 * 86_400 + 1),
        Some(prost_types::Duration {
            seconds: 60,
            nanos: 5,
        }),
        seconds(-1),
    ] {
        let status = admin
            .rotate_api_key(RotateApiKeyRequest {
                id: key.id.clone(),
                grace_period: grace,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["grace_period"]);
    }
    let status = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: "ak_nope".into(),
            grace_period: None,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["id"]);
    let status = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: "x".into(),
            grace_period: seconds(8 * 86_400),
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["id", "grace_period"],
        "every bad field"
    );
    assert_eq!(stored_hash(&server, &key.id).await, before);
    assert!(exchanges(&server, &key.id, &secret).await);
}

async fn revoked_and_expired_keys_cannot_be_rotated(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (mut admin, key, _) = keyed_user(&server).await;
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: key.id.clone(),
            reason: "leaked".into(),
        })
        .await
        .unwrap();
    let status = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: key.id.clone(),
            grace_period: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("revoked"), "{}", status.message());

    let user = key.service_user_id.clone();
    let (short, _) = create_key(&mut admin, &user, "short").await;
    server.advance_clock(31 * 86_400);
    let mut admin = server.admin().await;
    let status = admin
        .rotate_api_key(RotateApiKeyRequest {
            id: short.id,
            grace_period: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

async fn a_viewer_or_another_organization_cannot_rotate(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (_, key, secret) = keyed_user(&server).await;
    let viewer = server.principal_with_roles("watcher", &["viewer"]).await;
    let mut as_viewer = server.admin_for(&viewer).await;
    let status = as_viewer
        .rotate_api_key(RotateApiKeyRequest {
            id: key.id.clone(),
            grace_period: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let foreign = server
        .foreign_principal_with(&[tokenmint_store::Role::Owner])
        .await;
    let mut as_foreign = server.admin_for(&foreign).await;
    let status = as_foreign
        .rotate_api_key(RotateApiKeyRequest {
            id: key.id.clone(),
            grace_period: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        exchanges(&server, &key.id, &secret).await,
        "nothing changed"
    );
}

async fn self_rotate(
    server: &Server,
    key_id: &str,
    secret: &str,
    grace: i64,
) -> Result<RotateApiKeyResponse, tonic::Status> {
    server
        .auth()
        .await
        .rotate_own_api_key(RotateOwnApiKeyRequest {
            key_id: key_id.into(),
            secret: secret.into(),
            grace_period: seconds(grace),
        })
        .await
        .map(|r| r.into_inner())
}

async fn a_key_holder_rotates_its_own_key_without_an_admin_token(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (_, key, old) = keyed_user(&server).await;
    let rotated = self_rotate(&server, &key.id, &old, 0).await.unwrap();
    assert_eq!(rotated.api_key.as_ref().unwrap().id, key.id);
    assert!(!exchanges(&server, &key.id, &old).await);
    assert!(exchanges(&server, &key.id, &rotated.secret).await);
    // And again with the new one, this time with a grace period.
    let again = self_rotate(&server, &key.id, &rotated.secret, 600)
        .await
        .unwrap();
    assert!(again.previous_secret_expire_time.is_some());
    assert!(exchanges(&server, &key.id, &rotated.secret).await);
    assert!(exchanges(&server, &key.id, &again.secret).await);
}

async fn a_secret_in_its_grace_period_exchanges_but_cannot_rotate(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (_, key, old) = keyed_user(&server).await;
    let rotated = self_rotate(&server, &key.id, &old, 3600).await.unwrap();
    assert!(exchanges(&server, &key.id, &old).await);
    let status = self_rotate(&server, &key.id, &old, 0).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        exchanges(&server, &key.id, &rotated.secret).await,
        "the refused call changed nothing"
    );
    assert!(exchanges(&server, &key.id, &old).await);
}

async fn self_rotation_with_a_wrong_secret_or_revoked_key_is_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (mut admin, key, secret) = keyed_user(&server).await;
    let (_, other_secret) = create_key(&mut admin, &key.service_user_id, "other").await;
    let wrong = self_rotate(&server, &key.id, &other_secret, 0)
        .await
        .unwrap_err();
    let unknown = self_rotate(&server, "ak_01jzzzzzzzzzzzzzzzzzzzzzzz", &secret, 0)
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), unknown.message());
    let status = self_rotate(&server, &key.id, &secret, 8 * 86_400)
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["grace_period"]);
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: key.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let revoked = self_rotate(&server, &key.id, &secret, 0).await.unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);
}

async fn concurrent_self_rotations_with_one_secret_yield_one_new_secret(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (_, key, old) = keyed_user(&server).await;
    let attempts = (0..6).map(|_| self_rotate(&server, &key.id, &old, 0));
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(exchanges(&server, &key.id, &winners[0].secret).await);
}

async fn listed(
    admin: &mut Admin,
    user: &str,
    filter: &str,
) -> Result<Vec<(String, i32)>, tonic::Status> {
    let keys = admin
        .list_api_keys(ListApiKeysRequest {
            service_user_id: user.into(),
            filter: filter.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .api_keys;
    let mut ids: Vec<(String, i32)> = keys.into_iter().map(|k| (k.id, k.state)).collect();
    ids.sort();
    Ok(ids)
}

async fn keys_list_by_state_as_the_clock_moves(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (mut admin, key, secret) = keyed_user(&server).await;
    let user = key.service_user_id.clone();
    let (revoked, _) = create_key(&mut admin, &user, "revoked").await;
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: revoked.id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let mut long = crate::harness::key_request(&user, "long");
    long.expires_in = seconds(90 * 86_400);
    let long = admin.create_api_key(long).await.unwrap().into_inner();
    let long_key = long.api_key.unwrap();
    let token = server.token_for(&key.id, &secret).await.unwrap();

    let mut active = vec![
        (key.id.clone(), State::Active as i32),
        (long_key.id.clone(), State::Active as i32),
    ];
    active.sort();
    assert_eq!(
        listed(&mut admin, &user, "state = ACTIVE").await.unwrap(),
        active
    );
    assert_eq!(
        listed(&mut admin, &user, "state = REVOKED").await.unwrap(),
        [(revoked.id.clone(), State::Revoked as i32)]
    );
    assert!(
        listed(&mut admin, &user, "state = EXPIRED")
            .await
            .unwrap()
            .is_empty()
    );

    // Thirty days on, the first key has expired: it stops exchanging and its token (whose
    // lifetime the key's expiry caps) is inactive.
    server.advance_clock(30 * 86_400 + 1);
    let mut admin = server.admin().await;
    assert_eq!(
        listed(&mut admin, &user, "state = EXPIRED").await.unwrap(),
        [(key.id.clone(), State::Expired as i32)]
    );
    assert_eq!(
        listed(&mut admin, &user, "state = ACTIVE").await.unwrap(),
        [(long_key.id.clone(), State::Active as i32)]
    );
    assert!(!exchanges(&server, &key.id, &secret).await);
    assert!(!server.introspect(&token).await.active);
    let status = listed(&mut admin, &user, "state = GONE").await.unwrap_err();
    assert_eq!(violated_fields(&status), ["filter"]);
}

on_both_backends!(
    rotation_without_grace_ends_the_old_secret_at_once,
    the_old_secret_works_through_its_grace_period_and_not_after,
    rotating_again_ends_the_earlier_grace_at_once,
    bad_grace_periods_are_named_and_change_nothing,
    revoked_and_expired_keys_cannot_be_rotated,
    a_viewer_or_another_organization_cannot_rotate,
    a_key_holder_rotates_its_own_key_without_an_admin_token,
    a_secret_in_its_grace_period_exchanges_but_cannot_rotate,
    self_rotation_with_a_wrong_secret_or_revoked_key_is_refused,
    concurrent_self_rotations_with_one_secret_yield_one_new_secret,
    keys_list_by_state_as_the_clock_moves,
);

/// Two replicas of one PostgreSQL database: a key rotated through one exchanges its new secret
/// on the other at once, though the other had the key cached; the old secret is refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn a_key_rotated_through_one_replica_works_on_another_at_once() {
    let Some(a) = Server::start(Backend::Postgres).await else {
        return;
    };
    let b = a.replica(&[]);
    let (_, key, old) = keyed_user(&a).await;
    assert!(exchanges(&b, &key.id, &old).await, "b caches the key");
    // Past the interval in which a cached key is not re-read after a failure.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let rotated = self_rotate(&a, &key.id, &old, 0).await.unwrap();
    assert!(exchanges(&b, &key.id, &rotated.secret).await);
    assert!(!exchanges(&b, &key.id, &old).await);
}
