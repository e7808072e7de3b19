//! sea-orm entities: one module per table.

pub mod api_key;
pub mod audit_anchor;
pub mod audit_event;
pub mod organization;
pub mod project;
pub mod role_binding;
pub mod service_user;
pub mod service_user_administrator;
pub mod signing_key;
