//! `tokenmint.admin.v1.AdminService`: translation only; the rules are in `domain`.

use crate::domain::Tokenmint;
use crate::domain::api_keys::NewApiKey;
use crate::domain::principal::Principal;
use crate::domain::service_users::ServiceUserFields;
use crate::grpc::convert::{self, bearer, duration};
use crate::proto::admin::v1::{self as pb, admin_service_server::AdminService};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The AdminService implementation.
pub struct AdminApi {
    /// Shared state.
    pub app: Arc<Tokenmint>,
}

impl AdminApi {
    /// Authenticates the caller and hands back the request body.
    async fn caller<T>(&self, request: Request<T>) -> Result<(Principal, T), Status> {
        let caller = self.app.authenticate(bearer(request.metadata())?).await?;
        Ok((caller, request.into_inner()))
    }
}

fn fields(user: pb::ServiceUser) -> ServiceUserFields {
    ServiceUserFields {
        name: user.name,
        display_name: user.display_name,
        email: user.email,
        description: user.description,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_service_user(
        &self,
        request: Request<pb::CreateServiceUserRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        let user = r.service_user.unwrap_or_default();
        let record = self
            .app
            .create_service_user(
                &caller,
                &r.organization_id,
                fields(user),
                r.role_bindings
                    .into_iter()
                    .map(convert::new_role_binding)
                    .collect(),
            )
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn get_service_user(
        &self,
        request: Request<pb::GetServiceUserRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        Ok(Response::new(
            self.app.get_service_user(&caller, &r.id).await?.into(),
        ))
    }

    async fn list_service_users(
        &self,
        request: Request<pb::ListServiceUsersRequest>,
    ) -> Result<Response<pb::ListServiceUsersResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let page = self
            .app
            .list_service_users(
                &caller,
                &r.organization_id,
                r.page_size,
                &r.page_token,
                &r.filter,
            )
            .await?;
        Ok(Response::new(pb::ListServiceUsersResponse {
            service_users: page.service_users.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_service_user(
        &self,
        request: Request<pb::UpdateServiceUserRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        let user = r.service_user.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let (id, etag) = (user.id.clone(), user.etag.clone());
        let record = self
            .app
            .update_service_user(&caller, &id, &etag, &mask, fields(user))
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn delete_service_user(
        &self,
        request: Request<pb::DeleteServiceUserRequest>,
    ) -> Result<Response<()>, Status> {
        let (caller, r) = self.caller(request).await?;
        self.app
            .delete_service_user(&caller, &r.id, r.force)
            .await?;
        Ok(Response::new(()))
    }

    async fn disable_service_user(
        &self,
        request: Request<pb::DisableServiceUserRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        Ok(Response::new(
            self.app
                .set_service_user_enabled(&caller, &r.id, false)
                .await?
                .into(),
        ))
    }

    async fn enable_service_user(
        &self,
        request: Request<pb::EnableServiceUserRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        Ok(Response::new(
            self.app
                .set_service_user_enabled(&caller, &r.id, true)
                .await?
                .into(),
        ))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let created = self
            .app
            .create_api_key(
                &caller,
                NewApiKey {
                    expires_in: duration("expires_in", r.expires_in)?,
                    token_lifetime: duration("token_lifetime", r.token_lifetime)?,
                    service_user_id: r.service_user_id,
                    name: r.name,
                    description: r.description,
                    allowed_cidrs: r.allowed_cidrs,
                    scopes: r.scopes,
                },
            )
            .await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            secret: created.secret.expose().to_owned(),
            api_key: Some(convert::api_key(created.api_key, self.app.now())),
        }))
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let (caller, r) = self.caller(request).await?;
        Ok(Response::new(convert::api_key(
            self.app.get_api_key(&caller, &r.id).await?,
            self.app.now(),
        )))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let page = self
            .app
            .list_api_keys(
                &caller,
                &r.service_user_id,
                r.page_size,
                &r.page_token,
                &r.filter,
            )
            .await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page
                .api_keys
                .into_iter()
                .map(|k| convert::api_key(k, self.app.now()))
                .collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn add_role_binding(
        &self,
        request: Request<pb::AddRoleBindingRequest>,
    ) -> Result<Response<pb::RoleBinding>, Status> {
        let (caller, r) = self.caller(request).await?;
        let binding = convert::new_role_binding(r.role_binding.unwrap_or_default());
        Ok(Response::new(
            self.app.add_role_binding(&caller, binding).await?.into(),
        ))
    }

    async fn remove_role_binding(
        &self,
        request: Request<pb::RemoveRoleBindingRequest>,
    ) -> Result<Response<()>, Status> {
        let (caller, r) = self.caller(request).await?;
        self.app.remove_role_binding(&caller, &r.id).await?;
        Ok(Response::new(()))
    }

    async fn list_role_bindings(
        &self,
        request: Request<pb::ListRoleBindingsRequest>,
    ) -> Result<Response<pb::ListRoleBindingsResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let page = self
            .app
            .list_role_bindings(
                &caller,
                &r.organization_id,
                &r.principal_id,
                &r.project_id,
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListRoleBindingsResponse {
            role_bindings: page.role_bindings.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn add_administrator(
        &self,
        request: Request<pb::AddAdministratorRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        let record = self
            .app
            .add_administrator(&caller, &r.service_user_id, &r.principal_id)
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn remove_administrator(
        &self,
        request: Request<pb::RemoveAdministratorRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        let record = self
            .app
            .remove_administrator(&caller, &r.service_user_id, &r.principal_id)
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let (caller, r) = self.caller(request).await?;
        let fields = convert::organization_fields(r.organization.unwrap_or_default());
        Ok(Response::new(
            self.app.create_organization(&caller, fields).await?.into(),
        ))
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let (caller, r) = self.caller(request).await?;
        Ok(Response::new(
            self.app.get_organization(&caller, &r.id).await?.into(),
        ))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let page = self
            .app
            .list_organizations(&caller, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: page.organizations.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let (caller, r) = self.caller(request).await?;
        let organization = r.organization.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let (id, etag) = (organization.id.clone(), organization.etag.clone());
        let updated = self
            .app
            .update_organization(
                &caller,
                &id,
                &etag,
                &mask,
                convert::organization_fields(organization),
            )
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let (caller, r) = self.caller(request).await?;
        let project = r.project.unwrap_or_default();
        let created = self
            .app
            .create_project(
                &caller,
                &r.organization_id,
                project.name,
                project.display_name,
            )
            .await?;
        Ok(Response::new(created.into()))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let page = self
            .app
            .list_projects(&caller, &r.organization_id, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: page.projects.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<()>, Status> {
        let (caller, r) = self.caller(request).await?;
        self.app.delete_project(&caller, &r.id, r.force).await?;
        Ok(Response::new(()))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let (caller, r) = self.caller(request).await?;
        Ok(Response::new(convert::api_key(
            self.app.revoke_api_key(&caller, &r.id, &r.reason).await?,
            self.app.now(),
        )))
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::RotateApiKeyResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let grace = convert::duration("grace_period", r.grace_period)?;
        let rotated = self.app.rotate_api_key(&caller, &r.id, grace).await?;
        Ok(Response::new(convert::rotated_api_key(
            rotated,
            self.app.now(),
        )))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::SigningKey>, Status> {
        let (caller, r) = self.caller(request).await?;
        Ok(Response::new(convert::signing_key(
            self.app.rotate_signing_key_as(&caller, r.immediate).await?,
        )))
    }
}
