//! Secrets appear exactly once: never in logs, error messages, reads or the database.

use crate::harness::{Backend, Server, create_key, create_user};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{GetApiKeyRequest, ListApiKeysRequest};
use tokenmint::proto::auth::v1::ExchangeApiKeyRequest;

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn secrets_never_reach_logs_errors_reads_or_storage(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "secretive").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let mut auth = server.auth().await;

    let token = server.token_for(&key.id, &secret).await.unwrap();
    // Failures that carry the secret in the request.
    let wrong_key = auth
        .exchange_api_key(ExchangeApiKeyRequest {
            key_id: "ak_01jzzzzzzzzzzzzzzzzzzzzzzz".into(),
            secret: secret.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let bad_audience = auth
        .exchange_api_key(ExchangeApiKeyRequest {
            key_id: key.id.clone(),
            secret: secret.clone(),
            audience: "a b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    for status in [&wrong_key, &bad_audience] {
        assert!(!status.message().contains(&secret) && !contains(status.details(), &secret));
    }
    let read = admin
        .get_api_key(GetApiKeyRequest { id: key.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let listed = admin
        .list_api_keys(ListApiKeysRequest {
            service_user_id: user.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!format!("{read:?}{listed:?}").contains(&secret));

    let logs = server.logs();
    assert!(logs.contains("\"serving\""), "logs were captured");
    for credential in [&secret, &server.admin.secret, &token] {
        assert!(
            !logs.contains(credential.as_str()),
            "a credential reached the logs"
        );
    }
    let stored = server.stored_bytes().await;
    assert!(!stored.is_empty());
    assert!(
        contains(&stored, &key.id),
        "the dump does contain the key's row"
    );
    for credential in [&secret, &server.admin.secret] {
        assert!(
            !contains(&stored, credential),
            "a secret is stored in plain text"
        );
        assert!(
            !contains(&stored, &credential[5..25]),
            "part of a secret is stored in plain text"
        );
    }
}

on_both_backends!(secrets_never_reach_logs_errors_reads_or_storage);
