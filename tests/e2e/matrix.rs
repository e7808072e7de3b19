//! The authorization matrix: every AdminService RPC, called by every kind of caller, each cell
//! the expected code; every denied cell also checks that nothing stored changed (the target user,
//! its keys and bindings, the organization and its projects).

use crate::harness::{Admin, Backend, Credential, Server, create_key, create_user, key_request};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    AddAdministratorRequest, AddRoleBindingRequest, CreateOrganizationRequest,
    CreateProjectRequest, CreateServiceUserRequest, DeleteProjectRequest, DeleteServiceUserRequest,
    DisableServiceUserRequest, EnableServiceUserRequest, GetApiKeyRequest, GetOrganizationRequest,
    GetServiceUserRequest, ListApiKeysRequest, ListOrganizationsRequest, ListProjectsRequest,
    ListRoleBindingsRequest, ListServiceUsersRequest, Organization, Project,
    RemoveAdministratorRequest, RemoveRoleBindingRequest, RevokeApiKeyRequest, Role, RoleBinding,
    RotateApiKeyRequest, RotateSigningKeyRequest, ServiceUser, UpdateOrganizationRequest,
    UpdateServiceUserRequest,
};
use tonic::Code;

/// The callers, in the matrix's column order.
const CALLERS: [&str; 9] = [
    "no role",
    "viewer",
    "project viewer",
    "project admin",
    "admin, not administrator",
    "admin administrator",
    "owner",
    "owner of another organization",
    "superuser",
];

const OK: Code = Code::Ok;
const PD: Code = Code::PermissionDenied;
const NF: Code = Code::NotFound;

