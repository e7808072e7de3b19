//! Schema migrations, applied in order at start-up.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_explicit_key_scopes;
mod m0003_organization_revision;
mod m0004_projects;
mod m0005_rotation;
mod m0006_audit_events;
mod m0007_last_active;
mod m0008_key_notices;
mod m0009_audit_anchors;
mod m0010_list_indexes;

/// Every migration Tokenmint knows, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_explicit_key_scopes::Migration),
            Box::new(m0003_organization_revision::Migration),
            Box::new(m0004_projects::Migration),
            Box::new(m0005_rotation::Migration),
            Box::new(m0006_audit_events::Migration),
            Box::new(m0007_last_active::Migration),
            Box::new(m0008_key_notices::Migration),
            Box::new(m0009_audit_anchors::Migration),
            Box::new(m0010_list_indexes::Migration),
        ]
    }
}
