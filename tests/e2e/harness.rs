//! The shared test harness: starts the real `tokenmint` binary on ephemeral ports against a fresh
//! SQLite file or a fresh PostgreSQL database, and hands out real gRPC clients.

#![allow(dead_code)]

use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::time::Duration;
use tokenmint::proto::admin::v1::admin_service_client::AdminServiceClient;
use tokenmint::proto::auth::v1::{ExchangeApiKeyRequest, auth_service_client::AuthServiceClient};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The environment variable that turns on the PostgreSQL variants of every test.
pub const POSTGRES_URL_VAR: &str = "TOKENMINT_TEST_DATABASE_URL";

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The bootstrap credential, as `tokenmint bootstrap --json` prints it.
#[derive(Clone, Debug)]
pub struct Credential {
    pub organization_id: String,
    pub service_user_id: String,
    pub key_id: String,
    pub secret: String,
}

/// A running server and everything needed to restart it on the same data.
pub struct Server {
    child: Option<Child>,
    pub backend: Backend,
    pub grpc_url: String,
    pub http_url: String,
    pub issuer: String,
    pub data_dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pub admin: Credential,
    logs: Arc<Mutex<String>>,
    extra_args: Vec<String>,
    /// Replicas share the first server's database and leave dropping it to that server.
    owns_database: bool,
    /// When set, `serve` starts with this open-files soft limit (through `sh -c ulimit`).
    pub open_files_soft_limit: Option<u32>,
    /// The file the server's clock reads its offset from (a `test-clock` build); replicas
    /// share the first server's, so one `advance_clock` moves them all.
    clock_file: PathBuf,
}

static SKIP_NOTICE: Once = Once::new();

/// The binary under test: this build's, or `TOKENMINT_TEST_BINARY` (to run the suite against
/// another build, e.g. to show a new test fails on the previous release).
fn binary() -> PathBuf {
    std::env::var_os("TOKENMINT_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tokenmint")))
}

