//! Prometheus metrics at `/metrics`, through the `metrics` facade and its Prometheus exporter.
//! gRPC calls are timed by a tower layer ([`RecordCalls`]), so handlers stay thin; exchanges are
//! counted where their outcome is known (both faces); gauges (key cache, database pool, signing
//! key age, and the process's memory and descriptors from `metrics-process`) are read at scrape
//! time. No label carries an ID or anything a caller chooses: the
//! method label is one of the server's own methods or `unknown`, outcomes are gRPC code names.

use crate::domain::Tokenmint;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Latency buckets, seconds: exchanges take tens of microseconds, admin calls milliseconds.
const BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Installs the process-wide recorder; `None` when one is installed already.
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("tokenmint_grpc_request_duration_seconds".into()),
            BUCKETS,
        )
        .ok()?
        .install_recorder()
        .ok()
}

/// Counts an exchange on `face` (`grpc` or `http`) with `outcome` (a gRPC code name).
pub fn exchange(face: &'static str, outcome: &'static str) {
    metrics::counter!("tokenmint_exchanges_total", "face" => face, "outcome" => outcome)
        .increment(1);
}

/// The text exposition, with the gauges read now.
pub fn render(handle: &PrometheusHandle, app: &Tokenmint) -> String {
    let stats = app.key_cache.stats();
    let (active, inactive) = app.key_cache.sizes();
    metrics::gauge!("tokenmint_key_cache_hits").set(stats.hits as f64);
    metrics::gauge!("tokenmint_key_cache_misses").set(stats.misses as f64);
    metrics::gauge!("tokenmint_key_cache_flushes").set(stats.flushes as f64);
    if let Some(listening) = app.store.listening() {
        metrics::gauge!("tokenmint_change_listener_up").set(f64::from(u8::from(listening)));
    }
    metrics::gauge!("tokenmint_key_cache_entries", "kind" => "active").set(active as f64);
    metrics::gauge!("tokenmint_key_cache_entries", "kind" => "unusable").set(inactive as f64);
    let pool = app.store.pool_stats();
    metrics::gauge!("tokenmint_db_pool_connections", "state" => "in_use")
        .set((pool.size as usize).saturating_sub(pool.idle) as f64);
    metrics::gauge!("tokenmint_db_pool_connections", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("tokenmint_db_statements").set(app.store.statements_executed() as f64);
    let reads = app.store.key_read_stats();
    metrics::gauge!("tokenmint_key_reads").set(reads.reads as f64);
    metrics::gauge!("tokenmint_key_reads_keys").set(reads.keys as f64);
    let now = app.now();
    if let Ok(signer) = app.keyring.current().signer(now) {
        let age = app
            .keyring
            .activated_at(signer.kid())
            .map(|t| (now - t).num_seconds());
        metrics::gauge!("tokenmint_signing_key_age_seconds").set(age.unwrap_or(0) as f64);
    }
    metrics::gauge!("tokenmint_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total, …
    metrics_process::Collector::default().collect();
    handle.render()
}

/// The gRPC methods this server has, as `/package.Service/Method`: the only method labels. Each
/// name is leaked once, at start, so a label costs no allocation per call.
fn known_methods() -> HashMap<String, &'static str> {
    use prost::Message;
    let mut methods = Vec::new();
    if let Ok(set) = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET) {
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods.push("/grpc.health.v1.Health/Check".into());
    methods.push("/grpc.health.v1.Health/Watch".into());
    methods
        .into_iter()
        .map(|m| {
            let label: &'static str = Box::leak(m.clone().into_boxed_str());
            (m, label)
        })
        .collect()
}

/// A tower layer timing every gRPC call by method and status code.
#[derive(Clone, Debug)]
pub struct RecordCalls(Arc<HashMap<String, &'static str>>);

impl Default for RecordCalls {
    fn default() -> Self {
        Self(Arc::new(known_methods()))
    }
}

impl<S> tower_layer::Layer<S> for RecordCalls {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recorded {
            inner,
            methods: self.0.clone(),
        }
    }
}

/// The service [`RecordCalls`] wraps.
#[derive(Clone, Debug)]
pub struct Recorded<S> {
    inner: S,
    methods: Arc<HashMap<String, &'static str>>,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Recorded<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method: &'static str = self.methods.get(path).copied().unwrap_or("unknown");
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // An error is trailers-only, its status in the headers; a success reports OK later,
            // in trailers, which this layer does not wait for.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or("OK", |c| {
                    crate::grpc::status::code_name_of(tonic::Code::from(c))
                });
            metrics::histogram!(
                "tokenmint_grpc_request_duration_seconds",
                "method" => method,
                "code" => code
            )
            .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}
