//! Indexes that serve list pages in ID order (keyset pagination): a page of an organization's
//! users, or of a user's keys, is one index range whatever the page's position.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ServiceUsers {
    Table,
    OrganizationId,
    Id,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    ServiceUserId,
    Id,
}

const USERS_INDEX: &str = "ix_service_users_organization_id";
const KEYS_INDEX: &str = "ix_api_keys_service_user_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(USERS_INDEX)
                    .table(ServiceUsers::Table)
                    .col(ServiceUsers::OrganizationId)
                    .col(ServiceUsers::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(KEYS_INDEX)
                    .table(ApiKeys::Table)
                    .col(ApiKeys::ServiceUserId)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(KEYS_INDEX)
                    .table(ApiKeys::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(USERS_INDEX)
                    .table(ServiceUsers::Table)
                    .to_owned(),
            )
            .await
    }
}
