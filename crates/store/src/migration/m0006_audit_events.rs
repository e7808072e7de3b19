//! The audit trail: one table, read newest first per organization.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OrganizationId,
    Time,
    ActorId,
    ActorKeyId,
    Action,
    TargetId,
    Outcome,
    SourceAddress,
    RequestId,
    Details,
    PreviousHash,
    Hash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(string(AuditEvents::Id).primary_key())
                    .col(string(AuditEvents::OrganizationId))
                    .col(timestamp_with_time_zone(AuditEvents::Time))
                    .col(string(AuditEvents::ActorId))
                    .col(string(AuditEvents::ActorKeyId))
                    .col(string(AuditEvents::Action))
                    .col(string(AuditEvents::TargetId))
                    .col(string(AuditEvents::Outcome))
                    .col(string(AuditEvents::SourceAddress))
                    .col(string(AuditEvents::RequestId))
                    .col(text(AuditEvents::Details))
                    .col(string(AuditEvents::PreviousHash))
                    .col(string(AuditEvents::Hash))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_audit_events_organization_id")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OrganizationId)
                    .col(AuditEvents::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
