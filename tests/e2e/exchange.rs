//! ExchangeApiKey: the happy path, the same answer for every wrong credential, scopes, TTLs and
//! network allowlists.

use crate::harness::{Backend, Server, create_key, create_user, key_request, violated_fields};
use crate::on_both_backends;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use tokenmint::proto::auth::v1::{ExchangeApiKeyRequest, WhoAmIRequest};
use tonic::Code;

fn exchange(key_id: &str, secret: &str) -> ExchangeApiKeyRequest {
    ExchangeApiKeyRequest {
        key_id: key_id.into(),
        secret: secret.into(),
        ..Default::default()
    }
}

async fn new_key_verifies_with_jsonwebtoken_against_the_http_jwks(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "ci-deployer").await;
    let (key, secret) = create_key(&mut admin, &user.id, "main").await;

    let response = server
        .auth()
        .await
        .exchange_api_key(exchange(&key.id, &secret))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.token_type, "Bearer");
    assert_eq!(response.expires_in, 3600);

    let jwks: JwkSet = reqwest::get(format!("{}/.well-known/jwks.json", server.http_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&response.access_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("token kid is in the JWKS");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[&server.issuer]);
    validation.set_issuer(&[&server.issuer]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &response.access_token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["client_id"], key.id.as_str());
    assert_eq!(
        claims["organization_id"],
        server.admin.organization_id.as_str()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert!(claims["nbf"].is_i64() && claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        response.expire_time.unwrap().seconds,
        claims["exp"].as_i64().unwrap()
    );
}

async fn each_token_has_a_unique_jti(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut jtis = std::collections::HashSet::new();
    for _ in 0..5 {
        let token = server.admin_token().await;
        let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&token)
            .unwrap()
            .claims;
        assert!(jtis.insert(claims["jti"].as_str().unwrap().to_owned()));
    }
}

async fn wrong_secret_and_unknown_key_get_the_same_answer(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "bot").await;
    let (key, _) = create_key(&mut admin, &user.id, "k").await;
    let (_, other_secret) = create_key(&mut admin, &user.id, "other").await;
    let mut auth = server.auth().await;

    let wrong_secret = auth
        .exchange_api_key(exchange(&key.id, &other_secret))
        .await
        .unwrap_err();
    let unknown_key = auth
        .exchange_api_key(exchange("ak_01jzzzzzzzzzzzzzzzzzzzzzzz", &other_secret))
        .await
        .unwrap_err();
    assert_eq!(wrong_secret.code(), Code::Unauthenticated);
    assert_eq!(unknown_key.code(), Code::Unauthenticated);
    assert_eq!(wrong_secret.message(), unknown_key.message());
}

