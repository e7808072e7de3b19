//! Memory of the key cache, measured in a process of its own so nothing else allocates meanwhile:
//! the resident-set growth of filling a cache with realistic entries, per entry. The default
//! cache size and the "a million keys under 1 GiB" promise rest on this number.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use tokenmint::domain::key_cache::{CachedKey, KeyCache};
use tokenmint::domain::roles::Role;
use tokenmint::ids::{ApiKeyId, OrganizationId, ServiceUserId};

/// Entries added; enough that allocator slack is noise.
const ENTRIES: usize = 200_000;
/// The bound this test holds the cache to (measured: about 716 bytes, moka's bookkeeping
/// included, down from 870 before the hash was kept inline and organization IDs shared): a
/// server with 1,000,000 cached keys, each also counted for activity, stays under 1 GiB.
const MAX_BYTES_PER_ENTRY: usize = 800;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_cached_key_costs_less_than_800_bytes() {
    let organization = OrganizationId::generate().to_string();
    let before = resident_bytes();
    let cache = KeyCache::new(Duration::from_secs(3600), ENTRIES as u64, ENTRIES as u64);
    let entries: Vec<Arc<CachedKey>> = (0..ENTRIES)
        .map(|i| {
            Arc::new(CachedKey::new(
                ApiKeyId::generate().to_string(),
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
            ))
        })
        .collect();
    for entry in entries {
        cache.insert(cache.generation(), entry);
    }
    let (active, _) = cache.sizes();
    let per_entry = (resident_bytes() - before) / ENTRIES;
    eprintln!("{active} cached keys: {per_entry} bytes each");
    assert_eq!(active, ENTRIES as u64, "every entry is held");
    assert!(
        per_entry < MAX_BYTES_PER_ENTRY,
        "{per_entry} bytes per cached key"
    );
}
