//! The OAuth 2.0 token endpoint (client credentials) and the HTTP metadata and probes: it mints
//! what the gRPC exchange mints, and every bad request gets its RFC 6749 error.

use crate::harness::{Backend, Server, create_user, tampered_secret};
use crate::on_both_backends;
use crate::tokens::{claims_of, whoami_code};
use base64::Engine;
use serde_json::Value;
use tonic::Code;

const FORM: &str = "application/x-www-form-urlencoded";

/// Form-encodes pairs.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

struct Answer {
    status: u16,
    json: Value,
    headers: reqwest::header::HeaderMap,
    text: String,
}

async fn post(
    server: &Server,
    path: &str,
    content_type: &str,
    body: String,
    basic: Option<String>,
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.http_url))
        .header("content-type", content_type)
        .body(body);
    if let Some(basic) = basic {
        request = request.header("authorization", basic);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Answer {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
        text,
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

async fn the_token_endpoint_mints_what_the_grpc_exchange_mints(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let (id, secret) = (server.admin.key_id.clone(), server.admin.secret.clone());
    let by_form = post(
        &server,
        "/oauth2/token",
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "owner"),
        ]),
        None,
    )
    .await;
    assert_eq!(by_form.status, 200, "{}", by_form.text);
    assert_eq!(by_form.headers["cache-control"], "no-store");
    assert_eq!(by_form.json["token_type"], "Bearer");
    assert_eq!(by_form.json["scope"], "owner");
    assert!(by_form.json["expires_in"].as_i64().unwrap() > 0);
    let token = by_form.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        whoami_code(&server, &token).await,
        Code::Ok,
        "usable on the gRPC API"
    );

    let by_basic = post(
        &server,
        "/oauth2/token",
        FORM,
        form(&[("grant_type", "client_credentials")]),
        Some(basic(&id, &secret)),
    )
    .await;
    assert_eq!(by_basic.status, 200, "{}", by_basic.text);
    let from_http = claims_of(by_basic.json["access_token"].as_str().unwrap());
    let from_grpc = claims_of(&server.admin_token().await);
    for claim in ["iss", "sub", "aud", "client_id", "scope", "organization_id"] {
        assert_eq!(from_http[claim], from_grpc[claim], "{claim}");
    }
}

/// What a case sends (name, content type, body, Authorization) and the status and `error` it
/// must get.
type BadRequest<'a> = (&'a str, &'a str, String, Option<String>, u16, &'a str);

