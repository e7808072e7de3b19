//! Service users remember when they last exchanged a key.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ServiceUsers {
    Table,
    LastActiveTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ServiceUsers::Table)
                    .add_column(timestamp_with_time_zone_null(ServiceUsers::LastActiveTime))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ServiceUsers::Table)
                    .drop_column(ServiceUsers::LastActiveTime)
                    .to_owned(),
            )
            .await
    }
}
