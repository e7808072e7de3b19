//! Signing-key rotation: the next key is published before it signs, the old one stays published
//! until its tokens have expired, on a schedule, by a superuser or an operator at the command
//! line, with any of the three algorithms, and across replicas without a failed verification.

use crate::harness::{Backend, Server};
use crate::on_both_backends;
use crate::tokens::whoami_code;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokenmint::proto::admin::v1::{RotateSigningKeyRequest, SigningKey, signing_key::State};
use tonic::Code;

/// Refresh the keyring every second so tests see replicas converge quickly.
const FAST: &[&str] = &["--signing-key-refresh-period", "1s"];

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .unwrap_or_default()
}

fn published_kids(jwks: &str) -> Vec<String> {
    let set: Value = serde_json::from_str(jwks).unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn rotate(server: &Server, immediate: bool) -> Result<SigningKey, tonic::Status> {
    server
        .admin()
        .await
        .rotate_signing_key(RotateSigningKeyRequest { immediate })
        .await
        .map(|r| r.into_inner())
}

/// Polls until `done` holds for the JWKS, for at most ten seconds.
async fn wait_for_jwks(server: &Server, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let kids = published_kids(&server.jwks_json().await);
        if done(&kids) || start.elapsed() > Duration::from_secs(10) {
            return kids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_next_key_is_published_before_it_signs_and_the_old_one_kept_until_its_tokens_expire(
    backend: Backend,
) {
    let Some(server) = Server::start_with(backend, FAST).await else {
        return;
    };
    let old_token = server.admin_token().await;
    let old_kid = kid_of(&old_token);
    let next = rotate(&server, false).await.unwrap();
    assert_eq!(next.state, State::Pending as i32);
    let (created, activates) = (
        next.create_time.unwrap().seconds,
        next.activate_time.unwrap().seconds,
    );
    assert_eq!(activates - created, 3600, "the default publication period");
    assert_eq!(
        published_kids(&server.jwks_json().await),
        [old_kid.clone(), next.kid.clone()],
        "published at once"
    );
    assert_eq!(
        kid_of(&server.admin_token().await),
        old_kid,
        "but not yet signing"
    );
    // Rotating again while a key waits adds no second one.
    assert_eq!(rotate(&server, false).await.unwrap().kid, next.kid);

    server.advance_clock(3601);
    let new_token = server.admin_token().await;
    assert_eq!(kid_of(&new_token), next.kid, "the next key signs on time");
    assert_eq!(whoami_code(&server, &new_token).await, Code::Ok);
    assert!(
        published_kids(&server.jwks_json().await).contains(&old_kid),
        "the old key stays while its tokens may be unexpired"
    );

    // A day (the longest token lifetime) and a minute later, the old key is withdrawn.
    server.advance_clock(86_400 + 61);
    let kids = wait_for_jwks(&server, |kids| !kids.contains(&old_kid)).await;
    assert_eq!(kids, vec![next.kid.clone()]);
}

async fn an_immediate_rotation_signs_with_the_new_key_at_once(backend: Backend) {
    let Some(server) = Server::start_with(backend, FAST).await else {
        return;
    };
    let old_kid = kid_of(&server.admin_token().await);
    let next = rotate(&server, true).await.unwrap();
    assert_eq!(next.state, State::Active as i32);
    assert_ne!(next.kid, old_kid);
    let token = server.admin_token().await;
    assert_eq!(kid_of(&token), next.kid);
    assert_eq!(whoami_code(&server, &token).await, Code::Ok);
    assert!(published_kids(&server.jwks_json().await).contains(&old_kid));
}

async fn only_a_superuser_rotates_signing_keys(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let owner = server.principal_with_roles("owner", &["owner"]).await;
    let status = server
        .admin_for(&owner)
        .await
        .rotate_signing_key(RotateSigningKeyRequest { immediate: true })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(server.store().await.signing_keys().await.unwrap().len(), 1);
}

async fn an_operator_lists_and_rotates_keys_from_the_command_line(backend: Backend) {
    let Some(server) = Server::start_with(backend, FAST).await else {
        return;
    };
    let old_kid = kid_of(&server.admin_token().await);
    let rotated = server.cli(&["signing-keys", "rotate", "--json"]);
    assert!(rotated.status.success(), "{rotated:?}");
    let line: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    let new_kid = line["kid"].as_str().unwrap().to_owned();
    assert_eq!(line["state"], "PENDING");

    let listed = server.cli(&["signing-keys", "list", "--json"]);
    assert!(listed.status.success(), "{listed:?}");
    let states: Vec<(String, String)> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["kid"].as_str().unwrap().to_owned(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (old_kid.clone(), "ACTIVE".to_owned()),
            (new_kid.clone(), "PENDING".to_owned())
        ]
    );
    // The running server picks the key up from the database within its refresh period.
    let kids = wait_for_jwks(&server, |kids| kids.contains(&new_kid)).await;
    assert_eq!(kids, [old_kid, new_kid]);
}

async fn keys_rotate_on_schedule(backend: Backend) {
    let mut args = FAST.to_vec();
    args.extend(["--signing-key-rotation-period", "2h"]);
    let Some(server) = Server::start_with(backend, &args).await else {
        return;
    };
    let first = kid_of(&server.admin_token().await);
    // An hour in, one publication period before the key has signed for two hours, the next
    // key is published.
    server.advance_clock(3600);
    let kids = wait_for_jwks(&server, |kids| kids.len() == 2).await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert_eq!(kid_of(&server.admin_token().await), first);
    server.advance_clock(3601);
    let token = server.admin_token().await;
    assert_eq!(kid_of(&token), kids[1]);
    assert_eq!(whoami_code(&server, &token).await, Code::Ok);
    let stored = server.store().await.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 2, "one key per rotation, not one per refresh");
}

async fn every_algorithm_signs_tokens_outside_verifiers_accept(backend: Backend) {
    for (flag, alg, kty) in [
        ("ES256", jsonwebtoken::Algorithm::ES256, "EC"),
        ("RS256", jsonwebtoken::Algorithm::RS256, "RSA"),
    ] {
        let Some(server) = Server::start_with(backend, &["--signing-algorithm", flag]).await else {
            return;
        };
        // The database was bootstrapped with the default; the next key has the new algorithm.
        assert_eq!(
            jsonwebtoken::decode_header(&server.admin_token().await)
                .unwrap()
                .alg,
            jsonwebtoken::Algorithm::EdDSA
        );
        assert!(server.logs().contains("signing-keys rotate"));
        let next = rotate(&server, true).await.unwrap();
        assert_eq!(next.algorithm, flag);
        let token = server.admin_token().await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, alg);
        assert_eq!(whoami_code(&server, &token).await, Code::Ok);
        // An outside verifier with only the HTTP JWKS.
        let jwks: jsonwebtoken::jwk::JwkSet =
            reqwest::get(format!("{}/.well-known/jwks.json", server.http_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let jwk = jwks.find(&header.kid.clone().unwrap()).unwrap();
        assert_eq!(serde_json::to_value(jwk).unwrap()["kty"], Value::from(kty));
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_audience(&[server.issuer.as_str()]);
        validation.set_issuer(&[server.issuer.as_str()]);
        jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap();
    }
}

on_both_backends!(
    the_next_key_is_published_before_it_signs_and_the_old_one_kept_until_its_tokens_expire,
    an_immediate_rotation_signs_with_the_new_key_at_once,
    only_a_superuser_rotates_signing_keys,
    an_operator_lists_and_rotates_keys_from_the_command_line,
    keys_rotate_on_schedule,
    every_algorithm_signs_tokens_outside_verifiers_accept,
);

/// Two replicas of one PostgreSQL database under continuous exchange (on one) and verification
/// (on the other, and back): a signing-key rotation in the middle fails no verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn rotation_under_load_on_two_replicas_fails_no_verification() {
    let args = [
        "--signing-key-refresh-period",
        "1s",
        "--signing-key-publication-period",
        "3s",
    ];
    let Some(a) = Server::start_with(Backend::Postgres, &args).await else {
        return;
    };
    let b = a.replica(&args);
    let stop = Instant::now() + Duration::from_secs(8);
    let load = |mint: &'static str| {
        let (a, b) = (&a, &b);
        async move {
            let (minter, verifier) = if mint == "a" { (a, b) } else { (b, a) };
            let (mut kids, mut verified, mut failures) = (Vec::new(), 0u32, Vec::new());
            while Instant::now() < stop {
                let token = minter.admin_token().await;
                let kid = kid_of(&token);
                if !kids.contains(&kid) {
                    kids.push(kid.clone());
                }
                match whoami_code(verifier, &token).await {
                    Code::Ok => verified += 1,
                    other => failures.push((kid, other)),
                }
            }
            (kids, verified, failures)
        }
    };
    let rotation = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rotate(&a, false).await.unwrap()
    };
    let ((kids_ab, ok_ab, failed_ab), (kids_ba, ok_ba, failed_ba), next) =
        tokio::join!(load("a"), load("b"), rotation);
    assert!(
        failed_ab.is_empty() && failed_ba.is_empty(),
        "{failed_ab:?} {failed_ba:?}"
    );
    assert!(ok_ab > 10 && ok_ba > 10, "{ok_ab} {ok_ba}");
    assert_eq!(kids_ab.len(), 2, "replica A switched keys: {kids_ab:?}");
    assert_eq!(kids_ba.len(), 2, "replica B switched keys: {kids_ba:?}");
    assert_eq!(kids_ab[1], next.kid);
    assert_eq!(kids_ba[1], next.kid);
    assert_eq!(
        a.jwks_json().await,
        b.jwks_json().await,
        "both publish one JWKS"
    );
}
