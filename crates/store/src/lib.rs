//! Tokenmint persistence: migrations and queries on SQLite and PostgreSQL, behind plain typed
//! values ([`model`]). sea-orm stays inside this crate. Changes run in a unit of work ([`Tx`]).
//! Knows nothing of gRPC.

mod entity;
mod error;
mod key_reads;
mod migration;
pub mod model;
mod queries;

pub use error::{StoreError, StoreResult};
pub use key_reads::KeyReadStats;
pub use model::*;
pub use queries::{Bootstrap, Tx};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr,
};
use sea_orm_migration::MigratorTrait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A handle on the database; cheap to clone (it wraps a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
    /// SQLite allows one writer; queueing writers here avoids `database is locked` failures
    /// when two transactions that read first both try to write.
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Statements sent to the database since connecting, for metrics and for tests that prove
    /// two paths do the same database work.
    statements: Arc<AtomicU64>,
    /// The audit chains that gained events: from this process's commits and, on PostgreSQL
    /// once [`listen_for_audit_events`](Self::listen_for_audit_events) runs, from every replica's.
    audit_appended: tokio::sync::broadcast::Sender<String>,
    /// What other replicas' changes made stale, once
    /// [`listen_for_changes`](Self::listen_for_changes) runs on PostgreSQL; and
    /// [`Invalidation::Everything`] each time listening (re)starts.
    invalidated: tokio::sync::broadcast::Sender<Invalidation>,
    /// Whether [`listen_for_changes`](Self::listen_for_changes) holds a working connection.
    listening: Arc<AtomicBool>,
    /// Cache misses waiting to be read together.
    key_reads: Arc<key_reads::KeyReads>,
}

/// How often the listener sends itself a heartbeat through [`INVALIDATION_CHANNEL`].
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// How long without hearing its own heartbeat before the listener counts its connection as
/// dead (it may end without a word: a failover, a NAT or firewall timeout, a pooler that drops
/// notifications) and replaces it.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(6);

/// The PostgreSQL notification channel that carries the chain of each committed audit event.
pub const AUDIT_CHANNEL: &str = "tokenmint_audit";

/// The PostgreSQL notification channel that carries [`Invalidation`]s, and heartbeats.
pub const INVALIDATION_CHANNEL: &str = "tokenmint_invalidate";

/// A PostgreSQL `NOTIFY` of `payload` on `channel`, delivered when its transaction commits.
pub(crate) fn notify(channel: &str, payload: &str) -> sea_orm::Statement {
    sea_orm::Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    )
}

/// Heartbeat payloads start with this; they are not invalidations.
const HEARTBEAT_PREFIX: &str = "ping:";

/// The connection pool at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open.
    pub size: u32,
    /// Of those, connections not in use.
    pub idle: usize,
}

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://path?mode=rwc` or `postgres://…`.
    pub url: String,
    /// Upper bound of pooled connections.
    pub max_connections: u32,
    /// How long a call waits for a connection (a cache miss: for its shared key read) before
    /// the database counts as unavailable.
    pub acquire_timeout: Duration,
}

impl StoreOptions {
    /// Options with the defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Store {
    /// Connects; on SQLite, every connection writes ahead (WAL) and syncs fully (see below).
    pub async fn connect(options: &StoreOptions) -> StoreResult<Self> {
        let mut connect = ConnectOptions::new(options.url.clone());
        connect
            .max_connections(options.max_connections)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_timeout(options.acquire_timeout)
            .sqlx_logging(false)
            // Every connection, explicitly: write-ahead logging so readers never wait for the
            // writer, and FULL sync so a call answered OK survives a crash of the process and of
            // the machine (NORMAL could lose the last commits on power loss; a revocation that
            // was confirmed must not come undone).
            .map_sqlx_sqlite_opts(|options| {
                options
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
            });
        let mut db = Database::connect(connect).await.map_err(|err| match &err {
            // Only a database that cannot be reached now may be reachable later; refused
            // credentials, an unknown database or a malformed URL will not go away by waiting.
            DbErr::Conn(RuntimeErr::SqlxError(e)) if error::is_connection_error(e) => {
                StoreError::Unavailable(err)
            }
            DbErr::ConnectionAcquire(_) => StoreError::Unavailable(err),
            _ => StoreError::Database(err),
        })?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut sqlite_writer = None;
        if db.get_database_backend() == DbBackend::Sqlite {
            sqlite_writer = Some(Arc::new(tokio::sync::Mutex::new(())));
        }
        Ok(Self {
            db,
            sqlite_writer,
            statements,
            audit_appended: tokio::sync::broadcast::channel(1024).0,
            invalidated: tokio::sync::broadcast::channel(4096).0,
            listening: Arc::default(),
            key_reads: Arc::new(key_reads::KeyReads::new(options.acquire_timeout)),
        })
    }

    /// Chains that gain events from now on (see [`AUDIT_CHANNEL`]). A receiver that lags misses
    /// notifications, never events: watchers also re-read on a timer.
    pub fn audit_appended(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.audit_appended.subscribe()
    }

    /// Cache entries that changes made through other replicas made stale (see
    /// [`listen_for_changes`](Self::listen_for_changes)).
    pub fn invalidations(&self) -> tokio::sync::broadcast::Receiver<Invalidation> {
        self.invalidated.subscribe()
    }

    /// On PostgreSQL, whether this replica is listening to the others' changes now; `None` on
    /// SQLite, where there are no others.
    pub fn listening(&self) -> Option<bool> {
        (self.db.get_database_backend() == DbBackend::Postgres)
            .then(|| self.listening.load(Ordering::Relaxed))
    }

