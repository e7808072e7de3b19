//! `tokenmint-bench`: a closed-loop load generator for ExchangeApiKey over one key or many
//! (uniform or Zipf-skewed choice), for ListServiceUsers page walks, or for the health check (an
//! "empty" RPC that measures the gRPC floor), against a running server. Reports throughput,
//! latency percentiles, errors by code and, given the server's `/metrics`, its key-cache hit rate
//! and memory. A binary of its own so the server does not link what only load generation needs.

mod raw_client;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rand::distr::Distribution;
use raw_client::RawConnection;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenmint::batched_writes::BatchedWrites;
use tokenmint::config::parse_duration;
use tokenmint::proto::admin::v1::{
    ListServiceUsersRequest, admin_service_client::AdminServiceClient,
};
use tokenmint::proto::auth::v1::{
    ExchangeApiKeyRequest, ExchangeApiKeyResponse, auth_service_client::AuthServiceClient,
};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_client::HealthClient};

/// Which RPC to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchRpc {
    /// AuthService/ExchangeApiKey with the given key.
    Exchange,
    /// grpc.health.v1.Health/Check: the cost of an empty RPC.
    Health,
    /// AdminService/ListServiceUsers, each worker walking the caller's organization page by
    /// page from the start, again and again (the key is the caller's).
    ListUsers,
    /// No RPC: `SELECT id FROM api_keys WHERE id = ?` straight on `--database-url`, keys chosen
    /// as for `exchange`, through a pool of 16 like the server's. The floor a cache miss is
    /// measured against.
    DbLookup,
    /// No RPC: what an exchange reads on a cache miss (`Store::find_exchange_key`: the key,
    /// its user and its role bindings), on `--database-url` through the store, whose
    /// concurrent reads share statements as the server's misses do (at most 4 at once, up to
    /// 64 keys each). Against `db-lookup` (one statement per key), what the miss path's read
    /// costs.
    ExchangeLookup,
}

/// Which client makes the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Client {
    /// Bare HTTP/2 (the `h2` crate), request bodies framed up front, writes batched: about as
    /// light as h2load, so it leaves the server most of a shared machine. `exchange` and
    /// `health` only; the other RPCs use `tonic`.
    H2,
    /// tonic's generated clients over a connector whose writes are batched like the server's.
    /// The client of the figures recorded in docs/benchmarks.md's "2026-11-27 (later)".
    Tonic,
    /// tonic's generated clients over tonic's own connector (one write per request). The
    /// client of the figures recorded before that.
    TonicUnbatched,
    /// No client (printed for `db-lookup` and `exchange-lookup`, which call no server).
    #[value(skip)]
    None,
}

/// How an exchange picks its key among the loaded ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyChoice {
    /// Every key equally likely.
    Uniform,
    /// Zipf-skewed: the k-th key is chosen in proportion to 1/k^s (`--zipf-exponent`).
    Zipf,
}

/// Drives load against a running Tokenmint server and prints throughput and latency.
#[derive(Clone, Debug, Parser)]
#[command(name = "tokenmint-bench", version, about)]
pub struct BenchArgs {
    /// gRPC endpoint of the server; several, comma-separated, spread the connections over
    /// replicas.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// RPC to drive.
    #[arg(long, value_enum, default_value_t = BenchRpc::Exchange)]
    pub rpc: BenchRpc,
    /// API key ID for `exchange`.
    #[arg(long, env = "TOKENMINT_BENCH_KEY_ID")]
    pub key_id: Option<String>,
    /// API key secret for `exchange` (prefer the environment variable: flags show in `ps`).
    #[arg(long, env = "TOKENMINT_BENCH_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Exchange keys from this file (`ID SECRET` per line, as `tokenmint bench-fixture`
    /// writes) instead of `--key-id`.
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// Use only the first N keys of `--keys-file`.
    #[arg(long)]
    pub keys: Option<usize>,
    /// How each exchange picks its key.
    #[arg(long, value_enum, default_value_t = KeyChoice::Uniform)]
    pub choice: KeyChoice,
    /// Exponent of `--choice zipf`.
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,
    /// Before the warm-up, exchange every loaded key once (spread over the workers), so a
    /// cache large enough holds them all when measuring starts.
    #[arg(long)]
    pub prewarm: bool,
    /// Page size of `list-users`.
    #[arg(long, default_value_t = 100)]
    pub page_size: i32,
    /// Database of `db-lookup`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The server's Prometheus endpoint, read before and after the measured window for its
    /// key-cache hit rate and memory (e.g. `http://127.0.0.1:8080/metrics`).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// Which client makes the calls. A heavier client takes more of a machine it shares with
    /// the server, which lowers the throughput and stretches the latencies it reports.
    #[arg(long, value_enum, default_value_t = Client::H2)]
    pub client: Client,
    /// Also print the latency at p1, p10, p25, p50, p75, p90, p95, p99 and p99.9: the shape of
    /// the distribution, not only its tail.
    #[arg(long)]
    pub quantiles: bool,
    /// Worker threads of the load generator. By default one when it calls a server, as
    /// h2load's default: on a machine it shares with the server, a second thread took a core's
    /// share from the server and stretched every latency (docs/benchmarks.md). For `db-lookup`
    /// and `exchange-lookup`, which call no server, one per core.
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
}

