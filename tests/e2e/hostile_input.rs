//! Input built to confuse: huge values echoed back, invisible characters, duplicated headers,
//! forged page tokens, addresses written two ways.

use crate::harness::{Backend, Server, create_user, key_request, violated_fields};
use crate::on_both_backends;
use base64::Engine;
use tokenmint::proto::admin::v1::{CreateServiceUserRequest, ListServiceUsersRequest, ServiceUser};
use tokenmint::proto::auth::v1::{ExchangeApiKeyRequest, WhoAmIRequest};
use tonic::Code;

/// Everything a status sends back to the client: message plus encoded details.
fn status_size(status: &tonic::Status) -> usize {
    status.message().len() + status.details().len()
}

async fn a_huge_unknown_scope_is_not_echoed_back(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let huge = "x".repeat(60_000);
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "echo").await;
    let mut request = key_request(&user.id, "k");
    request.scopes = vec![huge.clone()];
    request.allowed_cidrs = vec!["y".repeat(2_000)];
    let status = admin.create_api_key(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["allowed_cidrs[0]", "scopes[0]"]);
    assert!(
        status_size(&status) < 1_000,
        "{} bytes",
        status_size(&status)
    );

    let status = server
        .auth()
        .await
        .exchange_api_key(ExchangeApiKeyRequest {
            key_id: server.admin.key_id.clone(),
            secret: server.admin.secret.clone(),
            scope: huge,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status_size(&status) < 1_000,
        "{} bytes",
        status_size(&status)
    );
}

async fn thousands_of_bad_entries_give_a_small_error(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "many").await;
    let mut request = key_request(&user.id, "k");
    request.scopes = vec!["x".to_owned(); 16_000];
    request.allowed_cidrs = vec!["y".to_owned(); 5_000];
    let status = admin.create_api_key(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["allowed_cidrs", "scopes"]);
    assert!(
        status_size(&status) < 1_000,
        "{} bytes",
        status_size(&status)
    );

    let many_names = crate::harness::key_request(&"bad id".repeat(3), &"B".repeat(70));
    let status = admin.create_api_key(many_names).await.unwrap_err();
    assert!(
        status_size(&status) < 2_000,
        "{} bytes",
        status_size(&status)
    );
}

async fn invisible_format_characters_are_refused_in_free_text(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let status = admin
        .create_service_user(CreateServiceUserRequest {
            role_bindings: Vec::new(),
            organization_id: String::new(),
            service_user: Some(ServiceUser {
                name: "spoofed".into(),
                display_name: "deploy\u{202E}gnp.exe".into(),
                description: "zero\u{200B}width".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["service_user.display_name", "service_user.description"]
    );
    let users = crate::harness::list_users(&mut admin).await;
    assert!(users.iter().all(|u| u.name != "spoofed"), "nothing stored");
}

async fn two_authorization_headers_are_refused(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let token = server.admin_token().await;
    let mut request = tonic::Request::new(WhoAmIRequest {});
    for value in [format!("Bearer {token}"), "Bearer other".to_owned()] {
        request
            .metadata_mut()
            .append("authorization", value.parse().unwrap());
    }
    let status = server.auth().await.who_am_i(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(violated_fields(&status), ["authorization"]);
}

async fn an_ipv4_mapped_allowlist_matches_an_ipv4_peer(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "mapped").await;
    let mut request = key_request(&user.id, "k");
    request.allowed_cidrs = vec!["::ffff:127.0.0.0/104".into()];
    let created = admin.create_api_key(request).await.unwrap().into_inner();
    let key = created.api_key.unwrap();
    assert_eq!(key.allowed_cidrs, ["127.0.0.0/8"]);
    server
        .token_for(&key.id, &created.secret)
        .await
        .expect("a 127.0.0.1 peer is inside ::ffff:127.0.0.0/104");
}

async fn a_forged_page_token_is_refused_without_an_error_log(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    for name in ["a", "b", "c"] {
        create_user(&mut admin, name).await;
    }
    let real = admin
        .list_service_users(ListServiceUsersRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!real.is_empty());

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let query = format!("service_users|{}|", server.admin.organization_id);
    let forged = [
        // The unsigned format of earlier releases, with a NUL byte in the cursor.
        b64.encode(format!("v1\n{query}\nsu_\0")),
        // A real token whose cursor was swapped for a NUL byte.
        format!(
            "{}.{}",
            b64.encode("su_\0"),
            real.split_once('.').unwrap().1
        ),
        // A real token with its signature cut short.
        real[..real.len() - 2].to_owned(),
    ];
    for token in forged {
        let status = admin
            .list_service_users(ListServiceUsersRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{token}");
        assert_eq!(violated_fields(&status), ["page_token"]);
    }
    assert!(
        !server.logs().contains("\"level\":\"ERROR\""),
        "no error lines:\n{}",
        server.logs()
    );
}

on_both_backends!(
    a_huge_unknown_scope_is_not_echoed_back,
    invisible_format_characters_are_refused_in_free_text,
    thousands_of_bad_entries_give_a_small_error,
    two_authorization_headers_are_refused,
    an_ipv4_mapped_allowlist_matches_an_ipv4_peer,
    a_forged_page_token_is_refused_without_an_error_log,
);

mod reasons {
    use crate::harness::{Backend, Server};
    use tokenmint::proto::admin::v1::GetServiceUserRequest;
    use tonic_types::StatusExt;

    fn reason(status: &tonic::Status) -> (String, String) {
        let info = status.get_details_error_info().expect("ErrorInfo details");
        (info.reason, info.domain)
    }

    /// Every error carries a stable machine-readable reason beside its code.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_carry_a_stable_reason_in_error_info() {
        let Some(server) = Server::start(Backend::Sqlite).await else {
            return;
        };
        let mut admin = server.admin().await;
        let missing = admin
            .get_service_user(GetServiceUserRequest {
                id: tokenmint::ids::ServiceUserId::generate().to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            reason(&missing),
            ("SERVICE_USER_NOT_FOUND".into(), "tokenmint".into())
        );
        let malformed = admin
            .get_service_user(GetServiceUserRequest { id: "x".into() })
            .await
            .unwrap_err();
        assert_eq!(reason(&malformed).0, "INVALID_ARGUMENT");
        assert_eq!(crate::harness::violated_fields(&malformed), ["id"]);
        let wrong = server
            .token_for(&server.admin.key_id, "tmsk_wrong")
            .await
            .unwrap_err();
        assert_eq!(reason(&wrong).0, "INVALID_CREDENTIALS");
    }
}
