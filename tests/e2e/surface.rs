//! What operators and tools see: health, reflection, HTTP endpoints, size limits, and
//! UNAVAILABLE (with nothing written) when the database goes away.

use crate::harness::{Backend, Server, violated_fields};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{CreateServiceUserRequest, ServiceUser};
use tokenmint::proto::auth::v1::GetJwksRequest;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn health_reports_serving_for_the_server_and_each_service(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "tokenmint.auth.v1.AuthService",
        "tokenmint.admin.v1.AdminService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            response.status,
            ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

async fn reflection_lists_every_service_in_v1_and_v1alpha(backend: Backend) {
    use tonic_reflection::pb::{v1, v1alpha};
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a list of services")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "tokenmint.auth.v1.AuthService",
        "tokenmint.admin.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "tokenmint.admin.v1.AdminService".into(),
            ),
        ),
    };
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.next().await.unwrap().unwrap().message_response;
    assert!(
        matches!(response, Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty())
    );

    // The error details every error carries resolve too, so grpcurl can show them decoded.
    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    for symbol in ["google.rpc.ErrorInfo", "google.rpc.BadRequest"] {
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.into()),
            ),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = stream.next().await.unwrap().unwrap().message_response;
        assert!(
            matches!(response, Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty()),
            "{symbol} does not resolve"
        );
    }
}

async fn http_serves_the_same_jwks_as_grpc_and_discovery(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let http = reqwest::get(format!("{}/.well-known/jwks.json", server.http_url))
        .await
        .unwrap();
    assert_eq!(http.headers()["content-type"], "application/jwk-set+json");
    let http_jwks = http.text().await.unwrap();
    let grpc_jwks = server
        .auth()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_jwks, grpc_jwks.json);
    assert_eq!(grpc_jwks.keys.len(), 1);
    assert_eq!(grpc_jwks.keys[0].crv, "Ed25519");
    let discovery: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        server.http_url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(discovery["issuer"], server.issuer.as_str());
    let health = reqwest::get(format!("{}/healthz", server.http_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

async fn oversized_requests_are_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let request = CreateServiceUserRequest {
        role_bindings: Vec::new(),
        organization_id: String::new(),
        service_user: Some(ServiceUser {
            name: "big".into(),
            description: "x".repeat(100_000),
            ..Default::default()
        }),
    };
    let status = admin.create_service_user(request).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let request = CreateServiceUserRequest {
        role_bindings: Vec::new(),
        organization_id: String::new(),
        service_user: Some(ServiceUser {
            name: "long".into(),
            description: "x".repeat(1025),
            ..Default::default()
        }),
    };
    let status = admin.create_service_user(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["service_user.description"]);
}

async fn settings_from_a_config_file_take_effect(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenmint.toml");
    std::fs::write(&path, "max_request_bytes = 1000\n").unwrap();
    let Some(server) = Server::start_with(backend, &["--config", path.to_str().unwrap()]).await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let request = CreateServiceUserRequest {
        role_bindings: Vec::new(),
        organization_id: String::new(),
        service_user: Some(ServiceUser {
            name: "wordy".into(),
            description: "x".repeat(1000),
            ..Default::default()
        }),
    };
    // 1000 characters is a valid description, but the file lowered the size limit below it.
    let status = admin.create_service_user(request).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

on_both_backends!(
    settings_from_a_config_file_take_effect,
    health_reports_serving_for_the_server_and_each_service,
    reflection_lists_every_service_in_v1_and_v1alpha,
    http_serves_the_same_jwks_as_grpc_and_discovery,
    oversized_requests_are_refused,
);

/// PostgreSQL only: an embedded SQLite file cannot go away under a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
async fn postgres_outage_gives_unavailable_and_writes_nothing() {
    let Some(server) = Server::start_with(Backend::Postgres, &["--database-timeout", "2s"]).await
    else {
        return;
    };
    let mut admin = server.admin().await;
    let control = server.database_control().await;
    control.refuse_connections().await;
    // Three times: a connection that was being opened as connections were refused can slip past
    // one termination (the change listener and its heartbeat open connections at any time).
    for _ in 0..3 {
        control.end_sessions().await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let request = CreateServiceUserRequest {
        role_bindings: Vec::new(),
        organization_id: String::new(),
        service_user: Some(ServiceUser {
            name: "during-outage".into(),
            ..Default::default()
        }),
    };
    let status = admin.create_service_user(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    control.allow_connections().await;
    let mut admin = server.admin().await;
    let users = crate::harness::list_users(&mut admin).await;
    assert_eq!(users.len(), 1, "nothing was half-written during the outage");
}
