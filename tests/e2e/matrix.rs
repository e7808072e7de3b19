//! The authorization matrix: every AdminService RPC that acts on a service user, its keys or its
//! bindings, called by every kind of caller, each cell the expected code; every denied cell also
//! checks that nothing stored changed.

use crate::harness::{Admin, Backend, Credential, Server, create_key, create_user, key_request};
use crate::on_both_backends;
use tokenmint::proto::admin::v1::{
    AddAdministratorRequest, AddRoleBindingRequest, DeleteServiceUserRequest,
    DisableServiceUserRequest, EnableServiceUserRequest, GetApiKeyRequest, GetServiceUserRequest,
    ListApiKeysRequest, ListRoleBindingsRequest, ListServiceUsersRequest,
    RemoveAdministratorRequest, RemoveRoleBindingRequest, RevokeApiKeyRequest, Role, RoleBinding,
    ServiceUser, UpdateServiceUserRequest,
};
use tonic::Code;

/// The callers, in the matrix's column order.
const CALLERS: [&str; 7] = [
    "no role",
    "viewer",
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
const MATRIX: [(&str, [Code; 7]); 15] = [
    ("GetServiceUser", [PD, OK, OK, OK, OK, NF, OK]),
    ("ListServiceUsers", [PD, OK, OK, OK, OK, OK, OK]),
    ("UpdateServiceUser", [PD, PD, PD, OK, OK, NF, OK]),
    ("DisableServiceUser", [PD, PD, PD, OK, OK, NF, OK]),
    ("EnableServiceUser", [PD, PD, PD, OK, OK, NF, OK]),
    ("DeleteServiceUser", [PD, PD, PD, OK, OK, NF, OK]),
    ("CreateApiKey", [PD, PD, PD, OK, OK, NF, OK]),
    ("GetApiKey", [PD, OK, OK, OK, OK, NF, OK]),
    ("ListApiKeys", [PD, OK, OK, OK, OK, NF, OK]),
    ("RevokeApiKey", [PD, PD, PD, OK, OK, NF, OK]),
    ("AddRoleBinding", [PD, PD, PD, OK, OK, NF, OK]),
    ("RemoveRoleBinding", [PD, PD, PD, OK, OK, NF, OK]),
    ("ListRoleBindings", [PD, OK, OK, OK, OK, OK, OK]),
    ("AddAdministrator", [PD, PD, PD, OK, OK, NF, OK]),
    ("RemoveAdministrator", [PD, PD, PD, OK, OK, NF, OK]),
];

/// A fresh target: a viewer service user with one key, administered by `administrator`.
struct Target {
    user_id: String,
    key_id: String,
    binding_id: String,
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
    format!("{user}\n{keys}\n{bindings}")
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
    let admin_other = server.principal_with_roles("admin-other", &["admin"]).await;
    let admin_of = server.principal_with_roles("admin-of", &["admin"]).await;
    let owner = server.principal_with_roles("owner", &["owner"]).await;
    let foreign = server
        .foreign_principal_with(&[tokenmint_store::Role::Owner])
        .await;
    let superuser = server.admin.clone();
    let callers: [&Credential; 7] = [
        &nobody,
        &viewer,
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
            let target = Target {
                user_id: user.id,
                key_id: key.id,
                binding_id: binding.id,
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

on_both_backends!(every_rpc_answers_every_caller_as_the_matrix_says);
