//! Projects: named scopes inside an organization, for project-level roles.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    OrganizationId,
    Name,
    DisplayName,
    CreateTime,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(string(Projects::Id).primary_key())
                    .col(string(Projects::OrganizationId))
                    .col(string(Projects::Name))
                    .col(string(Projects::DisplayName))
                    .col(timestamp_with_time_zone(Projects::CreateTime))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Projects::Table, Projects::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_projects_organization_name")
                    .table(Projects::Table)
                    .col(Projects::OrganizationId)
                    .col(Projects::Name)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Projects::Table).to_owned())
            .await
    }
}
