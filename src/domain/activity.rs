//! Exchanges in the audit trail, without a database write per exchange. Each replica counts them
//! in memory and flushes every interval (and on shutdown): one event per key for its successful
//! exchanges (count, first and last time, addresses) on its organization's chain, written with
//! the key's last-used time and address and its user's last-active time; and one event per
//! source address and outcome for failures (unknown or inactive key IDs, wrong secrets, throttled
//! calls) on the platform's chain, since a failure cannot be tied to an organization without a
//! lookup an attacker could aim. Memory is bounded: past the bound new entries are only counted,
//! and the count is itself an event. A crash loses what was counted since the last flush.

use crate::domain::Tokenmint;
use crate::domain::audit::{Actor, Details, Origin};
use crate::error::Result;
use chrono::{DateTime, Utc};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Most failure sources counted between two flushes. Failures come from anyone, so this bound
/// is what keeps a flood of them from exhausting memory.
pub const MAX_ENTRIES: usize = 100_000;
/// Keys whose uses one unit of work writes: a flush after a busy minute on a million keys is
/// five thousand commits, not a million, while a change waiting for an audit chain waits for
/// at most 200 events.
const KEYS_PER_UNIT: usize = 200;
/// Most keys whose uses are counted between two flushes. Only successful exchanges add one, so
/// their number is bounded by the keys that exist; this bound only caps the memory of a very
/// large deployment (about 175 bytes each, `tests/cache_memory.rs`). A key past it keeps its
/// old last-used time for that interval, which `--revoke-unused-keys-after` must not mistake
/// for disuse: keep this above the number of keys used per flush interval.
pub const MAX_USED_KEYS: usize = 2_000_000;
/// Most distinct addresses kept per key, and key IDs per failure source.
const MAX_SAMPLES: usize = 8;

/// Successful exchanges of one key since the last flush. Held boxed: a map of a million keys
/// has two million buckets, and an empty bucket then costs a pointer, not a whole record.
#[derive(Debug)]
struct KeyUse {
    /// Shared with the key's cache entry.
    organization_id: Arc<str>,
    service_user_id: Arc<str>,
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    last_address: Option<IpAddr>,
    /// Distinct addresses seen, up to [`MAX_SAMPLES`]; nearly always one, kept inline.
    addresses: SmallVec<[IpAddr; 1]>,
}

/// Failed calls from one source with one outcome since the last flush.
#[derive(Debug)]
struct Failures {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    key_ids: SmallVec<[String; 1]>,
}

#[derive(Debug, Default)]
struct Pending {
    used: HashMap<Arc<str>, Box<KeyUse>>,
    failed: HashMap<(&'static str, Option<IpAddr>, &'static str), Failures>,
    /// Entries not kept because the maps were full.
    dropped: u64,
}

/// The counters of one replica.
#[derive(Debug, Default)]
pub struct Activity {
    pending: Mutex<Pending>,
}

/// A key ID as a failure names it: only a well-formed key ID is kept. Anything else could be a
/// secret or a token pasted into the wrong field, and must not reach the trail.
fn bounded(key_id: &str) -> String {
    if crate::ids::ApiKeyId::parse(key_id).is_some() {
        key_id.to_owned()
    } else {
        "(malformed)".to_owned()
    }
}

fn sample<A: smallvec::Array>(samples: &mut SmallVec<A>, value: A::Item)
where
    A::Item: PartialEq,
{
    if samples.len() < MAX_SAMPLES && !samples.contains(&value) {
        samples.push(value);
    }
}

impl Activity {
    /// Counts a successful exchange of `key_id`.
    pub fn record_use(
        &self,
        key_id: &Arc<str>,
        organization_id: &Arc<str>,
        service_user_id: &Arc<str>,
        address: Option<IpAddr>,
        now: DateTime<Utc>,
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let full = pending.used.len() >= MAX_USED_KEYS;
        match pending.used.get_mut(key_id) {
            Some(used) => {
                used.count += 1;
                used.last = now;
                used.last_address = address;
                if let Some(address) = address {
                    sample(&mut used.addresses, address);
                }
            }
            None if full => pending.dropped += 1,
            None => {
                pending.used.insert(
                    key_id.clone(),
                    Box::new(KeyUse {
                        organization_id: organization_id.clone(),
                        service_user_id: service_user_id.clone(),
                        count: 1,
                        first: now,
                        last: now,
                        last_address: address,
                        addresses: address.into_iter().collect(),
                    }),
                );
            }
        }
    }

    /// Counts a failed `action` naming `key_id` from `address` with `outcome`.
    pub fn record_failure(
        &self,
        action: &'static str,
        key_id: &str,
        address: Option<IpAddr>,
        outcome: &'static str,
        now: DateTime<Utc>,
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let full = pending.failed.len() >= MAX_ENTRIES;
        match pending.failed.get_mut(&(action, address, outcome)) {
            Some(failed) => {
                failed.count += 1;
                failed.last = now;
                sample(&mut failed.key_ids, bounded(key_id));
            }
            None if full => pending.dropped += 1,
            None => {
                pending.failed.insert(
                    (action, address, outcome),
                    Failures {
                        count: 1,
                        first: now,
                        last: now,
                        key_ids: smallvec::smallvec![bounded(key_id)],
                    },
                );
            }
        }
    }

