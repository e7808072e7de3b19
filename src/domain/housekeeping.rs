//! Jobs every replica runs on a timer: expiry notices for keys (one as a key enters the warning
//! window, one when it expires), revoking keys unused for too long (when configured), and
//! removing audit events past the retention period (when configured). Each notice is marked
//! sent in the same unit of work as its event, so of several replicas exactly one sends it.

use crate::domain::Tokenmint;
use crate::domain::audit::{Actor, details};
use crate::error::Result;
use chrono::TimeDelta;
use std::sync::Arc;
use std::time::Duration;
use tokenmint_store::{ApiKey, Invalidation, KeyNotice};

/// Keys handled per kind in one run; the rest wait for the next.
const BATCH: u64 = 500;

/// What housekeeping does; from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct HousekeepingSettings {
    /// How long before its expiry a key's "expires soon" event goes out.
    pub expiry_warning: Duration,
    /// Revoke active keys unused for this long; `None`: never.
    pub revoke_unused_after: Option<Duration>,
    /// Remove audit events older than this; `None`: keep them all.
    pub audit_retention: Option<Duration>,
}

impl Default for HousekeepingSettings {
    fn default() -> Self {
        Self {
            expiry_warning: Duration::from_secs(7 * 86_400),
            revoke_unused_after: None,
            audit_retention: None,
        }
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

fn about(key: &ApiKey) -> crate::domain::audit::Details {
    details([
        ("service_user_id", key.service_user_id.clone()),
        ("name", key.name.clone()),
        ("expire_time", key.expire_time.to_rfc3339()),
    ])
}

impl Tokenmint {
    /// One run of every job.
    pub async fn run_housekeeping(&self) -> Result<()> {
        let settings = self.settings.housekeeping;
        let now = self.now();
        let horizon = now + delta(settings.expiry_warning);
        for (notice, action) in [
            (KeyNotice::Expiring, "ApiKeyExpiring"),
            (KeyNotice::Expired, "ApiKeyExpired"),
        ] {
            for key in self
                .store
                .keys_due_notice(notice, now, horizon, BATCH)
                .await?
            {
                let tx = self.store.begin().await?;
                if tx.mark_key_notice(&key.id, notice, now).await? {
                    let actor = Actor::default();
                    self.audit(
                        &tx,
                        &key.organization_id,
                        &actor,
                        action,
                        &key.id,
                        "OK",
                        about(&key),
                    )
                    .await?;
                }
                // Expiry needs no announcement (every replica compares times), but the notice
                // is a good moment to drop the entry.
                tx.commit().await?;
                if notice == KeyNotice::Expired {
                    self.key_cache.forget_key(&key.id);
                }
            }
        }
        if let Some(unused) = settings.revoke_unused_after {
            let cutoff = now - delta(unused);
            for key in self.store.keys_unused_since(cutoff, now, BATCH).await? {
                let tx = self.store.begin().await?;
                // Read again inside the unit: a use or a revocation since the scan wins.
                let current = tx.api_key(&key.organization_id, &key.id).await?;
                let last = current.last_used_time.unwrap_or(current.create_time);
                if current.revoke_time.is_none() && last < cutoff {
                    let reason = format!("unused since {}", last.to_rfc3339());
                    tx.revoke_api_key(&key.id, &reason, now).await?;
                    let mut facts = about(&key);
                    facts.insert("reason".into(), reason);
                    self.audit(
                        &tx,
                        &key.organization_id,
                        &Actor::default(),
                        "RevokeApiKey",
                        &key.id,
                        "OK",
                        facts,
                    )
                    .await?;
                }
                self.commit_invalidating(tx, &[Invalidation::ApiKey(key.id.clone())])
                    .await?;
            }
        }
        if let Some(retention) = settings.audit_retention {
            let cutoff = now - delta(retention);
            for chain in self.store.audit_chains().await? {
                let removed = self.store.prune_audit_chain(&chain, cutoff).await?;
                if removed > 0 {
                    tracing::info!(chain, removed, "removed audit events past retention");
                }
            }
        }
        Ok(())
    }

    /// Runs housekeeping every `period` until the process ends.
    pub async fn maintain_housekeeping(self: Arc<Self>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            if let Err(error) = self.run_housekeeping().await {
                tracing::warn!(%error, "housekeeping failed; it runs again next period");
            }
        }
    }
}
