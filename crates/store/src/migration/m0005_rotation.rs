//! Rotation: an API key keeps its previous secret through a grace period, and a signing key
//! signs from its activation time, after it has been published.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    PreviousSecretHash,
    PreviousSecretExpireTime,
    RotateTime,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    ActivateTime,
    CreateTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            binary_null(ApiKeys::PreviousSecretHash),
            timestamp_with_time_zone_null(ApiKeys::PreviousSecretExpireTime),
            timestamp_with_time_zone_null(ApiKeys::RotateTime),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .add_column(timestamp_with_time_zone_null(SigningKeys::ActivateTime))
                    .to_owned(),
            )
            .await?;
        // Keys from before this release signed from the moment they were made.
        manager
            .exec_stmt(
                Query::update()
                    .table(SigningKeys::Table)
                    .value(
                        SigningKeys::ActivateTime,
                        Expr::col(SigningKeys::CreateTime),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            ApiKeys::PreviousSecretHash,
            ApiKeys::PreviousSecretExpireTime,
            ApiKeys::RotateTime,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .drop_column(SigningKeys::ActivateTime)
                    .to_owned(),
            )
            .await
    }
}
