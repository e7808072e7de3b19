//! Service users through the admin API: create, read, list with pages, update with masks and
//! etags, delete with and without force, and every kind of bad input.

use crate::harness::{Admin, Backend, Server, create_key, create_user, violated_fields};
use crate::on_both_backends;
use std::collections::HashSet;
use tokenmint::proto::admin::v1::{
    CreateServiceUserRequest, DeleteServiceUserRequest, GetApiKeyRequest, GetServiceUserRequest,
    ListServiceUsersRequest, ServiceUser, UpdateServiceUserRequest, service_user::State,
};
use tonic::Code;

fn create(name: &str) -> CreateServiceUserRequest {
    CreateServiceUserRequest {
        role_bindings: Vec::new(),
        organization_id: String::new(),
        service_user: Some(ServiceUser {
            name: name.into(),
            ..Default::default()
        }),
    }
}

async fn read_user(admin: &mut Admin, id: &str) -> Result<ServiceUser, tonic::Status> {
    admin
        .get_service_user(GetServiceUserRequest { id: id.to_owned() })
        .await
        .map(tonic::Response::into_inner)
}

async fn count_users(admin: &mut Admin) -> usize {
    admin
        .list_service_users(ListServiceUsersRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .service_users
        .len()
}

async fn created_user_reads_back_with_its_creator_as_administrator(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let request = CreateServiceUserRequest {
        role_bindings: Vec::new(),
        organization_id: server.admin.organization_id.clone(),
        service_user: Some(ServiceUser {
            name: "backup-agent".into(),
            display_name: "Nightly backups".into(),
            email: "storage@example.com".into(),
            description: "Runs pg_dump".into(),
            ..Default::default()
        }),
    };
    let created = admin
        .create_service_user(request)
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("su_"));
    assert_eq!(created.organization_id, server.admin.organization_id);
    assert_eq!(created.state, State::Active as i32);
    assert_eq!(
        created.administrators,
        vec![server.admin.service_user_id.clone()]
    );
    assert_eq!(created.creator, server.admin.service_user_id);
    assert!(!created.etag.is_empty() && created.create_time.is_some());
    let read = read_user(&mut admin, &created.id).await.unwrap();
    assert_eq!(read, created);
}

async fn duplicate_name_is_already_exists(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    create_user(&mut admin, "twin").await;
    let status = admin.create_service_user(create("twin")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains("twin"));
    assert_eq!(count_users(&mut admin).await, 2);
}

async fn concurrent_creates_of_one_name_yield_one_user(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let admin = server.admin().await;
    let attempts = (0..8).map(|_| {
        let mut admin = admin.clone();
        tokio::spawn(async move {
            admin
                .create_service_user(create("racer"))
                .await
                .map(|_| ())
                .map_err(|s| s.code())
        })
    });
    let results: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| *r == Err(Code::AlreadyExists)),
        "{results:?}"
    );
}

async fn bad_names_are_invalid_argument_naming_the_field(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    for name in [
        "",
        "Upper",
        "has_underscore",
        "-leading",
        "trailing-",
        "9starts-with-digit",
        &"a".repeat(64),
    ] {
        let status = admin.create_service_user(create(name)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name:?}");
        assert_eq!(violated_fields(&status), ["service_user.name"], "{name:?}");
    }
    let mut request = create("ok-name");
    request.service_user.as_mut().unwrap().email = "not-an-email".into();
    let status = admin.create_service_user(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["service_user.email"]);
    assert_eq!(
        count_users(&mut admin).await,
        1,
        "nothing invalid was stored"
    );
}

