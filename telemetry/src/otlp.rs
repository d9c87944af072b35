//! OTLP export of spans, on only when the standard variables name an endpoint
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`). Spans go through a
//! batch processor, which exports from a thread of its own: requests never wait for the
//! collector. The exporter reads the endpoint, headers and compression from the environment
//! itself; this module decides whether to export and under which service name.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Variables naming the collector, the traces-only one first (it wins).
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
const PROTOCOL_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];
const SERVICE_NAME_VAR: &str = "OTEL_SERVICE_NAME";
/// The protocol spoken: the OTLP default, and one the workspace's HTTP client can carry.
const HTTP_PROTOBUF: &str = "http/protobuf";
/// OTLP's default export timeout.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the environment asks of trace export, when it asks for it.
#[derive(Debug, PartialEq)]
pub(crate) struct ExportConfig {
    pub service_name: String,
}

/// Reads the export settings through `var` (the process environment outside tests): none when
/// no endpoint is set, an error for a protocol other than http/protobuf.
pub(crate) fn export_config(
    var: impl Fn(&str) -> Option<String>,
    default_service: &str,
) -> Result<Option<ExportConfig>, String> {
    let set = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if ENDPOINT_VARS.iter().all(|v| set(v).is_none()) {
        return Ok(None);
    }
    if let Some(protocol) = PROTOCOL_VARS.iter().find_map(|v| set(v))
        && protocol != HTTP_PROTOBUF
    {
        return Err(format!(
            "OTLP protocol {protocol:?} is not supported (use {HTTP_PROTOBUF})"
        ));
    }
    Ok(Some(ExportConfig {
        service_name: set(SERVICE_NAME_VAR).unwrap_or_else(|| default_service.to_owned()),
    }))
}

/// A tracer provider exporting spans in batches to the configured collector.
pub(crate) fn provider(config: ExportConfig) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(BlockingHyper::new())
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name)
                .build(),
        )
        .build())
}

/// hyper (http and https) on a runtime of its own. The batch processor exports from a plain
/// thread, where hyper finds no reactor, and the process's runtime may not exist yet (the
/// operator starts it after logging) or be gone already when the last spans are flushed. The
/// runtime is built on the first export, so that it lives and dies on the exporting thread (a
/// runtime must not be dropped in async code).
#[derive(Debug)]
struct BlockingHyper {
    runtime: OnceLock<std::io::Result<tokio::runtime::Runtime>>,
    client: HyperClient<HttpsConnector<HttpConnector>>,
}

impl BlockingHyper {
    fn new() -> Self {
        let mut roots = rustls::RootCertStore::empty();
        // An unreadable system certificate is skipped: the others still verify.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        BlockingHyper {
            runtime: OnceLock::new(),
            client: HyperClient::new(connector, EXPORT_TIMEOUT, None),
        }
    }
}

#[async_trait]
impl HttpClient for BlockingHyper {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self
            .runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .as_ref()
            .map_err(|e| format!("cannot start the OTLP export runtime: {e}"))?;
        runtime.block_on(self.client.send_bytes(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Option<ExportConfig>, String> {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        export_config(lookup, "idn-node-agent")
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        assert_eq!(config(&[]), Ok(None));
        let no_endpoint = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        assert_eq!(config(&no_endpoint), Ok(None));
    }

    #[test]
    fn either_endpoint_turns_export_on_with_the_service_name() {
        let default = Some(ExportConfig {
            service_name: "idn-node-agent".into(),
        });
        assert_eq!(
            config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
            Ok(default)
        );
        let named = config(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            ),
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        assert_eq!(named.unwrap().unwrap().service_name, "edge");
    }

    #[test]
    fn only_http_protobuf_is_spoken() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let grpc = config(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(grpc.contains("\"grpc\" is not supported"), "{grpc}");
        // The traces-only variable wins over the general one.
        let traces = config(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert!(traces.unwrap().is_some());
    }
}