async fn bad_requests_get_their_rfc6749_error_and_never_the_secret(backend: Backend) {
    let Some(server) =
        Server::start_with(backend, &["--allowed-audiences", "https://api.internal"]).await
    else {
        return;
    };
    let (id, secret) = (server.admin.key_id.clone(), server.admin.secret.clone());
    let good = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ];
        pairs.extend_from_slice(extra);
        form(&pairs)
    };
    let wrong = tampered_secret(&secret);
    let cases: Vec<BadRequest> = vec![
        (
            "json body",
            "application/json",
            r#"{"grant_type":"client_credentials"}"#.into(),
            None,
            400,
            "invalid_request",
        ),
        (
            "no grant_type",
            FORM,
            form(&[("client_id", &id), ("client_secret", &secret)]),
            None,
            400,
            "invalid_request",
        ),
        (
            "password grant",
            FORM,
            form(&[("grant_type", "password"), ("client_id", &id)]),
            None,
            400,
            "unsupported_grant_type",
        ),
        (
            "duplicate parameter",
            FORM,
            format!("{}&scope=owner&scope=viewer", good(&[])),
            None,
            400,
            "invalid_request",
        ),
        (
            "Basic and form",
            FORM,
            good(&[]),
            Some(basic(&id, &secret)),
            400,
            "invalid_request",
        ),
        (
            "malformed Basic",
            FORM,
            form(&[("grant_type", "client_credentials")]),
            Some("Basic !!!".into()),
            401,
            "invalid_client",
        ),
        (
            "no credentials",
            FORM,
            form(&[("grant_type", "client_credentials")]),
            None,
            401,
            "invalid_client",
        ),
        (
            "wrong secret",
            FORM,
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &wrong),
            ]),
            None,
            401,
            "invalid_client",
        ),
        (
            "scope not carried",
            FORM,
            good(&[("scope", "viewer admin nonsense")]),
            None,
            400,
            "invalid_scope",
        ),
        (
            "audience not allowed",
            FORM,
            good(&[("audience", "https://evil.example")]),
            None,
            400,
            "invalid_target",
        ),
        (
            "resource not allowed",
            FORM,
            good(&[("resource", "https://evil.example")]),
            None,
            400,
            "invalid_target",
        ),
        (
            "oversized body",
            FORM,
            format!("{}&pad={}", good(&[]), "a".repeat(9000)),
            None,
            413,
            "invalid_request",
        ),
    ];
    for (what, content_type, body, auth, status, error) in cases {
        let answer = post(&server, "/oauth2/token", content_type, body, auth).await;
        assert_eq!(
            (answer.status, answer.json["error"].as_str()),
            (status, Some(error)),
            "{what}: {}",
            answer.text
        );
        assert!(answer.json["error_description"].is_string(), "{what}");
        assert_eq!(answer.headers["cache-control"], "no-store", "{what}");
        assert!(
            !answer.text.contains(&secret[5..]),
            "{what} echoes the secret"
        );
        if status == 401 {
            assert!(answer.headers.contains_key("www-authenticate"), "{what}");
        }
    }
    let in_query = post(
        &server,
        &format!("/oauth2/token?client_secret={secret}"),
        FORM,
        good(&[]),
        None,
    )
    .await;
    assert_eq!(in_query.status, 400);
    assert_eq!(in_query.json["error"], "invalid_request");
    let allowed = post(
        &server,
        "/oauth2/token",
        FORM,
        good(&[("audience", "https://api.internal")]),
        None,
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
}

async fn a_refused_network_and_a_throttled_client_get_their_errors(backend: Backend) {
    let Some(server) = Server::start_with(
        backend,
        &[
            "--throttle-failures-per-address",
            "3",
            "--throttle-failures-per-key",
            "100",
        ],
    )
    .await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "fenced").await;
    let mut request = crate::harness::key_request(&user.id, "fenced");
    request.allowed_cidrs = vec!["10.0.0.0/8".into()];
    let fenced = admin.create_api_key(request).await.unwrap().into_inner();
    let fenced_id = fenced.api_key.unwrap().id;
    let refused = post(
        &server,
        "/oauth2/token",
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &fenced_id),
            ("client_secret", &fenced.secret),
        ]),
        None,
    )
    .await;
    assert_eq!(
        (refused.status, refused.json["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    let wrong = tampered_secret(&fenced.secret);
    for _ in 0..3 {
        let answer = post(
            &server,
            "/oauth2/token",
            FORM,
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &fenced_id),
                ("client_secret", &wrong),
            ]),
            None,
        )
        .await;
        assert_eq!(answer.status, 401);
    }
    let throttled = post(
        &server,
        "/oauth2/token",
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &server.admin.key_id),
            ("client_secret", &server.admin.secret),
        ]),
        None,
    )
    .await;
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    assert_eq!(throttled.json["error"], "temporarily_unavailable");
    let retry: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
}

async fn the_metadata_advertises_only_what_exists(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let metadata: Value = reqwest::get(format!("{}{path}", server.http_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["issuer"], server.issuer.as_str());
        assert_eq!(
            metadata["token_endpoint"],
            format!("{}/oauth2/token", server.issuer)
        );
        assert_eq!(
            metadata["grant_types_supported"],
            serde_json::json!(["client_credentials"])
        );
        assert_eq!(metadata["response_types_supported"], serde_json::json!([]));
        assert!(
            metadata
                .get("id_token_signing_alg_values_supported")
                .is_none()
        );
    }
    for (path, status) in [("/healthz", 200), ("/readyz", 200)] {
        let answer = reqwest::get(format!("{}{path}", server.http_url))
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{path}");
    }
}