async fn malformed_ids_are_invalid_argument(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    for id in [
        "",
        "su_",
        "ak_01jzzzzzzzzzzzzzzzzzzzzzzz",
        "su_01JZZZZZZZZZZZZZZZZZZZZZZZ",
        "'; DROP TABLE service_users; --",
    ] {
        let status = read_user(&mut admin, id).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{id:?}");
        assert_eq!(violated_fields(&status), ["id"]);
    }
    let status = admin
        .get_api_key(GetApiKeyRequest {
            id: "su_01jzzzzzzzzzzzzzzzzzzzzzzz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["id"]);
}

async fn unknown_and_foreign_users_are_indistinguishable_not_found(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    // An owner, not the bootstrap superuser: a superuser sees every organization.
    let owner = server.principal_with_roles("org-owner", &["owner"]).await;
    let mut admin = server.admin_for(&owner).await;
    let foreign = server.foreign_principal().await;
    let unknown_id = tokenmint::ids::ServiceUserId::generate().to_string();

    let foreign_status = read_user(&mut admin, &foreign.service_user_id)
        .await
        .unwrap_err();
    let unknown_status = read_user(&mut admin, &unknown_id).await.unwrap_err();
    assert_eq!(foreign_status.code(), Code::NotFound);
    assert_eq!(unknown_status.code(), Code::NotFound);
    assert_eq!(
        foreign_status
            .message()
            .replace(&foreign.service_user_id, "ID"),
        unknown_status.message().replace(&unknown_id, "ID")
    );
    let status = admin
        .delete_service_user(DeleteServiceUserRequest {
            id: foreign.service_user_id.clone(),
            force: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = admin
        .list_service_users(ListServiceUsersRequest {
            organization_id: foreign.organization_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let mut create_there = create("intruder");
    create_there.organization_id = foreign.organization_id.clone();
    assert_eq!(
        admin
            .create_service_user(create_there)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

async fn pagination_returns_every_user_exactly_once(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let mut expected: HashSet<String> = HashSet::from([server.admin.service_user_id.clone()]);
    for i in 0..23 {
        expected.insert(create_user(&mut admin, &format!("user-{i}")).await.id);
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = admin
            .list_service_users(ListServiceUsersRequest {
                page_size: 5,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.service_users.len() <= 5);
        seen.extend(page.service_users.into_iter().map(|u| u.id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), expected.len(), "no user twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
}

async fn list_rejects_oversized_pages_foreign_tokens_and_unknown_filters(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let status = admin
        .list_service_users(ListServiceUsersRequest {
            page_size: 1001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), violated_fields(&status)),
        (Code::InvalidArgument, vec!["page_size".to_owned()])
    );
    let status = admin
        .list_service_users(ListServiceUsersRequest {
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_size"]);
    let status = admin
        .list_service_users(ListServiceUsersRequest {
            page_token: "bogus".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_token"]);
    let status = admin
        .list_service_users(ListServiceUsersRequest {
            filter: "name = x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["filter"]);
}

async fn list_filters_by_state(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let sleeper = create_user(&mut admin, "sleeper").await;
    create_user(&mut admin, "awake").await;
    admin
        .disable_service_user(tokenmint::proto::admin::v1::DisableServiceUserRequest {
            id: sleeper.id.clone(),
        })
        .await
        .unwrap();
    let disabled = admin
        .list_service_users(ListServiceUsersRequest {
            filter: "state = DISABLED".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        disabled
            .service_users
            .iter()
            .map(|u| u.id.clone())
            .collect::<Vec<_>>(),
        [sleeper.id]
    );
}

async fn update_changes_only_masked_fields_and_honours_etags(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "editable").await;
    let mut change = user.clone();
    change.display_name = "Renamed".into();
    change.description = "not in the mask".into();
    let updated = admin
        .update_service_user(UpdateServiceUserRequest {
            service_user: Some(change.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.display_name, "Renamed");
    assert_eq!(updated.description, user.description);
    assert_ne!(updated.etag, user.etag);

    // The first etag is stale now.
    let status = admin
        .update_service_user(UpdateServiceUserRequest {
            service_user: Some(change),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["description".into()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let read = read_user(&mut admin, &user.id).await.unwrap();
    assert_eq!(read, updated, "a refused update changes nothing");
}

async fn update_rejects_unknown_or_immutable_mask_fields(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "fixed").await;
    for paths in [vec!["name"], vec!["organization_id"], vec!["bogus"], vec![]] {
        let status = admin
            .update_service_user(UpdateServiceUserRequest {
                service_user: Some(ServiceUser {
                    id: user.id.clone(),
                    name: "other".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), violated_fields(&status)),
            (Code::InvalidArgument, vec!["update_mask".to_owned()]),
            "{paths:?}"
        );
    }
    let read = read_user(&mut admin, &user.id).await.unwrap();
    assert_eq!(read, user);
}

async fn delete_is_refused_while_active_keys_exist_unless_forced(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "keyholder").await;
    let (key, _) = create_key(&mut admin, &user.id, "k").await;
    let status = admin
        .delete_service_user(DeleteServiceUserRequest {
            id: user.id.clone(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let still_there = admin
        .get_api_key(GetApiKeyRequest { id: key.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        still_there.state,
        tokenmint::proto::admin::v1::api_key::State::Active as i32
    );

    admin
        .delete_service_user(DeleteServiceUserRequest {
            id: user.id.clone(),
            force: true,
        })
        .await
        .unwrap();
    let status = read_user(&mut admin, &user.id).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        admin
            .get_api_key(GetApiKeyRequest { id: key.id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

async fn user_without_active_keys_deletes_without_force(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let user = create_user(&mut admin, "keyless").await;
    admin
        .delete_service_user(DeleteServiceUserRequest {
            id: user.id.clone(),
            force: false,
        })
        .await
        .unwrap();
    assert_eq!(
        read_user(&mut admin, &user.id).await.unwrap_err().code(),
        Code::NotFound
    );
}

async fn a_caller_cannot_disable_or_delete_itself(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let own_id = server.admin.service_user_id.clone();
    let disable = tokenmint::proto::admin::v1::DisableServiceUserRequest { id: own_id.clone() };
    assert_eq!(
        admin
            .disable_service_user(disable)
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let delete = DeleteServiceUserRequest {
        id: own_id.clone(),
        force: true,
    };
    assert_eq!(
        admin.delete_service_user(delete).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let me = read_user(&mut admin, &own_id).await.unwrap();
    assert_eq!(me.state, State::Active as i32);
}

on_both_backends!(
    a_caller_cannot_disable_or_delete_itself,
    created_user_reads_back_with_its_creator_as_administrator,
    duplicate_name_is_already_exists,
    concurrent_creates_of_one_name_yield_one_user,
    bad_names_are_invalid_argument_naming_the_field,
    malformed_ids_are_invalid_argument,
    unknown_and_foreign_users_are_indistinguishable_not_found,
    pagination_returns_every_user_exactly_once,
    list_rejects_oversized_pages_foreign_tokens_and_unknown_filters,
    list_filters_by_state,
    update_changes_only_masked_fields_and_honours_etags,
    update_rejects_unknown_or_immutable_mask_fields,
    delete_is_refused_while_active_keys_exist_unless_forced,
    user_without_active_keys_deletes_without_force,
);
