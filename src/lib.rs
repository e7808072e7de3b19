//! Tokenmint, the server: configuration, the domain rules, the gRPC and HTTP faces, and the CLI
//! commands. Persistence lives in `tokenmint-store`, credentials and JWTs in `tokenmint-token`.

pub mod batched_writes;
pub mod config;
pub mod data_files;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod http;
pub mod ids;
pub mod listener;
pub mod local_secrets;
pub mod metrics;
pub mod oauth2;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod telemetry;
pub mod tls;
