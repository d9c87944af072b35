//! Calls to upstream nodes over OIP v2, REST ([`rest`]) or gRPC ([`grpc`]) as each link says:
//! pooled connections per upstream, timeouts bounded by the request deadline, an optional
//! bearer token and CA, the request context headers, and an optional emulated link delay.

mod grpc;
mod rest;

use std::path::Path;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::UpstreamCall;
use crate::error::{Error, Result, UpstreamError};
use crate::trace;
use crate::wire::InferResponse;
use crate::wire::context::RequestContext;
use crate::wire::tensor::Tensor;
use idn_contract::config::{Protocol, UpstreamConfig};

struct Upstream {
    config: UpstreamConfig,
    token: Option<String>,
    link: Link,
}

/// The client of one upstream, in the protocol of its link.
// One per upstream, built once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Link {
    Rest(rest::RestLink),
    Grpc(grpc::GrpcLink),
}

/// One call as a link makes it: what to ask, on whose behalf, with what headers.
struct Call<'a> {
    upstream: &'a str,
    service: &'a str,
    output: &'a str,
    inputs: &'a [Tensor],
    request_id: Option<&'a str>,
    /// The request context's headers for the next hop, and the bearer token.
    headers: Vec<(&'static str, String)>,
}

/// The upstreams of this node, in config order: services address them by index.
pub(crate) struct Upstreams {
    upstreams: Vec<Upstream>,
}

impl Upstreams {
    /// Reads each upstream's token and CA files and sets up its client; a missing or
    /// unreadable file is a start-up error.
    pub(crate) fn new(configs: &[UpstreamConfig], max_body_bytes: usize) -> Result<Self> {
        let upstreams = configs
            .iter()
            .map(|config| {
                let token = config.token_file.as_deref().map(read_token).transpose()?;
                let link = match config.protocol {
                    Protocol::Rest => Link::Rest(rest::RestLink::new(config, max_body_bytes)?),
                    Protocol::Grpc => Link::Grpc(grpc::GrpcLink::new(config, max_body_bytes)?),
                };
                Ok(Upstream {
                    config: config.clone(),
                    token,
                    link,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Upstreams { upstreams })
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
            upstream: up.config.name.clone(),
            timeout_ms: timeout.as_millis(),
        };
        if timeout.is_zero() {
            return Err(timed_out());
        }
        let mut headers = context.forward_headers(node, trace::current_span_ids());
        if let Some(token) = &up.token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let call = Call {
            upstream: &up.config.name,
            service: call.service,
            output: call.output,
            inputs,
            request_id: context.request_id.as_deref(),
            headers,
        };
        let answer = async {
            match &up.link {
                Link::Rest(link) => link.infer(call).await,
                Link::Grpc(link) => link.infer(call, timeout).await,
            }
        };
        let response = tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| timed_out())??;
        Ok((response, start.elapsed()))
    }
}

/// The CA bundle of an upstream reached over TLS: the PEM text (what tonic takes) and its
/// certificates (what rustls takes), read and checked once.
struct CaBundle {
    pem: Vec<u8>,
    certs: Vec<CertificateDer<'static>>,
}

fn read_ca_file(path: &Path) -> Result<CaBundle> {
    let invalid = |e: &dyn std::fmt::Display| Error::CaFile {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let pem = std::fs::read(path).map_err(|e| invalid(&e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    if certs.is_empty() {
        return Err(invalid(&"no certificate in the file"));
    }
    Ok(CaBundle { pem, certs })
}

/// Reads a bearer token file, trimming the trailing newline editors and `kubectl create secret`
/// leave.
pub(crate) fn read_token(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|source| Error::TokenFile {
            path: path.to_owned(),
            source,
        })
}

/// The error and its causes on one line ("client error (Connect): tcp connect error: ..."),
/// after `context` when given; a cause that only repeats what is already said is left out.
fn error_chain(context: Option<&str>, error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = context.map(str::to_owned).into_iter().collect();
    let mut source = Some(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_chain_says_each_cause_once() {
        let refused = Layer("Connection refused", None);
        let connect = Layer("tcp connect error", Some(Box::new(refused)));
        let error = Layer("transport error", Some(Box::new(connect)));
        assert_eq!(
            error_chain(Some("tcp connect error"), &error),
            "tcp connect error: transport error: Connection refused"
        );
        assert_eq!(
            error_chain(None, &error),
            "transport error: tcp connect error: Connection refused"
        );
    }
}
