//! A credential of a service user. Only a keyed hash of its secret is stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub service_user_id: String,
    pub organization_id: String,
    pub name: String,
    pub description: String,
    /// HMAC-SHA-256(pepper, secret).
    pub secret_hash: Vec<u8>,
    pub token_lifetime_seconds: i64,
    /// JSON array of CIDR strings.
    pub allowed_cidrs: String,
    /// JSON array of role names.
    pub scopes: String,
    pub creator: String,
    pub create_time: DateTimeUtc,
    pub expire_time: DateTimeUtc,
    pub last_used_time: Option<DateTimeUtc>,
    pub last_used_address: Option<String>,
    pub revoke_time: Option<DateTimeUtc>,
    pub revoke_reason: Option<String>,
    /// HMAC of the secret before the last rotation, valid until `previous_secret_expire_time`.
    pub previous_secret_hash: Option<Vec<u8>>,
    pub previous_secret_expire_time: Option<DateTimeUtc>,
    pub rotate_time: Option<DateTimeUtc>,
    /// When the "expires soon" notice went out.
    pub expiry_warned_time: Option<DateTimeUtc>,
    /// When the "expired" notice went out.
    pub expired_notice_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
