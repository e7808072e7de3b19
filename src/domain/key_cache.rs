//! In-memory copy of keys' verification data, so an exchange needs no database round trip.
//! Unknown and inactive key IDs are remembered too, so a probe for a key ID that does not exist
//! takes the same path, and the same time, as a wrong secret for one that does. Entries are
//! dropped the moment a change to a key or its user commits, on this replica directly and on the
//! others when the change's announcement arrives (`domain/invalidation.rs`); a short TTL is the
//! backstop. Built on quick_cache (bounded, concurrent, a few dozen bytes of bookkeeping per
//! entry), with the TTL checked here against each entry's load time.

use crate::domain::roles::Role;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokenmint_store::{Invalidation, ProjectRole};

/// HMAC-SHA256 of a secret, as stored.
pub type SecretHash = [u8; 32];

/// What an exchange needs to know about an active key. Kept small, since a replica may hold a
/// million of them (`tests/cache_memory.rs` measures one): the hash inline, the rare previous
/// secret boxed, fixed lists as boxed slices, and strings shared rather than copied.
#[derive(Debug)]
pub struct CachedKey {
    /// Shared with the cache's index and the activity counters, not copied.
    pub key_id: Arc<str>,
    /// Its service user (shared with the activity counters, not copied).
    pub service_user_id: Arc<str>,
    /// The user's organization: one copy per organization, from [`KeyCache::organization`].
    pub organization_id: Arc<str>,
    /// HMAC of the secret.
    pub secret_hash: SecretHash,
    /// HMAC of the secret before the last rotation, and until when (seconds since the epoch)
    /// it still exchanges.
    pub previous_secret: Option<Box<(SecretHash, i64)>>,
    /// Key expiry, seconds since the epoch.
    pub expire_time: i64,
    /// Lifetime of minted tokens, seconds.
    pub token_lifetime_seconds: i64,
    /// Where the key may be used from; empty means anywhere.
    pub allowed_cidrs: Box<[IpNet]>,
    /// Roles its tokens may carry: the user's roles, narrowed by the key's scopes.
    pub roles: Box<[Role]>,
    /// Project roles its tokens may carry, narrowed the same way.
    pub project_roles: Box<[ProjectRole]>,
    /// When it was read from the database.
    loaded: Instant,
}

impl CachedKey {
    /// A fresh entry.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key_id: String,
        service_user_id: String,
        organization_id: Arc<str>,
        secret_hash: SecretHash,
        previous_secret: Option<(SecretHash, i64)>,
        expire_time: i64,
        token_lifetime_seconds: i64,
        allowed_cidrs: Vec<IpNet>,
        roles: Vec<Role>,
        project_roles: Vec<ProjectRole>,
    ) -> Self {
        Self {
            key_id: key_id.into(),
            service_user_id: service_user_id.into(),
            organization_id,
            secret_hash,
            previous_secret: previous_secret.map(Box::new),
            expire_time,
            token_lifetime_seconds,
            allowed_cidrs: allowed_cidrs.into_boxed_slice(),
            roles: roles.into_boxed_slice(),
            project_roles: project_roles.into_boxed_slice(),
            loaded: Instant::now(),
        }
    }
}

/// A key ID known to be unusable.
#[derive(Debug)]
struct Unusable {
    /// Its user, when the key exists (so enabling the user drops it).
    owner: Option<String>,
    /// When it was read from the database.
    loaded: Instant,
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

/// How a cache has been used, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache (active or inactive).
    pub hits: u64,
    /// Lookups that had to go to the database.
    pub misses: u64,
    /// Times the whole cache was dropped because notifications may have been missed.
    pub flushes: u64,
}

