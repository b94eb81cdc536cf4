//! TLS for the API port and the push port (rustls, the `ring` provider).
//!
//! `[tls] cert_file` and `key_file` name a PEM certificate chain and its private key (PKCS#8,
//! PKCS#1 or SEC1). With them the API port speaks HTTPS only, offering ALPN `h2` and `http/1.1`,
//! and the push port speaks the push protocol inside TLS. [`Tls::reload`] (SIGHUP) reads both files
//! again: handshakes from then on present the new certificate, connections already open keep
//! theirs; a pair that cannot be read or does not match leaves the old one serving.
//!
//! A connection whose first byte is not a TLS handshake record is refused without a handshake:
//! the API port answers a plain HTTP `400` saying that it speaks HTTPS, the push port closes. One
//! deadline ([`HANDSHAKE_TIMEOUT`]) covers the first byte and the whole handshake.
//! Client certificates are not asked for: clients are authenticated by their signatures.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How long a client may take, from connecting, to send its first byte and finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused plaintext client is read from (and its bytes dropped) before the close, so
/// that the answer is not lost to a reset of a socket with unread input.
const PLAINTEXT_DRAIN: Duration = Duration::from_millis(200);

/// The certificate being served, swapped whole on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// A TLS acceptor whose certificate can be reloaded.
pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: Arc<Current>,
    http: tokio_rustls::TlsAcceptor,
    push: tokio_rustls::TlsAcceptor,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(cert_file: &PathBuf, key_file: &PathBuf) -> Result<CertifiedKey, String> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert_file)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let signer = provider().key_provider.load_private_key(key).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let certified = CertifiedKey::new(certs, signer);
    certified
        .keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key_file.display(), cert_file.display()))?;
    Ok(certified)
}

fn acceptor(current: &Arc<Current>, alpn: &[&[u8]]) -> Result<tokio_rustls::TlsAcceptor, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(current.clone());
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

impl Tls {
    /// Reads the certificate and key; an error says which file and why.
    pub fn new(cert_file: PathBuf, key_file: PathBuf) -> Result<Tls, String> {
        let current = Arc::new(Current(RwLock::new(Arc::new(load(&cert_file, &key_file)?))));
        let http = acceptor(&current, &[b"h2", b"http/1.1"])?;
        let push = acceptor(&current, &[b"sluice-push"])?;
        Ok(Tls { cert_file, key_file, current, http, push })
    }

    /// Reads both files again and serves them from the next handshake on; on an error the
    /// certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = load(&self.cert_file, &self.key_file)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The API port's handshake. `None`: the client spoke plaintext (answered with a 400) or the
    /// handshake failed.
    pub async fn accept_http(&self, stream: TcpStream) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        self.accept(stream, &self.http, Some(PLAINTEXT_TO_HTTPS)).await
    }

    /// The push port's handshake.
    pub async fn accept_push(&self, stream: TcpStream) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        self.accept(stream, &self.push, None).await
    }

    async fn accept(
        &self,
        mut stream: TcpStream,
        acceptor: &tokio_rustls::TlsAcceptor,
        plaintext_answer: Option<&[u8]>,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            _ => return None,
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if let Some(answer) = plaintext_answer {
                let _ = tokio::time::timeout_at(deadline, stream.write_all(answer)).await;
                let _ = stream.shutdown().await;
                // Closing a socket with unread input sends a reset, which can destroy the answer
                // before the client reads it: the request's bytes are read and dropped first.
                let drain = async {
                    let mut sink = [0u8; 4096];
                    while matches!(tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await, Ok(n) if n > 0) {}
                };
                let _ = tokio::time::timeout(PLAINTEXT_DRAIN, drain).await;
            }
            tracing::debug!("plaintext on a TLS port refused");
            return None;
        }
        match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => None,
        }
    }
}

/// What a plaintext HTTP request to the HTTPS port is answered.
const PLAINTEXT_TO_HTTPS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\
Content-Length: 46\r\n\r\nThis port speaks HTTPS: use an https:// URL.\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plaintext_answer_is_well_framed() {
        let text = std::str::from_utf8(PLAINTEXT_TO_HTTPS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head.split("Content-Length: ").nth(1).unwrap().trim().parse().unwrap();
        assert_eq!(declared, body.len());
    }

    #[test]
    fn loads_reloads_and_refuses_a_mismatched_pair() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write("cert.pem", a.cert.pem());
        let key = write("key.pem", a.key_pair.serialize_pem());
        let tls = Tls::new(cert.clone(), key.clone()).unwrap();
        let served = || tls.current.0.read().unwrap().cert[0].clone();
        assert_eq!(served().as_ref(), a.cert.der().as_ref());
        // A certificate without its key: refused, the old pair stays.
        write("cert.pem", b.cert.pem());
        let e = tls.reload().unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert_eq!(served().as_ref(), a.cert.der().as_ref());
        write("key.pem", b.key_pair.serialize_pem());
        tls.reload().unwrap();
        assert_eq!(served().as_ref(), b.cert.der().as_ref());
        write("cert.pem", "not pem".into());
        assert!(tls.reload().unwrap_err().contains("no certificate"));
        let missing = Tls::new(dir.path().join("missing.pem"), key).err().unwrap();
        assert!(missing.contains("missing.pem"), "{missing}");
    }
}