/// `tokenmint serve` on ephemeral ports, not yet started: for tests that expect it to refuse to
/// start and read its exit status and stderr.
pub fn serve_command() -> Command {
    let mut command = Command::new(binary());
    command.args([
        "serve",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    command
}

/// Creates a database of its own for one test and returns its URL.
async fn fresh_postgres_database(base: &str) -> String {
    let name = format!(
        "tm_test_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let admin = Database::connect(base)
        .await
        .expect("connect to PostgreSQL at TOKENMINT_TEST_DATABASE_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (without_query, query) = base
        .split_once('?')
        .map_or((base, None), |(a, q)| (a, Some(q)));
    let prefix = without_query
        .rsplit_once('/')
        .map_or(without_query, |(p, _)| p);
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

impl Server {
    /// Starts a server on `backend`; `None` (after saying so once) for PostgreSQL without a URL.
    pub async fn start(backend: Backend) -> Option<Server> {
        Self::start_with(backend, &[]).await
    }

    /// Starts a server with extra `serve` flags.
    pub async fn start_with(backend: Backend, extra_args: &[&str]) -> Option<Server> {
        let mut server = Self::prepare(backend, extra_args).await?;
        server.admin = server
            .bootstrap_json()
            .expect("bootstrap on an empty database");
        server.spawn();
        Some(server)
    }

    /// A server on a fresh database, not started: [`launch`](Self::launch) it.
    pub async fn unstarted(backend: Backend, extra_args: &[&str]) -> Option<Server> {
        Self::prepare(backend, extra_args).await
    }

    /// Starts `serve` on an empty database, so it bootstraps itself; `admin` stays empty.
    pub async fn start_unbootstrapped(backend: Backend, extra_args: &[&str]) -> Option<Server> {
        let mut server = Self::prepare(backend, extra_args).await?;
        server.spawn();
        Some(server)
    }

    async fn prepare(backend: Backend, extra_args: &[&str]) -> Option<Server> {
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => match std::env::var(POSTGRES_URL_VAR) {
                Ok(base) if !base.is_empty() => Some(fresh_postgres_database(&base).await),
                _ => {
                    SKIP_NOTICE.call_once(|| {
                        // Written straight to stderr: the test harness does not capture this.
                        let _ = writeln!(
                            std::io::stderr(),
                            "\nNOTE: PostgreSQL tests SKIPPED: set {POSTGRES_URL_VAR}=postgres://user@host:5432/db to run them.\n"
                        );
                    });
                    return None;
                }
            },
        };
        let data_dir = tempfile::tempdir().expect("temp dir");
        let clock_file = data_dir.path().join("clock-offset");
        let server = Server {
            clock_file,
            child: None,
            backend,
            grpc_url: String::new(),
            http_url: String::new(),
            issuer: "https://tokenmint.test".into(),
            data_dir,
            database_url,
            admin: Credential {
                organization_id: String::new(),
                service_user_id: String::new(),
                key_id: String::new(),
                secret: String::new(),
            },
            logs: Arc::default(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            owns_database: true,
            open_files_soft_limit: None,
        };
        Some(server)
    }

    /// Starts another server on the same database with the same key-encryption key and pepper,
    /// as a second replica would run.
    pub fn replica(&self, extra_args: &[&str]) -> Server {
        let mut replica = self.unstarted_replica(extra_args);
        std::fs::copy(
            self.data_dir.path().join("secrets.json"),
            replica.data_dir.path().join("secrets.json"),
        )
        .expect("copy secrets");
        replica.spawn();
        replica
    }

    /// Starts `count` servers at the same moment on one empty database, sharing a key-encryption
    /// key and pepper through files, as replicas deployed together do; `admin` stays empty.
    pub async fn start_together(backend: Backend, count: usize) -> Option<Vec<Server>> {
        use base64::Engine as _;
        let first = Self::prepare(backend, &[]).await?;
        let mut extra_args = Vec::new();
        for (flag, name) in [
            ("--key-encryption-key-file", "kek"),
            ("--secret-pepper-file", "pepper"),
        ] {
            let path = first.data_dir.path().join(name);
            let random: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())
                .expect("random")
                .expose();
            std::fs::write(
                &path,
                base64::engine::general_purpose::STANDARD.encode(random),
            )
            .expect("write a shared secret");
            extra_args.extend([flag.to_string(), path.display().to_string()]);
        }
        let mut servers = vec![first];
        servers[0].extra_args = extra_args.clone();
        for _ in 1..count {
            let args: Vec<&str> = extra_args.iter().map(String::as_str).collect();
            let replica = servers[0].unstarted_replica(&args);
            servers.push(replica);
        }
        let starting: Vec<_> = servers.iter_mut().map(Server::launch).collect();
        for (server, ready) in servers.iter_mut().zip(starting) {
            server.await_ready(ready);
        }
        Some(servers)
    }

    /// A server on this one's database and clock, not yet started.
    fn unstarted_replica(&self, extra_args: &[&str]) -> Server {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Server {
            clock_file: self.clock_file.clone(),
            child: None,
            backend: self.backend,
            grpc_url: String::new(),
            http_url: String::new(),
            issuer: self.issuer.clone(),
            data_dir,
            database_url: self.database_url.clone(),
            admin: self.admin.clone(),
            logs: Arc::default(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            owns_database: false,
            open_files_soft_limit: None,
        }
    }

    /// Common flags: data directory, database, issuer.
    pub fn core_args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir.path().display().to_string(),
            "--issuer".into(),
            self.issuer.clone(),
        ];
        if let Some(url) = &self.database_url {
            args.extend(["--database-url".to_string(), url.clone()]);
        }
        args
    }

    /// Runs `tokenmint bootstrap --json`; `Err` carries the exit code and stderr.
    pub fn bootstrap_json(&self) -> Result<Credential, (Option<i32>, String)> {
        let output = Command::new(binary())
            .arg("bootstrap")
            .arg("--json")
            .args(self.core_args())
            .output()
            .expect("run tokenmint bootstrap");
        if !output.status.success() {
            return Err((
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        let json: Value = serde_json::from_slice(&output.stdout).expect("bootstrap prints JSON");
        let field = |name: &str| {
            json[name]
                .as_str()
                .expect("bootstrap JSON field")
                .to_owned()
        };
        Ok(Credential {
            organization_id: field("organization_id"),
            service_user_id: field("service_user_id"),
            key_id: field("key_id"),
            secret: field("secret"),
        })
    }

    fn spawn(&mut self) {
        let ready = self.launch();
        self.await_ready(ready);
    }

    /// Starts the process; the receiver hears its addresses once it serves.
    pub fn launch(&mut self) -> mpsc::Receiver<(String, String)> {
        let mut command = match self.open_files_soft_limit {
            None => Command::new(binary()),
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -S -n {limit} && exec \"$0\" \"$@\"")])
                    .arg(binary());
                sh
            }
        };
        let mut child = command
            .args([
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .args(self.core_args())
            .args(&self.extra_args)
            .env("TOKENMINT_TEST_CLOCK_FILE", &self.clock_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tokenmint serve");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = self.logs.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"] == "serving"
                {
                    let addr = |k: &str| event[k].as_str().unwrap_or_default().to_owned();
                    let _ = ready_tx.send((addr("grpc_addr"), addr("http_addr")));
                }
                let mut logs = logs.lock().unwrap_or_else(|p| p.into_inner());
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        self.child = Some(child);
        ready_rx
    }

    /// Waits for a launched process to serve, and records its addresses.
    pub fn await_ready(&mut self, ready: mpsc::Receiver<(String, String)>) {
        let (grpc, http) = match ready.recv_timeout(Duration::from_secs(60)) {
            Ok(addrs) => addrs,
            Err(_) => panic!("server did not start; logs:\n{}", self.logs()),
        };
        self.grpc_url = format!("http://{grpc}");
        self.http_url = format!("http://{http}");
    }

    /// Runs `tokenmint <args>` against this server's database and secrets.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .args(self.core_args())
            .env("TOKENMINT_TEST_CLOCK_FILE", &self.clock_file)
            .output()
            .expect("run tokenmint")
    }

    /// Moves the server's clock (and its replicas') forward by `seconds`.
    pub fn advance_clock(&self, seconds: i64) {
        let now: i64 = std::fs::read_to_string(&self.clock_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let temp = self.clock_file.with_extension("tmp");
        std::fs::write(&temp, (now + seconds).to_string()).expect("write clock offset");
        // Renamed into place, so the server never reads a half-written number.
        std::fs::rename(&temp, &self.clock_file).expect("move clock offset");
    }

    /// A channel whose client socket is bound to `local` (e.g. 127.0.0.2), so a test can call
    /// from several source addresses.
    pub async fn channel_from(&self, local: &str) -> Channel {
        Channel::from_shared(self.grpc_url.clone())
            .expect("url")
            .local_address(Some(local.parse().expect("local address")))
            .connect()
            .await
            .expect("connect to server")
    }

    /// The server process's ID.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("server is running")
    }

    /// The gRPC port's `host:port`.
    pub fn grpc_authority(&self) -> &str {
        self.grpc_url.trim_start_matches("http://")
    }

    /// The HTTP port's `host:port`.
    pub fn http_authority(&self) -> &str {
        self.http_url.trim_start_matches("http://")
    }

    /// On PostgreSQL, the name of the server's own database.
    pub fn database_name(&self) -> Option<String> {
        let url = self.database_url.as_deref()?;
        let last = url.rsplit('/').next()?;
        Some(last.split('?').next()?.to_owned())
    }

    /// On PostgreSQL, a handle that takes the server's database away and gives it back.
    pub async fn database_control(&self) -> DatabaseControl {
        let base = std::env::var(POSTGRES_URL_VAR).expect("a PostgreSQL test");
        DatabaseControl {
            name: self.database_name().expect("a PostgreSQL server"),
            admin: Database::connect(base)
                .await
                .expect("connect as the test's administrator"),
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `signal` (as `kill` names it: `TERM`, `KILL`…) to the server without waiting.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status();
    }

    /// Waits up to `limit` for the process to exit and returns its status; `None` if it is
    /// still running then (it is left running).
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the process; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        false
    }

    /// Starts a server stopped with [`terminate`](Self::terminate) again on the same data.
    pub fn restart_stopped(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn();
    }

    /// Stops the server and starts it again on the same data.
    pub fn restart(&mut self) {
        assert!(self.terminate(), "server did not stop cleanly");
        self.spawn();
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc_url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect to server")
    }

    pub async fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel().await)
    }

    /// An AuthService client that sends `token` as its bearer token.
    pub async fn auth_as(
        &self,
        token: &str,
    ) -> AuthServiceClient<InterceptedService<Channel, Bearer>> {
        AuthServiceClient::with_interceptor(self.channel().await, Bearer(token.to_owned()))
    }

    /// An AdminService client that sends `token` as its bearer token.
    pub async fn admin_as(
        &self,
        token: &str,
    ) -> AdminServiceClient<InterceptedService<Channel, Bearer>> {
        AdminServiceClient::with_interceptor(self.channel().await, Bearer(token.to_owned()))
    }

    /// Exchanges a key for a token carrying `scope` (empty: all the key allows).
    pub async fn exchange(
        &self,
        key_id: &str,
        secret: &str,
        scope: &str,
    ) -> Result<tokenmint::proto::auth::v1::ExchangeApiKeyResponse, Status> {
        let response = self
            .auth()
            .await
            .exchange_api_key(ExchangeApiKeyRequest {
                key_id: key_id.into(),
                secret: secret.into(),
                scope: scope.into(),
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner())
    }

    /// Exchanges a key for a token.
    pub async fn token_for(&self, key_id: &str, secret: &str) -> Result<String, Status> {
        Ok(self.exchange(key_id, secret, "").await?.access_token)
    }

    /// The JWKS document as GetJwks returns it.
    pub async fn jwks_json(&self) -> String {
        let request = tokenmint::proto::auth::v1::GetJwksRequest {};
        self.auth()
            .await
            .get_jwks(request)
            .await
            .expect("GetJwks answers")
            .into_inner()
            .json
    }

    /// A fresh token of the bootstrap admin.
    pub async fn admin_token(&self) -> String {
        self.token_for(&self.admin.key_id, &self.admin.secret)
            .await
            .expect("bootstrap key exchanges")
    }

    /// Introspects `token` with the bootstrap admin as the caller.
    pub async fn introspect(
        &self,
        token: &str,
    ) -> tokenmint::proto::auth::v1::IntrospectTokenResponse {
        let admin_token = self.admin_token().await;
        self.introspect_as(&admin_token, token).await
    }

    /// Introspects `token` with the holder of `caller_token` as the caller.
    pub async fn introspect_as(
        &self,
        caller_token: &str,
        token: &str,
    ) -> tokenmint::proto::auth::v1::IntrospectTokenResponse {
        self.auth_as(caller_token)
            .await
            .introspect_token(tokenmint::proto::auth::v1::IntrospectTokenRequest {
                token: token.to_owned(),
            })
            .await
            .expect("introspection answers")
            .into_inner()
    }

    /// An AdminService client acting as the bootstrap admin.
    pub async fn admin(&self) -> AdminServiceClient<InterceptedService<Channel, Bearer>> {
        let token = self.admin_token().await;
        self.admin_as(&token).await
    }

    /// A direct connection to the server's database, to check what is stored.
    pub async fn database(&self) -> sea_orm::DatabaseConnection {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rw",
                self.data_dir.path().join("tokenmint.db").display()
            ),
        };
        Database::connect(url)
            .await
            .expect("open the server's database")
    }

    /// The server's database through Tokenmint's own store, to read and arrange what is stored.
    pub async fn store(&self) -> tokenmint_store::Store {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rw",
                self.data_dir.path().join("tokenmint.db").display()
            ),
        };
        let mut options = tokenmint_store::StoreOptions::new(url);
        options.max_connections = 2;
        tokenmint_store::Store::connect(&options)
            .await
            .expect("open the server's database")
    }

    /// Everything stored in the database as text (SQLite: the raw file and its WAL).
    pub async fn stored_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let mut bytes = Vec::new();
                for file in ["tokenmint.db", "tokenmint.db-wal"] {
                    if let Ok(b) = std::fs::read(self.data_dir.path().join(file)) {
                        bytes.extend(b);
                    }
                }
                bytes
            }
            Backend::Postgres => {
                let db = self.database().await;
                let mut text = String::new();
                for table in [
                    "organizations",
                    "service_users",
                    "service_user_administrators",
                    "role_bindings",
                    "api_keys",
                    "signing_keys",
                ] {
                    let rows = db
                        .query_all_raw(sea_orm::Statement::from_string(
                            sea_orm::DbBackend::Postgres,
                            format!("SELECT row_to_json(t)::text AS j FROM {table} t"),
                        ))
                        .await
                        .expect("dump table");
                    for row in rows {
                        text.push_str(&row.try_get::<String>("", "j").expect("row text"));
                    }
                }
                text.into_bytes()
            }
        }
    }
}

