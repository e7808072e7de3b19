//! The rules of Tokenmint, in plain Rust: who may do what, lifecycles, validation, exchange.
//! gRPC handlers call these; nothing here knows about the network.

pub mod access;
pub mod activity;
pub mod api_keys;
pub mod audit;
pub mod authz;
pub mod bootstrap;
pub mod clock;
pub mod exchange;
pub mod fixture;
pub mod housekeeping;
pub mod invalidation;
pub mod key_cache;
pub mod keyring;
pub mod organizations;
pub mod page_token;
pub mod principal;
pub mod projects;
pub mod roles;
pub mod service_users;
pub mod signing_keys;
pub mod throttle;
pub mod validation;

#[cfg(test)]
mod tests;

use crate::domain::{clock::Clock, key_cache::KeyCache, keyring::Keyring};
use ring::rand::SystemRandom;
use std::sync::Arc;
use std::time::Duration;
use tokenmint_store::Store;
use tokenmint_token::SecretHasher;

/// Settings the rules depend on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `iss` of every token; also the audience Tokenmint's own APIs accept.
    pub issuer: String,
    /// Token lifetime of keys created without one.
    pub default_token_lifetime: Duration,
    /// Service-user quota of new organizations.
    pub default_max_service_users: i32,
    /// Active-key quota per service user of new organizations.
    pub default_max_api_keys_per_service_user: i32,
    /// Audiences tokens may be minted for besides the issuer; empty means any.
    pub allowed_audiences: Vec<String>,
    /// Expiry notices, unused-key revocation, audit retention.
    pub housekeeping: housekeeping::HousekeepingSettings,
}

/// The running service's state: the store, the keys and the caches. One per process.
pub struct Tokenmint {
    pub store: Store,
    /// Signing and verification keys.
    pub keyring: Arc<Keyring>,
    /// Hashes API-key secrets under the pepper.
    pub hasher: SecretHasher,
    /// Signs and checks list page tokens.
    pub page_tokens: page_token::PageTokens,
    /// Active keys' verification data, for exchanges without a database round trip.
    pub key_cache: KeyCache,
    /// Failed secret checks per address and key ID.
    pub throttle: throttle::Throttle,
    /// Exchanges counted for the audit trail and last-used times, flushed in batches.
    pub activity: activity::Activity,
    /// Failure events written per principal in the last minute.
    pub failure_budget: moka::sync::Cache<String, u32>,
    pub settings: Settings,
    /// The system's cryptographic RNG.
    pub rng: SystemRandom,
    /// Every time decision reads this clock.
    pub clock: Arc<dyn Clock>,
}

impl Tokenmint {
    /// The current time, from the clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// NOT_FOUND unless the organization exists (a superuser may name any ID).
    pub(crate) async fn existing_organization(
        &self,
        organization: &crate::ids::OrganizationId,
    ) -> crate::error::Result<()> {
        self.store
            .organization(organization.as_str())
            .await
            .map(|_| ())
            .map_err(|e| {
                crate::error::Error::from_store(
                    e,
                    crate::error::Resource::Organization,
                    organization.as_str(),
                )
            })
    }
}
