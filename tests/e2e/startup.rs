//! What a start leaves on disk and in the logs: the bootstrap credential only in a private
//! file, private data files, and secrets that never need to be on the command line.

use crate::harness::{Backend, Server};
use crate::on_both_backends;
use base64::Engine;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The credential `serve` wrote on its first start.
fn bootstrap_file(server: &Server) -> Value {
    let path = server.data_dir.path().join("bootstrap-credential.json");
    assert_eq!(mode(&path), 0o600, "{}", path.display());
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Exchanges the key of the credential in the server's bootstrap file.
async fn exchange_bootstrap_key(server: &Server) -> Result<String, tonic::Status> {
    let credential = bootstrap_file(server);
    server
        .token_for(
            credential["key_id"].as_str().unwrap(),
            credential["secret"].as_str().unwrap(),
        )
        .await
}

async fn serve_writes_the_bootstrap_credential_to_a_private_file_not_to_the_log(backend: Backend) {
    let Some(server) = Server::start_unbootstrapped(backend, &[]).await else {
        return;
    };
    let credential = bootstrap_file(&server);
    let secret = credential["secret"].as_str().unwrap();
    let key_id = credential["key_id"].as_str().unwrap();
    assert!(secret.starts_with("tmsk_"));
    server
        .token_for(key_id, secret)
        .await
        .expect("the credential in the file works");
    let logs = server.logs();
    assert!(
        !logs.contains(&secret[5..]),
        "stderr is not a terminal here"
    );
    assert!(
        logs.contains("bootstrap-credential.json"),
        "the log says where the file is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_created_private() {
    let Some(server) = Server::start(Backend::Sqlite).await else {
        return;
    };
    server.admin_token().await;
    let dir = server.data_dir.path();
    assert_eq!(mode(dir), 0o700);
    for file in [
        "tokenmint.db",
        "tokenmint.db-wal",
        "tokenmint.db-shm",
        "secrets.json",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_left_readable_are_made_private_at_start() {
    let Some(mut server) = Server::start(Backend::Sqlite).await else {
        return;
    };
    server.admin_token().await;
    assert!(server.terminate());
    let dir = server.data_dir.path().to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["tokenmint.db", "tokenmint.db-wal", "tokenmint.db-shm"] {
        let path = dir.join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    server.restart_stopped();
    server.admin_token().await;
    assert_eq!(mode(&dir), 0o700);
    for file in ["tokenmint.db", "tokenmint.db-wal", "tokenmint.db-shm"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_can_come_from_files_and_a_secret_flag_is_warned_about() {
    let secrets = tempfile::tempdir().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let (kek, pepper) = (secrets.path().join("kek"), secrets.path().join("pepper"));
    std::fs::write(&kek, b64.encode([5u8; 32])).unwrap();
    std::fs::write(&pepper, b64.encode([6u8; 32])).unwrap();
    let Some(server) = Server::start_unbootstrapped(
        Backend::Sqlite,
        &[
            "--key-encryption-key-file",
            kek.to_str().unwrap(),
            "--secret-pepper-file",
            pepper.to_str().unwrap(),
        ],
    )
    .await
    else {
        return;
    };
    exchange_bootstrap_key(&server)
        .await
        .expect("exchanges under the pepper from the file");
    assert!(
        !server.data_dir.path().join("secrets.json").exists(),
        "nothing generated when both secrets are configured"
    );
    assert!(!server.logs().contains("process list"));

    let pepper_value = b64.encode([6u8; 32]);
    let Some(flagged) =
        Server::start_unbootstrapped(Backend::Sqlite, &["--secret-pepper", &pepper_value]).await
    else {
        return;
    };
    let logs = flagged.logs();
    assert!(logs.contains("process list"), "{logs}");
    assert!(
        !logs.contains(&pepper_value),
        "the warning does not repeat the secret"
    );
}

on_both_backends!(serve_writes_the_bootstrap_credential_to_a_private_file_not_to_the_log);

/// PostgreSQL only: a server started while its database refuses connections (starting beside
/// it in compose or a Pod) keeps retrying and serves once the database accepts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn start_up_waits_for_a_database_that_refuses_connections() {
    let Some(mut server) = Server::unstarted(Backend::Postgres, &[]).await else {
        return;
    };
    let database = server.database_control().await;
    database.refuse_connections().await;
    let ready = server.launch();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        server.logs().contains("refuses connections; retrying"),
        "says why it is not serving yet: {}",
        server.logs()
    );
    database.allow_connections().await;
    server.await_ready(ready);
    exchange_bootstrap_key(&server)
        .await
        .expect("serves once the database accepts connections");
}

/// PostgreSQL only: a database that refuses the credentials is no reason to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn start_up_fails_at_once_when_the_database_refuses_the_credentials() {
    let Ok(base) = std::env::var(crate::harness::POSTGRES_URL_VAR) else {
        return;
    };
    let (prefix, rest) = base.split_once("://").unwrap();
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let url = format!("{prefix}://no_such_role_{}@{host}", std::process::id());
    let data = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let output = crate::harness::serve_command()
        .args(["--database-url", &url, "--database-startup-wait", "60s"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "gave up after {:?}, not at once",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("retrying"), "{stderr}");
}
