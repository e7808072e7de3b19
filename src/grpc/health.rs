//! gRPC health: tonic-health's statuses, with Watch streams that end when the server drains.

use std::pin::Pin;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// tonic-health's service, except that a Watch ends when the server stops taking calls: a
/// stream that never ends would hold every graceful shutdown for its whole grace.
pub struct DrainingHealth {
    inner: HealthService,
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl DrainingHealth {
    /// The service for the statuses `reporter` sets.
    pub fn new(reporter: HealthReporter, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        Self {
            inner: HealthService::from_health_reporter(reporter),
            stopping,
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
        let mut statuses = self.inner.watch(request).await?.into_inner();
        let mut stopping = self.stopping.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    status = statuses.next() => match status {
                        Some(status) => if sender.send(status).await.is_err() { return },
                        None => return,
                    },
                    () = async { let _ = stopping.wait_for(|stop| *stop).await; } => break,
                    () = sender.closed() => return,
                }
            }
            // The last word is NOT_SERVING (it may not have been sent yet when the stop came),
            // then UNAVAILABLE, as for any stream the drain ends: watch another replica.
            let _ = sender
                .send(Ok(HealthCheckResponse {
                    status: ServingStatus::NotServing.into(),
                }))
                .await;
            let _ = sender
                .send(Err(Status::unavailable("the server is shutting down")))
                .await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
