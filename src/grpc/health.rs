//! gRPC health: tonic-health's statuses, with Watch streams that end when the server drains.

use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// tonic-health's service, except that a Watch ends when the server stops taking calls (a
/// stream that never ends would hold every graceful shutdown for its whole grace), and at most
/// [`MAX_WATCHES`] are open at once: anyone may watch, unauthenticated.
pub struct DrainingHealth {
    inner: HealthService,
    stopping: tokio::sync::watch::Receiver<bool>,
    watches: Arc<Semaphore>,
}

/// Most health Watch streams open at once on one server; more are RESOURCE_EXHAUSTED. Load
/// balancers hold one or two each.
pub const MAX_WATCHES: usize = 1024;

impl DrainingHealth {
    /// The service for the statuses `reporter` sets.
    pub fn new(reporter: HealthReporter, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            inner: HealthService::from_health_reporter(reporter),
            stopping,
            watches: Arc::new(Semaphore::new(MAX_WATCHES)),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let Ok(slot) = self.watches.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(
                "too many health watches are open on this server; use Check",
            ));
        };
        let mut statuses = self.inner.watch(request).await?.into_inner();
        let mut stopping = self.stopping.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                tokio::select! {
                    status = statuses.next() => match status {
                        Some(status) => tokio::select! {
                            sent = sender.send(status) => if sent.is_err() { return },
                            () = async { let _ = stopping.wait_for(|stop| *stop).await; } => break,
                        },
                        None => return,
                    },
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; } => break,
                    () = sender.closed() => return,
                }
            }
            // The last word is NOT_SERVING (it may not have been sent yet when the stop came),
            // then UNAVAILABLE, as for any stream the drain ends: watch another replica. Never
            // waiting on a reader that stopped reading, which would hold the shutdown.
            let _ = sender.try_send(Ok(HealthCheckResponse {
                status: ServingStatus::NotServing.into(),
            }));
            let _ = sender.try_send(Err(Status::unavailable("the server is shutting down")));
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
