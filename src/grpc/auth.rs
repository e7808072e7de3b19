//! `tokenmint.auth.v1.AuthService`: translation only; the rules are in `domain`.

use crate::domain::{Tokenmint, exchange::ExchangeRequest};
use crate::grpc::convert::{
    bearer, client_address, duration, origin, rotated_api_key, timestamp_from_seconds,
};
use crate::proto::auth::v1::{self as pb, auth_service_server::AuthService};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The AuthService implementation.
pub struct AuthApi {
    /// Shared state.
    pub app: Arc<Tokenmint>,
    /// Proxies whose `x-forwarded-for` is believed.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn exchange_api_key(
        &self,
        request: Request<pb::ExchangeApiKeyRequest>,
    ) -> Result<Response<pb::ExchangeApiKeyResponse>, Status> {
        let peer = client_address(&request, &self.trusted_proxies);
        let r = request.into_inner();
        let key_id = r.key_id.clone();
        let result = match duration("requested_ttl", r.requested_ttl) {
            Ok(requested_ttl) => {
                self.app
                    .exchange_api_key(ExchangeRequest {
                        requested_ttl,
                        key_id: r.key_id,
                        secret: r.secret,
                        audience: r.audience,
                        scope: r.scope,
                        peer,
                    })
                    .await
            }
            Err(error) => Err(error),
        };
        crate::metrics::exchange(
            "grpc",
            result
                .as_ref()
                .map_or_else(crate::grpc::status::code_name, |_| "OK"),
        );
        // Successes are counted by the domain, which knows the key's organization.
        if let Err(error) = &result {
            self.app.activity.record_failure(
                "ExchangeApiKey",
                &key_id,
                peer,
                crate::grpc::status::code_name(error),
                self.app.now(),
            );
        }
        let issued = result?;
        Ok(Response::new(pb::ExchangeApiKeyResponse {
            access_token: issued.access_token,
            token_type: "Bearer".into(),
            expires_in: issued.expires_in,
            expire_time: Some(timestamp_from_seconds(issued.expire_time)),
            scope: issued.scope,
        }))
    }

    async fn introspect_token(
        &self,
        request: Request<pb::IntrospectTokenRequest>,
    ) -> Result<Response<pb::IntrospectTokenResponse>, Status> {
        let caller = self.app.authenticate(bearer(request.metadata())?).await?;
        let Some(claims) = self
            .app
            .introspect_token(&caller, &request.into_inner().token)
            .await?
        else {
            return Ok(Response::new(pb::IntrospectTokenResponse::default()));
        };
        Ok(Response::new(pb::IntrospectTokenResponse {
            active: true,
            sub: claims.sub,
            client_id: claims.client_id,
            organization_id: claims.organization_id,
            scope: claims.scope,
            iss: claims.iss,
            aud: claims.aud,
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti,
        }))
    }

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let jwks = self.app.keyring.jwks();
        Ok(Response::new(pb::GetJwksResponse {
            json: jwks.to_json(),
            keys: jwks
                .keys
                .iter()
                .map(|k| pb::Jwk {
                    kty: k.kty.clone(),
                    crv: k.crv.clone(),
                    kid: k.kid.clone(),
                    alg: k.alg.clone(),
                    r#use: k.use_.clone(),
                    x: k.x.clone(),
                    y: k.y.clone(),
                    n: k.n.clone(),
                    e: k.e.clone(),
                })
                .collect(),
        }))
    }

    async fn rotate_own_api_key(
        &self,
        request: Request<pb::RotateOwnApiKeyRequest>,
    ) -> Result<Response<crate::proto::admin::v1::RotateApiKeyResponse>, Status> {
        let origin = origin(&request, &self.trusted_proxies);
        let r = request.into_inner();
        let peer = origin.address;
        let result = match duration("grace_period", r.grace_period) {
            Ok(grace) => {
                self.app
                    .rotate_own_api_key(&r.key_id, &r.secret, grace, origin)
                    .await
            }
            Err(error) => Err(error),
        };
        // A success is an event of its own, written with the rotation.
        if let Err(error) = &result {
            self.app.activity.record_failure(
                "RotateOwnApiKey",
                &r.key_id,
                peer,
                crate::grpc::status::code_name(error),
                self.app.now(),
            );
        }
        let rotated = result?;
        Ok(Response::new(rotated_api_key(rotated, self.app.now())))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = self.app.authenticate(bearer(request.metadata())?).await?;
        let administered = self.app.administered_by(&caller).await?;
        Ok(Response::new(pb::WhoAmIResponse {
            administered_service_user_ids: administered,
            service_user_id: caller.service_user_id.to_string(),
            service_user_name: caller.service_user_name.clone(),
            organization_id: caller.organization_id.to_string(),
            api_key_id: caller.api_key_id.to_string(),
            roles: caller
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .chain(caller.bindings.iter().filter_map(|b| match &b.scope {
                    tokenmint_store::RoleScope::Project(project) => {
                        Some(format!("{project}:{}", b.role))
                    }
                    _ => None,
                }))
                .collect(),
            scope: caller.token_scope_string(),
            expire_time: Some(timestamp_from_seconds(caller.token_expiry)),
        }))
    }
}
