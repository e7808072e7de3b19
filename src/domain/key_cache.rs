//! In-memory copy of keys' verification data, so an exchange needs no database round trip.
//! Unknown and inactive key IDs are remembered too, so a probe for a key ID that does not exist
//! takes the same path, and the same time, as a wrong secret for one that does. Entries are
//! dropped the moment this replica changes a key or its user, and re-read after a short TTL so
//! changes made through other replicas are seen too.

use crate::domain::roles::Role;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What an exchange needs to know about an active key.
#[derive(Debug)]
pub struct CachedKey {
    /// The key.
    pub key_id: String,
    /// Its service user.
    pub service_user_id: String,
    /// The user's organization.
    pub organization_id: String,
    /// HMAC of the secret.
    pub secret_hash: Vec<u8>,
    /// Key expiry, seconds since the epoch.
    pub expire_time: i64,
    /// Lifetime of minted tokens, seconds.
    pub token_lifetime_seconds: i64,
    /// Where the key may be used from; empty means anywhere.
    pub allowed_cidrs: Vec<IpNet>,
    /// Roles its tokens may carry: the user's roles, narrowed by the key's scopes.
    pub roles: Vec<Role>,
}

impl CachedKey {
    /// A fresh entry.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key_id: String,
        service_user_id: String,
        organization_id: String,
        secret_hash: Vec<u8>,
        expire_time: i64,
        token_lifetime_seconds: i64,
        allowed_cidrs: Vec<IpNet>,
        roles: Vec<Role>,
    ) -> Self {
        Self {
            key_id,
            service_user_id,
            organization_id,
            secret_hash,
            expire_time,
            token_lifetime_seconds,
            allowed_cidrs,
            roles,
        }
    }
}

/// What the cache knows about a key ID.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// The key can be exchanged (if the secret matches).
    Active(Arc<CachedKey>),
    /// No such key, or it is revoked, expired, or its user is disabled.
    Inactive,
}

impl Lookup {
    /// The key, if it is active.
    pub fn into_active(self) -> Option<Arc<CachedKey>> {
        match self {
            Lookup::Active(key) => Some(key),
            Lookup::Inactive => None,
        }
    }
}

#[derive(Debug)]
struct Entry {
    lookup: Lookup,
    /// The key's user, when known, so disabling or enabling the user drops the entry.
    service_user_id: Option<String>,
    loaded_at: Instant,
}

/// The cache. A TTL of zero turns it off.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped on every invalidation, so a load that raced with one is not cached.
    generation: AtomicU64,
    /// One lock per key being loaded, so a burst of calls for an expired key reads the
    /// database once instead of once per call.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one caller loads a key; dropping it lets the callers queued behind it re-check
/// the cache.
pub struct LoadGuard<'a> {
    cache: &'a KeyCache,
    key_id: String,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        let mut loading = self.cache.loading.lock().unwrap_or_else(|p| p.into_inner());
        loading.remove(&self.key_id);
    }
}

