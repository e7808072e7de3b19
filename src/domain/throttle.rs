//! Slows credential guessing: failed secret checks are counted per source address and per key
//! ID in fixed windows. An address past its limit is refused outright, even with the right
//! secret, until its window ends. A key ID past its limit refuses only addresses that have
//! failed recently, so an attacker hammering a key cannot lock out its owner calling from a
//! clean address. Unknown key IDs are counted like known ones, so throttling reveals nothing
//! about which IDs exist. Both counters live in size-bounded moka caches: whatever an attacker
//! sends, memory stays bounded (past the bound, the least useful entries are evicted).

use chrono::{DateTime, TimeDelta, Utc};
use std::net::IpAddr;
use std::time::Duration;

/// Limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleLimits {
    /// Failures one address may make in a window; zero turns throttling off.
    pub failures_per_address: u32,
    /// Failures against one key ID in a window before failing addresses are refused for it.
    pub failures_per_key: u32,
    /// Length of a window.
    pub window: Duration,
    /// Most addresses and key IDs tracked, each.
    pub max_tracked: u64,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            failures_per_address: 20,
            failures_per_key: 10,
            window: Duration::from_secs(60),
            max_tracked: 100_000,
        }
    }
}

/// Failures in the current window of one address or key ID.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: DateTime<Utc>,
    failures: u32,
}

/// The failure counters.
pub struct Throttle {
    limits: ThrottleLimits,
    by_address: moka::sync::Cache<IpAddr, Window>,
    by_key: moka::sync::Cache<String, Window>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("limits", &self.limits)
            .field("addresses", &self.by_address.entry_count())
            .field("keys", &self.by_key.entry_count())
            .finish()
    }
}

/// The bucket an address is counted in (by the throttle, and by the listeners' per-address
/// connection caps): IPv6 by /64, since one host commonly holds a whole /64.
pub fn address_bucket(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

impl Throttle {
    /// Counters with `limits`.
    pub fn new(limits: ThrottleLimits) -> Self {
        // Entries idle past a window carry nothing; moka drops them (the window itself is judged
        // against the domain's clock, so tests can move time).
        let idle = limits.window.max(Duration::from_secs(1));
        Self {
            limits,
            by_address: moka::sync::Cache::builder()
                .max_capacity(limits.max_tracked)
                .time_to_idle(idle)
                .build(),
            by_key: moka::sync::Cache::builder()
                .max_capacity(limits.max_tracked)
                .time_to_idle(idle)
                .build(),
        }
    }

    fn window(&self) -> TimeDelta {
        TimeDelta::from_std(self.limits.window).unwrap_or(TimeDelta::MAX)
    }

    /// Failures within the window that is current at `now`.
    fn current(&self, window: Option<Window>, now: DateTime<Utc>) -> Option<Window> {
        window.filter(|w| now < w.start + self.window())
    }

    /// `Err(retry_after)` when a check of `key_id`'s secret from `address` must be refused
    /// without looking at the secret.
    pub fn check(
        &self,
        address: Option<IpAddr>,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Duration> {
        if self.limits.failures_per_address == 0 {
            return Ok(());
        }
        let retry = |w: Window| {
            (w.start + self.window() - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        };
        let by_address =
            address.and_then(|a| self.current(self.by_address.get(&address_bucket(a)), now));
        if let Some(w) = by_address.filter(|w| w.failures >= self.limits.failures_per_address) {
            return Err(retry(w));
        }
        // A key under attack still lets in addresses with no recent failure (its owner).
        let by_key = self.current(self.by_key.get(key_id), now);
        match (by_key, by_address) {
            (Some(k), Some(_)) if k.failures >= self.limits.failures_per_key => Err(retry(k)),
            // With no address to tell callers apart, the key's limit applies to everyone.
            (Some(k), None) if address.is_none() && k.failures >= self.limits.failures_per_key => {
                Err(retry(k))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed secret check of `key_id` from `address`.
    pub fn record_failure(&self, address: Option<IpAddr>, key_id: &str, now: DateTime<Utc>) {
        if self.limits.failures_per_address == 0 {
            return;
        }
        let bump = |w: Option<Window>| match self.current(w, now) {
            Some(w) => Window {
                start: w.start,
                failures: w.failures.saturating_add(1),
            },
            None => Window {
                start: now,
                failures: 1,
            },
        };
        if let Some(address) = address {
            self.by_address
                .entry(address_bucket(address))
                .and_compute_with(|w| moka::ops::compute::Op::Put(bump(w.map(|e| *e.value()))));
        }
        // Key IDs are bounded in length by validation before they get here.
        self.by_key
            .entry(key_id.to_owned())
            .and_compute_with(|w| moka::ops::compute::Op::Put(bump(w.map(|e| *e.value()))));
    }

    /// How many addresses and key IDs are tracked now (for tests and metrics).
    pub fn tracked(&self) -> (u64, u64) {
        self.by_address.run_pending_tasks();
        self.by_key.run_pending_tasks();
        (self.by_address.entry_count(), self.by_key.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            failures_per_address: 3,
            failures_per_key: 2,
            window: Duration::from_secs(60),
            max_tracked: 1000,
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn an_address_past_its_limit_is_refused_until_its_window_ends() {
        let throttle = Throttle::new(limits());
        for _ in 0..3 {
            assert!(throttle.check(ip("10.0.0.1"), "ak_x", t0()).is_ok());
            throttle.record_failure(ip("10.0.0.1"), &format!("ak_{}", rand_id()), t0());
        }
        let later = t0() + TimeDelta::seconds(20);
        assert_eq!(
            throttle.check(ip("10.0.0.1"), "ak_other", later),
            Err(Duration::from_secs(40))
        );
        assert!(throttle.check(ip("10.0.0.2"), "ak_other", later).is_ok());
        assert!(
            throttle
                .check(ip("10.0.0.1"), "ak_other", t0() + TimeDelta::seconds(60))
                .is_ok()
        );
    }

    #[test]
    fn a_key_under_attack_refuses_failing_addresses_but_not_clean_ones() {
        let throttle = Throttle::new(limits());
        throttle.record_failure(ip("10.0.0.1"), "ak_target", t0());
        throttle.record_failure(ip("10.0.0.1"), "ak_target", t0());
        assert!(throttle.check(ip("10.0.0.1"), "ak_target", t0()).is_err());
        assert!(throttle.check(ip("10.0.0.9"), "ak_target", t0()).is_ok());
        assert!(throttle.check(ip("10.0.0.1"), "ak_elsewhere", t0()).is_ok());
    }

    #[test]
    fn ipv6_addresses_share_their_slash_64() {
        let throttle = Throttle::new(limits());
        for i in 1..=3 {
            throttle.record_failure(ip(&format!("2001:db8::{i}")), "ak_x", t0());
        }
        assert!(throttle.check(ip("2001:db8::ffff"), "ak_y", t0()).is_err());
        assert!(throttle.check(ip("2001:db8:0:1::1"), "ak_y", t0()).is_ok());
    }

    #[test]
    fn memory_stays_bounded_whatever_is_sent() {
        let throttle = Throttle::new(limits());
        for i in 0..20_000u32 {
            let address = IpAddr::from(i.to_be_bytes());
            throttle.record_failure(Some(address), &format!("ak_{i}"), t0());
        }
        let (addresses, keys) = throttle.tracked();
        assert!(addresses <= 1000 && keys <= 1000, "{addresses} {keys}");
    }

    fn rand_id() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