/// Outages of one server's PostgreSQL database, made from another connection: the shared
/// PostgreSQL server itself is never stopped, other tests use it.
pub struct DatabaseControl {
    pub name: String,
    pub admin: sea_orm::DatabaseConnection,
}

impl DatabaseControl {
    /// New connections to the database are refused.
    pub async fn refuse_connections(&self) {
        self.set_allow_connections(false).await;
    }

    /// New connections are accepted again.
    pub async fn allow_connections(&self) {
        self.set_allow_connections(true).await;
    }

    async fn set_allow_connections(&self, allow: bool) {
        self.admin
            .execute_unprepared(&format!(
                "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {allow}",
                self.name
            ))
            .await
            .expect("alter the database");
    }

    /// Ends every session on the database (the server's pool, its listener, its heartbeat).
    pub async fn end_sessions(&self) {
        self.admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' \
                 AND pid <> pg_backend_pid()",
                self.name
            ))
            .await
            .expect("end the database's sessions");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.owns_database {
            return;
        }
        if let (Some(name), Ok(base)) = (self.database_name(), std::env::var(POSTGRES_URL_VAR)) {
            // Drop runs inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(async {
                        if let Ok(db) = Database::connect(base).await {
                            let _ = db
                                .execute_unprepared(&format!(
                                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                                ))
                                .await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(pub String);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| Status::internal("token is not ASCII"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// The field names in a status's `google.rpc.BadRequest` details.
pub fn violated_fields(status: &Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Declares `sqlite` and `postgres` variants of each listed `async fn(Backend)` test.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(tokenmint_postgres_tests), ignore = "needs TOKENMINT_TEST_DATABASE_URL")]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )*
        }
    };
}

