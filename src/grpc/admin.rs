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
    /// Proxies whose `x-forwarded-for` is believed.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Becomes `true` when the server drains: open watch streams end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Open watch streams, bounded in total and per API key.
    pub watches: Arc<WatchSlots>,
}

/// Most watch streams open at once on one server, and per API key.
pub const MAX_WATCHES: usize = 256;
pub const MAX_WATCHES_PER_KEY: usize = 4;

/// The open watch streams: each costs a task and a read every few seconds.
#[derive(Debug)]
pub struct WatchSlots {
    total: Arc<tokio::sync::Semaphore>,
    per_key: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Default for WatchSlots {
    fn default() -> Self {
        Self {
            total: Arc::new(tokio::sync::Semaphore::new(MAX_WATCHES)),
            per_key: Default::default(),
        }
    }
}

/// One open watch; freed when dropped.
struct WatchSlot {
    slots: Arc<WatchSlots>,
    key: String,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut per_key = self.slots.per_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = per_key.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                per_key.remove(&self.key);
            }
        }
    }
}

impl WatchSlots {
    /// A slot for a watch by `key`, or RESOURCE_EXHAUSTED.
    fn take(self: &Arc<Self>, key: &str) -> Result<WatchSlot, Status> {
        let busy = |what: &str| {
            Status::from(crate::error::Error::ResourceExhausted(format!(
                "too many watch streams {what}; close one first"
            )))
        };
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy("on this server"))?;
        let mut per_key = self.per_key.lock().unwrap_or_else(|p| p.into_inner());
        let open = per_key.entry(key.to_owned()).or_insert(0);
        if *open >= MAX_WATCHES_PER_KEY {
            return Err(busy("for this API key"));
        }
        *open += 1;
        Ok(WatchSlot {
            slots: self.clone(),
            key: key.to_owned(),
            _permit: permit,
        })
    }
}

/// How often a watch re-reads its chain when no notification came (a lost PostgreSQL
/// notification, a lagging receiver) and re-checks its caller's authority.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// Events a watch reads in one go.
const WATCH_BATCH: u64 = 100;

/// Returns when `chain` may have gained events.
async fn appended_to(appended: &mut tokio::sync::broadcast::Receiver<String>, chain: &str) {
    loop {
        match appended.recv().await {
            Ok(c) if c == chain => return,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                std::future::pending::<()>().await
            }
        }
    }
}

impl AdminApi {
    /// Authenticates the caller and hands back the request body.
    async fn caller<T>(&self, request: Request<T>) -> Result<(Principal, T), Status> {
        let mut caller = self.app.authenticate(bearer(request.metadata())?).await?;
        caller.origin = convert::origin(&request, &self.trusted_proxies);
        Ok((caller, request.into_inner()))
    }

