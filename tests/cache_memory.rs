//! Memory of a key in use, measured in a process of its own so nothing else allocates meanwhile:
//! the resident-set growth, per key, of filling a key cache with realistic entries, of counting
//! one exchange of each for the audit trail (as a busy minute on every key does), and of as many
//! made-up key IDs remembered as unusable (what anyone can make a replica hold). The default
//! cache size and the "a million keys under 1 GiB" promise rest on these numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokenmint::domain::activity::Activity;
use tokenmint::domain::key_cache::{CachedKey, KeyCache};
use tokenmint::domain::roles::Role;
use tokenmint::ids::{ApiKeyId, OrganizationId, ServiceUserId};

/// Keys used; enough that allocator slack and the hash tables' doubling even out.
const KEYS: usize = 300_000;
/// The bound on a cached key (measured: 447 bytes, of which quick_cache's bookkeeping is about
/// 60 and the entry with its own strings the rest; 716 on moka, which the cache used before).
const MAX_CACHED_BYTES: usize = 500;
/// The bound on a key's activity record (measured: 174 bytes; about 290 before the records
/// were boxed and their one address kept inline).
const MAX_COUNTED_BYTES: usize = 200;
/// The bound on a made-up key ID remembered as unusable (measured: 192 bytes).
const MAX_UNUSABLE_BYTES: usize = 250;

/// The allocator the server runs on (`src/main.rs`), so the bytes are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn memory_per_key_stays_within_its_bounds() {
    let organization = OrganizationId::generate().to_string();
    // Key IDs of the real length, made again from their index when needed, so no list of
    // them is held.
    let template = ApiKeyId::generate().to_string();
    let key_id = |i: usize| format!("{}{i:010}", &template[..template.len() - 10]);
    let start = resident_bytes();
    // Room to spare, as the full-cache benchmark gives (`--key-cache-size 1100000`): the bound
    // is kept per shard, and keys do not spread over the shards exactly evenly.
    let capacity = (KEYS + KEYS / 10) as u64;
    let cache = KeyCache::new(Duration::from_secs(3600), capacity, capacity);
    for i in 0..KEYS {
        let entry = CachedKey::new(
            key_id(i),
            // Ten keys per user, as in the benchmark fixture.
            if i % 10 == 0 {
                ServiceUserId::generate().to_string()
            } else {
                format!("su_{i:026}")
            },
            cache.organization(&organization),
            [7; 32],
            None,
            2_000_000_000,
            3600,
            Vec::new(),
            vec![Role::Viewer],
            Vec::new(),
        );
        cache.insert(cache.generation(), Arc::new(entry));
    }
    let cached = resident_bytes();

    let activity = Activity::default();
    let now = Utc::now();
    for i in 0..KEYS {
        let key = cache
            .get(&key_id(i))
            .and_then(|found| found.into_active())
            .unwrap();
        let address = IpAddr::from((0x0a00_0000 + i as u32).to_be_bytes());
        activity.record_use(
            &key.key_id,
            &key.organization_id,
            &key.service_user_id,
            Some(address),
            now,
        );
    }
    let counted = resident_bytes();

    // Made-up IDs of the real length, without an owner, as a probe for unknown keys leaves.
    for i in 0..KEYS {
        cache.insert_inactive(cache.generation(), &key_id(KEYS + i), None);
    }
    let unusable = resident_bytes();

    let (held, held_unusable) = cache.sizes();
    let per_cached = (cached - start) / KEYS;
    let per_counted = (counted - cached) / KEYS;
    let per_unusable = (unusable - counted) / KEYS;
    eprintln!(
        "{held} keys: {per_cached} bytes cached + {per_counted} bytes counted, each; \
         {held_unusable} unusable IDs: {per_unusable} bytes each"
    );
    assert_eq!(held, KEYS as u64, "every key is held");
    assert_eq!(held_unusable, KEYS as u64, "every unusable ID is held");
    assert!(
        per_cached < MAX_CACHED_BYTES,
        "{per_cached} bytes per cached key"
    );
    assert!(
        per_counted < MAX_COUNTED_BYTES,
        "{per_counted} bytes per counted key"
    );
    assert!(
        per_unusable < MAX_UNUSABLE_BYTES,
        "{per_unusable} bytes per unusable ID"
    );
}
