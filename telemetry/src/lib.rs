//! What every idn process (node-agent, operator, tools) sets up alike: structured logs through
//! `tracing` — human-readable text by default, one JSON object per line for log collectors,
//! the filter from `RUST_LOG` else the given level — the export of its spans to an OTLP
//! collector when one is configured, the signal that stops it, and the [`exposition`] of
//! metrics to scrapers.

pub mod exposition;
mod otlp;
pub mod trace;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps spans flowing to the collector; dropping it flushes the last ones (keep it until the
/// process exits).
#[must_use = "dropping it ends trace export"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "cannot flush the last spans");
        }
    }
}

/// Installs the global subscriber: logs, and spans exported as `service` (unless
/// `OTEL_SERVICE_NAME` names another) when an OTLP endpoint is configured. Later calls are
/// ignored (tests start several agents).
pub fn init(format: LogFormat, level: &str, service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour codes only where a person reads them, not in log files or `kubectl logs`.
    let logs = fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let traces = otlp::export_config(|name| std::env::var(name).ok(), service)
        .and_then(|config| config.map(otlp::provider).transpose());
    let provider = traces.as_ref().ok().and_then(Option::as_ref);
    // The spans of idn's own code, whatever the log level: logs and traces are filtered apart,
    // so turning traces on leaves the logs as they were.
    let spans = provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("idn"))
            .with_filter(filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("idn_")
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .is_ok();
    match traces {
        Err(problem) => {
            tracing::warn!("traces are not exported: {problem}");
            Telemetry { traces: None }
        }
        Ok(provider) => Telemetry {
            traces: provider.filter(|_| installed),
        },
    }
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutdown signal received");
}
