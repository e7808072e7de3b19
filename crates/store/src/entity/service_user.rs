//! A non-human identity inside one organization.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "service_users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub display_name: String,
    pub email: String,
    pub description: String,
    /// `ACTIVE` or `DISABLED`.
    pub state: String,
    pub creator: String,
    /// Bumped on every change; the etag is derived from it.
    pub revision: i64,
    pub create_time: DateTimeUtc,
    pub update_time: DateTimeUtc,
    /// Last exchange of one of its keys (written in batches).
    pub last_active_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