impl KeyCache {
    /// A cache whose entries live `ttl`, holding at most `max_entries`.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            loading: Mutex::default(),
        }
    }

    /// Waits until no other caller is loading `key_id`, then returns a guard under which the
    /// caller should re-check the cache and, on a miss, load the key.
    pub async fn lock_for_load(&self, key_id: &str) -> LoadGuard<'_> {
        let lock = {
            let mut loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
            loading.entry(key_id.to_owned()).or_default().clone()
        };
        LoadGuard {
            cache: self,
            key_id: key_id.to_owned(),
            _lock: lock.lock_owned().await,
        }
    }

    /// The generation to pass to [`insert`](Self::insert) for a load starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What is known about `key_id`, unless it is older than the TTL.
    pub fn get(&self, key_id: &str) -> Option<Lookup> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key_id)
            .filter(|e| e.loaded_at.elapsed() < self.ttl)
            .map(|e| e.lookup.clone())
    }

    /// Caches an active key loaded since `generation`, unless an invalidation happened meanwhile.
    pub fn insert(&self, generation: u64, key: Arc<CachedKey>) {
        let (key_id, service_user_id) = (key.key_id.clone(), Some(key.service_user_id.clone()));
        self.put(generation, key_id, service_user_id, Lookup::Active(key));
    }

    /// Remembers that `key_id` cannot be exchanged (unknown, or inactive for `service_user_id`).
    pub fn insert_inactive(&self, generation: u64, key_id: &str, service_user_id: Option<String>) {
        self.put(
            generation,
            key_id.to_owned(),
            service_user_id,
            Lookup::Inactive,
        );
    }

    fn put(
        &self,
        generation: u64,
        key_id: String,
        service_user_id: Option<String>,
        lookup: Lookup,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.max_entries {
            entries.retain(|_, e| e.loaded_at.elapsed() < self.ttl);
            if entries.len() >= self.max_entries {
                return;
            }
        }
        entries.insert(
            key_id,
            Entry {
                lookup,
                service_user_id,
                loaded_at: Instant::now(),
            },
        );
    }

    /// Drops a key.
    pub fn forget_key(&self, key_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key_id);
    }

    /// Drops every key of a user.
    pub fn forget_user(&self, service_user_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, e| e.service_user_id.as_deref() != Some(service_user_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, user: &str) -> Arc<CachedKey> {
        Arc::new(CachedKey::new(
            key.into(),
            user.into(),
            "org".into(),
            vec![],
            0,
            60,
            vec![],
            vec![],
        ))
    }

    #[test]
    fn inserted_entry_is_found_until_forgotten() {
        let cache = KeyCache::new(Duration::from_secs(60), 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(matches!(cache.get("ak_1"), Some(Lookup::Active(_))));
        cache.forget_key("ak_1");
        assert!(cache.get("ak_1").is_none());
    }

    #[test]
    fn forgetting_a_user_drops_all_its_keys() {
        let cache = KeyCache::new(Duration::from_secs(60), 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        cache.insert(cache.generation(), entry("ak_2", "su_1"));
        cache.insert(cache.generation(), entry("ak_3", "su_2"));
        cache.forget_user("su_1");
        assert!(cache.get("ak_1").is_none() && cache.get("ak_2").is_none());
        assert!(cache.get("ak_3").is_some());
    }

    #[test]
    fn inactive_keys_are_remembered_and_dropped_with_their_user() {
        let cache = KeyCache::new(Duration::from_secs(60), 10);
        cache.insert_inactive(cache.generation(), "ak_unknown", None);
        cache.insert_inactive(cache.generation(), "ak_disabled", Some("su_1".into()));
        assert!(matches!(cache.get("ak_unknown"), Some(Lookup::Inactive)));
        cache.forget_user("su_1");
        assert!(cache.get("ak_disabled").is_none());
        assert!(cache.get("ak_unknown").is_some());
    }

    #[test]
    fn a_load_that_raced_with_an_invalidation_is_not_cached() {
        let cache = KeyCache::new(Duration::from_secs(60), 10);
        let generation = cache.generation();
        cache.forget_key("ak_1");
        cache.insert(generation, entry("ak_1", "su_1"));
        assert!(cache.get("ak_1").is_none());
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = KeyCache::new(Duration::from_millis(1), 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get("ak_1").is_none());
    }

    #[tokio::test]
    async fn a_second_loader_waits_for_the_first() {
        let cache = Arc::new(KeyCache::new(Duration::from_secs(60), 10));
        let first = cache.lock_for_load("ak_1").await;
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let _second = cache.lock_for_load("ak_1").await;
                cache.get("ak_1").is_some()
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the second loader must wait");
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        drop(first);
        assert!(
            waiter.await.unwrap(),
            "after the first load the waiter finds the entry"
        );
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let cache = KeyCache::new(Duration::ZERO, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(cache.get("ak_1").is_none());
    }
}
