//! Guessing gets slower without locking out the owner; forwarded addresses count only from
//! trusted proxies; tokens are minted only for allowed audiences. Each test calls from several
//! loopback source addresses (127.0.0.2, 127.0.0.3, …) to act as distinct clients.

use crate::harness::{Backend, Server, create_key, create_user, violated_fields};
use crate::on_both_backends;
use tokenmint::proto::auth::v1::{ExchangeApiKeyRequest, auth_service_client::AuthServiceClient};
use tonic::Code;
use tonic_types::StatusExt;

const LIMITS: &[&str] = &[
    "--throttle-failures-per-address",
    "5",
    "--throttle-failures-per-key",
    "3",
    "--throttle-window",
    "60s",
];

/// Exchanges from source address `from`, with extra metadata.
async fn exchange_from(
    server: &Server,
    from: &str,
    key_id: &str,
    secret: &str,
    forwarded_for: Option<&str>,
) -> Result<String, tonic::Status> {
    let mut client = AuthServiceClient::new(server.channel_from(from).await);
    let mut request = tonic::Request::new(ExchangeApiKeyRequest {
        key_id: key_id.into(),
        secret: secret.into(),
        ..Default::default()
    });
    if let Some(value) = forwarded_for {
        request
            .metadata_mut()
            .insert("x-forwarded-for", value.parse().unwrap());
    }
    client
        .exchange_api_key(request)
        .await
        .map(|r| r.into_inner().access_token)
}

/// A wrong secret of the right format (a real secret of another key).
async fn victim(server: &Server) -> (String, String, String) {
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "victim").await;
    let (key, secret) = create_key(&mut admin, &user.id, "prod").await;
    let (_, wrong) = create_key(&mut admin, &user.id, "decoy").await;
    (key.id, secret, wrong)
}

fn throttled(status: &tonic::Status) -> bool {
    status.code() == Code::ResourceExhausted
        && status
            .get_details_error_info()
            .is_some_and(|i| i.reason == "TOO_MANY_FAILURES")
        && status
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some_and(|d| d.as_secs() >= 1 && d.as_secs() <= 60)
}

async fn an_attacker_is_slowed_while_the_owner_still_gets_in(backend: Backend) {
    let Some(server) = Server::start_with(backend, LIMITS).await else {
        return;
    };
    let (key_id, secret, wrong) = victim(&server).await;
    for _ in 0..3 {
        let status = exchange_from(&server, "127.0.0.2", &key_id, &wrong, None)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = exchange_from(&server, "127.0.0.2", &key_id, &secret, None)
        .await
        .unwrap_err();
    assert!(
        throttled(&status),
        "a failing address is refused even with the right secret: {status:?}"
    );
    assert!(
        exchange_from(&server, "127.0.0.3", &key_id, &secret, None)
            .await
            .is_ok(),
        "the owner, from an address that has not been failing, gets in at once"
    );
    // An address that failed once against the key under attack waits too.
    exchange_from(&server, "127.0.0.4", &key_id, &wrong, None)
        .await
        .unwrap_err();
    let status = exchange_from(&server, "127.0.0.4", &key_id, &secret, None)
        .await
        .unwrap_err();
    assert!(throttled(&status), "{status:?}");

    // An address spraying guesses over many key IDs is refused outright, for any key.
    for i in 0..5 {
        let made_up = format!("ak_01jzzzzzzzzzzzzzzzzzzzzzz{i}");
        exchange_from(&server, "127.0.0.9", &made_up, &wrong, None)
            .await
            .unwrap_err();
    }
    let status = exchange_from(
        &server,
        "127.0.0.9",
        &server.admin.key_id,
        &server.admin.secret,
        None,
    )
    .await
    .unwrap_err();
    assert!(throttled(&status), "{status:?}");
    assert!(
        exchange_from(
            &server,
            "127.0.0.10",
            &server.admin.key_id,
            &server.admin.secret,
            None
        )
        .await
        .is_ok()
    );

    server.advance_clock(61);
    assert!(
        exchange_from(&server, "127.0.0.2", &key_id, &secret, None)
            .await
            .is_ok(),
        "the window has passed"
    );
}

async fn unknown_key_ids_are_throttled_exactly_like_known_ones(backend: Backend) {
    let Some(server) = Server::start_with(backend, LIMITS).await else {
        return;
    };
    let (key_id, _, wrong) = victim(&server).await;
    let unknown = "ak_01jzzzzzzzzzzzzzzzzzzzzzzz";
    let mut answers = Vec::new();
    for (from, id) in [("127.0.0.5", unknown), ("127.0.0.6", key_id.as_str())] {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let status = exchange_from(&server, from, id, &wrong, None)
                .await
                .unwrap_err();
            seen.push((status.code(), status.message().to_owned()));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][3].0, Code::ResourceExhausted);
}

