//! Start-up and shutdown: open the database, run migrations, load keys, bootstrap, serve gRPC
//! and HTTP, and drain both on SIGTERM or SIGINT.

use crate::config::{CoreArgs, ServeArgs};
use crate::domain::bootstrap::BootstrapCredential;
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::key_cache::KeyCache;
use crate::domain::keyring::{Keyring, SigningSchedule};
use crate::domain::page_token::PageTokens;
use crate::domain::throttle::{Throttle, ThrottleLimits};
use crate::domain::{Settings, Tokenmint};
use crate::local_secrets::LocalSecrets;
use crate::proto::{
    admin::v1::admin_service_server::AdminServiceServer,
    auth::v1::auth_service_server::AuthServiceServer,
};
use crate::{data_files, listener};
use ring::rand::SystemRandom;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokenmint_store::{Store, StoreError, StoreOptions};
use tokenmint_token::{KeyEncryptionKey, SecretHasher};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How often an idle gRPC connection is pinged, and how long the answer may take before the
/// connection counts as dead.
const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] tokenmint_store::StoreError),
    /// A start-up step failed (loading keys, bootstrapping).
    #[error("{0}")]
    Startup(String),
    /// A socket could not be bound or served.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("grpc: {0}")]
    Grpc(String),
}

impl From<crate::error::Error> for StartError {
    /// An operator reading a start-up failure needs the detail a client must not see.
    fn from(err: crate::error::Error) -> Self {
        match err {
            crate::error::Error::Internal(detail) => StartError::Startup(detail),
            crate::error::Error::Store(source) | crate::error::Error::Unavailable(source) => {
                StartError::Store(source)
            }
            other => StartError::Startup(other.to_string()),
        }
    }
}

/// The database URL to use: the configured one, or SQLite in the data directory.
pub fn database_url(core: &CoreArgs) -> Result<String, StartError> {
    if let Some(url) = &core.database_url {
        return Ok(url.clone());
    }
    if let Some(path) = &core.database_url_file {
        let url = crate::config::read_setting_file(path).map_err(|e| {
            StartError::Config(format!("--database-url-file {}: {e}", path.display()))
        })?;
        let url = url.trim();
        if url.is_empty() {
            return Err(StartError::Config(format!(
                "--database-url-file {} is empty",
                path.display()
            )));
        }
        return Ok(url.to_owned());
    }
    data_files::prepare_data_dir(&core.data_dir)?;
    let path = core.data_dir.join("tokenmint.db");
    data_files::private_sqlite_files(&path)?;
    Ok(format!("sqlite://{}?mode=rwc", path.display()))
}

