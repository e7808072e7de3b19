//! TLS on both ports: real TLS clients get through, plain-text ones do not, and a server without
//! TLS says at start that credentials travel in clear.

use crate::harness::{Backend, Server};
use crate::on_both_backends;
use tokenmint::proto::auth::v1::{ExchangeApiKeyRequest, auth_service_client::AuthServiceClient};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A self-signed certificate for `localhost`, written to a directory of its own.
fn certificate() -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = issued.cert.pem();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let path = |p: std::path::PathBuf| p.display().to_string();
    (dir, cert_pem, path(cert), path(key))
}

fn port(authority: &str) -> &str {
    authority.rsplit(':').next().unwrap()
}

async fn both_ports_speak_tls_when_given_a_certificate(backend: Backend) {
    let (_dir, cert_pem, cert, key) = certificate();
    let Some(server) = Server::start_with(backend, &["--tls-cert", &cert, "--tls-key", &key]).await
    else {
        return;
    };
    let channel = Channel::from_shared(format!(
        "https://localhost:{}",
        port(server.grpc_authority())
    ))
    .unwrap()
    .tls_config(
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cert_pem))
            .domain_name("localhost"),
    )
    .unwrap()
    .connect()
    .await
    .unwrap();
    let request = ExchangeApiKeyRequest {
        key_id: server.admin.key_id.clone(),
        secret: server.admin.secret.clone(),
        ..Default::default()
    };
    let token = AuthServiceClient::new(channel.clone())
        .exchange_api_key(request.clone())
        .await
        .expect("exchange over TLS")
        .into_inner()
        .access_token;
    assert!(!token.is_empty());

    // The peer's address is known through TLS too: key allowlists still judge it.
    let mut admin =
        tokenmint::proto::admin::v1::admin_service_client::AdminServiceClient::with_interceptor(
            channel.clone(),
            crate::harness::Bearer(token.clone()),
        );
    let user = crate::harness::create_user(&mut admin, "fenced").await;
    for (cidr, allowed) in [("127.0.0.1/32", true), ("10.0.0.0/8", false)] {
        let mut create = crate::harness::key_request(&user.id, &format!("k{}", cidr.len()));
        create.allowed_cidrs = vec![cidr.into()];
        let created = admin.create_api_key(create).await.unwrap().into_inner();
        let outcome = AuthServiceClient::new(channel.clone())
            .exchange_api_key(ExchangeApiKeyRequest {
                key_id: created.api_key.unwrap().id,
                secret: created.secret,
                ..Default::default()
            })
            .await;
        assert_eq!(outcome.is_ok(), allowed, "{cidr}: {outcome:?}");
    }

    // A plain-text client gets nowhere.
    let plain = Channel::from_shared(server.grpc_url.clone())
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        assert!(
            AuthServiceClient::new(plain)
                .exchange_api_key(request)
                .await
                .is_err()
        );
    }

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let jwks = client
        .get(format!(
            "https://localhost:{}/.well-known/jwks.json",
            port(server.http_authority())
        ))
        .send()
        .await
        .expect("HTTPS")
        .text()
        .await
        .unwrap();
    assert!(jwks.contains("\"keys\""));
    assert!(
        reqwest::get(format!("{}/.well-known/jwks.json", server.http_url))
            .await
            .is_err(),
        "plain HTTP is not served"
    );
    assert!(!server.logs().contains("TLS is off"));
}

async fn without_tls_the_server_warns_that_credentials_travel_in_clear(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    assert!(server.logs().contains("TLS is off"));
}

async fn an_unreadable_certificate_stops_the_start_with_a_clear_error(backend: Backend) {
    let (dir, _, _, key) = certificate();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let output = crate::harness::serve_command()
        .args(server.core_args())
        .args([
            "--tls-cert",
            &garbage.display().to_string(),
            "--tls-key",
            &key,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("garbage.pem"), "{stderr}");
}

on_both_backends!(
    both_ports_speak_tls_when_given_a_certificate,
    without_tls_the_server_warns_that_credentials_travel_in_clear,
    an_unreadable_certificate_stops_the_start_with_a_clear_error,
);
