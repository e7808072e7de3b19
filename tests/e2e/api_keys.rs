//! API keys through the admin API: creation rules, reads without secrets, listing and names.

use crate::harness::{Backend, Server, create_key, create_user, key_request, violated_fields};
use crate::on_both_backends;
use std::collections::HashSet;
use tokenmint::proto::admin::v1::{GetApiKeyRequest, ListApiKeysRequest, api_key::State};
use tonic::Code;

fn days(n: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: n * 86_400,
        nanos: 0,
    })
}

async fn created_key_shows_its_settings_and_the_secret_once(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "exporter").await;
    server.grant_role(&user.id, "viewer").await;
    let mut request = key_request(&user.id, "metrics");
    request.description = "Prometheus exporter".into();
    request.expires_in = days(90);
    request.token_lifetime = Some(prost_types::Duration {
        seconds: 900,
        nanos: 0,
    });
    request.allowed_cidrs = vec!["10.1.2.3/8".into(), "2001:db8::1".into()];
    request.scopes = vec!["viewer".into()];
    let created = admin.create_api_key(request).await.unwrap().into_inner();
    assert!(created.secret.starts_with("tmsk_"));
    let key = created.api_key.unwrap();
    assert!(key.id.starts_with("ak_"));
    assert_eq!(key.service_user_id, user.id);
    assert_eq!(key.state, State::Active as i32);
    assert_eq!(key.token_lifetime.unwrap().seconds, 900);
    assert_eq!(key.allowed_cidrs, ["10.0.0.0/8", "2001:db8::1/128"]);
    assert_eq!(key.scopes, ["viewer"]);
    assert_eq!(
        key.expire_time.unwrap().seconds - key.create_time.unwrap().seconds,
        90 * 86_400
    );

    let read = admin
        .get_api_key(GetApiKeyRequest { id: key.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, key);
    assert!(
        !format!("{read:?}").contains(&created.secret[5..]),
        "a read never shows the secret"
    );
}

async fn expiry_outside_one_to_365_days_is_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "expiring").await;
    let too_short = Some(prost_types::Duration {
        seconds: 86_399,
        nanos: 0,
    });
    for expires_in in [
        None,
        too_short,
        days(366),
        Some(prost_types::Duration {
            seconds: -5,
            nanos: 0,
        }),
    ] {
        let mut request = key_request(&user.id, "k");
        request.expires_in = expires_in;
        let status = admin.create_api_key(request).await.unwrap_err();
        assert_eq!(
            (status.code(), violated_fields(&status)),
            (Code::InvalidArgument, vec!["expires_in".to_owned()]),
            "{expires_in:?}"
        );
    }
    for ok in [days(1), days(365)] {
        let mut request = key_request(&user.id, &format!("k{}", ok.unwrap().seconds));
        request.expires_in = ok;
        admin.create_api_key(request).await.unwrap();
    }
}

async fn bad_key_fields_are_each_named(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "picky").await;
    let mut request = key_request(&user.id, "Bad Name");
    request.token_lifetime = Some(prost_types::Duration {
        seconds: 5,
        nanos: 0,
    });
    request.allowed_cidrs = vec!["10.0.0.0/8".into(), "not-a-cidr".into()];
    request.scopes = vec!["root".into()];
    let status = admin.create_api_key(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["name", "token_lifetime", "allowed_cidrs[1]", "scopes[0]"]
    );
    let keys = admin
        .list_api_keys(ListApiKeysRequest {
            service_user_id: user.id,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        keys.into_inner().api_keys.is_empty(),
        "nothing invalid was stored"
    );
}

async fn key_for_unknown_user_is_not_found(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let status = admin
        .create_api_key(key_request("su_01jzzzzzzzzzzzzzzzzzzzzzzz", "k"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = admin
        .create_api_key(key_request("nope", "k"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["service_user_id"]);
}

async fn duplicate_key_name_for_one_user_is_already_exists(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let first = create_user(&mut admin, "first").await;
    let second = create_user(&mut admin, "second").await;
    create_key(&mut admin, &first.id, "deploy").await;
    create_key(&mut admin, &second.id, "deploy").await;
    let status = admin
        .create_api_key(key_request(&first.id, "deploy"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
}

async fn key_listing_pages_through_every_key_once(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "many-keys").await;
    let mut expected = HashSet::new();
    for i in 0..7 {
        expected.insert(
            create_key(&mut admin, &user.id, &format!("k{i}"))
                .await
                .0
                .id,
        );
    }
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = admin
            .list_api_keys(ListApiKeysRequest {
                service_user_id: user.id.clone(),
                page_size: 3,
                page_token: token,
                filter: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.api_keys.into_iter().map(|k| k.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
}

async fn a_scope_above_the_callers_role_cannot_be_granted(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    // An owner whose token is narrowed to admin may not mint an owner-scoped key.
    let request = tokenmint::proto::auth::v1::ExchangeApiKeyRequest {
        key_id: server.admin.key_id.clone(),
        secret: server.admin.secret.clone(),
        scope: "admin".into(),
        ..Default::default()
    };
    let token = server
        .auth()
        .await
        .exchange_api_key(request.clone())
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let mut admin = server.admin_as(&token).await;
    let mut key = key_request(&server.admin.service_user_id, "elevated");
    key.scopes = vec!["owner".into()];
    assert_eq!(
        admin.create_api_key(key).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

on_both_backends!(
    created_key_shows_its_settings_and_the_secret_once,
    expiry_outside_one_to_365_days_is_refused,
    bad_key_fields_are_each_named,
    key_for_unknown_user_is_not_found,
    duplicate_key_name_for_one_user_is_already_exists,
    key_listing_pages_through_every_key_once,
    a_scope_above_the_callers_role_cannot_be_granted,
);
