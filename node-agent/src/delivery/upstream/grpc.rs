//! A gRPC link: OIP v2 over one multiplexed HTTP/2 connection per upstream (TLS for https),
//! tensors as raw bytes, the request context as call metadata and the deadline as
//! `grpc-timeout`.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{Call, error_chain, read_ca_file};
use crate::error::{Error, Result, UpstreamError};
use crate::wire::InferResponse;
use crate::wire::context::{GRPC_TIMEOUT_HEADER, format_grpc_timeout};
use crate::wire::grpc::{self, proto};
use idn_contract::config::UpstreamConfig;
use proto::grpc_inference_service_client::GrpcInferenceServiceClient;

pub(super) struct GrpcLink {
    client: GrpcInferenceServiceClient<Channel>,
}

impl GrpcLink {
    /// Sets up the channel; it connects on the first call and reconnects after a failure.
    pub(super) fn new(config: &UpstreamConfig, max_body_bytes: usize) -> Result<Self> {
        let invalid = |message: String| Error::UpstreamUrl {
            upstream: config.name.clone(),
            message,
        };
        let mut endpoint = Endpoint::from_shared(config.url.clone())
            .map_err(|e| invalid(e.to_string()))?
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if config.url.starts_with("https://") {
            let tls = match config.ca_file.as_deref() {
                Some(path) => {
                    let pem = read_ca_file(path)?.pem;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| invalid(error_chain(None, &e)))?;
        }
        let client = GrpcInferenceServiceClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(max_body_bytes)
            .max_encoding_message_size(max_body_bytes);
        Ok(GrpcLink { client })
    }

    pub(super) async fn infer(
        &self,
        call: Call<'_>,
        timeout: Duration,
    ) -> Result<InferResponse, UpstreamError> {
        let upstream = call.upstream;
        let message =
            grpc::encode_request(call.service, call.request_id, call.inputs, &[call.output]);
        let mut request = tonic::Request::new(message);
        // The budget, for a server that does not read idn's deadline header.
        request.metadata_mut().insert(
            GRPC_TIMEOUT_HEADER,
            MetadataValue::try_from(format_grpc_timeout(timeout)).expect("digits and a unit"),
        );
        for (key, value) in &call.headers {
            let value =
                MetadataValue::try_from(value.as_str()).map_err(|e| UpstreamError::Invalid {
                    upstream: upstream.to_owned(),
                    message: format!("cannot build the request: {key}: {e}"),
                })?;
            request.metadata_mut().insert(*key, value);
        }
        let response = self
            .client
            .clone()
            .model_infer(request)
            .await
            .map_err(|status| status_error(upstream, status, timeout))?;
        grpc::decode_response(response.into_inner()).map_err(|e| UpstreamError::Invalid {
            upstream: upstream.to_owned(),
            message: e.to_string(),
        })
    }
}

/// What a failed call says: a transport failure (no answer came) or the upstream's status.
fn status_error(upstream: &str, status: tonic::Status, timeout: Duration) -> UpstreamError {
    let source = std::error::Error::source(&status);
    // The channel's own timer, on the `grpc-timeout` sent (it races the caller's).
    let mut causes = std::iter::successors(source, |e| e.source());
    if causes.any(|e| e.is::<tonic::TimeoutExpired>()) {
        return UpstreamError::Timeout {
            upstream: upstream.to_owned(),
            timeout_ms: timeout.as_millis(),
        };
    }
    match source {
        Some(cause) => UpstreamError::Unreachable {
            upstream: upstream.to_owned(),
            message: error_chain(Some(status.message()), cause),
        },
        None => UpstreamError::GrpcStatus {
            upstream: upstream.to_owned(),
            code: status.code(),
            message: status.message().to_owned(),
        },
    }
}
