//! Attacks on tokens and on the exchange, each named: header tricks, claim tricks, bit flips,
//! tokens of dead keys, oversized requests, and `jti` uniqueness.

use crate::harness::{Backend, Server, create_key, create_user};
use crate::on_both_backends;
use crate::tokens::{claims_of, server_signing_key, sign, whoami_code};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::Duration;
use tonic::Code;

/// A compact JWS from a header and claims, signed with Ed25519 `pkcs8` (when given).
fn raw_token(header: &Value, claims: &Value, pkcs8: Option<&[u8]>) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match pkcs8 {
        Some(pkcs8) => {
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8).unwrap();
            URL_SAFE_NO_PAD.encode(pair.sign(signing_input.as_bytes()).as_ref())
        }
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

async fn headers_naming_another_algorithm_or_key_are_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let genuine = server.admin_token().await;
    let claims = claims_of(&genuine);
    let (kid, pkcs8) = server_signing_key(&server).await;
    let public_key = server.store().await.signing_keys().await.unwrap()[0]
        .public_key
        .clone();
    let mut refused = Vec::new();
    // alg none, with and without a signature part.
    let none = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
    refused.push(("alg none", raw_token(&none, &claims, None)));
    refused.push(("alg none signed", raw_token(&none, &claims, Some(&pkcs8))));
    // HS256 keyed with the public key, as a verifier that trusts `alg` would check it.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    hs.typ = Some("at+jwt".into());
    refused.push((
        "HS256 with the public key as secret",
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public_key)).unwrap(),
    ));
    let jwk_b64 = URL_SAFE_NO_PAD.encode(&public_key);
    refused.push((
        "HS256 with the JWK x as secret",
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(jwk_b64.as_bytes())).unwrap(),
    ));
    // kid: unknown, oversized, injection-looking.
    for bad_kid in [
        "unknown-kid".to_owned(),
        "k".repeat(4 * 1024),
        "' OR '1'='1".to_owned(),
        "../../../../etc/passwd".to_owned(),
        format!("{kid}\u{0}"),
    ] {
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": bad_kid});
        refused.push(("bad kid", raw_token(&header, &claims, Some(&pkcs8))));
    }
    // No kid at all, and typ JWT instead of at+jwt (both signed by the real key).
    refused.push((
        "no kid",
        raw_token(
            &json!({"alg": "EdDSA", "typ": "at+jwt"}),
            &claims,
            Some(&pkcs8),
        ),
    ));
    refused.push((
        "typ JWT",
        raw_token(
            &json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}),
            &claims,
            Some(&pkcs8),
        ),
    ));
    for (what, token) in &refused {
        assert_eq!(
            whoami_code(&server, token).await,
            Code::Unauthenticated,
            "{what}"
        );
    }
    // Past the header-size limit the call never reaches the verifier; it is refused all the same.
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k".repeat(64 * 1024)});
    let huge = raw_token(&header, &claims, Some(&pkcs8));
    assert_ne!(whoami_code(&server, &huge).await, Code::Ok);
    assert!(
        !server.logs().contains("' OR '1'='1"),
        "nothing from the header reaches the logs"
    );
}

async fn key_urls_in_the_header_are_never_fetched(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    // A listener standing in for an attacker's key server: any connection to it is a fetch.
    let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let url = format!("http://{}/jwks.json", bait.local_addr().unwrap());
    let claims = claims_of(&server.admin_token().await);
    let stranger = tokenmint_token::generate_ed25519(&ring::rand::SystemRandom::new()).unwrap();
    let stranger_x = URL_SAFE_NO_PAD.encode(&stranger.public_key);
    for header in [
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": stranger.kid, "jku": url}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": stranger.kid, "x5u": url}),
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": stranger.kid,
               "jwk": {"kty": "OKP", "crv": "Ed25519", "x": stranger_x}}),
    ] {
        let token = raw_token(&header, &claims, Some(&stranger.private_pkcs8));
        assert_eq!(whoami_code(&server, &token).await, Code::Unauthenticated);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bait.accept().is_err(), "the server fetched a key URL");
}

async fn claims_out_of_time_or_of_the_wrong_type_are_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let genuine = server.admin_token().await;
    let claims = claims_of(&genuine);
    let (kid, pkcs8) = server_signing_key(&server).await;
    let iat = claims["iat"].as_i64().unwrap();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        change(&mut c);
        sign(&kid, &pkcs8, &c)
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", with(&|c| c["exp"] = json!(iat - 120))),
        ("not yet valid", with(&|c| c["nbf"] = json!(iat + 3600))),
        (
            "exp as a string",
            with(&|c| c["exp"] = json!((iat + 600).to_string())),
        ),
        (
            "nbf as a string",
            with(&|c| c["nbf"] = json!(iat.to_string())),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://evil.test")),
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("https://other.internal")),
        ),
        (
            "aud as a list",
            with(&|c| c["aud"] = json!(["https://other.internal"])),
        ),
    ];
    for (what, token) in cases {
        assert_eq!(
            whoami_code(&server, &token).await,
            Code::Unauthenticated,
            "{what}"
        );
    }
}

