//! Organizations: a superuser creates one and its first owner there, and that owner lives in a
//! tenant of its own.

use crate::harness::{Backend, Credential, Server};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    CreateOrganizationRequest, CreateServiceUserRequest, GetOrganizationRequest,
    GetServiceUserRequest, ListOrganizationsRequest, Organization, Role, RoleBinding, ServiceUser,
    UpdateOrganizationRequest,
};
use tonic::Code;

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn a_superuser_creates_an_organization_and_its_first_owner(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut superuser = server.admin().await;
    let acme = superuser
        .create_organization(CreateOrganizationRequest {
            organization: Some(Organization {
                name: "acme".into(),
                display_name: "Acme".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(acme.id.starts_with("org_"));
    assert_eq!(
        (acme.max_service_users, acme.max_api_keys_per_service_user),
        (1000, 10),
        "the configured defaults"
    );
    let duplicate = superuser
        .create_organization(CreateOrganizationRequest {
            organization: Some(Organization {
                name: "acme".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    // The superuser, an owner in every organization, creates the first owner there.
    let owner = superuser
        .create_service_user(CreateServiceUserRequest {
            organization_id: acme.id.clone(),
            service_user: Some(ServiceUser {
                name: "acme-owner".into(),
                ..Default::default()
            }),
            role_bindings: vec![RoleBinding {
                role: Role::Owner as i32,
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(owner.organization_id, acme.id);
    assert!(
        owner.administrators.is_empty(),
        "a superuser creating users in another organization does not administer them"
    );
    let created = superuser
        .create_api_key(crate::harness::key_request(&owner.id, "main"))
        .await
        .unwrap()
        .into_inner();
    let key = created.api_key.unwrap();
    assert_eq!(key.organization_id, acme.id);
    assert_eq!(key.scopes, ["owner"]);
    let acme_owner = Credential {
        organization_id: acme.id.clone(),
        service_user_id: owner.id.clone(),
        key_id: key.id,
        secret: created.secret,
    };

    // The new owner lives in its own tenant.
    let mut as_owner = server.admin_for(&acme_owner).await;
    let users = crate::harness::list_users(&mut as_owner).await;
    assert_eq!(
        users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        [owner.id.as_str()]
    );
    let hidden = as_owner
        .get_service_user(GetServiceUserRequest {
            id: server.admin.service_user_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    let other_org = as_owner
        .get_organization(GetOrganizationRequest {
            id: server.admin.organization_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(other_org.code(), Code::NotFound);
    let listed = as_owner
        .list_organizations(ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, acme.id);
    let refused = as_owner
        .create_organization(CreateOrganizationRequest {
            organization: Some(Organization {
                name: "mine".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let all = superuser
        .list_organizations(ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .organizations;
    assert_eq!(all.len(), 2);
}

async fn owners_rename_and_only_superusers_change_quotas(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let owner = server.principal_with_roles("org-owner", &["owner"]).await;
    let mut as_owner = server.admin_for(&owner).await;
    let org = as_owner
        .get_organization(GetOrganizationRequest {
            id: server.admin.organization_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let renamed = as_owner
        .update_organization(UpdateOrganizationRequest {
            organization: Some(Organization {
                id: org.id.clone(),
                display_name: "Renamed".into(),
                etag: org.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.display_name, "Renamed");
    assert_ne!(renamed.etag, org.etag);

    let stale = as_owner
        .update_organization(UpdateOrganizationRequest {
            organization: Some(Organization {
                id: org.id.clone(),
                display_name: "Again".into(),
                etag: org.etag.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);

    let quota = |by_etag: String| UpdateOrganizationRequest {
        organization: Some(Organization {
            id: org.id.clone(),
            max_service_users: 5,
            etag: by_etag,
            ..Default::default()
        }),
        update_mask: mask(&["max_service_users"]),
    };
    let refused = as_owner
        .update_organization(quota(String::new()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let viewer = server.principal_with_roles("watcher", &["viewer"]).await;
    let refused = server
        .admin_for(&viewer)
        .await
        .update_organization(UpdateOrganizationRequest {
            organization: Some(Organization {
                id: org.id.clone(),
                display_name: "Viewer was here".into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let changed = server
        .admin()
        .await
        .update_organization(quota(String::new()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.max_service_users, 5);
    assert_eq!(changed.display_name, "Renamed");
}

on_both_backends!(
    a_superuser_creates_an_organization_and_its_first_owner,
    owners_rename_and_only_superusers_change_quotas,
);

mod review {
    use crate::harness::{Backend, Server, create_user, violated_fields};
    use tokenmint::proto::admin::v1::{
        AddAdministratorRequest, Organization, UpdateOrganizationRequest,
    };
    use tonic::Code;

    /// A quota set to 0 or below on update is refused, not turned into 1.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quota_below_one_is_refused_on_update() {
        let Some(server) = Server::start(Backend::Sqlite).await else {
            return;
        };
        let mut superuser = server.admin().await;
        for value in [0, -5] {
            let status = superuser
                .update_organization(UpdateOrganizationRequest {
                    organization: Some(Organization {
                        id: server.admin.organization_id.clone(),
                        max_service_users: value,
                        ..Default::default()
                    }),
                    update_mask: super::mask(&["max_service_users"]),
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{value}");
            assert_eq!(violated_fields(&status), ["organization.max_service_users"]);
        }
    }

    /// Nobody is made administrator of itself: someone else keeps control of its credentials.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_user_cannot_administer_itself() {
        let Some(server) = Server::start(Backend::Sqlite).await else {
            return;
        };
        let mut admin = server.admin().await;
        let user = create_user(&mut admin, "self-made").await;
        server.grant_role(&user.id, "admin").await;
        let status = admin
            .add_administrator(AddAdministratorRequest {
                service_user_id: user.id.clone(),
                principal_id: user.id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), ["principal_id"]);
    }
}