impl BenchArgs {
    /// The load generator's worker threads; `None` is one per core.
    pub fn threads(&self) -> Option<NonZeroUsize> {
        self.threads.or(match self.rpc {
            BenchRpc::DbLookup | BenchRpc::ExchangeLookup => None,
            _ => Some(NonZeroUsize::MIN),
        })
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct BenchReport {
    /// Successful calls in the measured window.
    pub calls: u64,
    /// Failed calls in the measured window.
    pub errors: u64,
    /// Calls per second.
    pub per_second: f64,
    /// Latency percentiles in microseconds: p50, p99, p99.9.
    pub latency_us: (u64, u64, u64),
    /// Failed calls by gRPC code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// The server's key-cache hit rate over the window, when `--metrics-url` is given.
    pub cache_hit_rate: Option<f64>,
    /// The server's resident memory at the end, bytes, when `--metrics-url` is given.
    pub server_rss_bytes: Option<f64>,
}

/// What each worker sends.
#[derive(Clone)]
enum Load {
    Exchange {
        keys: Arc<Vec<ExchangeApiKeyRequest>>,
        choice: KeyChoice,
        zipf_exponent: f64,
    },
    Health,
    ListUsers {
        token: Arc<str>,
        page_size: i32,
    },
    DbLookup {
        keys: Arc<Vec<ExchangeApiKeyRequest>>,
        choice: KeyChoice,
        zipf_exponent: f64,
        database: sea_orm::DatabaseConnection,
    },
    ExchangeLookup {
        keys: Arc<Vec<ExchangeApiKeyRequest>>,
        choice: KeyChoice,
        zipf_exponent: f64,
        store: tokenmint_store::Store,
    },
}

/// What a worker makes its calls through.
#[derive(Clone)]
enum Caller {
    /// The lean client, with the framed request bodies: one per key for `exchange`, the one
    /// health check for `health`.
    Raw {
        connection: RawConnection,
        bodies: Arc<Vec<Bytes>>,
    },
    /// tonic's generated clients on a channel.
    Tonic(Channel),
    /// No server: the database lookups.
    Nothing,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// A worker failed.
    #[error("worker failed: {0}")]
    Worker(String),
}

/// mimalloc, as in the server: the C library's malloc was a tenth of the client's time, and
/// what the client spends the server cannot use.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = BenchArgs::parse();
    // The server's runtime: the client's tasks are as short as the server's.
    let mut runtime = tokenmint::runtime::builder();
    if let Some(threads) = args.threads() {
        runtime.worker_threads(threads.get());
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(bench(args)),
        Err(e) => {
            eprintln!("tokenmint-bench: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: BenchArgs) -> ExitCode {
    match run(args).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenmint-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> Result<BenchReport, BenchError> {
    if args.concurrency == 0 || args.channels == 0 {
        return Err(BenchError::Usage(
            "--concurrency and --channels must be at least 1".into(),
        ));
    }
    // The client that really makes the calls: the lean one serves two RPCs only.
    let client = match args.rpc {
        BenchRpc::DbLookup | BenchRpc::ExchangeLookup => Client::None,
        BenchRpc::ListUsers if args.client == Client::H2 => Client::Tonic,
        _ => args.client,
    };
    let needs_server = client != Client::None;
    let raw = client == Client::H2;
    let targets: Vec<&str> = args.target.split(',').map(str::trim).collect();
    let mut channels = Vec::new();
    let needs_tonic = needs_server && (!raw || args.prewarm);
    for (_, target) in (0..args.channels * usize::from(needs_tonic)).zip(targets.iter().cycle()) {
        let endpoint = Endpoint::from_shared(target.to_string())
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        let channel = if client == Client::TonicUnbatched {
            endpoint.connect().await
        } else {
            endpoint.connect_with_connector(BatchedConnector).await
        };
        channels.push(channel.map_err(|source| BenchError::Connect {
            target: target.to_string(),
            reason: source.to_string(),
        })?);
    }
    let load = load(&args, channels.first().cloned()).await?;
    if let (true, Load::Exchange { keys, .. }) = (args.prewarm, &load) {
        prewarm(&channels, keys.clone(), args.concurrency).await?;
    }
    // Opened after the prewarm, which can outlast the server's idle timeout (2 minutes by
    // default for a million keys), and the lean client does not reconnect.
    let mut connections = Vec::new();
    for (_, target) in (0..args.channels * usize::from(raw)).zip(targets.iter().cycle()) {
        connections.push(RawConnection::connect(target).await.map_err(|reason| {
            BenchError::Connect {
                target: target.to_string(),
                reason,
            }
        })?);
    }
    let bodies: Arc<Vec<Bytes>> = Arc::new(match &load {
        Load::Exchange { keys, .. } if raw => keys.iter().map(raw_client::frame).collect(),
        Load::Health => vec![raw_client::frame(&HealthCheckRequest::default())],
        _ => Vec::new(),
    });
    let before = scrape(&args.metrics_url).await?;
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let mut workers = Vec::new();
    for (i, seed) in (0..args.concurrency).zip(1u64..) {
        let caller = match (
            connections.get(i % connections.len().max(1)),
            channels.get(i % channels.len().max(1)),
        ) {
            (Some(connection), _) if raw => Caller::Raw {
                connection: connection.clone(),
                bodies: bodies.clone(),
            },
            (_, Some(channel)) => Caller::Tonic(channel.clone()),
            _ => Caller::Nothing,
        };
        workers.push(tokio::spawn(worker(caller, load.clone(), seed, start, end)));
    }
    let mut histogram = new_histogram()?;
    let mut errors_by_code = BTreeMap::new();
    for worker in workers {
        let (h, e) = worker
            .await
            .map_err(|e| BenchError::Worker(e.to_string()))??;
        histogram
            .add(h)
            .map_err(|e| BenchError::Worker(e.to_string()))?;
        for (code, n) in e {
            *errors_by_code.entry(code).or_insert(0) += n;
        }
    }
    let after = scrape(&args.metrics_url).await?;
    let (cache_hit_rate, server_rss_bytes) = match (&before, &after) {
        (Some(before), Some(after)) => {
            let delta = |name: &str| sample(after, name) - sample(before, name);
            let (hits, misses) = (
                delta("tokenmint_key_cache_hits"),
                delta("tokenmint_key_cache_misses"),
            );
            let rate = (hits + misses > 0.0).then(|| hits / (hits + misses));
            (rate, Some(sample(after, "process_resident_memory_bytes")))
        }
        _ => (None, None),
    };
    let calls = histogram.len();
    let report = BenchReport {
        calls,
        errors: errors_by_code.values().sum(),
        per_second: calls as f64 / args.duration.as_secs_f64(),
        latency_us: (
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99),
            histogram.value_at_quantile(0.999),
        ),
        errors_by_code,
        cache_hit_rate,
        server_rss_bytes,
    };
    let keys = match &load {
        Load::Exchange { keys, choice, .. }
        | Load::DbLookup { keys, choice, .. }
        | Load::ExchangeLookup { keys, choice, .. } => {
            format!(" keys={} choice={choice:?}", keys.len())
        }
        _ => String::new(),
    };
    println!(
        "rpc={:?}{keys} client={client:?} threads={} target={} concurrency={} channels={} duration={:?}\ncalls={} errors={} rate={:.0}/s p50={:.2}ms p99={:.2}ms p99.9={:.2}ms",
        args.rpc,
        // What the runtime really has (tokio also reads TOKIO_WORKER_THREADS).
        tokio::runtime::Handle::current().metrics().num_workers(),
        args.target,
        args.concurrency,
        args.channels,
        args.duration,
        report.calls,
        report.errors,
        report.per_second,
        report.latency_us.0 as f64 / 1000.0,
        report.latency_us.1 as f64 / 1000.0,
        report.latency_us.2 as f64 / 1000.0,
    );
    if args.quantiles {
        let q: Vec<String> = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]
            .iter()
            .map(|q| format!("{q}:{:.2}", histogram.value_at_quantile(*q) as f64 / 1000.0))
            .collect();
        println!("quantiles (ms) {}", q.join(" "));
    }
    if !report.errors_by_code.is_empty() {
        println!("errors by code: {:?}", report.errors_by_code);
    }
    if let Some(rss) = report.server_rss_bytes {
        let rate = report
            .cache_hit_rate
            .map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "server: key-cache hit rate {rate}, resident memory {:.0} MiB",
            rss / 1_048_576.0
        );
    }
    Ok(report)
}

/// Builds what the workers send: the keys to exchange, or a token for listing.
async fn load(args: &BenchArgs, channel: Option<Channel>) -> Result<Load, BenchError> {
    let single = match (&args.key_id, &args.secret) {
        (Some(key_id), Some(secret)) => Some(ExchangeApiKeyRequest {
            key_id: key_id.clone(),
            secret: secret.clone(),
            ..Default::default()
        }),
        _ => None,
    };
    match args.rpc {
        BenchRpc::Health => Ok(Load::Health),
        BenchRpc::Exchange | BenchRpc::DbLookup | BenchRpc::ExchangeLookup => {
            let mut keys = match (&args.keys_file, single) {
                (Some(path), _) => read_keys(path)?,
                (None, Some(request)) => vec![request],
                (None, None) => {
                    return Err(BenchError::Usage(
                        "exchange needs --keys-file, or --key-id and --secret (or TOKENMINT_BENCH_*)"
                            .into(),
                    ));
                }
            };
            if let Some(n) = args.keys {
                keys.truncate(n);
            }
            if keys.is_empty() {
                return Err(BenchError::Usage("no keys to exchange".into()));
            }
            let keys = Arc::new(keys);
            if args.rpc == BenchRpc::Exchange {
                return Ok(Load::Exchange {
                    keys,
                    choice: args.choice,
                    zipf_exponent: args.zipf_exponent,
                });
            }
            let url = args
                .database_url
                .clone()
                .ok_or_else(|| BenchError::Usage(format!("{:?} needs --database-url", args.rpc)))?;
            if args.rpc == BenchRpc::ExchangeLookup {
                let store =
                    tokenmint_store::Store::connect(&tokenmint_store::StoreOptions::new(url))
                        .await
                        .map_err(|e| BenchError::Usage(format!("--database-url: {e}")))?;
                return Ok(Load::ExchangeLookup {
                    keys,
                    choice: args.choice,
                    zipf_exponent: args.zipf_exponent,
                    store,
                });
            }
            let mut options = sea_orm::ConnectOptions::new(url);
            options.max_connections(16).sqlx_logging(false);
            let database = sea_orm::Database::connect(options)
                .await
                .map_err(|e| BenchError::Usage(format!("--database-url: {e}")))?;
            Ok(Load::DbLookup {
                keys,
                choice: args.choice,
                zipf_exponent: args.zipf_exponent,
                database,
            })
        }
        BenchRpc::ListUsers => {
            let request = single.ok_or_else(|| {
                BenchError::Usage("list-users needs --key-id and --secret of an admin".into())
            })?;
            let channel = channel.ok_or_else(|| BenchError::Usage("no channel".into()))?;
            let token = AuthServiceClient::new(channel)
                .exchange_api_key(request)
                .await
                .map_err(|e| BenchError::Usage(format!("the key does not exchange: {e}")))?
                .into_inner()
                .access_token;
            Ok(Load::ListUsers {
                token: token.into(),
                page_size: args.page_size,
            })
        }
    }
}

/// Opens tonic's connections through [`raw_client::open`], so their writes are batched too.
#[derive(Clone, Copy, Debug)]
struct BatchedConnector;

impl tower_service::Service<http::Uri> for BatchedConnector {
    type Response = hyper_util::rt::TokioIo<BatchedWrites<tokio::net::TcpStream>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move { Ok(hyper_util::rt::TokioIo::new(raw_client::open(&uri).await?)) })
    }
}