async fn mistyped_secret_is_unauthenticated(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut secret: Vec<char> = server.admin.secret.chars().collect();
    let i = secret.len() - 10;
    secret[i] = if secret[i] == 'x' { 'y' } else { 'x' };
    let status = server
        .auth()
        .await
        .exchange_api_key(exchange(
            &server.admin.key_id,
            &secret.into_iter().collect::<String>(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn missing_or_malformed_exchange_fields_are_named(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let status = server
        .auth()
        .await
        .exchange_api_key(exchange("", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["key_id", "secret"]);
    let status = server
        .auth()
        .await
        .exchange_api_key(exchange("su_123", "x"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["key_id"]);
}

async fn requested_scope_and_ttl_narrow_the_token(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut request = exchange(&server.admin.key_id, &server.admin.secret);
    request.scope = "owner".into();
    request.requested_ttl = Some(prost_types::Duration {
        seconds: 120,
        nanos: 0,
    });
    let response = server
        .auth()
        .await
        .exchange_api_key(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.expires_in, 120);
    assert_eq!(response.scope, "owner");

    // An owner may ask for a viewer-only token, which then cannot write.
    request.scope = "viewer".into();
    let viewer_token = server
        .auth()
        .await
        .exchange_api_key(request)
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let whoami = server
        .auth_as(&viewer_token)
        .await
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whoami.scope, "viewer");
    assert_eq!(whoami.roles, ["owner", "superuser"]);
    let mut viewer = server.admin_as(&viewer_token).await;
    let status = viewer
        .create_service_user(tokenmint::proto::admin::v1::CreateServiceUserRequest {
            role_bindings: Vec::new(),
            organization_id: String::new(),
            service_user: Some(tokenmint::proto::admin::v1::ServiceUser {
                name: "nope".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

async fn scope_outside_the_keys_scopes_is_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let mut request = key_request(&server.admin.service_user_id, "monitoring");
    request.scopes = vec!["viewer".into()];
    let created = admin.create_api_key(request).await.unwrap().into_inner();
    let mut exchange_request = exchange(&created.api_key.unwrap().id, &created.secret);
    let response = server
        .auth()
        .await
        .exchange_api_key(exchange_request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.scope, "viewer",
        "a scoped key's token carries only its scopes"
    );
    exchange_request.scope = "owner".into();
    let status = server
        .auth()
        .await
        .exchange_api_key(exchange_request)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["scope"]);
}

async fn key_is_refused_outside_its_allowed_networks(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "net").await;
    let mut far = key_request(&user.id, "far");
    far.allowed_cidrs = vec!["10.0.0.0/8".into()];
    let far = admin.create_api_key(far).await.unwrap().into_inner();
    let mut near = key_request(&user.id, "near");
    near.allowed_cidrs = vec!["127.0.0.0/8".into(), "::1/128".into()];
    let near = admin.create_api_key(near).await.unwrap().into_inner();

    let status = server
        .auth()
        .await
        .exchange_api_key(exchange(&far.api_key.unwrap().id, &far.secret))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        server
            .auth()
            .await
            .exchange_api_key(exchange(&near.api_key.unwrap().id, &near.secret))
            .await
            .is_ok()
    );
}

async fn a_key_whose_stored_scopes_are_unreadable_is_refused_not_widened(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let mut request = key_request(&server.admin.service_user_id, "narrow");
    request.scopes = vec!["viewer".into()];
    let created = admin.create_api_key(request).await.unwrap().into_inner();
    let key_id = created.api_key.unwrap().id;
    set_key_column(&server, &key_id, "scopes", "not json".into()).await;
    let status = server
        .auth()
        .await
        .exchange_api_key(exchange(&key_id, &created.secret))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Internal,
        "fails closed instead of minting an unscoped token"
    );
}

/// Overwrites one column of a stored key, behind the server's back.
async fn set_key_column(server: &Server, key_id: &str, column: &str, value: sea_orm::Value) {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let update = Query::update()
        .table(Alias::new("api_keys"))
        .value(Alias::new(column), value)
        .and_where(Expr::col(Alias::new("id")).eq(key_id))
        .to_owned();
    server.database().await.execute(&update).await.unwrap();
}

/// Moves a key's expiry, as time passing would.
async fn set_key_expiry(server: &Server, key_id: &str, expire_time: chrono::DateTime<chrono::Utc>) {
    set_key_column(server, key_id, "expire_time", expire_time.into()).await;
}

async fn a_token_never_outlives_its_key(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "short-lived").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    set_key_expiry(
        &server,
        &key.id,
        chrono::Utc::now() + chrono::Duration::seconds(600),
    )
    .await;
    let response = server
        .auth()
        .await
        .exchange_api_key(exchange(&key.id, &secret))
        .await
        .unwrap()
        .into_inner();
    assert!(
        (590..=600).contains(&response.expires_in),
        "expires_in {} should stop at the key's expiry",
        response.expires_in
    );
}

async fn an_expired_key_stops_exchanging_and_its_tokens_go_inactive(backend: Backend) {
    // With the key cache off, the exchange path reads the expiry as stored.
    let Some(server) = Server::start_with(backend, &["--key-cache-ttl", "0s"]).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "expiring").await;
    let (key, secret) = create_key(&mut admin, &user.id, "k").await;
    let token = server.token_for(&key.id, &secret).await.unwrap();
    set_key_expiry(
        &server,
        &key.id,
        chrono::Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    assert!(!server.introspect(&token).await.active);
    assert_eq!(
        server.token_for(&key.id, &secret).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let read = admin
        .get_api_key(tokenmint::proto::admin::v1::GetApiKeyRequest { id: key.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        read.state,
        tokenmint::proto::admin::v1::api_key::State::Expired as i32
    );
}

on_both_backends!(
    a_token_never_outlives_its_key,
    an_expired_key_stops_exchanging_and_its_tokens_go_inactive,
    a_key_whose_stored_scopes_are_unreadable_is_refused_not_widened,
    new_key_verifies_with_jsonwebtoken_against_the_http_jwks,
    each_token_has_a_unique_jti,
    wrong_secret_and_unknown_key_get_the_same_answer,
    mistyped_secret_is_unauthenticated,
    missing_or_malformed_exchange_fields_are_named,
    requested_scope_and_ttl_narrow_the_token,
    scope_outside_the_keys_scopes_is_refused,
    key_is_refused_outside_its_allowed_networks,
);
