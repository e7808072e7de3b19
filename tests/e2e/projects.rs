//! Projects: owners create and delete them; bindings on a project are managed by those who hold
//! admin or owner there, up to their own role, and give no power over the organization.

use crate::harness::{Backend, Server, create_user};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    AddRoleBindingRequest, CreateProjectRequest, CreateServiceUserRequest, DeleteProjectRequest,
    ListProjectsRequest, ListRoleBindingsRequest, Project, Role, RoleBinding, ServiceUser,
};
use tonic::Code;

fn project_binding(principal_id: &str, project_id: &str, role: Role) -> AddRoleBindingRequest {
    AddRoleBindingRequest {
        role_binding: Some(RoleBinding {
            principal_id: principal_id.into(),
            project_id: project_id.into(),
            role: role as i32,
            ..Default::default()
        }),
    }
}

/// The role bindings on one project, as `client` sees them.
async fn bindings_on(client: &mut crate::harness::Admin, project_id: &str) -> Vec<RoleBinding> {
    client
        .list_role_bindings(ListRoleBindingsRequest {
            project_id: project_id.into(),
            ..Default::default()
        })
        .await
        .expect("list a project's bindings")
        .into_inner()
        .role_bindings
}

fn create_project(name: &str) -> CreateProjectRequest {
    CreateProjectRequest {
        organization_id: String::new(),
        project: Some(Project {
            name: name.into(),
            ..Default::default()
        }),
    }
}