/// Each RPC with its expected code per caller (in `CALLERS` order). Lists answer OK to a caller
/// of another organization but never show the target (checked separately).
const MATRIX: [(&str, [Code; 9]); 27] = [
    ("CreateOrganization", [PD, PD, PD, PD, PD, PD, PD, PD, OK]),
    ("CreateServiceUser", [PD, PD, PD, PD, OK, OK, OK, OK, OK]),
    ("GetOrganization", [PD, OK, PD, PD, OK, OK, OK, NF, OK]),
    ("ListOrganizations", [PD, OK, PD, PD, OK, OK, OK, OK, OK]),
    ("UpdateOrganization", [PD, PD, PD, PD, PD, PD, OK, NF, OK]),
    ("CreateProject", [PD, PD, PD, PD, PD, PD, OK, OK, OK]),
    ("ListProjects", [PD, OK, OK, OK, OK, OK, OK, OK, OK]),
    ("DeleteProject", [PD, PD, PD, PD, PD, PD, OK, NF, OK]),
    ("GetServiceUser", [PD, OK, PD, PD, OK, OK, OK, NF, OK]),
    ("ListServiceUsers", [PD, OK, PD, PD, OK, OK, OK, OK, OK]),
    ("UpdateServiceUser", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("DisableServiceUser", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("EnableServiceUser", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("DeleteServiceUser", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("CreateApiKey", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("GetApiKey", [PD, OK, PD, PD, OK, OK, OK, NF, OK]),
    ("ListApiKeys", [PD, OK, PD, PD, OK, OK, OK, NF, OK]),
    ("RevokeApiKey", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("RotateApiKey", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("RotateSigningKey", [PD, PD, PD, PD, PD, PD, PD, PD, OK]),
    ("ListAuditEvents", [PD, PD, PD, PD, PD, PD, OK, NF, OK]),
    ("WatchAuditEvents", [PD, PD, PD, PD, PD, PD, OK, NF, OK]),
    ("AddRoleBinding", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("RemoveRoleBinding", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("ListRoleBindings", [PD, OK, PD, PD, OK, OK, OK, OK, OK]),
    ("AddAdministrator", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
    ("RemoveAdministrator", [PD, PD, PD, PD, PD, OK, OK, NF, OK]),
];

/// A fresh target: a viewer service user with one key, administered by `administrator`.
struct Target {
    user_id: String,
    key_id: String,
    binding_id: String,
    organization_id: String,
    project_id: String,
    /// Distinguishes the names a cell creates.
    cell: usize,
}

/// What is stored about a target, to compare before and after a denied call.
async fn snapshot(admin: &mut Admin, target: &Target) -> String {
    let user = admin
        .get_service_user(GetServiceUserRequest {
            id: target.user_id.clone(),
        })
        .await
        .map(|r| format!("{:?}", r.into_inner()))
        .unwrap_or_else(|s| format!("{:?}", s.code()));
    let keys = admin
        .list_api_keys(ListApiKeysRequest {
            service_user_id: target.user_id.clone(),
            ..Default::default()
        })
        .await
        .map(|r| format!("{:?}", r.into_inner().api_keys))
        .unwrap_or_default();
    let bindings = admin
        .list_role_bindings(ListRoleBindingsRequest {
            principal_id: target.user_id.clone(),
            ..Default::default()
        })
        .await
        .map(|r| format!("{:?}", r.into_inner().role_bindings))
        .unwrap_or_default();
    let organization = admin
        .get_organization(GetOrganizationRequest {
            id: target.organization_id.clone(),
        })
        .await
        .map(|r| format!("{:?}", r.into_inner()))
        .unwrap_or_default();
    let projects = admin
        .list_projects(ListProjectsRequest::default())
        .await
        .map(|r| format!("{:?}", r.into_inner().projects))
        .unwrap_or_default();
    format!("{user}\n{keys}\n{bindings}\n{organization}\n{projects}")
}

async fn call(rpc: &str, client: &mut Admin, target: &Target, other_admin: &str) -> Code {
    let user = target.user_id.clone();
    let result = match rpc {
        "GetServiceUser" => client
            .get_service_user(GetServiceUserRequest { id: user })
            .await
            .map(|_| ()),
        "ListServiceUsers" => client
            .list_service_users(ListServiceUsersRequest::default())
            .await
            .map(|_| ()),
        "UpdateServiceUser" => client
            .update_service_user(UpdateServiceUserRequest {
                service_user: Some(ServiceUser {
                    id: user,
                    description: "changed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["description".into()],
                }),
            })
            .await
            .map(|_| ()),
        "DisableServiceUser" => client
            .disable_service_user(DisableServiceUserRequest { id: user })
            .await
            .map(|_| ()),
        "EnableServiceUser" => client
            .enable_service_user(EnableServiceUserRequest { id: user })
            .await
            .map(|_| ()),
        "DeleteServiceUser" => client
            .delete_service_user(DeleteServiceUserRequest {
                id: user,
                force: true,
            })
            .await
            .map(|_| ()),
        "CreateApiKey" => client
            .create_api_key(key_request(&user, "second"))
            .await
            .map(|_| ()),
        "GetApiKey" => client
            .get_api_key(GetApiKeyRequest {
                id: target.key_id.clone(),
            })
            .await
            .map(|_| ()),
        "ListApiKeys" => client
            .list_api_keys(ListApiKeysRequest {
                service_user_id: user,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "RotateApiKey" => client
            .rotate_api_key(RotateApiKeyRequest {
                id: target.key_id.clone(),
                grace_period: None,
            })
            .await
            .map(|_| ()),
        "WatchAuditEvents" => client
            .watch_audit_events(tokenmint::proto::admin::v1::WatchAuditEventsRequest {
                organization_id: target.organization_id.clone(),
                after_id: String::new(),
            })
            .await
            .map(|_| ()),
        "ListAuditEvents" => client
            .list_audit_events(tokenmint::proto::admin::v1::ListAuditEventsRequest {
                organization_id: target.organization_id.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "RotateSigningKey" => client
            .rotate_signing_key(RotateSigningKeyRequest { immediate: false })
            .await
            .map(|_| ()),
        "RevokeApiKey" => client
            .revoke_api_key(RevokeApiKeyRequest {
                id: target.key_id.clone(),
                reason: String::new(),
            })
            .await
            .map(|_| ()),
        "AddRoleBinding" => client
            .add_role_binding(AddRoleBindingRequest {
                role_binding: Some(RoleBinding {
                    principal_id: user,
                    role: Role::Admin as i32,
                    ..Default::default()
                }),
            })
            .await
            .map(|_| ()),
        "RemoveRoleBinding" => client
            .remove_role_binding(RemoveRoleBindingRequest {
                id: target.binding_id.clone(),
            })
            .await
            .map(|_| ()),
        "ListRoleBindings" => client
            .list_role_bindings(ListRoleBindingsRequest {
                principal_id: user.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        "AddAdministrator" => client
            .add_administrator(AddAdministratorRequest {
                service_user_id: user,
                principal_id: other_admin.into(),
            })
            .await
            .map(|_| ()),
        "RemoveAdministrator" => client
            .remove_administrator(RemoveAdministratorRequest {
                service_user_id: user,
                principal_id: other_admin.into(),
            })
            .await
            .map(|_| ()),
        "CreateServiceUser" => client
            .create_service_user(CreateServiceUserRequest {
                organization_id: String::new(),
                service_user: Some(ServiceUser {
                    name: format!("made-{}", target.cell),
                    ..Default::default()
                }),
                role_bindings: Vec::new(),
            })
            .await
            .map(|_| ()),
        "CreateOrganization" => client
            .create_organization(CreateOrganizationRequest {
                organization: Some(Organization {
                    name: format!("org-{}", target.cell),
                    ..Default::default()
                }),
            })
            .await
            .map(|_| ()),
        "GetOrganization" => client
            .get_organization(GetOrganizationRequest {
                id: target.organization_id.clone(),
            })
            .await
            .map(|_| ()),
        "ListOrganizations" => client
            .list_organizations(ListOrganizationsRequest::default())
            .await
            .map(|_| ()),
        "UpdateOrganization" => client
            .update_organization(UpdateOrganizationRequest {
                organization: Some(Organization {
                    id: target.organization_id.clone(),
                    display_name: format!("changed {}", target.cell),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            })
            .await
            .map(|_| ()),
        "CreateProject" => client
            .create_project(CreateProjectRequest {
                organization_id: String::new(),
                project: Some(Project {
                    name: format!("made-{}", target.cell),
                    ..Default::default()
                }),
            })
            .await
            .map(|_| ()),
        "ListProjects" => client
            .list_projects(ListProjectsRequest::default())
            .await
            .map(|_| ()),
        "DeleteProject" => client
            .delete_project(DeleteProjectRequest {
                id: target.project_id.clone(),
                force: true,
            })
            .await
            .map(|_| ()),
        other => panic!("no such RPC in the matrix: {other}"),
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn every_rpc_answers_every_caller_as_the_matrix_says(backend: Backend) {
    let Some(server) = Server::start(backend).await else {
        return;
    };
    let nobody = server.principal_with_roles("nobody", &[]).await;
    let viewer = server.principal_with_roles("viewer", &["viewer"]).await;
    // Project roles only: they must give no power over the organization's users.
    let mut bootstrap_for_projects = server.admin().await;
    let project = bootstrap_for_projects
        .create_project(tokenmint::proto::admin::v1::CreateProjectRequest {
            organization_id: String::new(),
            project: Some(tokenmint::proto::admin::v1::Project {
                name: "matrix".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let project_viewer =
        project_principal(&server, "project-viewer", &project.id, Role::Viewer).await;
    let project_admin = project_principal(&server, "project-admin", &project.id, Role::Admin).await;
    let admin_other = server.principal_with_roles("admin-other", &["admin"]).await;
    let admin_of = server.principal_with_roles("admin-of", &["admin"]).await;
    let owner = server.principal_with_roles("owner", &["owner"]).await;
    let foreign = server
        .foreign_principal_with(&[tokenmint_store::Role::Owner])
        .await;
    let superuser = server.admin.clone();
    let callers: [&Credential; 9] = [
        &nobody,
        &viewer,
        &project_viewer,
        &project_admin,
        &admin_other,
        &admin_of,
        &owner,
        &foreign,
        &superuser,
    ];
    let mut bootstrap = server.admin().await;
    let mut clients = Vec::new();
    for caller in callers {
        clients.push(server.admin_for(caller).await);
    }

    let mut failures = Vec::new();
    let mut n = 0;
    for (rpc, expected) in MATRIX {
        for (column, want) in expected.into_iter().enumerate() {
            n += 1;
            let user = create_user(&mut bootstrap, &format!("t{n}")).await;
            let (key, _) = create_key(&mut bootstrap, &user.id, "k").await;
            let binding = bootstrap
                .add_role_binding(AddRoleBindingRequest {
                    role_binding: Some(RoleBinding {
                        principal_id: user.id.clone(),
                        role: Role::Viewer as i32,
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner();
            bootstrap
                .add_administrator(AddAdministratorRequest {
                    service_user_id: user.id.clone(),
                    principal_id: admin_of.service_user_id.clone(),
                })
                .await
                .unwrap();
            let project = bootstrap
                .create_project(CreateProjectRequest {
                    organization_id: String::new(),
                    project: Some(Project {
                        name: format!("p{n}"),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner();
            let target = Target {
                user_id: user.id,
                key_id: key.id,
                binding_id: binding.id,
                organization_id: server.admin.organization_id.clone(),
                project_id: project.id,
                cell: n,
            };
            // AddAdministrator adds the admin that is not yet one; RemoveAdministrator removes
            // the one that is.
            let other_admin = if rpc == "RemoveAdministrator" {
                &admin_of.service_user_id
            } else {
                &admin_other.service_user_id
            };
            let before = snapshot(&mut bootstrap, &target).await;
            let got = call(rpc, &mut clients[column], &target, other_admin).await;
            if got != want {
                failures.push(format!(
                    "{rpc} by {}: expected {want:?}, got {got:?}",
                    CALLERS[column]
                ));
            }
            if got != Code::Ok && snapshot(&mut bootstrap, &target).await != before {
                failures.push(format!(
                    "{rpc} by {}: denied ({got:?}) but stored state changed",
                    CALLERS[column]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A list by a caller of another organization never shows this organization's users.
    let mut as_foreign = server.admin_for(&foreign).await;
    let theirs = as_foreign
        .list_service_users(ListServiceUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .service_users;
    assert!(
        theirs
            .iter()
            .all(|u| u.organization_id == foreign.organization_id)
    );
}

/// A service user whose only role is `role` on `project_id`, with a key carrying it.
async fn project_principal(
    server: &Server,
    name: &str,
    project_id: &str,
    role: Role,
) -> Credential {
    let mut bootstrap = server.admin().await;
    let user = create_user(&mut bootstrap, name).await;
    bootstrap
        .add_role_binding(AddRoleBindingRequest {
            role_binding: Some(RoleBinding {
                principal_id: user.id.clone(),
                project_id: project_id.into(),
                role: role as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let (key, secret) = create_key(&mut bootstrap, &user.id, "main").await;
    assert_eq!(key.scopes.len(), 1, "the key carries the project role");
    Credential {
        organization_id: user.organization_id,
        service_user_id: user.id,
        key_id: key.id,
        secret,
    }
}

on_both_backends!(every_rpc_answers_every_caller_as_the_matrix_says);

/// A new AdminService RPC cannot slip past the matrix: its rows are exactly the service's methods.
#[test]
fn the_matrix_covers_every_admin_rpc() {
    use prost::Message;
    let set =
        prost_types::FileDescriptorSet::decode(tokenmint::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| f.service.iter())
        .filter(|s| s.name() == "AdminService")
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect();
    methods.sort();
    let mut rows: Vec<String> = MATRIX.iter().map(|(rpc, _)| (*rpc).to_owned()).collect();
    rows.sort();
    assert_eq!(rows, methods);
}