async fn one_flipped_bit_in_any_part_is_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let genuine = server.admin_token().await;
    assert_eq!(whoami_code(&server, &genuine).await, Code::Ok);
    let parts: Vec<Vec<u8>> = genuine
        .split('.')
        .map(|p| URL_SAFE_NO_PAD.decode(p).unwrap())
        .collect();
    for part in 0..3 {
        // A bit in the middle of the part (a flipped bit in a JSON part may also break it).
        for byte in [0, parts[part].len() / 2, parts[part].len() - 1] {
            let mut flipped = parts.clone();
            flipped[part][byte] ^= 0x02;
            let token = flipped
                .iter()
                .map(|p| URL_SAFE_NO_PAD.encode(p))
                .collect::<Vec<_>>()
                .join(".");
            assert_eq!(
                whoami_code(&server, &token).await,
                Code::Unauthenticated,
                "part {part}, byte {byte}"
            );
        }
    }
}

async fn tokens_of_expired_keys_and_retired_signing_keys_are_refused(backend: Backend) {
    let Some(server) = Server::start_with(backend, &["--signing-key-refresh-period", "1s"]).await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "short-lived").await;
    server.grant_role(&user.id, "viewer").await;
    let mut request = crate::harness::key_request(&user.id, "one-day");
    request.expires_in = Some(prost_types::Duration {
        seconds: 86_400,
        nanos: 0,
    });
    let created = admin.create_api_key(request).await.unwrap().into_inner();
    let key_id = created.api_key.unwrap().id;
    let token = server.token_for(&key_id, &created.secret).await.unwrap();
    let (old_kid, old_pkcs8) = server_signing_key(&server).await;
    // A rotation, and a day and a bit later: the key has expired, and the old signing key is
    // withdrawn from the JWKS.
    admin
        .rotate_signing_key(tokenmint::proto::admin::v1::RotateSigningKeyRequest {
            immediate: true,
        })
        .await
        .unwrap();
    server.advance_clock(2 * 86_400);
    assert!(server.token_for(&key_id, &created.secret).await.is_err());
    assert_eq!(
        server.introspect(&token).await,
        tokenmint::proto::auth::v1::IntrospectTokenResponse::default(),
        "RFC 7662: an inactive token gets `active: false` and nothing else"
    );
    // A token the old signing key signs now, with fresh times, is refused once that key is
    // withdrawn (within the refresh period).
    let claims = claims_of(&server.admin_token().await);
    let forged = sign(&old_kid, &old_pkcs8, &claims);
    let start = std::time::Instant::now();
    while whoami_code(&server, &forged).await != Code::Unauthenticated
        && start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(whoami_code(&server, &forged).await, Code::Unauthenticated);
    assert!(!server.jwks_json().await.contains(&old_kid));
}

async fn a_four_mebibyte_request_is_refused_without_harm(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let huge = "a".repeat(4 * 1024 * 1024);
    let status = server
        .auth()
        .await
        .exchange_api_key(tokenmint::proto::auth::v1::ExchangeApiKeyRequest {
            key_id: server.admin.key_id.clone(),
            secret: huge,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(
        server
            .token_for(&server.admin.key_id, &server.admin.secret)
            .await
            .is_ok(),
        "the server still answers"
    );
}

async fn ten_thousand_tokens_all_carry_unique_ids(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "busy").await;
    let (key, secret) = create_key(&mut admin, &user.id, "busy").await;
    let channel = server.channel().await;
    let tasks = (0..8).map(|_| {
        let mut client = tokenmint::proto::auth::v1::auth_service_client::AuthServiceClient::new(
            channel.clone(),
        );
        let (key_id, secret) = (key.id.clone(), secret.clone());
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(1250);
            for _ in 0..1250 {
                let token = client
                    .exchange_api_key(tokenmint::proto::auth::v1::ExchangeApiKeyRequest {
                        key_id: key_id.clone(),
                        secret: secret.clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .access_token;
                ids.push(claims_of(&token)["jti"].as_str().unwrap().to_owned());
            }
            ids
        })
    });
    let mut ids: Vec<String> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    assert_eq!(ids.len(), 10_000);
    use base64::Engine;
    assert!(
        ids.iter()
            .all(|id| base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(id)
                .is_ok_and(|bits| bits.len() == 16)),
        "every jti is 128 bits, base64url"
    );
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10_000, "every jti is unique");
}

on_both_backends!(
    headers_naming_another_algorithm_or_key_are_refused,
    key_urls_in_the_header_are_never_fetched,
    claims_out_of_time_or_of_the_wrong_type_are_refused,
    one_flipped_bit_in_any_part_is_refused,
    tokens_of_expired_keys_and_retired_signing_keys_are_refused,
    a_four_mebibyte_request_is_refused_without_harm,
    ten_thousand_tokens_all_carry_unique_ids,
);