async fn introspection_over_http_answers_like_the_grpc_call(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let caller = server.admin_token().await;
    let token = server.admin_token().await;
    let introspect = |bearer: Option<String>, token: String| {
        let url = format!("{}/oauth2/introspect", server.http_url);
        async move {
            let mut request = reqwest::Client::new()
                .post(url)
                .header("content-type", FORM)
                .body(form(&[("token", &token)]));
            if let Some(bearer) = bearer {
                request = request.header("authorization", format!("Bearer {bearer}"));
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, active) = introspect(Some(caller.clone()), token.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(active["active"], true);
    assert_eq!(active["client_id"], server.admin.key_id.as_str());
    let grpc = server.introspect(&token).await;
    assert_eq!(active["jti"], grpc.jti.as_str());
    let (_, inactive) = introspect(Some(caller.clone()), "not.a.token".into()).await;
    assert_eq!(inactive, serde_json::json!({"active": false}));
    let (status, _) = introspect(None, token.clone()).await;
    assert_eq!(status, 401, "needs an active principal's bearer token");
}

/// The value of the sample `name{labels}` in a Prometheus exposition, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_appear_and_move_with_traffic(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let scrape = || {
        let url = format!("{}/metrics", server.http_url);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let before = scrape().await;
    assert!(before.contains("tokenmint_build_info"), "{before}");
    assert!(before.contains("tokenmint_db_pool_connections"));
    server.admin_token().await;
    server.admin_token().await;
    let _ = server.token_for(&server.admin.key_id, "tmsk_wrong").await;
    let http = post(
        &server,
        "/oauth2/token",
        FORM,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &server.admin.key_id),
            ("client_secret", &server.admin.secret),
        ]),
        None,
    )
    .await;
    assert_eq!(http.status, 200);
    // A call to a method that does not exist is labelled `unknown`, not by its path.
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path = format!("/made.Up/Path{}", "x".repeat(40));
    let _ = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::try_from(path).unwrap(),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    let after = scrape().await;
    let grpc_ok = r#"tokenmint_exchanges_total{face="grpc",outcome="OK"}"#;
    assert!(
        sample(&after, grpc_ok) - sample(&before, grpc_ok) >= 2.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            r#"tokenmint_exchanges_total{face="http",outcome="OK"}"#
        ),
        1.0
    );
    assert!(
        sample(
            &after,
            r#"tokenmint_exchanges_total{face="grpc",outcome="INVALID_ARGUMENT"}"#
        ) + sample(
            &after,
            r#"tokenmint_exchanges_total{face="grpc",outcome="UNAUTHENTICATED"}"#
        ) >= 1.0
    );
    assert!(after.contains(r#"method="/tokenmint.auth.v1.AuthService/ExchangeApiKey""#));
    assert!(
        !after.contains("made.Up"),
        "caller-chosen paths are not labels"
    );
    assert!(!after.contains(&server.admin.key_id), "no IDs in labels");
    assert!(sample(&after, r#"tokenmint_key_cache_entries{kind="active"}"#) >= 1.0);
}

async fn repeated_headers_slow_bodies_and_audience_probes_are_refused(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(server) = Server::start_with(
        backend,
        &[
            "--handshake-timeout",
            "1s",
            "--allowed-audiences",
            "https://api.internal",
        ],
    )
    .await
    else {
        return;
    };
    let (id, secret) = (server.admin.key_id.clone(), server.admin.secret.clone());
    let body = form(&[("grant_type", "client_credentials")]);
    let send = |headers: Vec<(&'static str, String)>, body: String| {
        let url = format!("{}/oauth2/token", server.http_url);
        async move {
            let mut request = reqwest::Client::new().post(url).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // Two Authorization headers: a proxy reading the other one would disagree on the caller.
    let (status, answer) = send(
        vec![
            ("content-type", FORM.into()),
            ("authorization", basic(&id, &secret)),
            ("authorization", basic("ak_01jzzzzzzzzzzzzzzzzzzzzzzz", "x")),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = send(
        vec![
            ("content-type", FORM.into()),
            ("content-type", "application/json".into()),
            ("authorization", basic(&id, &secret)),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 400);
    // The scheme is case-insensitive (RFC 7235).
    let lower = basic(&id, &secret).replacen("Basic", "basic", 1);
    let (status, _) = send(
        vec![("content-type", FORM.into()), ("authorization", lower)],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // Without valid credentials, the audience allowlist is not judged, so it cannot be probed.
    let probe = form(&[
        ("grant_type", "client_credentials"),
        ("audience", "https://evil.example"),
    ]);
    let (status, answer) = send(
        vec![
            ("content-type", FORM.into()),
            (
                "authorization",
                basic("ak_01jzzzzzzzzzzzzzzzzzzzzzzz", "tmsk_x"),
            ),
        ],
        probe,
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // A declared body over the limit is refused before any of it is read.
    let mut socket = tokio::net::TcpStream::connect(server.http_authority())
        .await
        .unwrap();
    socket
        .write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).contains(" 413 "),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    // A body trickled in is cut when its deadline passes, and the connection freed.
    let mut socket = tokio::net::TcpStream::connect(server.http_authority())
        .await
        .unwrap();
    socket
        .write_all(b"POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8000\r\n\r\ng")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buf = [0u8; 512];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server let a trickled body hold the connection"
    );
    assert!(
        String::from_utf8_lossy(&answer).contains(" 408 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

on_both_backends!(
    repeated_headers_slow_bodies_and_audience_probes_are_refused,
    metrics_appear_and_move_with_traffic,
    introspection_over_http_answers_like_the_grpc_call,
    the_token_endpoint_mints_what_the_grpc_exchange_mints,
    bad_requests_get_their_rfc6749_error_and_never_the_secret,
    a_refused_network_and_a_throttled_client_get_their_errors,
    the_metadata_advertises_only_what_exists,
);

/// On PostgreSQL, `/readyz` goes unready while the database refuses connections and ready again
/// after; `/healthz` (liveness) stays up throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn readiness_follows_the_database() {
    use sea_orm::ConnectionTrait;

    let Some(server) = Server::start(Backend::Postgres).await else {
        return;
    };
    let control = server.database_control().await;
    let status = |path: &'static str| {
        let url = format!("{}{path}", server.http_url);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/readyz").await, 200);
    control.refuse_connections().await;
    control.end_sessions().await;
    let start = std::time::Instant::now();
    while status("/readyz").await != 503 && start.elapsed() < std::time::Duration::from_secs(15) {
        // A connection that was being opened as connections were refused can slip past the
        // first termination (the listener and its heartbeat open connections at any time).
        control.end_sessions().await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status("/readyz").await, 503);
    assert_eq!(status("/healthz").await, 200, "still alive");
    control.allow_connections().await;
    let start = std::time::Instant::now();
    while status("/readyz").await != 200 && start.elapsed() < std::time::Duration::from_secs(15) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let recovered = status("/readyz").await;
    if recovered != 200 {
        // Evidence for a failure seen once in CI and never here: what the server and the
        // database said.
        let sessions = control
            .admin
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT datname, state, COUNT(*)::bigint AS n FROM pg_stat_activity \
                 GROUP BY datname, state"
                    .to_owned(),
            ))
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        format!(
                            "{:?} {:?} {:?}",
                            r.try_get::<Option<String>>("", "datname"),
                            r.try_get::<Option<String>>("", "state"),
                            r.try_get::<i64>("", "n")
                        )
                    })
                    .collect::<Vec<_>>()
            });
        let logs: Vec<String> = server
            .logs()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect();
        panic!(
            "/readyz answered {recovered} 15 s after the database came back; sessions: \
             {sessions:?}; warnings: {logs:#?}"
        );
    }
}
