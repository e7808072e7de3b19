//! The process: bootstrap once, restart without losing anything, shut down gracefully.

use crate::harness::{Backend, Server, create_key, create_user};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{GetApiKeyRequest, GetServiceUserRequest};
use tokenmint::proto::auth::v1::GetJwksRequest;

async fn bootstrap_refuses_a_database_that_has_users(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (code, stderr) = server.bootstrap_json().unwrap_err();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("already has service users"), "{stderr}");
    // The original credential still works.
    assert!(
        server
            .token_for(&server.admin.key_id, &server.admin.secret)
            .await
            .is_ok()
    );
}

async fn restart_keeps_users_keys_and_the_signing_key(backend: Backend) {
    let Some(mut server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "durable").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let token = server.token_for(&key.id, &secret).await.unwrap();
    let jwks_before = server
        .auth()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();

    server.restart();

    let jwks_after = server
        .auth()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        jwks_after.json, jwks_before.json,
        "same signing key after restart"
    );
    let mut admin = server.admin().await;
    assert_eq!(
        admin
            .get_service_user(GetServiceUserRequest {
                id: user.id.clone()
            })
            .await
            .unwrap()
            .into_inner()
            .name,
        "durable"
    );
    assert_eq!(
        admin
            .get_api_key(GetApiKeyRequest { id: key.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .id,
        key.id
    );
    assert!(
        server.token_for(&key.id, &secret).await.is_ok(),
        "the key still exchanges"
    );
    assert!(
        server.introspect(&token).await.active,
        "a token issued before the restart still verifies"
    );
    assert!(
        !server
            .logs()
            .contains("generated a new Ed25519 signing key"),
        "no server start made a new key"
    );
}

async fn sigterm_stops_the_server_cleanly(backend: Backend) {
    let Some(mut server) = Server::start(backend).await else {
        return;
    };
    assert!(
        server
            .token_for(&server.admin.key_id, &server.admin.secret)
            .await
            .is_ok()
    );
    assert!(server.terminate(), "exit status 0 after SIGTERM");
    let logs = server.logs();
    assert!(
        logs.contains("shutting down") && logs.contains("\"stopped\""),
        "{logs}"
    );
}

on_both_backends!(
    bootstrap_refuses_a_database_that_has_users,
    restart_keeps_users_keys_and_the_signing_key,
    sigterm_stops_the_server_cleanly,
);
