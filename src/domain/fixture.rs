//! Load-test fixtures: many service users and keys written in bulk straight through the store,
//! so a benchmark can spread exchanges over a million keys without a million admin calls.
//! Operator-only (`tokenmint bench-fixture`); no RPC reaches it.

use crate::domain::Tokenmint;
use crate::domain::audit::{Actor, details};
use crate::error::{Error, Resource, Result};
use crate::ids::{ApiKeyId, OrganizationId, ServiceUserId};
use chrono::TimeDelta;
use tokenmint_store::{ApiKey, ServiceUser, ServiceUserState};
use tokenmint_token::ApiSecret;

/// What to create.
#[derive(Clone, Debug)]
pub struct FixtureSpec {
    /// The organization that receives the users.
    pub organization_id: String,
    /// How many service users.
    pub service_users: u32,
    /// How many keys each (0 for users only).
    pub keys_per_user: u32,
}

/// Users written per transaction: small enough that a failure loses little, large enough that
/// commits do not dominate.
const USERS_PER_UNIT: usize = 2_000;

impl Tokenmint {
    /// Creates the fixture's users (named `bench-<run>-<n>`, no roles) and keys (30 days, no
    /// scopes, the default token lifetime), bypassing quotas, and records one audit event.
    /// Hands each committed batch's key IDs and secrets, which exist nowhere else, to `keep`
    /// before writing the next, so a failure part-way loses no secret of a stored key. Returns
    /// how many keys it created.
    pub async fn create_benchmark_fixture(
        &self,
        spec: &FixtureSpec,
        mut keep: impl FnMut(&[(String, ApiSecret)]) -> std::io::Result<()>,
    ) -> Result<u64> {
        let organization = OrganizationId::parse(&spec.organization_id)
            .ok_or_else(|| Error::invalid("organization_id", "not an organization ID"))?;
        self.store
            .organization(organization.as_str())
            .await
            .map_err(|e| Error::from_store(e, Resource::Organization, organization.as_str()))?;
        let run = ApiKeyId::generate().to_string();
        let run = &run[run.len() - 6..];
        let now = self.now();
        let lifetime = TimeDelta::seconds(
            i64::try_from(self.settings.default_token_lifetime.as_secs()).unwrap_or(3600),
        );
        let mut created = 0u64;
        let numbers: Vec<u32> = (0..spec.service_users).collect();
        for batch in numbers.chunks(USERS_PER_UNIT) {
            let mut users = Vec::with_capacity(batch.len());
            let mut keys = Vec::with_capacity(batch.len() * spec.keys_per_user as usize);
            let mut secrets = Vec::with_capacity(keys.capacity());
            for n in batch {
                let user = ServiceUser {
                    id: ServiceUserId::generate().to_string(),
                    organization_id: organization.to_string(),
                    name: format!("bench-{run}-{n}"),
                    display_name: String::new(),
                    email: String::new(),
                    description: "benchmark fixture".into(),
                    state: ServiceUserState::Active,
                    creator: String::new(),
                    revision: 1,
                    create_time: now,
                    update_time: now,
                    last_active_time: None,
                };
                for k in 0..spec.keys_per_user {
                    let secret = ApiSecret::generate(&self.rng)?;
                    let key = ApiKey {
                        id: ApiKeyId::generate().to_string(),
                        service_user_id: user.id.clone(),
                        organization_id: organization.to_string(),
                        name: format!("k{k}"),
                        description: String::new(),
                        secret_hash: self.hasher.hash(&secret),
                        token_lifetime: lifetime,
                        allowed_cidrs: Vec::new(),
                        scopes: Vec::new(),
                        project_scopes: Vec::new(),
                        creator: String::new(),
                        create_time: now,
                        expire_time: now + TimeDelta::days(30),
                        last_used_time: None,
                        last_used_address: None,
                        revoke_time: None,
                        revoke_reason: None,
                        previous_secret: None,
                        rotate_time: None,
                    };
                    secrets.push((key.id.clone(), secret));
                    keys.push(key);
                }
                users.push(user);
            }
            let tx = self.store.begin().await?;
            tx.insert_service_users(users).await?;
            tx.insert_api_keys(keys).await?;
            tx.commit().await?;
            keep(&secrets)
                .map_err(|e| Error::Internal(format!("keeping the fixture's secrets: {e}")))?;
            created += secrets.len() as u64;
        }
        let tx = self.store.begin().await?;
        self.audit(
            &tx,
            organization.as_str(),
            &Actor::default(),
            "CreateBenchmarkFixture",
            organization.as_str(),
            "OK",
            details([
                ("service_users", spec.service_users.to_string()),
                ("keys_per_user", spec.keys_per_user.to_string()),
                ("name_prefix", format!("bench-{run}-")),
            ]),
        )
        .await?;
        tx.commit().await?;
        self.store.analyze_after_bulk_load().await?;
        Ok(created)
    }
}