/// Exchanges every key once, `concurrency` at a time.
async fn prewarm(
    channels: &[Channel],
    keys: Arc<Vec<ExchangeApiKeyRequest>>,
    concurrency: usize,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for (i, channel) in (0..concurrency).zip(channels.iter().cycle()) {
        let mut auth = AuthServiceClient::new(channel.clone());
        let keys = keys.clone();
        workers.push(tokio::spawn(async move {
            let mut failed = 0u64;
            for key in keys.iter().skip(i).step_by(concurrency) {
                failed += u64::from(auth.exchange_api_key(key.clone()).await.is_err());
            }
            failed
        }));
    }
    let mut failed = 0;
    for worker in workers {
        failed += worker
            .await
            .map_err(|e| BenchError::Worker(e.to_string()))?;
    }
    eprintln!(
        "prewarmed {} keys in {:.1} s ({failed} failed)",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads `ID SECRET` lines.
fn read_keys(path: &PathBuf) -> Result<Vec<ExchangeApiKeyRequest>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::Usage(format!("{}: {e}", path.display())))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_once(' ') {
            Some((key_id, secret)) => Ok(ExchangeApiKeyRequest {
                key_id: key_id.to_owned(),
                secret: secret.trim().to_owned(),
                ..Default::default()
            }),
            None => Err(BenchError::Usage(format!(
                "{}: a line is not `ID SECRET`",
                path.display()
            ))),
        })
        .collect()
}

