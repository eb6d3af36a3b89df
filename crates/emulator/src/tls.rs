//! The emulator's TLS identity: a self-signed **leaf** certificate (CA:FALSE, EKU serverAuth, SANs
//! for the host name, `localhost` and the listen IP) made with rcgen and kept as PEM beside the
//! state, so a client trusts it once (`REQUESTS_CA_BUNDLE`, `--ca-cert`). rustls refuses a CA
//! certificate used as a server certificate, hence a leaf. The crypto provider is ring, explicitly.
//!
//! It also accepts connections for both listeners (REST and MQTT): the accept loop's back-off and
//! the handshake's time limit are the same on both.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a new connection may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The certificate files and the server configuration made from them.
pub(crate) struct Identity {
    pub(crate) cert_path: PathBuf,
    pub(crate) cert_pem: String,
    pub(crate) server_config: Arc<ServerConfig>,
}

/// The names the certificate must cover, in a stable order.
fn names(hostname: &str, listen_ip: &str) -> Vec<String> {
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1", listen_ip] {
        if !names.iter().any(|n| n == extra) && !extra.is_empty() && extra != "0.0.0.0" {
            names.push(extra.to_string());
        }
    }
    names
}

/// Loads `dir/cert.pem` and `dir/key.pem`, or makes them when absent or made for other names.
pub(crate) fn load_or_create(
    dir: &Path,
    hostname: &str,
    listen_ip: &str,
) -> anyhow::Result<Identity> {
    crate::private::create_dir(dir)?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let names_path = dir.join("names");
    let wanted = names(hostname, listen_ip).join("\n");
    let current = std::fs::read_to_string(&names_path).ok();
    if current.as_deref() != Some(wanted.as_str()) || !cert_path.exists() || !key_path.exists() {
        let mut params = rcgen::CertificateParams::new(names(hostname, listen_ip))
            .context("certificate names")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, hostname);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().context("generating the TLS key")?;
        let cert = params
            .self_signed(&key)
            .context("signing the certificate")?;
        crate::private::write(&key_path, key.serialize_pem().as_bytes())?;
        crate::private::write(&cert_path, cert.pem().as_bytes())?;
        crate::private::write(&names_path, wanted.as_bytes())?;
    } else {
        for path in [&key_path, &cert_path, &names_path] {
            crate::private::narrow(path)?;
        }
    }
    let cert_pem = std::fs::read_to_string(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate")?;
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Identity {
        cert_path,
        cert_pem,
        server_config: Arc::new(server_config),
    })
}

/// The next connection on `listener` (`listener` names it in logs), with Nagle off. A failed
/// accept (out of file descriptors and the like) is logged and retried after a pause instead of
/// spinning. Cancel-safe, for `select!` loops.
pub(crate) async fn next_connection(listener: &TcpListener, name: &str) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(e) => {
                tracing::warn!(error = %e, listener = name, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The TLS handshake of a new connection; `None` when it fails or takes too long.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), "localhost", "127.0.0.1").unwrap();
        let b = load_or_create(dir.path(), "localhost", "127.0.0.1").unwrap();
        assert_eq!(a.cert_pem, b.cert_pem);
        assert!(a.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let c = load_or_create(dir.path(), "myhub.local", "127.0.0.1").unwrap();
        assert_ne!(
            a.cert_pem, c.cert_pem,
            "other names need another certificate"
        );
    }

    #[test]
    fn names_cover_localhost_and_the_ip() {
        assert_eq!(names("localhost", "127.0.0.1"), ["localhost", "127.0.0.1"]);
        assert_eq!(
            names("hub", "10.0.0.2"),
            ["hub", "localhost", "127.0.0.1", "10.0.0.2"]
        );
        assert_eq!(names("hub", "0.0.0.0"), ["hub", "localhost", "127.0.0.1"]);
    }
}
