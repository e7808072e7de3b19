//! A lean gRPC unary client on bare HTTP/2 (the `h2` crate): the load generator's default for
//! `exchange` and `health`, so that on a shared two-core box the client takes less of the
//! machine (about half of tonic's CPU per call), while still reading every answer's
//! `grpc-status` and message.
//!
//! tonic's `Channel` puts a tower `Buffer` (a queue and a task of its own) and its codec in
//! front of every call; on two cores shared with the server that costs the server about a
//! third of its throughput and stretches every latency the run reports. Here each request
//! body is framed once, up front, and a call is one `send_request` on a shared connection.

use bytes::{Buf, Bytes, BytesMut};
use std::time::Duration;
use tokenmint::batched_writes::BatchedWrites;
use tokio::net::TcpStream;

/// A gRPC failure as the load generator counts it: the status code's name (`"NotFound"`), or
/// what went wrong below gRPC (`"Transport"`, `"Malformed"`).
pub type CallError = String;

/// The framed request body (the five-byte gRPC prefix and the message) of `message`.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.encoded_len());
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&(message.encoded_len() as u32).to_be_bytes());
    message.encode_raw(&mut framed);
    framed.freeze()
}

/// How long opening a connection waits for a server that is not there.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to `uri`'s host and port whose writes are batched as the server batches
/// its own ([`tokenmint::batched_writes`]): the requests a worker pass makes ready leave
/// together. Both clients connect through it.
pub async fn open(uri: &http::Uri) -> std::io::Result<BatchedWrites<TcpStream>> {
    let host = uri
        .host()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let connect = TcpStream::connect((host, uri.port_u16().unwrap_or(80)));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            let message = format!("no answer in {CONNECT_TIMEOUT:?}");
            std::io::Error::new(std::io::ErrorKind::TimedOut, message)
        })??;
    stream.set_nodelay(true)?;
    Ok(BatchedWrites::new(stream))
}

/// One HTTP/2 connection to a gRPC server, shared by many calls at once.
#[derive(Clone)]
pub struct RawConnection {
    sender: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
}

impl RawConnection {
    /// Connects to `target` (`http://host:port`).
    pub async fn connect(target: &str) -> Result<Self, String> {
        let uri: http::Uri = target
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTP) {
            return Err("the lean client speaks plain http:// only".into());
        }
        let authority = uri.authority().cloned().ok_or("no host")?;
        let stream = open(&uri).await.map_err(|e| e.to_string())?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("tokenmint-bench: connection closed: {e}");
            }
        });
        Ok(Self { sender, authority })
    }

    /// Calls `path` (`/package.Service/Method`) with the framed `body`, and returns the
    /// response's message (without its prefix) when the status is OK.
    pub async fn call(&self, path: &'static str, body: Bytes) -> Result<Bytes, CallError> {
        let transport = |e: h2::Error| match e.reason() {
            Some(reason) if !e.is_go_away() => format!("Reset({reason:?})"),
            _ => "Transport".to_owned(),
        };
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(
                http::Uri::builder()
                    .scheme(http::uri::Scheme::HTTP)
                    .authority(self.authority.clone())
                    .path_and_query(path)
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        // Fails at once when the connection has failed; h2 itself queues streams beyond the
        // server's concurrency limit.
        let mut sender = self.sender.clone().ready().await.map_err(transport)?;
        let (response, mut stream) = sender.send_request(request, false).map_err(transport)?;
        stream.send_data(body, true).map_err(transport)?;
        let response = response.await.map_err(transport)?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("Http{}", response.status().as_u16()));
        }
        // A failure is usually "trailers-only": its status arrives with the headers.
        if let Some(Err(status)) = grpc_status(response.headers()) {
            return Err(status);
        }
        let mut body = response.into_body();
        // A unary answer nearly always arrives in one DATA frame: keep that frame, copy only
        // when there are more.
        let mut message = Bytes::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(transport)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message = if message.is_empty() {
                chunk
            } else {
                [message, chunk].concat().into()
            };
        }
        let trailers = body.trailers().await.map_err(transport)?;
        match trailers.as_ref().and_then(grpc_status) {
            Some(Ok(())) => unframe(message),
            Some(Err(status)) => Err(status),
            None => Err("Malformed(no grpc-status)".into()),
        }
    }
}

/// The `grpc-status` among `headers`, if there is one: OK, or its named error.
fn grpc_status(headers: &http::HeaderMap) -> Option<Result<(), CallError>> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .map(tonic::Code::from_i32);
    Some(match code {
        Some(tonic::Code::Ok) => Ok(()),
        Some(code) => Err(format!("{code:?}")),
        None => Err("Malformed(grpc-status)".into()),
    })
}