    /// On PostgreSQL, relays every replica's notifications until the process ends: audit
    /// chains to [`audit_appended`](Self::audit_appended), invalidations to
    /// [`invalidations`](Self::invalidations). Each time listening starts (at first, and after a
    /// lost connection is replaced) it sends [`Invalidation::Everything`] first, since what was
    /// announced meanwhile is lost. A connection can die without a word, so the listener sends
    /// itself a heartbeat (`ping:<replica>`) every [`HEARTBEAT_INTERVAL`] and replaces the
    /// connection when one has not come back within [`HEARTBEAT_TIMEOUT`]. `replica` must be
    /// unique among the replicas. Does nothing on SQLite, where this process is the only writer.
    pub async fn listen_for_changes(self, replica: String) {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let ping = format!("{HEARTBEAT_PREFIX}{replica}");
        let mut interrupted = false;
        loop {
            let relayed = self.relay_changes(&ping, interrupted).await;
            self.listening.store(false, Ordering::Relaxed);
            if self.db.get_postgres_connection_pool().is_closed() {
                // The store was closed: the process is stopping, nothing is lost.
                return;
            }
            interrupted = true;
            match relayed {
                Ok(()) => tracing::warn!(
                    "lost the connection that listens for other replicas' changes; replacing it"
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other replicas' changes; retrying")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Listens on one connection until it is lost (`Ok`) or fails (`Err`).
    async fn relay_changes(
        &self,
        ping: &str,
        interrupted: bool,
    ) -> Result<(), sea_orm::sqlx::Error> {
        let pool = self.db.get_postgres_connection_pool();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
        listener
            .listen_all([AUDIT_CHANNEL, INVALIDATION_CHANNEL])
            .await?;
        let _ = self.invalidated.send(Invalidation::Everything);
        self.listening.store(true, Ordering::Relaxed);
        if interrupted {
            tracing::warn!(
                "listening for other replicas' changes again; the key cache was flushed, \
                 since notifications may have been missed"
            );
        } else {
            tracing::debug!("listening for other replicas' changes");
        }
        let mut heard = tokio::time::Instant::now();
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                received = listener.try_recv() => {
                    // `None`: the connection ended. `try_recv` would reconnect on its own next
                    // time, hiding the gap; a fresh listener makes the flush explicit.
                    let Some(notification) = received? else { return Ok(()) };
                    let payload = notification.payload();
                    if notification.channel() == AUDIT_CHANNEL {
                        let _ = self.audit_appended.send(payload.to_owned());
                    } else if payload == ping {
                        heard = tokio::time::Instant::now();
                    } else if !payload.starts_with(HEARTBEAT_PREFIX) {
                        let _ = self.invalidated.send(Invalidation::from_payload(payload));
                    }
                }
                _ = heartbeat.tick() => {
                    if heard.elapsed() > HEARTBEAT_TIMEOUT {
                        tracing::warn!("no heartbeat on the connection that listens for other replicas' changes");
                        return Ok(());
                    }
                    // Sent through the pool, on another connection, without waiting for it here.
                    let db = self.db.clone();
                    let statement = notify(INVALIDATION_CHANNEL, ping);
                    tokio::spawn(async move { db.execute_raw(statement).await });
                }
            }
        }
    }

    /// Applies every pending migration. On PostgreSQL replicas started together on an empty
    /// database would otherwise race to create the same tables, and all but one would fail to
    /// start: the migrations run in one transaction that first takes an advisory lock, so the
    /// others wait and then find nothing left to do.
    pub async fn migrate(&self) -> StoreResult<()> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            migration::Migrator::up(&self.db, None).await?;
            return Ok(());
        }
        let txn = sea_orm::TransactionTrait::begin(&self.db).await?;
        txn.execute_unprepared(
            "SELECT pg_advisory_xact_lock(hashtextextended('tokenmint.migrate', 0))",
        )
        .await?;
        migration::Migrator::up(&txn, None).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.ping().await?;
        Ok(())
    }

    /// Closes every pooled connection.
    pub async fn close(self) -> StoreResult<()> {
        self.db.close().await?;
        Ok(())
    }

    /// Held for the duration of a write on SQLite; a no-op on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// Refreshes PostgreSQL's statistics of the tables a bulk load grows. Until autovacuum
    /// catches up, the planner would judge a freshly loaded table by its old row count: a deep
    /// page of 100,000 service users was planned as a bitmap scan and a sort of every row after
    /// the cursor (4.3 ms) instead of the walk along the index (0.16 ms). SQLite chooses these
    /// plans by their indexes alone, so it has nothing to refresh.
    pub async fn analyze_after_bulk_load(&self) -> StoreResult<()> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            self.db
                .execute_unprepared("ANALYZE service_users, api_keys")
                .await?;
        }
        Ok(())
    }

    /// The connection pool now.
    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle) = match self.db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => {
                let pool = self.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        };
        PoolStats { size, idle }
    }

    /// How many statements this handle has sent to the database.
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// `sqlite` or `postgres`, for logs.
    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
            _ => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pooled connection, not only the first, writes ahead and syncs fully.
    #[tokio::test]
    async fn every_sqlite_connection_is_in_wal_mode_with_full_sync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut options = StoreOptions::new(url);
        options.max_connections = 3;
        let store = Store::connect(&options).await.expect("connect");
        let pool = store.db.get_sqlite_connection_pool();
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut connection = pool.acquire().await.expect("a connection");
            let (journal,): (String,) = sea_orm::sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(&mut *connection)
                .await
                .expect("journal mode");
            let (synchronous,): (i64,) = sea_orm::sqlx::query_as("PRAGMA synchronous")
                .fetch_one(&mut *connection)
                .await
                .expect("synchronous");
            assert_eq!((journal.as_str(), synchronous), ("wal", 2), "WAL, FULL");
            held.push(connection);
        }
    }
}