async fn forwarded_addresses_count_only_from_trusted_proxies(backend: Backend) {
    let mut args = LIMITS.to_vec();
    args.extend(["--trusted-proxies", "127.0.0.7/32"]);
    let Some(server) = Server::start_with(backend, &args).await else {
        return;
    };
    let (key_id, secret, wrong) = victim(&server).await;
    // Through the trusted proxy, failures count for the client it names.
    for _ in 0..5 {
        exchange_from(&server, "127.0.0.7", &key_id, &wrong, Some("203.0.113.9"))
            .await
            .unwrap_err();
    }
    let status = exchange_from(&server, "127.0.0.7", &key_id, &secret, Some("203.0.113.9"))
        .await
        .unwrap_err();
    assert!(throttled(&status), "{status:?}");
    assert!(
        exchange_from(&server, "127.0.0.7", &key_id, &secret, Some("203.0.113.10"))
            .await
            .is_ok(),
        "another client behind the same proxy is not punished"
    );
    // From anywhere else the header is the client's own claim, and ignored.
    assert!(
        exchange_from(&server, "127.0.0.8", &key_id, &secret, Some("203.0.113.9"))
            .await
            .is_ok()
    );

    // Key allowlists judge the forwarded address too, and only from the trusted proxy.
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "fenced").await;
    let mut request = crate::harness::key_request(&user.id, "fenced");
    request.allowed_cidrs = vec!["203.0.113.0/24".into()];
    let fenced = admin.create_api_key(request).await.unwrap().into_inner();
    let fenced_id = fenced.api_key.unwrap().id;
    assert!(
        exchange_from(
            &server,
            "127.0.0.7",
            &fenced_id,
            &fenced.secret,
            Some("203.0.113.5")
        )
        .await
        .is_ok()
    );
    let status = exchange_from(
        &server,
        "127.0.0.8",
        &fenced_id,
        &fenced.secret,
        Some("203.0.113.5"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Proxies append to what the client sent: the header is read from the right, so junk the
    // client wrote in front changes nothing, and an unreadable hop next to the proxy leaves the
    // client unknown rather than taking the proxy (inside an internal allowlist) for it.
    let mut request = crate::harness::key_request(&user.id, "internal");
    request.allowed_cidrs = vec!["127.0.0.0/24".into()];
    let internal = admin.create_api_key(request).await.unwrap().into_inner();
    let internal_id = internal.api_key.unwrap().id;
    for (header, allowed) in [
        ("127.0.0.20", true),
        ("garbage, 203.0.113.7", false),
        (", 203.0.113.7", false),
        ("203.0.113.7, garbage", false),
        ("203.0.113.7, 127.0.0.21:443", true),
        ("127.0.0.20, [::1]:443", false),
        ("garbage, 127.0.0.20", true),
    ] {
        let outcome = exchange_from(
            &server,
            "127.0.0.7",
            &internal_id,
            &internal.secret,
            Some(header),
        )
        .await;
        assert_eq!(outcome.is_ok(), allowed, "{header:?}: {outcome:?}");
    }
    let outcome = exchange_from(
        &server,
        "127.0.0.7",
        &fenced_id,
        &fenced.secret,
        Some("garbage, 203.0.113.5"),
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
}

async fn audiences_outside_the_allowlist_are_refused(backend: Backend) {
    let Some(server) = Server::start_with(
        backend,
        &[
            "--allowed-audiences",
            "https://billing.internal,https://ledger.internal",
        ],
    )
    .await
    else {
        return;
    };
    let exchange = |audience: &'static str| {
        let server = &server;
        async move {
            server
                .auth()
                .await
                .exchange_api_key(ExchangeApiKeyRequest {
                    key_id: server.admin.key_id.clone(),
                    secret: server.admin.secret.clone(),
                    audience: audience.into(),
                    ..Default::default()
                })
                .await
        }
    };
    assert!(exchange("https://billing.internal").await.is_ok());
    assert!(exchange("").await.is_ok(), "the issuer itself");
    assert!(exchange("https://tokenmint.test").await.is_ok());
    let status = exchange("https://evil.example").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["audience"]);
}

async fn without_an_allowlist_any_well_formed_audience_is_minted(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let token = server
        .auth()
        .await
        .exchange_api_key(ExchangeApiKeyRequest {
            key_id: server.admin.key_id.clone(),
            secret: server.admin.secret.clone(),
            audience: "https://anything.internal".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    assert_eq!(
        server.introspect(&token).await.aud,
        "https://anything.internal"
    );
}

on_both_backends!(
    an_attacker_is_slowed_while_the_owner_still_gets_in,
    unknown_key_ids_are_throttled_exactly_like_known_ones,
    forwarded_addresses_count_only_from_trusted_proxies,
    audiences_outside_the_allowlist_are_refused,
    without_an_allowlist_any_well_formed_audience_is_minted,
);
