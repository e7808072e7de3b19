//! Bearer tokens on the admin API: forged ones are rejected, and a token stops working the
//! moment its key is revoked or its user disabled or deleted (introspection agrees).

use crate::harness::{Backend, Server, create_key, create_user};
use crate::on_both_backends;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokenmint::proto::admin::v1::{
    DeleteServiceUserRequest, DisableServiceUserRequest, EnableServiceUserRequest,
    GetServiceUserRequest, RevokeApiKeyRequest,
};
use tokenmint::proto::auth::v1::{IntrospectTokenRequest, WhoAmIRequest};
use tokenmint_token::KeyEncryptionKey;
use tonic::Code;

/// The server's own signing key, decrypted the way the server does it, to forge tokens that
/// differ from real ones in one claim only.
pub async fn server_signing_key(server: &Server) -> (String, Vec<u8>) {
    let secrets: Value = serde_json::from_str(
        &std::fs::read_to_string(server.data_dir.path().join("secrets.json")).unwrap(),
    )
    .unwrap();
    let kek = STANDARD
        .decode(secrets["key_encryption_key"].as_str().unwrap())
        .unwrap();
    let key = server.store().await.signing_keys().await.unwrap().remove(0);
    let pkcs8 = KeyEncryptionKey::new(&kek)
        .unwrap()
        .open(&key.kid, &key.encrypted_private_key)
        .unwrap();
    (key.kid, pkcs8)
}

pub fn claims_of(token: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token)
        .unwrap()
        .claims
}

pub fn sign(kid: &str, pkcs8: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(pkcs8)).unwrap()
}

pub async fn whoami_code(server: &Server, token: &str) -> Code {
    match server.auth_as(token).await.who_am_i(WhoAmIRequest {}).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn admin_code(server: &Server, token: &str) -> Code {
    let id = server.admin.service_user_id.clone();
    match server
        .admin_as(token)
        .await
        .get_service_user(GetServiceUserRequest { id })
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn forged_tokens_are_rejected_by_the_admin_api(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let genuine = server.admin_token().await;
    assert_eq!(
        admin_code(&server, &genuine).await,
        Code::Ok,
        "the genuine token works"
    );
    let (kid, pkcs8) = server_signing_key(&server).await;
    let claims = claims_of(&genuine);
    let resigned = sign(&kid, &pkcs8, &claims);
    assert_eq!(
        admin_code(&server, &resigned).await,
        Code::Ok,
        "forging harness signs like the server"
    );

    let parts: Vec<&str> = genuine.split('.').collect();
    let mut forgeries = Vec::new();
    // alg none, no signature.
    let none_header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string());
    forgeries.push(("alg none", format!("{none_header}.{}.", parts[1])));
    // Payload changed, signature kept.
    let mut elevated = claims.clone();
    elevated["sub"] = json!("su_01jzzzzzzzzzzzzzzzzzzzzzzz");
    forgeries.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(elevated.to_string()),
            parts[2]
        ),
    ));
    // Signature changed.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    forgeries.push((
        "tampered signature",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        ),
    ));
    // Properly signed, but for another audience.
    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("https://billing.internal");
    forgeries.push(("wrong audience", sign(&kid, &pkcs8, &other_audience)));
    // Properly signed, but expired.
    let mut expired = claims.clone();
    expired["exp"] = json!(claims["iat"].as_i64().unwrap() - 300);
    forgeries.push(("expired", sign(&kid, &pkcs8, &expired)));
    // Properly signed, wrong issuer.
    let mut issuer = claims.clone();
    issuer["iss"] = json!("https://evil.test");
    forgeries.push(("wrong issuer", sign(&kid, &pkcs8, &issuer)));
    // Signed by a key the server does not know.
    let stranger = tokenmint_token::generate_ed25519(&ring::rand::SystemRandom::new()).unwrap();
    forgeries.push((
        "unknown kid",
        sign(&stranger.kid, &stranger.private_pkcs8, &claims),
    ));
    forgeries.push((
        "stranger key under our kid",
        sign(&kid, &stranger.private_pkcs8, &claims),
    ));
    forgeries.push(("garbage", "not.a.jwt".to_owned()));

    for (what, token) in forgeries {
        assert_eq!(
            admin_code(&server, &token).await,
            Code::Unauthenticated,
            "{what}"
        );
    }
}

