//! The gRPC face: Tokenmint's services plus health and reflection, assembled into one router.

pub mod admin;
pub mod auth;
pub mod convert;
pub mod health;
pub mod status;

use crate::domain::Tokenmint;
use crate::proto::{
    admin::v1::admin_service_server::AdminServiceServer,
    auth::v1::auth_service_server::AuthServiceServer,
};
use std::sync::Arc;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;

/// Every service behind one set of routes; `max_request_bytes` bounds decoded request messages.
pub fn routes(
    app: Arc<Tokenmint>,
    max_request_bytes: usize,
    trusted_proxies: Arc<[ipnet::IpNet]>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<(Routes, HealthReporter), tonic_reflection::server::Error> {
    let health = HealthReporter::new();
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        health::DrainingHealth::new(health.clone(), stopping.clone()),
    );
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let auth = AuthServiceServer::new(auth::AuthApi {
        app: app.clone(),
        trusted_proxies: trusted_proxies.clone(),
    })
    .max_decoding_message_size(max_request_bytes);
    let admin = AdminServiceServer::new(admin::AdminApi {
        app,
        trusted_proxies,
        stopping,
        watches: Default::default(),
    })
    .max_decoding_message_size(max_request_bytes);
    let routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(auth)
        .add_service(admin);
    Ok((routes, health))
}
