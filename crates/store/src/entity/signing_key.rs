//! A JWT signing key pair; the private half is stored encrypted under the key-encryption key.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    pub algorithm: String,
    /// The raw public key.
    pub public_key: Vec<u8>,
    /// nonce || AES-256-GCM(private key PKCS#8) || tag.
    pub encrypted_private_key: Vec<u8>,
    pub create_time: DateTimeUtc,
    /// Set once the key no longer signs; it is still published until its last token expired.
    pub retire_time: Option<DateTimeUtc>,
    /// When it starts signing; published (in the JWKS) from `create_time`.
    pub activate_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
