//! Tokenmint persistence: migrations and queries on SQLite and PostgreSQL, behind plain typed
//! values ([`model`]). sea-orm stays inside this crate. Changes run in a unit of work ([`Tx`]).
//! Knows nothing of gRPC.

mod entity;
mod error;
mod migration;
pub mod model;
mod queries;

pub use error::{StoreError, StoreResult};
pub use model::*;
pub use queries::{Bootstrap, Tx};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// The PostgreSQL notification channel that carries the chain of each committed audit event.
pub const AUDIT_CHANNEL: &str = "tokenmint_audit";

/// The PostgreSQL notification channel that carries [`Invalidation`]s.
pub const INVALIDATION_CHANNEL: &str = "tokenmint_invalidate";

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
    /// How long a call waits for a connection before the database counts as unavailable.
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
    /// Connects and, on SQLite, switches the file to write-ahead logging so readers never wait
    /// for the writer.
    pub async fn connect(options: &StoreOptions) -> StoreResult<Self> {
        let mut connect = ConnectOptions::new(options.url.clone());
        connect
            .max_connections(options.max_connections)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_timeout(options.acquire_timeout)
            .sqlx_logging(false);
        let mut db = Database::connect(connect)
            .await
            .map_err(StoreError::Unavailable)?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        db.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut sqlite_writer = None;
        if db.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
            sqlite_writer = Some(Arc::new(tokio::sync::Mutex::new(())));
        }
        Ok(Self {
            db,
            sqlite_writer,
            statements,
            audit_appended: tokio::sync::broadcast::channel(1024).0,
            invalidated: tokio::sync::broadcast::channel(4096).0,
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

    /// On PostgreSQL, relays every replica's notifications until the process ends: audit
    /// chains to [`audit_appended`](Self::audit_appended), invalidations to
    /// [`invalidations`](Self::invalidations). Each time listening starts (at first, and after a
    /// lost connection is replaced) it sends [`Invalidation::Everything`] first, since what was
    /// announced meanwhile is lost. Does nothing on SQLite, where this process is the only
    /// writer.
    pub async fn listen_for_changes(self) {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let mut interrupted = false;
        loop {
            let relayed = async {
                let pool = self.db.get_postgres_connection_pool();
                let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
                listener
                    .listen_all([AUDIT_CHANNEL, INVALIDATION_CHANNEL])
                    .await?;
                let _ = self.invalidated.send(Invalidation::Everything);
                if interrupted {
                    tracing::warn!(
                        "listening for other replicas' changes again; the key cache was flushed, \
                         since notifications may have been missed"
                    );
                } else {
                    tracing::debug!("listening for other replicas' changes");
                }
                // `try_recv` reports a lost connection as `None` instead of reconnecting
                // silently, which would hide the gap.
                while let Some(notification) = listener.try_recv().await? {
                    if notification.channel() == INVALIDATION_CHANNEL {
                        let stale = Invalidation::from_payload(notification.payload());
                        let _ = self.invalidated.send(stale);
                    } else {
                        let _ = self.audit_appended.send(notification.payload().to_owned());
                    }
                }
                Ok::<(), sea_orm::sqlx::Error>(())
            }
            .await;
            interrupted = true;
            match relayed {
                Ok(()) => {
                    tracing::warn!("lost the connection that listens for other replicas' changes")
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other replicas' changes; retrying")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> StoreResult<()> {
        migration::Migrator::up(&self.db, None).await?;
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
