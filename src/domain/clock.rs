//! The one source of "now" for every time decision (key expiry, token times, TTLs), so tests
//! move time forward instead of rewriting stored rows.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use std::sync::Mutex;

/// Tells the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, truncated to microseconds so what is stored reads back equal on every
    /// database.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that stands still until told to move, or moves a step on every reading; for tests.
#[derive(Debug)]
pub struct FakeClock(Mutex<FakeTime>);

#[derive(Debug)]
struct FakeTime {
    now: DateTime<Utc>,
    step_per_reading: TimeDelta,
}

impl FakeClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(FakeTime {
            now: start.trunc_subsecs(6),
            step_per_reading: TimeDelta::zero(),
        }))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).now += by;
    }

    /// From now on, moves forward by `by` after every reading, as time passes between the
    /// steps of one request.
    pub fn step_on_every_reading(&self, by: TimeDelta) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .step_per_reading = by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        let mut time = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (now, step) = (time.now, time.step_per_reading);
        time.now += step;
        now
    }
}

/// The system's clock moved by a number of seconds read from a file on every call; absent or
/// unreadable means no offset. Compiled only into `test-clock` builds, for end-to-end tests that
/// move a running server's time (grace periods, expiry, key schedules) without sleeping.
#[cfg(feature = "test-clock")]
#[derive(Debug)]
pub struct FileClock(std::path::PathBuf);

#[cfg(feature = "test-clock")]
impl FileClock {
    /// A clock offset by the seconds in `path`.
    pub fn new(path: std::path::PathBuf) -> Self {
        Self(path)
    }
}

#[cfg(feature = "test-clock")]
impl Clock for FileClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0);
        SystemClock.now() + TimeDelta::seconds(offset)
    }
}
