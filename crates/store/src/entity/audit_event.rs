//! An append-only record of a change or an exchange, chained by hash within its organization.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// `ev_` + ULID: sortable, and increasing along each organization's chain.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Empty for the platform-level chain.
    pub organization_id: String,
    pub time: DateTimeUtc,
    pub actor_id: String,
    pub actor_key_id: String,
    pub action: String,
    pub target_id: String,
    pub outcome: String,
    pub source_address: String,
    pub request_id: String,
    /// JSON object of strings.
    pub details: String,
    /// Hex SHA-256 of the previous event of the same chain; empty for the first.
    pub previous_hash: String,
    /// Hex SHA-256 over `previous_hash` and this event's fields.
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