    /// Returns a key's uses that could not be written, merged with any counted since.
    fn put_back(&self, key_id: Arc<str>, used: Box<KeyUse>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let full = pending.used.len() >= MAX_USED_KEYS;
        match pending.used.get_mut(&key_id) {
            Some(newer) => {
                newer.count += used.count;
                newer.first = newer.first.min(used.first);
                for address in used.addresses {
                    sample(&mut newer.addresses, address);
                }
            }
            None if full => pending.dropped += 1,
            None => {
                pending.used.insert(key_id, used);
            }
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn times(count: u64, first: DateTime<Utc>, last: DateTime<Utc>) -> Details {
    crate::domain::audit::details([
        ("count", count.to_string()),
        ("first_time", first.to_rfc3339()),
        ("last_time", last.to_rfc3339()),
    ])
}

fn joined<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Tokenmint {
    /// Writes what was counted since the last flush. A key's uses that cannot be written (the
    /// database or the audit table refusing) are kept for the next flush, so an outage does not
    /// make a key in use look unused.
    pub async fn flush_activity(&self) {
        let pending = self.activity.take();
        let mut used: Vec<(Arc<str>, Box<KeyUse>)> = pending.used.into_iter().collect();
        // Batches follow chain order, so each unit touches few chains, and every replica takes
        // them in the same order.
        used.sort_unstable_by(|a, b| {
            (&a.1.organization_id, &a.0).cmp(&(&b.1.organization_id, &b.0))
        });
        while !used.is_empty() {
            let batch: Vec<_> = used.drain(..used.len().min(KEYS_PER_UNIT)).collect();
            if let Err(error) = self.write_key_uses(&batch).await {
                tracing::warn!(%error, keys = batch.len(), "could not record keys' exchanges; keeping them for the next flush");
                for (key_id, key_use) in batch {
                    self.activity.put_back(key_id, key_use);
                }
            }
        }
        for ((action, address, outcome), failed) in pending.failed {
            let mut details = times(failed.count, failed.first, failed.last);
            details.insert("key_ids".into(), joined(&failed.key_ids));
            let actor = Actor {
                origin: Origin {
                    address,
                    request_id: String::new(),
                },
                ..Actor::default()
            };
            self.audit_failure_with(action, &actor, outcome, details)
                .await;
        }
        if pending.dropped > 0 {
            let details = crate::domain::audit::details([("dropped", pending.dropped.to_string())]);
            self.audit_failure_with(
                "ActivityOverflow",
                &Actor::default(),
                "RESOURCE_EXHAUSTED",
                details,
            )
            .await;
        }
    }

    /// Writes a batch of keys' uses in one unit of work: all of them or none. Locks are taken
    /// in the order every unit of work takes them (service-user rows by ID, then key rows by
    /// ID, then audit chains last), so a flush and an admin call never wait on each other in a
    /// cycle.
    async fn write_key_uses(&self, batch: &[(Arc<str>, Box<KeyUse>)]) -> Result<()> {
        let tx = self.store.begin().await?;
        let mut users: std::collections::BTreeMap<&str, DateTime<Utc>> = Default::default();
        for (_, used) in batch {
            let last = users.entry(&*used.service_user_id).or_insert(used.last);
            *last = (*last).max(used.last);
        }
        for (user, last) in users {
            tx.record_service_user_activity(user, last).await?;
        }
        let mut keys: Vec<&(Arc<str>, Box<KeyUse>)> = batch.iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key_id, used) in keys {
            let address = used.last_address.map(|a| a.to_string());
            tx.record_key_use(key_id, used.last, address.as_deref())
                .await?;
        }
        for (key_id, used) in batch {
            let mut details = times(used.count, used.first, used.last);
            details.insert("addresses".into(), joined(&used.addresses));
            let actor = Actor {
                service_user_id: used.service_user_id.to_string(),
                api_key_id: key_id.to_string(),
                origin: Origin {
                    address: used.last_address,
                    request_id: String::new(),
                },
            };
            self.audit(
                &tx,
                &used.organization_id,
                &actor,
                "ExchangeApiKey",
                key_id,
                "OK",
                details,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Flushes every `period` until the process ends.
    pub async fn maintain_activity(self: Arc<Self>, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.flush_activity().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn uses_of_one_key_are_counted_together() {
        let activity = Activity::default();
        let (key, org, user): (Arc<str>, Arc<str>, Arc<str>) =
            ("ak_1".into(), "org".into(), "su".into());
        for i in 0..3u8 {
            activity.record_use(&key, &org, &user, Some(IpAddr::from([10, 0, 0, i])), t());
        }
        let pending = activity.take();
        assert_eq!(pending.used.len(), 1);
        assert_eq!(pending.used["ak_1"].count, 3);
        assert_eq!(pending.used["ak_1"].addresses.len(), 3);
        assert!(activity.take().used.is_empty(), "taken once");
    }

    #[test]
    fn memory_is_bounded_and_the_overflow_counted() {
        let activity = Activity::default();
        for i in 0..(MAX_ENTRIES + 10) {
            activity.record_failure(
                "ExchangeApiKey",
                "ak_x",
                Some(IpAddr::from((i as u32).to_be_bytes())),
                "UNAUTHENTICATED",
                t(),
            );
        }
        let pending = activity.take();
        assert_eq!(pending.failed.len(), MAX_ENTRIES);
        assert_eq!(pending.dropped, 10);
    }
}
