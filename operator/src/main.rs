//! `idn-operator`: the controller of idn, reconciling inference delivery networks into
//! node-agent Deployments (in a cluster, or against any KUBECONFIG).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use idn_telemetry::{self as telemetry, LogFormat};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio::sync::watch;

use idn_contract::names::MANAGER;
use idn_operator::controller::{self, Context};
use idn_operator::endpoints::{self, Health};
use idn_operator::leader::{LeaderElection, Timing};
use idn_operator::metrics::OperatorMetrics;
use idn_operator::render::{OtlpExport, Settings};

/// idn-operator: reconcile inference delivery networks into node-agent Deployments.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "idn-operator", version)]
struct Args {
    /// Namespace whose networks are reconciled; repeat for several; none means all.
    #[arg(long = "watch-namespace", value_name = "NS")]
    watch_namespaces: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Node-agent image for networks that name none.
    #[arg(long, value_name = "IMAGE")]
    agent_image: Option<String>,
    /// Image of the init container that downloads models (needs sh, curl and sha256sum).
    #[arg(long, value_name = "IMAGE")]
    fetch_image: Option<String>,
    /// OTLP collector the node-agents export their spans to; by default the one the operator
    /// exports its own to. None: node-agents export nothing.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// OTLP protocol of the node-agents' export (default: the operator's).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_name = "PROTOCOL")]
    otlp_protocol: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level, used when RUST_LOG is not set.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Reconcile without taking the leader lease (a single replica, or local runs).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader lease.
    #[arg(long, default_value = "idn-operator")]
    lease_name: String,
    /// This replica's identity in the lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let _telemetry = telemetry::init(args.log_format, &args.log_level, "idn-operator");
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(operate(&args)));
    result.unwrap_or_else(|error| {
        // `{:#}` prints the whole chain of causes on one line.
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

async fn operate(args: &Args) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(OperatorMetrics::default());
    let health = serve_endpoints(args.metrics_addr, &metrics).await?;

    let client = Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    health.ready.store(true, Ordering::Relaxed);
    let shutdown = shutdown_trigger();
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "idn".to_owned()),
            std::process::id()
        )
    });
    // The election and when this replica took the lease; none without leader election.
    let mut leading = None;
    if !args.no_leader_election {
        let leases = Api::<Lease>::namespaced(client.clone(), &args.lease_namespace);
        let mut election =
            LeaderElection::new(leases, &args.lease_name, &identity, Timing::default());
        tracing::info!(lease = %args.lease_name, %identity, "waiting for the leader lease");
        let acquired = tokio::select! {
            at = election.acquire() => at,
            () = shutdown() => return Ok(ExitCode::SUCCESS),
        };
        tracing::info!("leading");
        leading = Some((election, acquired));
    }
    metrics.leader.set(1);

    let reporter = Reporter {
        controller: MANAGER.to_owned(),
        instance: Some(identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Context::new(
        client,
        settings(args),
        recorder,
        Arc::clone(&metrics),
    ));
    let namespaces: Vec<Option<&str>> = if args.watch_namespaces.is_empty() {
        vec![None]
    } else {
        args.watch_namespaces
            .iter()
            .map(|n| Some(n.as_str()))
            .collect()
    };
    let controllers = futures_util::future::join_all(
        namespaces
            .into_iter()
            .map(|namespace| controller::run(Arc::clone(&ctx), namespace, shutdown())),
    );
    let lost = match &mut leading {
        Some((election, acquired)) => tokio::select! {
            _ = controllers => false,
            () = election.hold(*acquired) => true,
        },
        None => {
            controllers.await;
            false
        }
    };
    metrics.leader.set(0);
    if lost {
        // Another replica may already reconcile: stop at once and let the pod restart.
        tracing::error!("lost the leader lease; exiting");
        return Ok(ExitCode::FAILURE);
    }
    if let Some((election, _)) = &leading {
        election.release().await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Serves /metrics, /healthz and /readyz; readiness starts false.
async fn serve_endpoints(
    addr: SocketAddr,
    metrics: &Arc<OperatorMetrics>,
) -> anyhow::Result<Arc<Health>> {
    let health = Arc::new(Health {
        metrics: Arc::clone(metrics),
        ready: false.into(),
    });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    tokio::spawn(endpoints::serve(listener, Arc::clone(&health)));
    Ok(health)
}

/// A function giving, on each call, a future that resolves on SIGTERM or Ctrl-C: one for each
/// controller and one for the wait for the lease.
fn shutdown_trigger() -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        telemetry::shutdown_signal().await;
        let _ = stop.send(true);
    });
    move || {
        let mut stopped = stopped.clone();
        Box::pin(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
    }
}

/// Rendering settings: the defaults, with the images and the OTLP collector the flags name.
fn settings(args: &Args) -> Settings {
    let mut settings = Settings::default();
    if let Some(image) = &args.agent_image {
        settings.agent_image = image.clone();
    }
    if let Some(image) = &args.fetch_image {
        settings.fetch_image = image.clone();
    }
    settings.otlp = args.otlp_endpoint.clone().map(|endpoint| OtlpExport {
        endpoint,
        protocol: args.otlp_protocol.clone(),
    });
    settings
}
