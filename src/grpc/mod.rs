//! The gRPC face: Tokenmint's services plus health and reflection, assembled into one router.

pub mod admin;
pub mod auth;
pub mod convert;
pub mod status;

use crate::domain::Tokenmint;
use crate::proto::{
    admin::v1::admin_service_server::AdminServiceServer,
    auth::v1::auth_service_server::AuthServiceServer,
};
use std::sync::Arc;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

/// Builds the router with every service; `max_request_bytes` bounds decoded request messages.
pub fn router(
    app: Arc<Tokenmint>,
    max_request_bytes: usize,
) -> Result<(Router, HealthReporter), tonic_reflection::server::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let auth = AuthServiceServer::new(auth::AuthApi { app: app.clone() })
        .max_decoding_message_size(max_request_bytes);
    let admin = AdminServiceServer::new(admin::AdminApi { app })
        .max_decoding_message_size(max_request_bytes);
    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(auth)
        .add_service(admin);
    Ok((router, health))
}