/// The server's metrics text, if a URL is given.
async fn scrape(url: &Option<String>) -> Result<Option<String>, BenchError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let text = async { reqwest::get(url).await?.error_for_status()?.text().await }
        .await
        .map_err(|e| BenchError::Usage(format!("cannot read {url}: {e}")))?;
    Ok(Some(text))
}

/// The value of an unlabelled sample, or 0.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
            rest.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| BenchError::Worker(e.to_string()))
}

const EXCHANGE_PATH: &str = "/tokenmint.auth.v1.AuthService/ExchangeApiKey";
const HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";

async fn worker(
    caller: Caller,
    load: Load,
    seed: u64,
    start: Instant,
    end: Instant,
) -> Result<(Histogram<u64>, BTreeMap<String, u64>), BenchError> {
    use prost::Message;
    use rand::{Rng, SeedableRng};
    let mut histogram = new_histogram()?;
    let mut errors = BTreeMap::new();
    // A lazy channel to nowhere stands in where tonic makes no call.
    let channel = match &caller {
        Caller::Tonic(channel) => channel.clone(),
        _ => Endpoint::from_static("http://127.0.0.1:9").connect_lazy(),
    };
    let mut auth = AuthServiceClient::new(channel.clone());
    let mut health = HealthClient::new(channel.clone());
    let mut admin = AdminServiceClient::new(channel);
    let raw = match caller {
        Caller::Raw { connection, bodies } => Some((connection, bodies)),
        _ => None,
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let zipf = match &load {
        Load::Exchange {
            keys,
            choice: KeyChoice::Zipf,
            zipf_exponent,
        }
        | Load::DbLookup {
            keys,
            choice: KeyChoice::Zipf,
            zipf_exponent,
            ..
        }
        | Load::ExchangeLookup {
            keys,
            choice: KeyChoice::Zipf,
            zipf_exponent,
            ..
        } => Some(
            rand_distr::Zipf::new(keys.len() as f64, *zipf_exponent)
                .map_err(|e| BenchError::Usage(format!("--zipf-exponent: {e}")))?,
        ),
        _ => None,
    };
    let code = |status: tonic::Status| format!("{:?}", status.code());
    let mut page_token = String::new();
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let mut pick = |count: usize| {
            let index = match &zipf {
                // Zipf yields 1..=n.
                Some(zipf) => (zipf.sample(&mut rng) as usize).saturating_sub(1),
                None => rng.random_range(0..count),
            };
            index.min(count - 1)
        };
        let outcome: Result<(), String> = match (&load, &raw) {
            (Load::Exchange { keys, .. }, Some((connection, bodies))) => {
                let body = bodies[pick(keys.len())].clone();
                connection
                    .call(EXCHANGE_PATH, body)
                    .await
                    .and_then(|message| match ExchangeApiKeyResponse::decode(message) {
                        Ok(response) if !response.access_token.is_empty() => Ok(()),
                        _ => Err("Malformed(response)".into()),
                    })
            }
            (Load::Exchange { keys, .. }, None) => auth
                .exchange_api_key(keys[pick(keys.len())].clone())
                .await
                .map(|_| ())
                .map_err(code),
            (Load::DbLookup { keys, database, .. }, _) => {
                use sea_orm::ConnectionTrait;
                let backend = database.get_database_backend();
                let sql = match backend {
                    sea_orm::DbBackend::Postgres => "SELECT id FROM api_keys WHERE id = $1",
                    _ => "SELECT id FROM api_keys WHERE id = ?",
                };
                let key_id = keys[pick(keys.len())].key_id.clone();
                let statement =
                    sea_orm::Statement::from_sql_and_values(backend, sql, [key_id.into()]);
                match database.query_one_raw(statement).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("NotFound".into()),
                    Err(_) => Err("Unavailable".into()),
                }
            }
            (Load::ExchangeLookup { keys, store, .. }, _) => {
                match store
                    .find_exchange_key(&keys[pick(keys.len())].key_id)
                    .await
                {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("NotFound".into()),
                    Err(_) => Err("Unavailable".into()),
                }
            }
            (Load::Health, Some((connection, bodies))) => connection
                .call(HEALTH_PATH, bodies[0].clone())
                .await
                .and_then(|message| match HealthCheckResponse::decode(message) {
                    Ok(response) if response.status == ServingStatus::Serving as i32 => Ok(()),
                    _ => Err("NotServing".into()),
                }),
            (Load::Health, None) => health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|_| ())
                .map_err(code),
            (Load::ListUsers { token, page_size }, _) => {
                let mut request = tonic::Request::new(ListServiceUsersRequest {
                    page_size: *page_size,
                    page_token: std::mem::take(&mut page_token),
                    ..Default::default()
                });
                let bearer = format!("Bearer {token}")
                    .parse()
                    .map_err(|_| BenchError::Usage("the token is not a header value".into()))?;
                request.metadata_mut().insert("authorization", bearer);
                admin
                    .list_service_users(request)
                    .await
                    .map(|r| {
                        page_token = r.into_inner().next_page_token;
                    })
                    .map_err(code)
            }
        };
        if began < start {
            continue;
        }
        match outcome {
            Ok(()) => {
                let _ = histogram.record(began.elapsed().as_micros().max(1) as u64);
            }
            Err(code) => {
                *errors.entry(code).or_insert(0) += 1;
                // A failed connection fails every call at once: let the other workers run.
                tokio::task::yield_now().await;
            }
        }
    }
    Ok((histogram, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        BenchArgs::try_parse_from(std::iter::once("tokenmint-bench").chain(args.iter().copied()))
    }

    #[test]
    fn a_load_generator_calling_a_server_runs_on_one_thread_by_default() {
        for rpc in ["exchange", "health", "list-users"] {
            let args = parse(&["--rpc", rpc]).expect("valid arguments");
            assert_eq!(args.threads(), NonZeroUsize::new(1), "{rpc}");
        }
    }

    #[test]
    fn database_lookups_run_on_every_core_by_default() {
        for rpc in ["db-lookup", "exchange-lookup"] {
            let args = parse(&["--rpc", rpc]).expect("valid arguments");
            assert_eq!(args.threads(), None, "{rpc}");
        }
    }

    #[test]
    fn threads_given_are_used_whatever_the_rpc() {
        for rpc in ["health", "db-lookup"] {
            let args = parse(&["--rpc", rpc, "--threads", "2"]).expect("valid arguments");
            assert_eq!(args.threads(), NonZeroUsize::new(2), "{rpc}");
        }
    }

    #[test]
    fn zero_threads_are_refused() {
        let error = parse(&["--threads", "0"]).expect_err("zero threads");
        assert!(error.to_string().contains("--threads"), "{error}");
    }
}