/// The one message of a unary response body.
fn unframe(mut body: Bytes) -> Result<Bytes, CallError> {
    if body.len() < 5 || body[0] != 0 {
        return Err("Malformed(frame)".into());
    }
    body.advance(1);
    let length = body.get_u32() as usize;
    if body.len() != length {
        return Err("Malformed(frame length)".into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_check_response};

    const CHECK: &str = "/grpc.health.v1.Health/Check";

    /// A real tonic server with the standard health service, on an ephemeral port.
    async fn health_server() -> String {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("up", tonic_health::ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // Keeps the reporter (and so the service's status) alive with the server.
            let _reporter = reporter;
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        format!("http://{address}")
    }

    /// A bare HTTP/2 server answering by path with what tonic never sends: a message followed
    /// by an error status in the trailers (`/error-after-message`), a message and no trailers
    /// (`/no-trailers`), and a 2 MiB message with an OK status (`/large`).
    async fn scripted_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                socket.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut connection = h2::server::handshake(socket).await.unwrap();
                    while let Some(Ok((request, respond))) = connection.accept().await {
                        tokio::spawn(scripted_answer(request, respond));
                    }
                });
            }
        });
        format!("http://{address}")
    }

    async fn scripted_answer(
        request: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) {
        let path = request.uri().path().to_owned();
        let mut body = request.into_body();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let head = http::Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let mut stream = respond.send_response(head, false).unwrap();
        let size = if path == "/large" { 2 << 20 } else { 8 };
        let message = frame(&HealthCheckRequest {
            service: "x".repeat(size),
        });
        let status = match path.as_str() {
            "/no-trailers" => return stream.send_data(message, true).unwrap(),
            "/error-after-message" => "13",
            _ => "0",
        };
        stream.send_data(message, false).unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", status.parse().unwrap());
        stream.send_trailers(trailers).unwrap();
    }

    fn check(service: &str) -> Bytes {
        frame(&HealthCheckRequest {
            service: service.into(),
        })
    }

    #[tokio::test]
    async fn a_successful_call_returns_the_decodable_message() {
        let connection = RawConnection::connect(&health_server().await)
            .await
            .unwrap();
        let message = connection.call(CHECK, check("up")).await.unwrap();
        let response = HealthCheckResponse::decode(message).unwrap();
        assert_eq!(
            response.status,
            health_check_response::ServingStatus::Serving as i32
        );
    }

    #[tokio::test]
    async fn a_failed_call_is_counted_under_its_status_code() {
        let connection = RawConnection::connect(&health_server().await)
            .await
            .unwrap();
        assert_eq!(
            connection.call(CHECK, check("unknown")).await.unwrap_err(),
            "NotFound"
        );
        assert_eq!(
            connection
                .call("/grpc.health.v1.Health/Nothing", check("up"))
                .await
                .unwrap_err(),
            "Unimplemented"
        );
    }

    /// How a call to the scripted server's `path` fails.
    async fn scripted_failure(path: &'static str) -> String {
        let connection = RawConnection::connect(&scripted_server().await)
            .await
            .unwrap();
        connection.call(path, check("up")).await.unwrap_err()
    }

    #[tokio::test]
    async fn an_error_status_in_the_trailers_fails_the_call_despite_its_message() {
        assert_eq!(scripted_failure("/error-after-message").await, "Internal");
    }

    #[tokio::test]
    async fn an_answer_without_a_status_is_malformed_not_a_success() {
        assert_eq!(
            scripted_failure("/no-trailers").await,
            "Malformed(no grpc-status)"
        );
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_stream_window_keeps_flowing() {
        // 2 MiB is twice what a stream may receive (1 MiB) before the client gives back
        // capacity: without it, the call would stall. (h2 returns a closed stream's capacity
        // to the connection by itself, so only one stream's window can fill.)
        let connection = RawConnection::connect(&scripted_server().await)
            .await
            .unwrap();
        let calls = async {
            for _ in 0..3 {
                let message = connection.call("/large", check("up")).await.unwrap();
                assert!(message.len() > 2 << 20);
            }
        };
        tokio::time::timeout(Duration::from_secs(20), calls)
            .await
            .expect("the calls stalled");
    }

    #[tokio::test]
    async fn a_malformed_request_body_is_refused_by_the_server_not_counted_a_success() {
        let connection = RawConnection::connect(&health_server().await)
            .await
            .unwrap();
        let torn = Bytes::from_static(&[0, 0, 0, 0, 9, 1]);
        assert!(connection.call(CHECK, torn).await.is_err());
    }

    #[tokio::test]
    async fn many_calls_share_one_connection_at_once() {
        let connection = RawConnection::connect(&health_server().await)
            .await
            .unwrap();
        let calls = (0..200).map(|_| {
            let connection = connection.clone();
            tokio::spawn(async move { connection.call(CHECK, check("up")).await })
        });
        for call in calls {
            assert!(call.await.unwrap().is_ok());
        }
    }

    #[test]
    fn a_framed_body_carries_its_length_before_the_message() {
        let framed = check("up");
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 4]);
        assert_eq!(unframe(framed.clone()).unwrap(), framed.slice(5..));
        assert!(unframe(framed.slice(..6)).is_err());
    }

    #[tokio::test]
    async fn connecting_to_nothing_fails_with_the_reason() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = RawConnection::connect(&format!("http://{address}"))
            .await
            .err()
            .unwrap();
        assert!(error.contains("refused"), "{error}");
    }
}