/// The cache: active keys and, apart from them, key IDs known to be unusable. Both are
/// size-bounded (scan-resistant S3-FIFO eviction, from quick_cache) with a TTL. The two are
/// separate so a flood of made-up key IDs (their format and checksum are public) only churns
/// the negative side and can never evict a real key or force it back to the database. A TTL
/// or size of zero turns caching off.
///
/// quick_cache rather than moka (which the throttle's small maps use): moka's bookkeeping cost
/// about 360 bytes per entry, more than the entry itself, and a replica may hold a million
/// (`tests/cache_memory.rs`). quick_cache has no TTL, so an entry older than the TTL counts as
/// absent and is replaced by the next load; until then it only takes its place in the bound.
///
/// Entry ages use the monotonic clock, not [`super::clock::Clock`]: an entry's age only decides
/// when to re-read the database, never whether a key is valid (that is judged against the
/// clock on every exchange).
pub struct KeyCache {
    enabled: bool,
    ttl: Duration,
    active: quick_cache::sync::Cache<Arc<str>, Arc<CachedKey>>,
    /// Unknown or unusable IDs.
    inactive: quick_cache::sync::Cache<String, Arc<Unusable>>,
    /// One shared copy of each organization ID the cached keys name (organizations are few,
    /// keys many). IDs never change, so nothing here goes stale.
    organizations: Mutex<std::collections::HashSet<Arc<str>>>,
    /// Bumped on every invalidation, so a load that raced with one is not cached.
    generation: AtomicU64,
    /// Keys and users dropped, and when: an entry of theirs read before that counts as absent
    /// (see [`forget_user`](Self::forget_user)).
    dropped: RwLock<Dropped>,
    /// Whether `dropped` holds anything, so a hit looks at it only then.
    any_dropped: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    flushes: AtomicU64,
    /// One lock per key being loaded, so a burst of calls for an expired key reads the
    /// database once instead of once per call.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Key and user IDs (their prefixes differ) whose cached entries were dropped, each with the
/// moment it happened.
#[derive(Debug, Default)]
struct Dropped {
    at: HashMap<String, Instant>,
    /// The latest drop: once it is older than the TTL, every entry the map could hide has
    /// expired anyway, and the map is emptied.
    latest: Option<Instant>,
}

/// Least time between two reads of one key ID caused by failed checks against the cache.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("active", &self.active.len())
            .field("inactive", &self.inactive.len())
            .finish()
    }
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
    /// A cache whose entries live `ttl`, holding at most `max_active` active keys and
    /// `max_inactive` unusable IDs.
    pub fn new(ttl: Duration, max_active: u64, max_inactive: u64) -> Self {
        let capacity = |max: u64| usize::try_from(max).unwrap_or(usize::MAX).max(1);
        Self {
            enabled: !ttl.is_zero() && max_active > 0 && max_inactive > 0,
            ttl,
            active: quick_cache::sync::Cache::new(capacity(max_active)),
            inactive: quick_cache::sync::Cache::new(capacity(max_inactive)),
            organizations: Mutex::default(),
            generation: AtomicU64::new(0),
            dropped: RwLock::default(),
            any_dropped: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            loading: Mutex::default(),
        }
    }

    /// Whether a secret that failed against the cached copy of `key_id` should be checked once
    /// more against the database: yes, unless it was read within [`RELOAD_INTERVAL`]. So a key
    /// rotated (or created) through another replica works here at once, while a flood of wrong
    /// secrets for one ID costs at most one read per interval. If so, the copy is dropped.
    pub fn reload_after_failure(&self, key_id: &str) -> bool {
        let loaded = self
            .active
            .get(key_id)
            .map(|key| key.loaded)
            .or_else(|| self.inactive.get(key_id).map(|unusable| unusable.loaded));
        if !self.enabled || loaded.is_some_and(|at| at.elapsed() < RELOAD_INTERVAL) {
            return false;
        }
        // No generation bump: nothing changed here, so loads in flight may still be cached.
        self.active.remove(key_id);
        self.inactive.remove(key_id);
        true
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

    /// The shared copy of an organization ID, for [`CachedKey::new`].
    pub fn organization(&self, id: &str) -> Arc<str> {
        let mut organizations = self.organizations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = organizations.get(id) {
            return shared.clone();
        }
        let shared: Arc<str> = id.into();
        organizations.insert(shared.clone());
        shared
    }

    /// The generation to pass to [`insert`](Self::insert) for a load starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether the entry of `key_id` (of `owner`) read from the database at `loaded` was read
    /// after any drop of the key or its user, and is still within the TTL. The drops are
    /// looked at first: one older than the TTL may be let go meanwhile, and the entry is then
    /// past the TTL too.
    fn fresh(&self, key_id: &str, owner: Option<&str>, loaded: Instant) -> bool {
        !self.dropped_after(key_id, owner, loaded) && loaded.elapsed() < self.ttl
    }

    /// Whether `key_id` or its `owner` was dropped at or after `loaded`.
    fn dropped_after(&self, key_id: &str, owner: Option<&str>, loaded: Instant) -> bool {
        if !self.any_dropped.load(Ordering::SeqCst) {
            return false;
        }
        let expired = {
            let dropped = self.dropped.read().unwrap_or_else(|p| p.into_inner());
            let after = |id: &str| dropped.at.get(id).is_some_and(|at| loaded <= *at);
            if after(key_id) || owner.is_some_and(after) {
                return true;
            }
            dropped
                .latest
                .is_none_or(|latest| latest.elapsed() >= self.ttl)
        };
        if expired {
            let mut dropped = self.dropped.write().unwrap_or_else(|p| p.into_inner());
            if dropped
                .latest
                .is_none_or(|latest| latest.elapsed() >= self.ttl)
            {
                *dropped = Dropped::default();
                self.any_dropped.store(false, Ordering::SeqCst);
            }
        }
        false
    }

    /// Records that entries of `id` read until now are stale. The moment is taken under the
    /// lock and never moves back, so of two drops racing for one ID the later one stands.
    fn record_drop(&self, id: &str) {
        let mut dropped = self.dropped.write().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        dropped.at.retain(|_, at| at.elapsed() < self.ttl);
        let at = dropped.at.entry(id.to_owned()).or_insert(now);
        *at = (*at).max(now);
        dropped.latest = Some(dropped.latest.map_or(now, |latest| latest.max(now)));
        self.any_dropped.store(true, Ordering::SeqCst);
    }

    /// What is known about `key_id`, unless it is older than the TTL.
    pub fn get(&self, key_id: &str) -> Option<Lookup> {
        let found = self
            .active
            .get(key_id)
            .filter(|key| self.fresh(key_id, Some(&key.service_user_id), key.loaded))
            .map(Lookup::Active)
            .or_else(|| {
                self.inactive
                    .get(key_id)
                    .filter(|unusable| {
                        self.fresh(key_id, unusable.owner.as_deref(), unusable.loaded)
                    })
                    .map(|_| Lookup::Inactive)
            });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches an active key loaded since `generation`, unless an invalidation happened meanwhile.
    /// The generation is checked again after inserting: an invalidation that bumped it between
    /// the first check and the insert may have run its removal before the entry existed.
    pub fn insert(&self, generation: u64, key: Arc<CachedKey>) {
        if self.enabled && self.generation() == generation {
            let key_id = key.key_id.clone();
            self.active.insert(key_id.clone(), key);
            if self.generation() != generation {
                self.active.remove(&*key_id);
            }
        }
    }

    /// Remembers that `key_id` cannot be exchanged (unknown, or inactive for `service_user_id`).
    pub fn insert_inactive(&self, generation: u64, key_id: &str, service_user_id: Option<String>) {
        // Stamped before the check, as an active key is when it is built: a drop after the
        // check must find this entry older than itself.
        let loaded = Instant::now();
        if self.enabled && self.generation() == generation {
            let unusable = Unusable {
                owner: service_user_id,
                loaded,
            };
            self.inactive.insert(key_id.to_owned(), Arc::new(unusable));
            if self.generation() != generation {
                self.inactive.remove(key_id);
            }
        }
    }

    /// Drops a key. Also recorded as dropped: a load that passed its generation check just
    /// before this may still insert its stale copy, which must not be served meanwhile.
    pub fn forget_key(&self, key_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.record_drop(key_id);
        self.active.remove(key_id);
        self.inactive.remove(key_id);
    }

    /// Drops every key of a user: from now on an entry of theirs read before this moment counts
    /// as absent, and the next read replaces it. Nothing is scanned: a scan of a full cache
    /// holds each shard's lock in turn for long (80 ms in all at a million keys, measured),
    /// and a forced project deletion announces one user per binding.
    pub fn forget_user(&self, service_user_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.record_drop(service_user_id);
    }

    /// Drops everything.
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Keys and users dropped so far stay listed: a copy loaded just before such a drop may
        // be inserted while this runs.
        self.active.clear();
        self.inactive.clear();
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops what `stale` names.
    pub fn forget(&self, stale: &Invalidation) {
        match stale {
            Invalidation::ApiKey(key_id) => self.forget_key(key_id),
            Invalidation::ServiceUser(user_id) => self.forget_user(user_id),
            Invalidation::Everything => self.forget_all(),
        }
    }

    /// Hits, misses and flushes so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
        }
    }

    /// Entries held now: (active keys, unusable IDs), expired ones included until they are
    /// replaced or evicted.
    pub fn sizes(&self) -> (u64, u64) {
        let count = |len: usize| u64::try_from(len).unwrap_or(u64::MAX);
        (count(self.active.len()), count(self.inactive.len()))
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
            [0; 32],
            None,
            0,
            60,
            vec![],
            vec![],
            vec![],
        ))
    }

    #[test]
    fn keys_of_one_organization_share_one_copy_of_its_id() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        let first = cache.organization("org_a");
        let second = cache.organization(&String::from("org_a"));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(&*cache.organization("org_b"), "org_b");
    }

    #[test]
    fn inserted_entry_is_found_until_forgotten() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(matches!(cache.get("ak_1"), Some(Lookup::Active(_))));
        cache.forget_key("ak_1");
        assert!(cache.get("ak_1").is_none());
    }

    #[test]
    fn forgetting_a_user_drops_all_its_keys() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        cache.insert(cache.generation(), entry("ak_2", "su_1"));
        cache.insert(cache.generation(), entry("ak_3", "su_2"));
        cache.forget_user("su_1");
        assert!(cache.get("ak_1").is_none() && cache.get("ak_2").is_none());
        assert!(cache.get("ak_3").is_some());
    }

    #[test]
    fn a_key_read_after_its_user_was_dropped_is_served() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        cache.forget_user("su_1");
        std::thread::sleep(Duration::from_millis(2));
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(matches!(cache.get("ak_1"), Some(Lookup::Active(_))));
    }

    #[test]
    fn a_stale_copy_inserted_after_its_key_was_dropped_is_not_served() {
        // A load that read the key and passed its generation check just before the drop.
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        let stale = entry("ak_1", "su_1");
        cache.forget_key("ak_1");
        cache.insert(cache.generation(), stale);
        assert!(cache.get("ak_1").is_none());
    }

    #[test]
    fn a_stale_copy_inserted_after_its_user_was_dropped_is_not_served() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        let stale = entry("ak_1", "su_1");
        cache.forget_user("su_1");
        cache.insert(cache.generation(), stale);
        assert!(cache.get("ak_1").is_none());
    }

    #[test]
    fn drops_older_than_the_ttl_are_let_go() {
        let cache = KeyCache::new(Duration::from_millis(20), 10, 10);
        cache.forget_user("su_1");
        assert!(cache.any_dropped.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(30));
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(cache.get("ak_1").is_some());
        assert!(
            !cache.any_dropped.load(Ordering::SeqCst),
            "hits stop looking at the list"
        );
    }

    #[test]
    fn inactive_keys_are_remembered_and_dropped_with_their_user() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        cache.insert_inactive(cache.generation(), "ak_unknown", None);
        cache.insert_inactive(cache.generation(), "ak_disabled", Some("su_1".into()));
        assert!(matches!(cache.get("ak_unknown"), Some(Lookup::Inactive)));
        cache.forget_user("su_1");
        assert!(cache.get("ak_disabled").is_none());
        assert!(cache.get("ak_unknown").is_some());
    }

    #[test]
    fn a_load_that_raced_with_an_invalidation_is_not_cached() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        let generation = cache.generation();
        cache.forget_key("ak_1");
        cache.insert(generation, entry("ak_1", "su_1"));
        assert!(cache.get("ak_1").is_none());
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = KeyCache::new(Duration::from_millis(1), 10, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get("ak_1").is_none());
    }

    #[tokio::test]
    async fn a_second_loader_waits_for_the_first() {
        let cache = Arc::new(KeyCache::new(Duration::from_secs(60), 10, 10));
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
    fn a_flood_of_made_up_ids_never_evicts_a_real_key() {
        let cache = KeyCache::new(Duration::from_secs(60), 1_000, 1_000);
        cache.insert(cache.generation(), entry("ak_real", "su_1"));
        for i in 0..200_000 {
            cache.insert_inactive(cache.generation(), &format!("ak_fake{i}"), None);
        }
        let (active, inactive) = cache.sizes();
        assert!(matches!(cache.get("ak_real"), Some(Lookup::Active(_))));
        assert_eq!(active, 1);
        // The bound is kept per shard, so it may be passed by a few entries (the shard count
        // depends on the host's cores).
        assert!(
            inactive <= 1_100,
            "the negative side stays bounded: {inactive}"
        );
    }

    #[test]
    fn the_active_side_holds_about_its_size() {
        let cache = KeyCache::new(Duration::from_secs(60), 1_000, 1_000);
        for i in 0..5_000 {
            cache.insert(cache.generation(), entry(&format!("ak_{i}"), "su_1"));
        }
        let (active, _) = cache.sizes();
        assert!(
            (900..=1_100).contains(&active),
            "a cache of 1,000 holds {active}"
        );
    }

    #[test]
    fn a_failure_reloads_a_key_at_most_once_per_interval() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        let mut old = CachedKey::new(
            "ak_1".into(),
            "su_1".into(),
            "org".into(),
            [0; 32],
            None,
            0,
            60,
            vec![],
            vec![],
            vec![],
        );
        old.loaded = Instant::now()
            .checked_sub(RELOAD_INTERVAL * 2)
            .unwrap_or(old.loaded);
        cache.insert(cache.generation(), Arc::new(old));
        assert!(
            cache.reload_after_failure("ak_1"),
            "read longer ago than the interval: reload"
        );
        assert!(cache.get("ak_1").is_none(), "the stale copy is dropped");
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(
            !cache.reload_after_failure("ak_1"),
            "just read: no second read"
        );
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        cache.get("ak_1");
        cache.get("ak_2");
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                flushes: 0
            }
        );
    }

    #[test]
    fn a_flush_drops_everything_and_stops_loads_in_flight() {
        let cache = KeyCache::new(Duration::from_secs(60), 10, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        cache.insert_inactive(cache.generation(), "ak_2", None);
        let in_flight = cache.generation();
        cache.forget(&Invalidation::Everything);
        cache.insert(in_flight, entry("ak_3", "su_1"));
        assert!(cache.get("ak_1").is_none() && cache.get("ak_2").is_none());
        assert!(cache.get("ak_3").is_none());
        assert_eq!(cache.stats().flushes, 1);
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let cache = KeyCache::new(Duration::ZERO, 10, 10);
        cache.insert(cache.generation(), entry("ak_1", "su_1"));
        assert!(cache.get("ak_1").is_none());
    }
}
