//! `idn-node-agent`: serves the models of one IDN node over the Open Inference Protocol v2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use idn_contract::config::NodeAgentConfig;
use idn_node_agent::node::Node;
use idn_node_agent::server;
use idn_telemetry::{self as telemetry, LogFormat};

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Node-agent config file (YAML, kind NodeAgentConfig).
    #[arg(short, long, env = "IDN_CONFIG")]
    config: PathBuf,
    /// Listen address, overriding the config's `listen`.
    #[arg(long, env = "IDN_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// gRPC listen address, overriding the config's `grpcListen`.
    #[arg(long, env = "IDN_GRPC_LISTEN")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text", env = "IDN_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level, used when RUST_LOG is not set.
    #[arg(long, default_value = "info", env = "IDN_LOG_LEVEL")]
    log_level: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _telemetry = telemetry::init(args.log_format, &args.log_level, "idn-node-agent");
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("idn-node-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> idn_node_agent::Result<()> {
    let mut config = NodeAgentConfig::load(&args.config)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(grpc_listen) = args.grpc_listen {
        config.grpc_listen = Some(grpc_listen);
    }
    let listeners = server::bind(&config).await?;
    let node = Node::start(config)?;
    tracing::info!(
        node = %node.config().node,
        addr = %listeners.rest_addr(),
        grpc = ?listeners.grpc_addr(),
        "serving the Open Inference Protocol v2"
    );
    server::serve(node, listeners, telemetry::shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}
