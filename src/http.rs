//! The HTTP face: JWKS and RFC 8414 metadata for verifiers, the OAuth 2.0 token endpoint
//! (`oauth2.rs`), and liveness and readiness probes.

use crate::domain::Tokenmint;
use crate::error::{Error, Reason};
use crate::listener::LimitedStream;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// Shared state.
    pub app: Arc<Tokenmint>,
    /// Set when shutdown starts, so `/readyz` stops attracting traffic.
    pub draining: Arc<AtomicBool>,
    /// Proxies whose `x-forwarded-for` is believed.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// How long a request body may take to arrive.
    pub body_deadline: Duration,
    /// Renders `/metrics`; `None` when another recorder was installed first.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Serves `router` on the connections `incoming` yields until `shutdown` completes, then lets
/// requests in flight finish. A connection gets `header_timeout` to send each request head, so a
/// client that trickles header lines (slowloris) is closed instead of holding its slot.
pub async fn serve(
    mut incoming: ReceiverStream<std::io::Result<LimitedStream>>,
    router: Router,
    header_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(_)) => continue,
                None => break,
            },
            () = &mut shutdown => break,
        };
        // Handlers see the peer (for key allowlists, throttling and the audit trail).
        let peer = crate::oauth2::ClientPeer(stream.peer());
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(peer)));
        match &tls {
            None => {
                let connection =
                    graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "HTTP connection ended");
                    }
                });
            }
            Some(acceptor) => {
                // The handshake runs in the connection's own task, under the same deadline as
                // a request head, so a slow client holds up nobody else.
                let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
                let (http1, watcher) = (http1.clone(), graceful.watcher());
                tokio::spawn(async move {
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let connection =
                        watcher.watch(http1.serve_connection(TokioIo::new(stream), service));
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "HTTP connection ended");
                    }
                });
            }
        }
    }
    drop(incoming);
    graceful.shutdown().await;
}

/// The HTTP status and OAuth 2.0 error code (RFC 6749 §5.2, RFC 7662) of each domain error,
/// for the HTTP face's token and introspection endpoints.
pub fn oauth2_error(err: &Error) -> (StatusCode, &'static str) {
    match err {
        Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        Error::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "invalid_client"),
        Error::PermissionDenied(Reason::ScopeNotGrantable, _) => {
            (StatusCode::BAD_REQUEST, "invalid_scope")
        }
        Error::PermissionDenied(..) => (StatusCode::BAD_REQUEST, "unauthorized_client"),
        Error::NotFound { .. }
        | Error::AlreadyExists(..)
        | Error::FailedPrecondition(..)
        | Error::Aborted(_)
        | Error::ResourceExhausted(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        Error::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        Error::Store(_) | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    }
}

/// The HTTP routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/oauth2/token", axum::routing::post(crate::oauth2::token))
        .route(
            "/oauth2/introspect",
            axum::routing::post(crate::oauth2::introspect),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // A whole request, body included, has this long; a client trickling its body is cut.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.body_deadline * 3,
        ))
        .with_state(state)
}

async fn jwks(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        state.app.keyring.jwks().to_json(),
    )
}

/// RFC 8414 metadata, served at both well-known paths: only what exists (the token endpoint
/// and its client-credentials grant, the JWKS), nothing about ID tokens or browser flows.
async fn discovery(State(state): State<HttpState>) -> impl IntoResponse {
    Json(crate::oauth2::metadata(&state.app.settings.issuer))
}

/// Prometheus text exposition.
async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    match &state.metrics {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            crate::metrics::render(handle, &state.app),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "metrics are not available".to_owned(),
        ),
    }
}

/// Liveness: the process serves HTTP.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok")
}

/// Readiness: migrations ran (the server listens only after them), the database answers, and
/// the server is not draining.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.draining.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match state.app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(error) => {
            // The reason goes to the log, not to whoever asks: it can name hosts and users.
            tracing::warn!(%error, "not ready: the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_map_to_oauth2_errors() {
        assert_eq!(
            oauth2_error(&Error::Unauthenticated("x")),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
        assert_eq!(
            oauth2_error(&Error::invalid("scope", "bad")),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        assert_eq!(
            oauth2_error(&Error::PermissionDenied(
                Reason::ScopeNotGrantable,
                "x".into()
            ))
            .1,
            "invalid_scope"
        );
        assert_eq!(
            oauth2_error(&Error::Internal("bug".into())).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
