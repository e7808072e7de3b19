//! TLS for both ports, from a PEM certificate chain and key (rustls, ring provider). Without
//! them the server speaks plain text, and says so at start.

use crate::server::StartError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// The loaded certificate and key, for the gRPC and the HTTP port.
#[derive(Clone)]
pub struct Tls {
    /// For tonic, which parses the PEM itself.
    pub identity: tonic::transport::Identity,
    /// For the HTTP port.
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(<certificate and key>)")
    }
}

/// Reads and checks `cert` and `key`; every problem is a start-up error naming the file.
pub fn load(cert: &Path, key: &Path) -> Result<Tls, StartError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| StartError::Config(format!("cannot read {}: {e}", path.display())))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Config(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(StartError::Config(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| StartError::Config(format!("{}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError::Config(format!("TLS: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, private_key)
    .map_err(|e| StartError::Config(format!("{} and {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        identity: tonic::transport::Identity::from_pem(cert_pem, key_pem),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    })
}
