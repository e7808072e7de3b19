//! The process: bootstrap once, restart without losing anything, shut down gracefully.

use crate::harness::{Backend, Server, create_key, create_user};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{GetApiKeyRequest, GetServiceUserRequest};

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
    let jwks_before = server.jwks_json().await;

    server.restart();

    assert_eq!(
        server.jwks_json().await,
        jwks_before,
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

async fn a_wrong_key_encryption_key_refuses_to_start_with_a_clear_error(backend: Backend) {
    use base64::Engine;
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let wrong = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenmint"))
        .arg("bootstrap")
        .args(server.core_args())
        .args(["--key-encryption-key", &wrong])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("key-encryption key differs"), "{stderr}");
}

on_both_backends!(
    a_wrong_key_encryption_key_refuses_to_start_with_a_clear_error,
    bootstrap_refuses_a_database_that_has_users,
    restart_keeps_users_keys_and_the_signing_key,
    sigterm_stops_the_server_cleanly,
);

/// PostgreSQL only: replicas share one database, its signing keys, and revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn replicas_share_signing_keys_and_see_each_others_revocations() {
    let Some(first) = Server::start(Backend::Postgres).await else {
        return;
    };
    let second = first.replica(&["--key-cache-ttl", "1s"]);
    assert_eq!(
        first.jwks_json().await,
        second.jwks_json().await,
        "one signing key for both"
    );

    let mut admin = first.admin().await;
    let user = create_user(&mut admin, "shared").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let token = first.token_for(&key.id, &secret).await.unwrap();
    assert!(
        second.token_for(&key.id, &secret).await.is_ok(),
        "a key made on one replica exchanges on the other"
    );
    assert!(
        second.introspect(&token).await.active,
        "a token from one replica verifies on the other"
    );

    admin
        .revoke_api_key(tokenmint::proto::admin::v1::RevokeApiKeyRequest {
            id: key.id.clone(),
            reason: "rotated".into(),
        })
        .await
        .unwrap();
    assert!(
        !second.introspect(&token).await.active,
        "introspection on the other replica sees the revocation at once"
    );
    // The other replica's exchange path sees it at once (announced; tests/e2e/replicas.rs
    // measures how fast), or at the latest after its key-cache TTL (1 s here).
    let mut refused = false;
    for _ in 0..30 {
        if second.token_for(&key.id, &secret).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(refused, "the other replica kept exchanging a revoked key");
}

/// PostgreSQL only: replicas deployed together on an empty database (a compose file or a
/// Deployment starting) all start, and exactly one of them bootstraps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn replicas_started_together_on_an_empty_database_bootstrap_exactly_once() {
    use sea_orm::ConnectionTrait;
    let Some(mut replicas) = Server::start_together(Backend::Postgres, 3).await else {
        return;
    };
    // Every replica served (start_together waits for each), so none lost a race and exited.
    let credentials: Vec<serde_json::Value> = replicas
        .iter()
        .filter_map(|r| std::fs::read(r.data_dir.path().join("bootstrap-credential.json")).ok())
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
        .collect();
    assert_eq!(credentials.len(), 1, "exactly one replica bootstraps");
    let db = replicas[0].database().await;
    for (table, expected) in [("organizations", 1), ("service_users", 1), ("api_keys", 1)] {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!("SELECT count(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, expected, "rows in {table}");
    }

    let (key_id, secret) = (
        credentials[0]["key_id"].as_str().unwrap(),
        credentials[0]["secret"].as_str().unwrap(),
    );
    for replica in &mut replicas {
        replica.admin.key_id = key_id.to_owned();
        replica.admin.secret = secret.to_owned();
    }
    let jwks = replicas[0].jwks_json().await;
    for replica in &replicas {
        assert_eq!(replica.jwks_json().await, jwks, "one signing key for all");
        let token = replica.token_for(key_id, secret).await.unwrap();
        assert!(
            replicas[0].introspect(&token).await.active,
            "a token from any replica verifies on the others"
        );
    }
}
