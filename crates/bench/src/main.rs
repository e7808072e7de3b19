//! `tokenmint-bench`: a closed-loop load generator for ExchangeApiKey (or the health check, an
//! "empty" RPC that measures the gRPC floor) against a running server. A binary of its own so
//! the server does not link what only load generation needs.

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokenmint::config::parse_duration;
use tokenmint::proto::auth::v1::{ExchangeApiKeyRequest, auth_service_client::AuthServiceClient};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Which RPC to drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchRpc {
    /// AuthService/ExchangeApiKey with the given key.
    Exchange,
    /// grpc.health.v1.Health/Check: the cost of an empty RPC.
    Health,
}

/// Drives load against a running Tokenmint server and prints throughput and latency.
#[derive(Clone, Debug, Parser)]
#[command(name = "tokenmint-bench", version, about)]
pub struct BenchArgs {
    /// gRPC endpoint of the server.
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
    /// Calls in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
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
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad options.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        source: tonic::transport::Error,
    },
    /// A worker failed.
    #[error("worker failed: {0}")]
    Worker(String),
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(BenchArgs::parse()).await {
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
    let request = match args.rpc {
        BenchRpc::Exchange => match (&args.key_id, &args.secret) {
            (Some(key_id), Some(secret)) => Some(ExchangeApiKeyRequest {
                key_id: key_id.clone(),
                secret: secret.clone(),
                ..Default::default()
            }),
            _ => {
                return Err(BenchError::Usage(
                    "exchange needs --key-id and --secret (or TOKENMINT_BENCH_*)".into(),
                ));
            }
        },
        BenchRpc::Health => None,
    };
    let mut channels = Vec::new();
    for _ in 0..args.channels {
        let endpoint = Endpoint::from_shared(args.target.clone())
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        channels.push(
            endpoint
                .connect()
                .await
                .map_err(|source| BenchError::Connect {
                    target: args.target.clone(),
                    source,
                })?,
        );
    }
    let start = Instant::now() + args.warmup;
    let end = start + args.duration;
    let mut workers = Vec::new();
    for i in 0..args.concurrency {
        let channel = channels[i % channels.len()].clone();
        workers.push(tokio::spawn(worker(channel, request.clone(), start, end)));
    }
    let mut histogram = new_histogram()?;
    let mut errors = 0;
    for worker in workers {
        let (h, e) = worker
            .await
            .map_err(|e| BenchError::Worker(e.to_string()))??;
        histogram
            .add(h)
            .map_err(|e| BenchError::Worker(e.to_string()))?;
        errors += e;
    }
    let calls = histogram.len();
    let report = BenchReport {
        calls,
        errors,
        per_second: calls as f64 / args.duration.as_secs_f64(),
        latency_us: (
            histogram.value_at_quantile(0.5),
            histogram.value_at_quantile(0.99),
            histogram.value_at_quantile(0.999),
        ),
    };
    println!(
        "rpc={:?} target={} concurrency={} channels={} duration={:?}\ncalls={} errors={} rate={:.0}/s p50={:.2}ms p99={:.2}ms p99.9={:.2}ms",
        args.rpc,
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
    Ok(report)
}

fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| BenchError::Worker(e.to_string()))
}

async fn worker(
    channel: Channel,
    request: Option<ExchangeApiKeyRequest>,
    start: Instant,
    end: Instant,
) -> Result<(Histogram<u64>, u64), BenchError> {
    let mut histogram = new_histogram()?;
    let mut errors = 0;
    let mut auth = AuthServiceClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let ok = match &request {
            Some(r) => auth.exchange_api_key(r.clone()).await.is_ok(),
            None => health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok(),
        };
        if began < start {
            continue;
        }
        if ok {
            let _ = histogram.record(began.elapsed().as_micros().max(1) as u64);
        } else {
            errors += 1;
        }
    }
    Ok((histogram, errors))
}
