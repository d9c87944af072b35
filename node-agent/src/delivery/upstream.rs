//! Calls to upstream nodes over OIP v2: a pooled keep-alive HTTP(S) client per upstream,
//! timeouts bounded by the request deadline, an optional bearer token and CA, the request
//! context headers, and an optional emulated link delay.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::UpstreamCall;
use crate::error::{Error, Result, UpstreamError};
use crate::trace;
use crate::wire::context::RequestContext;
use crate::wire::tensor::Tensor;
use crate::wire::{self, InferResponse, Parameters};
use idn_contract::config::UpstreamConfig;

struct Upstream {
    config: UpstreamConfig,
    base: String,
    token: Option<String>,
    /// Keep-alive connections to this upstream (TLS for https, with its own trusted CAs).
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// The upstreams of this node, in config order: services address them by index.
pub(crate) struct Upstreams {
    upstreams: Vec<Upstream>,
    max_body_bytes: usize,
}

impl Upstreams {
    /// Reads each upstream's token and CA files; a missing or unreadable one is a start-up
    /// error.
    pub(crate) fn new(configs: &[UpstreamConfig], max_body_bytes: usize) -> Result<Self> {
        let upstreams = configs
            .iter()
            .map(|config| {
                let token = config.token_file.as_deref().map(read_token).transpose()?;
                Ok(Upstream {
                    base: config.url.trim_end_matches('/').to_owned(),
                    client: client(config.ca_file.as_deref())?,
                    config: config.clone(),
                    token,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Upstreams {
            upstreams,
            max_body_bytes,
        })
    }

    /// Makes `call` for `inputs` on behalf of node `node`, returning the response and how
    /// long the call took (link delay included).
    pub(crate) async fn infer(
        &self,
        call: UpstreamCall<'_>,
        inputs: &[Tensor],
        context: &RequestContext,
        node: &str,
    ) -> Result<(InferResponse, Duration), UpstreamError> {
        let start = Instant::now();
        let up = &self.upstreams[call.upstream];
        if up.config.delay_ms > 0 {
            let delay = Duration::from_millis(up.config.delay_ms).min(context.remaining());
            // tokio's timer rounds up to whole milliseconds (+0.5 ms on average, 10% of a 5 ms
            // link); a blocking-pool sleep keeps the emulated latency within ~0.1 ms.
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(delay)).await;
        }
        let timeout = Duration::from_millis(up.config.timeout_ms).min(context.remaining());
        let timed_out = || UpstreamError::Timeout {
            upstream: up.name(),
            timeout_ms: timeout.as_millis(),
        };
        if timeout.is_zero() {
            return Err(timed_out());
        }
        let request = up.request(call, inputs, context, node)?;
        let (parts, body) = tokio::time::timeout(timeout, up.send(request, self.max_body_bytes))
            .await
            .map_err(|_| timed_out())??;
        let response = up.answer(&parts, &body)?;
        Ok((response, start.elapsed()))
    }
}

impl Upstream {
    fn name(&self) -> String {
        self.config.name.clone()
    }

    /// The OIP request for `call` here, with the request context's headers and the token.
    fn request(
        &self,
        call: UpstreamCall<'_>,
        inputs: &[Tensor],
        context: &RequestContext,
        node: &str,
    ) -> Result<Request<Full<Bytes>>, UpstreamError> {
        let body = wire::encode_request(
            context.request_id.as_deref(),
            &Parameters::new(),
            inputs,
            &[call.output],
            self.config.binary_data,
        );
        let url = format!("{}/v2/models/{}/infer", self.base, call.service);
        let mut request = Request::post(url).header(CONTENT_TYPE, "application/json");
        if let Some(length) = body.header_length {
            request = request.header(wire::HEADER_LENGTH, length);
        }
        for (header, value) in context.forward_headers(node, trace::current_span_ids()) {
            request = request.header(header, value);
        }
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request
            .body(Full::new(body.bytes))
            .map_err(|e| UpstreamError::Invalid {
                upstream: self.name(),
                message: format!("cannot build the request: {e}"),
            })
    }

    /// Sends `request` and reads the whole answer, up to `max_body_bytes`.
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        max_body_bytes: usize,
    ) -> Result<(http::response::Parts, Bytes), UpstreamError> {
        let response =
            self.client
                .request(request)
                .await
                .map_err(|e| UpstreamError::Unreachable {
                    upstream: self.name(),
                    message: error_chain(&e),
                })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, max_body_bytes)
            .collect()
            .await
            .map_err(|e| UpstreamError::Invalid {
                upstream: self.name(),
                message: format!("cannot read the body: {e}"),
            })?
            .to_bytes();
        Ok((parts, body))
    }

    /// The decoded response of a call that succeeded; the upstream's status and error message
    /// otherwise.
    fn answer(
        &self,
        parts: &http::response::Parts,
        body: &[u8],
    ) -> Result<InferResponse, UpstreamError> {
        if !parts.status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
            return Err(UpstreamError::Status {
                upstream: self.name(),
                status: parts.status,
                message,
            });
        }
        let header_length = parts
            .headers
            .get(wire::HEADER_LENGTH)
            .and_then(|v| v.to_str().ok());
        wire::decode_response(body, header_length).map_err(|e| UpstreamError::Invalid {
            upstream: self.name(),
            message: e.to_string(),
        })
    }
}

/// A pooled client speaking http, and https trusting the CAs of `ca_file` (else the system's).
fn client(
    ca_file: Option<&std::path::Path>,
) -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let invalid = |e: &dyn std::fmt::Display| Error::CaFile {
                path: path.to_owned(),
                message: e.to_string(),
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| invalid(&e))? {
                roots
                    .add(cert.map_err(|e| invalid(&e))?)
                    .map_err(|e| invalid(&e))?;
            }
            if roots.is_empty() {
                return Err(invalid(&"no certificate in the file"));
            }
        }
        // An unreadable system certificate is skipped: the others still verify.
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// Reads a bearer token file, trimming the trailing newline editors and `kubectl create secret`
/// leave.
pub(crate) fn read_token(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|source| Error::TokenFile {
            path: path.to_owned(),
            source,
        })
}

/// The error and its causes on one line ("client error (Connect): tcp connect error: ...").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