async fn owners_create_list_and_delete_projects(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let billing = admin
        .create_project(create_project("billing"))
        .await
        .unwrap()
        .into_inner();
    assert!(billing.id.starts_with("prj_"));
    assert_eq!(billing.organization_id, server.admin.organization_id);
    let listed = admin
        .list_projects(ListProjectsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(listed, vec![billing.clone()]);
    let duplicate = admin
        .create_project(create_project("billing"))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);

    let team_admin = server.principal_with_roles("team-admin", &["admin"]).await;
    let refused = server
        .admin_for(&team_admin)
        .await
        .create_project(create_project("mine"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let user = create_user(&mut admin, "accountant").await;
    admin
        .add_role_binding(project_binding(&user.id, &billing.id, Role::Viewer))
        .await
        .unwrap();
    let on_project = bindings_on(&mut admin, &billing.id).await;
    assert_eq!(on_project.len(), 1);
    assert_eq!(on_project[0].project_id, billing.id);

    let refused = admin
        .delete_project(DeleteProjectRequest {
            id: billing.id.clone(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    admin
        .delete_project(DeleteProjectRequest {
            id: billing.id.clone(),
            force: true,
        })
        .await
        .unwrap();
    let left = admin
        .list_role_bindings(ListRoleBindingsRequest {
            principal_id: user.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .role_bindings;
    assert!(
        left.is_empty(),
        "force removed the project's bindings with it"
    );
    assert!(
        admin
            .list_projects(ListProjectsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .projects
            .is_empty()
    );
}

async fn project_bindings_go_up_to_the_granters_role_and_give_no_organization_power(
    backend: Backend,
) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let project = admin
        .create_project(create_project("web"))
        .await
        .unwrap()
        .into_inner();
    let team_admin = server.principal_with_roles("team-admin", &["admin"]).await;
    let mut as_admin = server.admin_for(&team_admin).await;
    let member = server.principal_with_roles("member", &["viewer"]).await;

    // An organization admin is admin on every project: it grants up to admin there.
    as_admin
        .add_role_binding(project_binding(
            &member.service_user_id,
            &project.id,
            Role::Admin,
        ))
        .await
        .unwrap();
    let refused = as_admin
        .add_role_binding(project_binding(
            &member.service_user_id,
            &project.id,
            Role::Owner,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let viewer = server.principal_with_roles("watcher", &["viewer"]).await;
    let refused = server
        .admin_for(&viewer)
        .await
        .add_role_binding(project_binding(
            &viewer.service_user_id,
            &project.id,
            Role::Viewer,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // The project admin role gives its holder nothing in the organization.
    admin
        .add_role_binding(project_binding(
            &member.service_user_id,
            &project.id,
            Role::Owner,
        ))
        .await
        .unwrap();
    let refused = server
        .admin_for(&member)
        .await
        .create_service_user(CreateServiceUserRequest {
            organization_id: String::new(),
            service_user: Some(ServiceUser {
                name: "sneaky".into(),
                ..Default::default()
            }),
            role_bindings: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // A project of another organization does not exist here.
    let missing = admin
        .add_role_binding(project_binding(
            &member.service_user_id,
            &tokenmint::ids::ProjectId::generate().to_string(),
            Role::Viewer,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

/// A project role travels in tokens as `prj_…:role` and acts on its project only.
async fn a_project_role_travels_in_tokens_and_acts_only_on_its_project(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let mut admin = server.admin().await;
    let web = admin
        .create_project(create_project("web"))
        .await
        .unwrap()
        .into_inner();
    let api = admin
        .create_project(create_project("api"))
        .await
        .unwrap()
        .into_inner();
    let lead = create_user(&mut admin, "web-lead").await;
    let member = create_user(&mut admin, "web-member").await;
    admin
        .add_role_binding(project_binding(&lead.id, &web.id, Role::Admin))
        .await
        .unwrap();

    let (key, secret) = crate::harness::create_key(&mut admin, &lead.id, "main").await;
    let project_admin = format!("{}:admin", web.id);
    assert_eq!(key.scopes, vec![project_admin.clone()]);
    let token = server.exchange(&key.id, &secret, "").await.unwrap();
    assert_eq!(token.scope, project_admin);
    let narrowed = server
        .exchange(&key.id, &secret, &format!("{}:viewer", web.id))
        .await
        .unwrap();
    assert_eq!(narrowed.scope, format!("{}:viewer", web.id));
    let refused = server
        .exchange(&key.id, &secret, &format!("{}:viewer", api.id))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    let mut as_lead = server.admin_as(&token.access_token).await;
    as_lead
        .add_role_binding(project_binding(&member.id, &web.id, Role::Viewer))
        .await
        .unwrap();
    let on_web = bindings_on(&mut as_lead, &web.id).await;
    assert_eq!(on_web.len(), 2);
    let elsewhere = as_lead
        .add_role_binding(project_binding(&member.id, &api.id, Role::Viewer))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::PermissionDenied);
    let above = as_lead
        .add_role_binding(project_binding(&member.id, &web.id, Role::Owner))
        .await
        .unwrap_err();
    assert_eq!(above.code(), Code::PermissionDenied);
    let organization_wide = as_lead
        .list_service_users(tokenmint::proto::admin::v1::ListServiceUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(organization_wide.code(), Code::PermissionDenied);

    // Explicit project scopes on a key: only roles the user holds there.
    let mut request = crate::harness::key_request(&lead.id, "narrow");
    request.scopes = vec![format!("{}:owner", web.id)];
    let status = admin.create_api_key(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut request = crate::harness::key_request(&lead.id, "reader");
    request.scopes = vec![format!("{}:viewer", web.id)];
    let reader = admin.create_api_key(request).await.unwrap().into_inner();
    assert_eq!(
        reader.api_key.unwrap().scopes,
        [format!("{}:viewer", web.id)]
    );
}

on_both_backends!(
    owners_create_list_and_delete_projects,
    project_bindings_go_up_to_the_granters_role_and_give_no_organization_power,
    a_project_role_travels_in_tokens_and_acts_only_on_its_project,
);

mod review {
    use super::{bindings_on, create_project, project_binding};
    use crate::harness::{Backend, Server, create_user};
    use tokenmint::proto::admin::v1::{DeleteProjectRequest, DisableServiceUserRequest, Role};
    use tonic::Code;

    /// A binding racing a forced delete never outlives the project.
    async fn no_binding_outlives_a_force_deleted_project(backend: Backend) {
        let Some(server) = Server::start(backend).await else {
            return;
        };
        let mut admin = server.admin().await;
        let mut users = Vec::new();
        for i in 0..8 {
            users.push(create_user(&mut admin, &format!("racer-{i}")).await.id);
        }
        for round in 0..5 {
            let project = admin
                .create_project(create_project(&format!("doomed-{round}")))
                .await
                .unwrap()
                .into_inner();
            let mut grants = Vec::new();
            for user in &users {
                let mut client = admin.clone();
                let request = project_binding(user, &project.id, Role::Admin);
                grants.push(tokio::spawn(async move {
                    client.add_role_binding(request).await
                }));
            }
            let mut deleter = admin.clone();
            let delete = deleter.delete_project(DeleteProjectRequest {
                id: project.id.clone(),
                force: true,
            });
            delete.await.unwrap();
            for grant in grants {
                let _ = grant.await.unwrap();
            }
            let left = bindings_on(&mut admin, &project.id).await;
            assert!(
                left.is_empty(),
                "round {round}: {} bindings outlived the project",
                left.len()
            );
        }
    }

    /// An organization admin does not manage a user holding a project role above its own there.
    async fn a_project_owner_is_not_managed_by_an_organization_admin(backend: Backend) {
        let Some(server) = Server::start(backend).await else {
            return;
        };
        let mut admin = server.admin().await;
        let project = admin
            .create_project(create_project("web"))
            .await
            .unwrap()
            .into_inner();
        let team_admin = server.principal_with_roles("team-admin", &["admin"]).await;
        let mut as_admin = server.admin_for(&team_admin).await;
        let lead = create_user(&mut as_admin, "web-lead").await;
        admin
            .add_role_binding(project_binding(&lead.id, &project.id, Role::Owner))
            .await
            .unwrap();
        let status = as_admin
            .disable_service_user(DisableServiceUserRequest {
                id: lead.id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }

    crate::on_both_backends!(
        no_binding_outlives_a_force_deleted_project,
        a_project_owner_is_not_managed_by_an_organization_admin,
    );
}
