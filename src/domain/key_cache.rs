//! In-memory copy of active keys' verification data, so an exchange needs no database round
//! trip. Entries are dropped the moment this replica revokes a key or disables or deletes its
//! user, and re-read after a short TTL so changes made through other replicas are seen too.

use crate::domain::roles::Role;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
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
    loaded_at: Instant,
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
            loaded_at: Instant::now(),
        }
    }
}

/// The cache. A TTL of zero turns it off.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    max_entries: usize,
    entries: RwLock<HashMap<String, Arc<CachedKey>>>,
    /// Bumped on every invalidation, so a load that raced with one is not cached.
    generation: AtomicU64,
}

impl KeyCache {
    /// A cache whose entries live `ttl`, holding at most `max_entries`.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation to pass to [`insert`](Self::insert) for a load starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A live entry for `key_id`.
    pub fn get(&self, key_id: &str) -> Option<Arc<CachedKey>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key_id)
            .filter(|e| e.loaded_at.elapsed() < self.ttl)
            .cloned()
    }

    /// Caches an entry loaded since `generation`, unless an invalidation happened meanwhile.
    pub fn insert(&self, generation: u64, entry: Arc<CachedKey>) {
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
        entries.insert(entry.key_id.clone(), entry);
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
        entries.retain(|_, e| e.service_user_id != service_user_id);
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
        assert!(cache.get("ak_1").is_some());
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

    #[test]
    fn zero_ttl_disables_the_cache() {
        let cache = KeyCache::new(Duration::ZERO, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(cache.get("ak_1").is_none());
    }
}