async fn missing_bearer_token_is_unauthenticated(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut client = tokenmint::proto::admin::v1::admin_service_client::AdminServiceClient::new(
        server.channel().await,
    );
    let status = client
        .get_service_user(GetServiceUserRequest {
            id: server.admin.service_user_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn revoked_key_stops_exchanging_and_its_tokens_go_inactive(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "worker").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let token = server.token_for(&key.id, &secret).await.unwrap();
    let active = server.introspect(&token).await;
    assert!(active.active);
    assert_eq!(active.sub, user.id);
    assert_eq!(active.client_id, key.id);
    assert_eq!(active.organization_id, server.admin.organization_id);

    let revoked = admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: key.id.clone(),
            reason: "leaked".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        revoked.state,
        tokenmint::proto::admin::v1::api_key::State::Revoked as i32
    );
    assert_eq!(revoked.revoke_reason, "leaked");
    assert!(revoked.revoke_time.is_some());

    assert_eq!(
        server.token_for(&key.id, &secret).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        server.introspect(&token).await,
        Default::default(),
        "an inactive token gets active=false and nothing else"
    );
    assert_eq!(whoami_code(&server, &token).await, Code::Unauthenticated);
}

async fn revoking_the_callers_own_key_ends_its_admin_access_at_once(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let token = server.admin_token().await;
    let mut admin = server.admin_as(&token).await;
    admin
        .revoke_api_key(RevokeApiKeyRequest {
            id: server.admin.key_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(admin_code(&server, &token).await, Code::Unauthenticated);
}

async fn disabled_user_cannot_exchange_until_enabled(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "batch").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let token = server.token_for(&key.id, &secret).await.unwrap();

    let disabled = admin
        .disable_service_user(DisableServiceUserRequest {
            id: user.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        disabled.state,
        tokenmint::proto::admin::v1::service_user::State::Disabled as i32
    );
    assert_eq!(
        server.token_for(&key.id, &secret).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(!server.introspect(&token).await.active);

    admin
        .enable_service_user(EnableServiceUserRequest {
            id: user.id.clone(),
        })
        .await
        .unwrap();
    assert!(server.token_for(&key.id, &secret).await.is_ok());
    assert!(
        server.introspect(&token).await.active,
        "an unexpired token of a re-enabled user is active again"
    );
}

async fn deleted_users_tokens_go_inactive(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "gone").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let token = server.token_for(&key.id, &secret).await.unwrap();
    admin
        .delete_service_user(DeleteServiceUserRequest {
            id: user.id.clone(),
            force: true,
        })
        .await
        .unwrap();
    assert!(!server.introspect(&token).await.active);
    assert_eq!(
        server.token_for(&key.id, &secret).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

async fn introspection_needs_an_active_bearer(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let token = server.admin_token().await;
    let status = server
        .auth()
        .await
        .introspect_token(IntrospectTokenRequest { token })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn introspection_hides_other_organizations_tokens(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let foreign = server.foreign_principal().await;
    let foreign_token = server
        .token_for(&foreign.key_id, &foreign.secret)
        .await
        .unwrap();
    let admin_token = server.admin_token().await;
    // The foreign principal asks about the admin's token: another organization, so inactive.
    let answer = server.introspect_as(&foreign_token, &admin_token).await;
    assert_eq!(answer, Default::default());
    // It may ask about its own token.
    let own = server.introspect_as(&foreign_token, &foreign_token).await;
    assert!(own.active);
    assert_eq!(own.organization_id, foreign.organization_id);
    // The bootstrap admin is a superuser and sees every organization's tokens.
    assert!(server.introspect(&foreign_token).await.active);
}

/// A signing key added to the shared store after this replica started (as another replica's
/// rotation would add it) verifies here without a restart: an unknown `kid` makes the replica
/// re-read its keys.
async fn a_signing_key_added_by_another_replica_verifies_without_a_restart(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let genuine = server.admin_token().await;
    let secrets: Value = serde_json::from_str(
        &std::fs::read_to_string(server.data_dir.path().join("secrets.json")).unwrap(),
    )
    .unwrap();
    let kek = KeyEncryptionKey::new(
        &STANDARD
            .decode(secrets["key_encryption_key"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair = tokenmint_token::generate_ed25519(&rng).unwrap();
    let sealed = kek.seal(&rng, &pair.kid, &pair.private_pkcs8).unwrap();
    let tx = server.store().await.begin().await.unwrap();
    tx.insert_signing_key(tokenmint_store::SigningKey {
        kid: pair.kid.clone(),
        algorithm: pair.algorithm.to_owned(),
        public_key: pair.public_key.clone(),
        encrypted_private_key: sealed,
        create_time: chrono::Utc::now(),
        retire_time: None,
        activate_time: chrono::Utc::now() + chrono::TimeDelta::hours(1),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let signed_by_new_key = sign(&pair.kid, &pair.private_pkcs8, &claims_of(&genuine));
    assert_eq!(whoami_code(&server, &signed_by_new_key).await, Code::Ok);
    assert!(
        server.jwks_json().await.contains(&pair.kid),
        "the JWKS publishes it too"
    );
    assert_eq!(
        whoami_code(&server, &genuine).await,
        Code::Ok,
        "the first key still verifies and still signs"
    );
}

on_both_backends!(
    a_signing_key_added_by_another_replica_verifies_without_a_restart,
    introspection_hides_other_organizations_tokens,
    forged_tokens_are_rejected_by_the_admin_api,
    missing_bearer_token_is_unauthenticated,
    revoked_key_stops_exchanging_and_its_tokens_go_inactive,
    revoking_the_callers_own_key_ends_its_admin_access_at_once,
    disabled_user_cannot_exchange_until_enabled,
    deleted_users_tokens_go_inactive,
    introspection_needs_an_active_bearer,
);
