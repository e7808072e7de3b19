//! The last event removed from an audit chain by retention.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_anchors")]
pub struct Model {
    /// The chain (empty: the platform's).
    #[sea_orm(primary_key, auto_increment = false)]
    pub organization_id: String,
    pub event_id: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
