//! `tokenmint bench-fixture`: the bulk path load tests use to create many users and keys.

use crate::harness::*;
use crate::on_both_backends;
use std::os::unix::fs::PermissionsExt;
use tokenmint::proto::admin::v1::{ListAuditEventsRequest, ListServiceUsersRequest};

async fn the_benchmark_fixture_writes_working_keys_to_a_private_file(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys.txt");
    let output = server.cli(&[
        "bench-fixture",
        "--organization-id",
        &server.admin.organization_id,
        "--service-users",
        "3",
        "--keys-per-user",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{output:?}");

    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the secrets are readable by their owner only");
    let text = std::fs::read_to_string(&out).unwrap();
    let keys: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(keys.len(), 6, "{text}");
    for (key_id, secret) in &keys {
        server
            .token_for(key_id, secret)
            .await
            .expect("a fixture key exchanges");
    }
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(!logs.contains(keys[0].1), "no secret in the output");

    let mut admin = server.admin().await;
    let users = admin
        .list_service_users(ListServiceUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .service_users;
    assert_eq!(
        users
            .iter()
            .filter(|u| u.name.starts_with("bench-"))
            .count(),
        3
    );
    let events = admin
        .list_audit_events(ListAuditEventsRequest {
            filter: "action = CreateBenchmarkFixture".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(events.len(), 1, "the bulk write is on the trail");
    let verify = server.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

on_both_backends!(the_benchmark_fixture_writes_working_keys_to_a_private_file);
