//! TLS for every transport (`tls = true` in a scenario): the server makes a
//! fresh self-signed certificate when it starts, and the generator trusts
//! exactly that certificate and nothing else. Pure-Rust (rustls, ring).
//!
//! Certificates are for `127.0.0.1` and `localhost`, and for the address
//! the server listens on when that is another (an emulated link's).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// ALPN names. HTTP/2 transports offer only `h2`; the others only
/// `http/1.1`, so each transport gets the protocol it is meant to measure.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server's certificate and key, made at start.
pub struct SelfSigned {
    /// The certificate, PEM: what clients are told to trust.
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl SelfSigned {
    pub fn generate() -> anyhow::Result<SelfSigned> {
        SelfSigned::generate_for(None)
    }

    /// A certificate for loopback and, if given, one more address.
    pub fn generate_for(also: Option<std::net::IpAddr>) -> anyhow::Result<SelfSigned> {
        let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        if let Some(ip) = also.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) {
            names.push(ip.to_string());
        }
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(SelfSigned {
            cert_pem: certified.cert.pem(),
            cert_der: certified.cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        })
    }

    /// Server side: both ALPN protocols, so one server serves every transport.
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone()],
                PrivateKeyDer::Pkcs8(self.key_der.clone_key()),
            )?;
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }
}

/// Client side: trusts exactly the certificate in `cert_pem`, offers `alpn`.
pub fn client_config(cert_pem: &str, alpn: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in the server's PEM");
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;

    async fn handshake(server: &SelfSigned, trusted_pem: &str) -> std::io::Result<()> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config().unwrap());
        let connector =
            tokio_rustls::TlsConnector::from(client_config(trusted_pem, ALPN_H2).unwrap());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let server_side = tokio::spawn(async move { acceptor.accept(b).await.map(|_| ()) });
        let client_side = connector.connect(name, a).await.map(|_| ());
        let _ = server_side.await;
        client_side
    }

    #[tokio::test]
    async fn a_client_trusts_its_server_and_no_other() {
        let ours = SelfSigned::generate().unwrap();
        let other = SelfSigned::generate().unwrap();
        handshake(&ours, &ours.cert_pem).await.unwrap();
        let refused = handshake(&other, &ours.cert_pem).await.unwrap_err();
        assert!(refused.to_string().contains("certificate"), "{refused}");
        assert!(client_config("not a certificate", ALPN_H2).is_err());
    }
}
