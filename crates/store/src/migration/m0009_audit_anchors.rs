//! Where each audit chain was cut by retention: the last removed event, so the first kept one
//! can be checked against it and a chain missing its start is found.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditAnchors {
    Table,
    OrganizationId,
    EventId,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditAnchors::Table)
                    .col(string(AuditAnchors::OrganizationId).primary_key())
                    .col(string(AuditAnchors::EventId))
                    .col(string(AuditAnchors::Hash))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditAnchors::Table).to_owned())
            .await
    }
}
