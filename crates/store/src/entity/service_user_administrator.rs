//! A principal allowed to manage one service user and its keys.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "service_user_administrators")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub service_user_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub principal_id: String,
    pub create_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