/// `secret` with its last character changed, never to itself (a secret may end in any
/// character).
pub fn tampered_secret(secret: &str) -> String {
    let last = if secret.ends_with('x') { 'y' } else { 'x' };
    format!("{}{last}", &secret[..secret.len() - 1])
}

/// An AdminService client with a bearer token.
pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// Creates a service user named `name` in the caller's organization.
pub async fn create_user(
    admin: &mut Admin,
    name: &str,
) -> tokenmint::proto::admin::v1::ServiceUser {
    use tokenmint::proto::admin::v1::{CreateServiceUserRequest, ServiceUser};
    admin
        .create_service_user(CreateServiceUserRequest {
            role_bindings: Vec::new(),
            organization_id: String::new(),
            service_user: Some(ServiceUser {
                name: name.into(),
                display_name: format!("{name} bot"),
                ..Default::default()
            }),
        })
        .await
        .expect("create service user")
        .into_inner()
}

/// Every service user of the caller's organization (one page).
pub async fn list_users(admin: &mut Admin) -> Vec<tokenmint::proto::admin::v1::ServiceUser> {
    admin
        .list_service_users(tokenmint::proto::admin::v1::ListServiceUsersRequest::default())
        .await
        .expect("list service users")
        .into_inner()
        .service_users
}

