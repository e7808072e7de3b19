//! The first schema: organizations, service users, administrators, role bindings, API keys and
//! signing keys.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    DisplayName,
    MaxServiceUsers,
    MaxKeysPerUser,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum ServiceUsers {
    Table,
    Id,
    OrganizationId,
    Name,
    DisplayName,
    Email,
    Description,
    State,
    Creator,
    Revision,
    CreateTime,
    UpdateTime,
}

#[derive(DeriveIden)]
enum ServiceUserAdministrators {
    Table,
    ServiceUserId,
    PrincipalId,
    CreateTime,
}

#[derive(DeriveIden)]
enum RoleBindings {
    Table,
    Id,
    OrganizationId,
    PrincipalId,
    Scope,
    Role,
    CreateTime,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    ServiceUserId,
    OrganizationId,
    Name,
    Description,
    SecretHash,
    TokenLifetimeSeconds,
    AllowedCidrs,
    Scopes,
    Creator,
    CreateTime,
    ExpireTime,
    LastUsedTime,
    LastUsedAddress,
    RevokeTime,
    RevokeReason,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    PublicKey,
    EncryptedPrivateKey,
    CreateTime,
    RetireTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(string(Organizations::Id).primary_key())
                    .col(string_uniq(Organizations::Name))
                    .col(string(Organizations::DisplayName))
                    .col(integer(Organizations::MaxServiceUsers))
                    .col(integer(Organizations::MaxKeysPerUser))
                    .col(timestamp_with_time_zone(Organizations::CreateTime))
                    .col(timestamp_with_time_zone(Organizations::UpdateTime))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ServiceUsers::Table)
                    .col(string(ServiceUsers::Id).primary_key())
                    .col(string(ServiceUsers::OrganizationId))
                    .col(string(ServiceUsers::Name))
                    .col(string(ServiceUsers::DisplayName))
                    .col(string(ServiceUsers::Email))
                    .col(text(ServiceUsers::Description))
                    .col(string(ServiceUsers::State))
                    .col(string(ServiceUsers::Creator))
                    .col(big_integer(ServiceUsers::Revision))
                    .col(timestamp_with_time_zone(ServiceUsers::CreateTime))
                    .col(timestamp_with_time_zone(ServiceUsers::UpdateTime))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ServiceUsers::Table, ServiceUsers::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        // The database, not a check before insert, keeps names unique in an organization.
        manager
            .create_index(
                Index::create()
                    .name("ux_service_users_organization_name")
                    .table(ServiceUsers::Table)
                    .col(ServiceUsers::OrganizationId)
                    .col(ServiceUsers::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ServiceUserAdministrators::Table)
                    .col(string(ServiceUserAdministrators::ServiceUserId))
                    .col(string(ServiceUserAdministrators::PrincipalId))
                    .col(timestamp_with_time_zone(
                        ServiceUserAdministrators::CreateTime,
                    ))
                    .primary_key(
                        Index::create()
                            .col(ServiceUserAdministrators::ServiceUserId)
                            .col(ServiceUserAdministrators::PrincipalId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                ServiceUserAdministrators::Table,
                                ServiceUserAdministrators::ServiceUserId,
                            )
                            .to(ServiceUsers::Table, ServiceUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RoleBindings::Table)
                    .col(string(RoleBindings::Id).primary_key())
                    .col(string(RoleBindings::OrganizationId))
                    .col(string(RoleBindings::PrincipalId))
                    .col(string(RoleBindings::Scope))
                    .col(string(RoleBindings::Role))
                    .col(timestamp_with_time_zone(RoleBindings::CreateTime))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoleBindings::Table, RoleBindings::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoleBindings::Table, RoleBindings::PrincipalId)
                            .to(ServiceUsers::Table, ServiceUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_role_bindings_principal_scope_role")
                    .table(RoleBindings::Table)
                    .col(RoleBindings::PrincipalId)
                    .col(RoleBindings::Scope)
                    .col(RoleBindings::Role)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(string(ApiKeys::Id).primary_key())
                    .col(string(ApiKeys::ServiceUserId))
                    .col(string(ApiKeys::OrganizationId))
                    .col(string(ApiKeys::Name))
                    .col(text(ApiKeys::Description))
                    .col(binary(ApiKeys::SecretHash))
                    .col(big_integer(ApiKeys::TokenLifetimeSeconds))
                    .col(text(ApiKeys::AllowedCidrs))
                    .col(text(ApiKeys::Scopes))
                    .col(string(ApiKeys::Creator))
                    .col(timestamp_with_time_zone(ApiKeys::CreateTime))
                    .col(timestamp_with_time_zone(ApiKeys::ExpireTime))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedTime))
                    .col(string_null(ApiKeys::LastUsedAddress))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokeTime))
                    .col(text_null(ApiKeys::RevokeReason))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::ServiceUserId)
                            .to(ServiceUsers::Table, ServiceUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_api_keys_service_user_name")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::ServiceUserId)
                    .col(ApiKeys::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(string(SigningKeys::Kid).primary_key())
                    .col(string(SigningKeys::Algorithm))
                    .col(binary(SigningKeys::PublicKey))
                    .col(binary(SigningKeys::EncryptedPrivateKey))
                    .col(timestamp_with_time_zone(SigningKeys::CreateTime))
                    .col(timestamp_with_time_zone_null(SigningKeys::RetireTime))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SigningKeys::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            RoleBindings::Table.into_iden(),
            ServiceUserAdministrators::Table.into_iden(),
            ServiceUsers::Table.into_iden(),
            Organizations::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