/// Connects, retrying for up to `wait` while the database refuses connections.
async fn connect_when_ready(options: &StoreOptions, wait: Duration) -> Result<Store, StartError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match Store::connect(options).await {
            Err(StoreError::Unavailable(error)) if tokio::time::Instant::now() < deadline => {
                let error = without_password(&error_chain(&error), &options.url);
                tracing::warn!(%error, "the database refuses connections; retrying (--database-startup-wait)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                return Err(StartError::Config(format!(
                    "cannot use the database: {}",
                    without_password(&error_chain(&error), &options.url)
                )));
            }
            Ok(store) => return Ok(store),
        }
    }
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// `text` with the password of `url` (`scheme://user:password@host/…`) replaced, wherever the
/// driver quoted it.
fn without_password(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

/// Connects, migrates and loads keys.
pub async fn open(core: &CoreArgs, issuer: String) -> Result<Arc<Tokenmint>, StartError> {
    let secrets = LocalSecrets::load(core).map_err(|e| StartError::Config(e.to_string()))?;
    let mut options = StoreOptions::new(database_url(core)?);
    options.max_connections = core.database_max_connections;
    options.acquire_timeout = core.database_timeout;
    let store = connect_when_ready(&options, core.database_startup_wait).await?;
    store.migrate().await?;
    let kek = KeyEncryptionKey::new(&secrets.key_encryption_key)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let rng = SystemRandom::new();
    let clock = clock()?;
    let schedule = SigningSchedule {
        algorithm: core.signing_algorithm,
        rotation_period: core.signing_key_rotation_period,
        publication_period: core.signing_key_publication_period,
    };
    if !schedule.rotation_period.is_zero()
        && schedule.rotation_period <= schedule.publication_period
    {
        return Err(StartError::Config(
            "--signing-key-rotation-period must be longer than --signing-key-publication-period"
                .into(),
        ));
    }
    let keyring =
        Arc::new(Keyring::load_or_create(&store, kek, &issuer, schedule, clock.now()).await?);
    let signer_kid = keyring.current().signer(clock.now())?.kid().to_owned();
    tracing::info!(backend = store.backend_name(), kid = %signer_kid, issuer = %issuer, "database ready");
    Ok(Arc::new(Tokenmint {
        store,
        keyring,
        hasher: SecretHasher::new(&secrets.secret_pepper),
        page_tokens: PageTokens::new(&secrets.secret_pepper),
        key_cache: KeyCache::new(core.key_cache_ttl, core.key_cache_size, core.key_cache_size),
        throttle: Throttle::new(ThrottleLimits {
            failures_per_address: core.throttle_failures_per_address,
            failures_per_key: core.throttle_failures_per_key,
            window: core.throttle_window,
            ..ThrottleLimits::default()
        }),
        activity: Default::default(),
        failure_budget: crate::domain::audit::failure_budget(),
        settings: Settings {
            issuer,
            default_token_lifetime: core.default_token_lifetime,
            default_max_service_users: core.default_max_service_users,
            default_max_api_keys_per_service_user: core.default_max_api_keys_per_service_user,
            allowed_audiences: core.allowed_audiences.clone(),
            housekeeping: crate::domain::housekeeping::HousekeepingSettings {
                expiry_warning: core.key_expiry_warning,
                revoke_unused_after: Some(core.revoke_unused_keys_after).filter(|d| !d.is_zero()),
                audit_retention: Some(core.audit_retention).filter(|d| !d.is_zero()),
            },
        },
        rng,
        clock,
    }))
}

/// The clock every time decision reads: the system's, or in a build with the `test-clock`
/// feature, one the end-to-end tests move through a file (never through the network).
fn clock() -> Result<Arc<dyn Clock>, StartError> {
    #[cfg(feature = "test-clock")]
    if let Some(path) = std::env::var_os("TOKENMINT_TEST_CLOCK_FILE") {
        tracing::warn!(
            "test-clock build: the clock follows TOKENMINT_TEST_CLOCK_FILE; never run this build in production"
        );
        return Ok(Arc::new(crate::domain::clock::FileClock::new(path.into())));
    }
    Ok(Arc::new(SystemClock))
}

/// The issuer: configured, or derived from the HTTP address.
pub fn issuer(core: &CoreArgs, http_addr: SocketAddr) -> String {
    core.issuer
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"))
}

/// Hands the bootstrap credential over once: into a mode-0600 file in the data directory, and
/// onto stderr only when a person is watching it (a terminal), so it never lands in journald,
/// Kubernetes or Docker logs.
fn announce(core: &CoreArgs, credential: &BootstrapCredential) -> Result<(), StartError> {
    let path = data_files::write_bootstrap_credential(&core.data_dir, credential)?;
    tracing::warn!(
        path = %path.display(),
        "bootstrap credential written (mode 0600): store it in your secret manager, then delete the file"
    );
    if std::io::stderr().is_terminal() {
        eprintln!(
            "\n=== Tokenmint bootstrap credential: store it now (e.g. in your secret manager) ===\n\
             organization_id: {}\nservice_user_id: {}\nkey_id:          {}\nsecret:          {}\n\
             Also in {} (mode 0600): delete that file once stored.\n\
             Exchange it with tokenmint.auth.v1.AuthService/ExchangeApiKey; see the README.\n\
             ================================================================================\n",
            credential.organization_id,
            credential.service_user_id,
            credential.key_id,
            credential.secret.expose(),
            path.display()
        );
    }
    Ok(())
}

/// Runs `tokenmint serve` until SIGTERM or SIGINT.
pub async fn serve(args: ServeArgs) -> Result<Stopped, StartError> {
    if !args.drain_delay.is_zero() && args.drain_delay >= args.shutdown_grace {
        return Err(StartError::Config(format!(
            "--drain-delay ({:?}) must be shorter than --shutdown-grace ({:?}), which includes it",
            args.drain_delay, args.shutdown_grace
        )));
    }
    let open_files = listener::raise_open_files_limit();
    let needed = 2 * u64::from(args.max_connections) + 64;
    if let Some(limit) = open_files {
        tracing::debug!(open_files = limit, "open-files limit");
        if limit < needed {
            tracing::warn!(
                open_files = limit,
                max_connections = args.max_connections,
                "the open-files limit is below what --max-connections on both ports needs; \
                 lower --max-connections or raise the hard limit (ulimit -Hn)"
            );
        }
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::load(cert, key)?),
        _ => {
            tracing::warn!(
                "TLS is off (no --tls-cert/--tls-key): API-key secrets and tokens travel in clear \
                 text unless a proxy or service mesh terminates TLS in front of Tokenmint"
            );
            None
        }
    };
    let grpc_listener = TcpListener::bind(args.grpc_addr).await?;
    let http_listener = TcpListener::bind(args.http_addr).await?;
    let (grpc_addr, http_addr) = (grpc_listener.local_addr()?, http_listener.local_addr()?);
    let app = open(&args.core, issuer(&args.core, args.http_addr)).await?;
    data_files::check_writable(&args.core.data_dir)?;
    if let Some(credential) = app.bootstrap().await? {
        announce(&args.core, &credential)?;
    }

    tokio::spawn(
        app.clone()
            .maintain_signing_keys(args.signing_key_refresh_period),
    );
    tokio::spawn(app.clone().maintain_activity(args.activity_flush_interval));
    tokio::spawn(
        app.clone()
            .maintain_housekeeping(args.housekeeping_interval),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(app.clone().follow_invalidations());
    let replica = ulid::Ulid::new().to_string();
    tokio::spawn(app.store.clone().listen_for_changes(replica));
    let (routes, health) = crate::grpc::routes(
        app.clone(),
        args.max_request_bytes,
        args.trusted_proxies.clone().into(),
        stop_rx.clone(),
    )
    .map_err(|e| StartError::Grpc(e.to_string()))?;
    health
        .set_serving::<AuthServiceServer<crate::grpc::auth::AuthApi>>()
        .await;
    health
        .set_serving::<AdminServiceServer<crate::grpc::admin::AdminApi>>()
        .await;
    let draining = Arc::new(AtomicBool::new(false));

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let limits = |handshake_bytes, idle_timeout| listener::ConnectionLimits {
        max_connections: args.max_connections as usize,
        handshake_timeout: args.handshake_timeout,
        handshake_bytes,
        max_per_ip: args.max_connections_per_ip as usize,
        idle_timeout,
    };
    let incoming = listener::accept(
        grpc_listener,
        limits(listener::HTTP2_PREFACE_LEN, Some(args.idle_timeout)),
    );
    let grpc_stopped = stopped(stop_rx.clone());
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(tls.identity.clone()))
            .map_err(|e| StartError::Config(format!("TLS: {e}")))?;
    }
    let builder = builder
        .max_concurrent_streams(args.max_concurrent_streams)
        .timeout(args.request_timeout)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .layer(listener::TrackCalls)
        .layer(crate::metrics::RecordCalls::default());
    // One span per call (method, gRPC status, latency), never headers or bodies; only when its
    // debug events would be logged, since the layer costs throughput even when they are not.
    let grpc = if tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG) {
        let server = builder
            .layer(
                tower_http::trace::TraceLayer::new_for_grpc()
                    // A caller's bad request is not the server's error: at ERROR level, any
                    // caller could fill the error log.
                    .on_failure(
                        tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                    ),
            )
            .add_routes(routes);
        tokio::spawn(server.serve_with_incoming_shutdown(incoming, grpc_stopped))
    } else {
        let mut builder = builder;
        let server = builder.add_routes(routes);
        tokio::spawn(server.serve_with_incoming_shutdown(incoming, grpc_stopped))
    };
    let http_app = crate::http::router(crate::http::HttpState {
        metrics: crate::metrics::install(),
        body_deadline: args.handshake_timeout,
        app: app.clone(),
        draining: draining.clone(),
        trusted_proxies: args.trusted_proxies.clone().into(),
    });
    let http = tokio::spawn(crate::http::serve(
        // HTTP/1 connections idle between requests are closed by the header-read timeout.
        listener::accept(http_listener, limits(1, None)),
        http_app,
        args.handshake_timeout,
        tls.as_ref().map(|t| t.acceptor.clone()),
        stopped(stop_rx),
    ));
    tracing::info!(grpc_addr = %grpc_addr, http_addr = %http_addr, tls = tls.is_some(), "serving");

    shutdown_signal().await;
    let deadline = tokio::time::Instant::now() + args.shutdown_grace;
    // The last part of the grace is kept for writing what the drained calls counted.
    let calls_deadline = deadline - (args.shutdown_grace / 4).min(FLUSH_RESERVE);
    // Not ready first, still serving: load balancers move away while calls keep succeeding.
    draining.store(true, Ordering::Release);
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    health
        .set_not_serving::<AuthServiceServer<crate::grpc::auth::AuthApi>>()
        .await;
    health
        .set_not_serving::<AdminServiceServer<crate::grpc::admin::AdminApi>>()
        .await;
    if !args.drain_delay.is_zero() {
        tracing::info!(delay = ?args.drain_delay, "shutting down: reporting not serving, still accepting calls");
        // A second signal cuts the delay short.
        tokio::select! {
            () = tokio::time::sleep(args.drain_delay) => {}
            () = shutdown_signal() => tracing::info!("second signal: not waiting out the drain delay"),
        }
    }
    tracing::info!("shutting down: no new calls, finishing in-flight ones");
    let _ = stop_tx.send(true);
    let (grpc_abort, http_abort) = (grpc.abort_handle(), http.abort_handle());
    let drained = tokio::time::timeout_at(calls_deadline, async {
        let grpc_result = grpc.await;
        let http_result = http.await;
        (grpc_result, http_result)
    })
    .await;
    let mut finished = true;
    match drained {
        Ok((Ok(Ok(())), Ok(()))) => tracing::info!("stopped"),
        Ok(results) => tracing::warn!(?results, "stopped with errors"),
        Err(_) => {
            // Cut the calls still open, so none holds a database connection past the grace.
            grpc_abort.abort();
            http_abort.abort();
            finished = false;
            tracing::warn!(grace = ?args.shutdown_grace, "in-flight calls did not finish in time; cut")
        }
    }
    // What the drained calls counted, so a clean stop loses no exchange events; within what
    // is left of the grace, since whoever sent SIGTERM sends SIGKILL after it.
    if tokio::time::timeout_at(deadline, app.flush_activity())
        .await
        .is_err()
    {
        finished = false;
        tracing::warn!(
            grace = ?args.shutdown_grace,
            "the exchanges counted since the last flush could not all be written in time"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), app.store.clone().close()).await;
    Ok(if finished {
        Stopped::Cleanly
    } else {
        Stopped::Unfinished
    })
}

/// How `serve` ended after a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every accepted call was answered and every counted exchange written.
    Cleanly,
    /// The grace ran out first: calls were cut or counted exchanges lost (logged). The process
    /// exits with status 3 so a supervisor can tell.
    Unfinished,
}

/// The most of `--shutdown-grace` kept for the last activity flush (a quarter of it, at most
/// this).
const FLUSH_RESERVE: Duration = Duration::from_secs(2);

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_is_never_printed() {
        let url = "postgres://tokenmint:S3cr#t@db:5432/tokenmint";
        let message = format!("The connection string '{url}' is invalid");
        let shown = without_password(&message, url);
        assert!(!shown.contains("S3cr#t"), "{shown}");
        assert!(shown.contains("postgres://tokenmint:***@db"), "{shown}");
        assert_eq!(
            without_password("no secret here", "sqlite://data/tokenmint.db"),
            "no secret here"
        );
    }
}