    /// A change's result, its failure recorded in the audit trail (its success was recorded
    /// with the change).
    async fn audited<R>(
        &self,
        caller: &Principal,
        action: &'static str,
        target_id: &str,
        result: crate::error::Result<R>,
    ) -> Result<R, Status> {
        if let Err(error) = &result {
            self.app
                .audit_failure(
                    caller.organization_id.as_str(),
                    &caller.into(),
                    action,
                    target_id,
                    crate::grpc::status::code_name(error),
                )
                .await;
        }
        result.map_err(Status::from)
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
        let target = user.name.clone();
        let result = self
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
            .await;
        let record = self
            .audited(&caller, "CreateServiceUser", &target, result)
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
        let result = self
            .app
            .update_service_user(&caller, &id, &etag, &mask, fields(user))
            .await;
        let record = self
            .audited(&caller, "UpdateServiceUser", &id, result)
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn delete_service_user(
        &self,
        request: Request<pb::DeleteServiceUserRequest>,
    ) -> Result<Response<()>, Status> {
        let (caller, r) = self.caller(request).await?;
        let result = self.app.delete_service_user(&caller, &r.id, r.force).await;
        self.audited(&caller, "DeleteServiceUser", &r.id, result)
            .await?;
        Ok(Response::new(()))
    }

    async fn disable_service_user(
        &self,
        request: Request<pb::DisableServiceUserRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        let result = self
            .app
            .set_service_user_enabled(&caller, &r.id, false)
            .await;
        let record = self
            .audited(&caller, "DisableServiceUser", &r.id, result)
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn enable_service_user(
        &self,
        request: Request<pb::EnableServiceUserRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        let result = self
            .app
            .set_service_user_enabled(&caller, &r.id, true)
            .await;
        let record = self
            .audited(&caller, "EnableServiceUser", &r.id, result)
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let target = r.service_user_id.clone();
        let result = self
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
            .await;
        let created = self
            .audited(&caller, "CreateApiKey", &target, result)
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
        let target = binding.principal_id.clone();
        let result = self.app.add_role_binding(&caller, binding).await;
        let added = self
            .audited(&caller, "AddRoleBinding", &target, result)
            .await?;
        Ok(Response::new(added.into()))
    }

    async fn remove_role_binding(
        &self,
        request: Request<pb::RemoveRoleBindingRequest>,
    ) -> Result<Response<()>, Status> {
        let (caller, r) = self.caller(request).await?;
        let result = self.app.remove_role_binding(&caller, &r.id).await;
        self.audited(&caller, "RemoveRoleBinding", &r.id, result)
            .await?;
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
        let result = self
            .app
            .add_administrator(&caller, &r.service_user_id, &r.principal_id)
            .await;
        let record = self
            .audited(&caller, "AddAdministrator", &r.service_user_id, result)
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn remove_administrator(
        &self,
        request: Request<pb::RemoveAdministratorRequest>,
    ) -> Result<Response<pb::ServiceUser>, Status> {
        let (caller, r) = self.caller(request).await?;
        let result = self
            .app
            .remove_administrator(&caller, &r.service_user_id, &r.principal_id)
            .await;
        let record = self
            .audited(&caller, "RemoveAdministrator", &r.service_user_id, result)
            .await?;
        Ok(Response::new(record.into()))
    }

    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::Organization>, Status> {
        let (caller, r) = self.caller(request).await?;
        let fields = convert::organization_fields(r.organization.unwrap_or_default());
        let target = fields.name.clone();
        let result = self.app.create_organization(&caller, fields).await;
        let created = self
            .audited(&caller, "CreateOrganization", &target, result)
            .await?;
        Ok(Response::new(created.into()))
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
        let result = self
            .app
            .update_organization(
                &caller,
                &id,
                &etag,
                &mask,
                convert::organization_fields(organization),
            )
            .await;
        let updated = self
            .audited(&caller, "UpdateOrganization", &id, result)
            .await?;
        Ok(Response::new(updated.into()))
    }

    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let (caller, r) = self.caller(request).await?;
        let project = r.project.unwrap_or_default();
        let target = project.name.clone();
        let result = self
            .app
            .create_project(
                &caller,
                &r.organization_id,
                project.name,
                project.display_name,
            )
            .await;
        let created = self
            .audited(&caller, "CreateProject", &target, result)
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
        let result = self.app.delete_project(&caller, &r.id, r.force).await;
        self.audited(&caller, "DeleteProject", &r.id, result)
            .await?;
        Ok(Response::new(()))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let (caller, r) = self.caller(request).await?;
        let result = self.app.revoke_api_key(&caller, &r.id, &r.reason).await;
        let revoked = self.audited(&caller, "RevokeApiKey", &r.id, result).await?;
        Ok(Response::new(convert::api_key(revoked, self.app.now())))
    }

    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::RotateApiKeyResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let grace = convert::duration("grace_period", r.grace_period)?;
        let result = self.app.rotate_api_key(&caller, &r.id, grace).await;
        let rotated = self.audited(&caller, "RotateApiKey", &r.id, result).await?;
        Ok(Response::new(convert::rotated_api_key(
            rotated,
            self.app.now(),
        )))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let (caller, r) = self.caller(request).await?;
        let page = self
            .app
            .list_audit_events(
                &caller,
                &r.organization_id,
                &r.filter,
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: page.audit_events.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    type WatchAuditEventsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AuditEvent, Status>> + Send>>;

    async fn watch_audit_events(
        &self,
        request: Request<pb::WatchAuditEventsRequest>,
    ) -> Result<Response<Self::WatchAuditEventsStream>, Status> {
        let token = bearer(request.metadata())?.map(str::to_owned);
        let (caller, r) = self.caller(request).await?;
        let chain = self.app.readable_chain(&caller, &r.organization_id).await?;
        let slot = self.watches.take(caller.api_key_id.as_str())?;
        let mut after = if r.after_id.is_empty() {
            self.app.newest_audit_event(&chain).await?
        } else if crate::domain::audit::is_event_id(&r.after_id) {
            Some(r.after_id.clone())
        } else {
            return Err(crate::error::Error::invalid(
                "after_id",
                "must be empty or an ID like ev_…",
            )
            .into());
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let app = self.app.clone();
        let mut stopping = self.stopping.clone();
        let mut appended = app.store.audit_appended();
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                if *stopping.borrow() {
                    // UNAVAILABLE, not OK: the watch did not end, this server did; a client
                    // resumes on another replica from the last event it saw. Never waits on a
                    // reader that has stopped reading: that would hold the shutdown.
                    let _ = sender.try_send(Err(tonic::Status::unavailable(
                        "the server is shutting down; watch again with after_id set to the last \
                         event received",
                    )));
                    return;
                }
                // The caller's authority now, not when the stream opened.
                let current = match app.authenticate(token.as_deref()).await {
                    Ok(current) => current,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                if let Err(error) = app.readable_chain(&current, &r.organization_id).await {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
                let events = match app
                    .audit_events_after(&chain, after.as_deref(), WATCH_BATCH)
                    .await
                {
                    Ok(events) => events,
                    Err(error) => {
                        let _ = sender.send(Err(error.into())).await;
                        return;
                    }
                };
                let full = events.len() as u64 == WATCH_BATCH;
                for event in events {
                    after = Some(event.id.clone());
                    tokio::select! {
                        sent = sender.send(Ok(event.into())) => if sent.is_err() { return },
                        // A reader that stopped reading cannot hold the shutdown.
                        () = async { let _ = stopping.wait_for(|stop| *stop).await; } => break,
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    () = appended_to(&mut appended, &chain) => {}
                    () = tokio::time::sleep(WATCH_POLL) => {}
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {}
                    () = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::SigningKey>, Status> {
        let (caller, r) = self.caller(request).await?;
        let result = self.app.rotate_signing_key_as(&caller, r.immediate).await;
        let rotated = self
            .audited(&caller, "RotateSigningKey", "", result)
            .await?;
        Ok(Response::new(convert::signing_key(rotated)))
    }
}
