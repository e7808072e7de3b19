//! The tokio runtime the server runs on (and its load generator, so both are tuned alike).

/// Tasks a worker thread runs between two looks at the sockets (tokio's default is 61).
///
/// An exchange's tasks finish in tens of microseconds, so under load the default has every
/// worker ask the kernel for new events every millisecond or so, and each answer wakes the
/// connections' tasks for a few frames at a time. At 200 the workers stay longer on the work
/// already queued and take more frames per look: under h2load the spread of an exchange's
/// latency fell from 2.0 to 1.7 ms (standard deviation, same mean), and with the first lean
/// load generator the p99 at 256 in flight from 11.6 to 10.2 ms (docs/benchmarks.md,
/// "2026-11-27 (third session)"). A worker with nothing to run still looks at once, so an
/// idle server answers no later.
pub const EVENT_INTERVAL: u32 = 200;

/// A multi-threaded runtime with I/O and timers, one worker per core.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    builder().build()
}

/// [`build`]'s settings, for a caller that sets its own number of workers.
pub fn builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().event_interval(EVENT_INTERVAL);
    builder
}