/// The usual CreateApiKey request: 30 days, default token lifetime.
pub fn key_request(
    service_user_id: &str,
    name: &str,
) -> tokenmint::proto::admin::v1::CreateApiKeyRequest {
    tokenmint::proto::admin::v1::CreateApiKeyRequest {
        service_user_id: service_user_id.into(),
        name: name.into(),
        expires_in: Some(prost_types::Duration {
            seconds: 30 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Creates a key and returns it with its secret.
pub async fn create_key(
    admin: &mut Admin,
    service_user_id: &str,
    name: &str,
) -> (tokenmint::proto::admin::v1::ApiKey, String) {
    let created = admin
        .create_api_key(key_request(service_user_id, name))
        .await
        .expect("create API key")
        .into_inner();
    (
        created.api_key.expect("api_key in response"),
        created.secret,
    )
}

impl Server {
    /// A service user with a working key in another organization, written straight into the
    /// database (the API cannot create organizations yet). It holds no roles.
    pub async fn foreign_principal(&self) -> Credential {
        self.foreign_principal_with(&[]).await
    }

    /// Like [`foreign_principal`](Self::foreign_principal), holding `roles` in its organization,
    /// with a key carrying them.
    pub async fn foreign_principal_with(&self, roles: &[tokenmint_store::Role]) -> Credential {
        use base64::Engine;
        use tokenmint::ids::{ApiKeyId, OrganizationId, ServiceUserId};

        let secrets: Value = serde_json::from_str(
            &std::fs::read_to_string(self.data_dir.path().join("secrets.json"))
                .expect("secrets.json"),
        )
        .expect("secrets.json is JSON");
        let pepper = base64::engine::general_purpose::STANDARD
            .decode(secrets["secret_pepper"].as_str().expect("pepper"))
            .expect("pepper is base64");
        let secret =
            tokenmint_token::ApiSecret::generate(&ring::rand::SystemRandom::new()).expect("secret");
        let (org, user, key) = (
            OrganizationId::generate(),
            ServiceUserId::generate(),
            ApiKeyId::generate(),
        );
        let now = chrono::Utc::now();
        let tx = self.store().await.begin().await.expect("begin");
        tx.insert_organization(tokenmint_store::Organization {
            id: org.to_string(),
            name: format!("other-{}", &org.as_str()[20..]),
            display_name: "Another tenant".into(),
            max_service_users: 10,
            max_api_keys_per_service_user: 10,
            create_time: now,
            update_time: now,
            revision: 1,
        })
        .await
        .expect("insert organization");
        tx.insert_service_user(tokenmint_store::ServiceUser {
            id: user.to_string(),
            organization_id: org.to_string(),
            name: "theirs".into(),
            display_name: String::new(),
            email: String::new(),
            description: String::new(),
            state: tokenmint_store::ServiceUserState::Active,
            creator: user.to_string(),
            revision: 1,
            create_time: now,
            update_time: now,
            last_active_time: None,
        })
        .await
        .expect("insert service user");
        tx.insert_api_key(tokenmint_store::ApiKey {
            id: key.to_string(),
            service_user_id: user.to_string(),
            organization_id: org.to_string(),
            name: "k".into(),
            description: String::new(),
            secret_hash: tokenmint_token::SecretHasher::new(&pepper).hash(&secret),
            token_lifetime: chrono::TimeDelta::seconds(3600),
            allowed_cidrs: Vec::new(),
            scopes: roles.to_vec(),
            project_scopes: Vec::new(),
            creator: user.to_string(),
            create_time: now,
            expire_time: now + chrono::Duration::days(1),
            last_used_time: None,
            last_used_address: None,
            revoke_time: None,
            revoke_reason: None,
            previous_secret: None,
            rotate_time: None,
        })
        .await
        .expect("insert API key");
        for role in roles {
            tx.add_role_binding(tokenmint_store::RoleBinding {
                id: tokenmint::ids::RoleBindingId::generate().to_string(),
                organization_id: org.to_string(),
                principal_id: user.to_string(),
                scope: tokenmint_store::RoleScope::Organization(org.to_string()),
                role: *role,
                create_time: now,
            })
            .await
            .expect("insert role binding");
        }
        tx.commit().await.expect("commit");
        Credential {
            organization_id: org.to_string(),
            service_user_id: user.to_string(),
            key_id: key.to_string(),
            secret: secret.expose().to_owned(),
        }
    }
}

impl Server {
    /// Grants `role` to a principal in the bootstrap organization, written straight into the
    /// database: no RPC grants roles yet.
    pub async fn grant_role(&self, principal_id: &str, role: &str) {
        let organization_id = self.admin.organization_id.as_str();
        let tx = self.store().await.begin().await.expect("begin");
        tx.add_role_binding(tokenmint_store::RoleBinding {
            id: tokenmint::ids::RoleBindingId::generate().to_string(),
            organization_id: organization_id.into(),
            principal_id: principal_id.into(),
            scope: tokenmint_store::RoleScope::Organization(organization_id.into()),
            role: tokenmint_store::Role::parse(role).expect("a role name"),
            create_time: chrono::Utc::now(),
        })
        .await
        .expect("insert role binding");
        tx.commit().await.expect("commit");
    }

    /// Makes `principal_id` an administrator of `service_user_id`, straight in the database: no
    /// RPC adds administrators yet.
    pub async fn add_administrator(&self, service_user_id: &str, principal_id: &str) {
        let tx = self.store().await.begin().await.expect("begin");
        tx.add_administrator(service_user_id, principal_id, chrono::Utc::now())
            .await
            .expect("insert administrator");
        tx.commit().await.expect("commit");
    }

    /// A new service user of the bootstrap organization holding `roles`, with a key the
    /// bootstrap admin created after the grants (so the key carries them).
    pub async fn principal_with_roles(&self, name: &str, roles: &[&str]) -> Credential {
        let mut admin = self.admin().await;
        let user = create_user(&mut admin, name).await;
        for role in roles {
            self.grant_role(&user.id, role).await;
        }
        let (key, secret) = create_key(&mut admin, &user.id, "main").await;
        Credential {
            organization_id: user.organization_id,
            service_user_id: user.id,
            key_id: key.id,
            secret,
        }
    }

    /// An AdminService client acting as `credential`.
    pub async fn admin_for(&self, credential: &Credential) -> Admin {
        let token = self
            .token_for(&credential.key_id, &credential.secret)
            .await
            .expect("credential exchanges");
        self.admin_as(&token).await
    }
}
