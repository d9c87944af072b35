//! TLS on the node's ports: the certificate read once at start ([`server_config`]), one
//! acceptor per port offering that port's protocol by ALPN, and [`Stream`], the connection a
//! server speaks over, plain TCP or TLS. A client speaking plain HTTP to a TLS port gets a 400
//! saying so, rather than a connection closed without a word.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use idn_contract::config::TlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::response::error_response;
use crate::error::{Error, RequestError, Result};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake (RFC 8446, `ContentType.handshake`).
const TLS_HANDSHAKE: u8 = 0x16;

/// Reads the node's certificate chain and key; fails when a file is missing, holds no PEM
/// certificate or key, or the key does not match the certificate.
pub(crate) fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>> {
    let cert_error = |message: String| Error::Tls {
        path: config.cert_file.clone(),
        message,
    };
    let key_error = |message: String| Error::Tls {
        path: config.key_file.clone(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&config.cert_file)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no certificate in the file".to_owned()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| key_error(e.to_string()))?;
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => key_error(format!(
                    "the key is not that of the certificate in {}",
                    config.cert_file.display()
                )),
                e => key_error(e.to_string()),
            })?;
    Ok(Arc::new(server))
}

/// An acceptor for one port, offering `alpn` (`http/1.1` for REST, `h2` for gRPC).
pub(super) fn acceptor(config: &ServerConfig, alpn: &[u8]) -> TlsAcceptor {
    let mut config = config.clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Completes the TLS handshake of an accepted connection. None when the client spoke plain
/// HTTP (it is answered 400), gave up, took too long or refused the certificate.
pub(super) async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream) -> Option<Stream> {
    let peer = tcp.peer_addr().ok();
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return None;
    }
    if first[0] != TLS_HANDSHAKE {
        refuse_plain(tcp).await;
        return None;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(Stream::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?peer, "TLS handshake timed out");
            None
        }
    }
}

/// Answers one plain-HTTP request on a TLS port with 400, and closes.
async fn refuse_plain(tcp: TcpStream) {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let refusal = service_fn(|_| async {
        let error = RequestError::Invalid("this port serves HTTPS; call it with https://".into());
        Ok::<_, std::convert::Infallible>(error_response(&error))
    });
    let _ = builder.serve_connection(TokioIo::new(tcp), refusal).await;
}

/// A connection as the HTTP servers see it: plain TCP, or TLS over TCP.
pub(super) enum Stream {
    Plain(TcpStream),
    // Boxed: a rustls connection is some kilobytes, a TcpStream a handle.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
