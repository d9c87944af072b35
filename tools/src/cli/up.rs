//! `idn up -f <manifests>`: run a whole network on this machine, on loopback, and apply the
//! manifests again whenever they change.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use idn_telemetry::{self as telemetry, LogFormat};
use kube::ResourceExt;

use crate::local::{Fingerprint, LocalNetwork, NotReloaded, Options, Reloaded};
use idn_operator::manifests::Manifests;
use idn_operator::resources::InferenceDeliveryNetwork;

/// Arguments of `idn up`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Example: idn up -f examples/mnist/ --latency access/edge=5 --latency edge/cloud=40"
)]
pub struct Args {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// First port; nodes serve REST on consecutive ports from here and gRPC from 100 above
    /// (0: any free ports).
    #[arg(long, default_value_t = 8101)]
    pub base_port: u16,
    /// Log level of the nodes (RUST_LOG overrides).
    #[arg(long, default_value = "warn")]
    pub log_level: String,
    /// Directory where nodes whose services learn keep what they learned (`<node>.json`), so
    /// the next `idn up` resumes from it [default: each run starts afresh]
    #[arg(long, value_name = "DIR")]
    pub learned_state: Option<PathBuf>,
    /// Do not watch the manifests [default: when they change, the nodes whose config changed
    /// restart on their ports]
    #[arg(long)]
    pub no_watch: bool,
}

/// Which network to run, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// Manifest files or directories, as for `kubectl apply -f`.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// The InferenceDeliveryNetwork to run, when the manifests hold several.
    #[arg(long)]
    pub network: Option<String>,
    /// Directory holding the model files (found by sha256, then by name); repeatable
    /// [default: next to the manifests, and ../models]
    #[arg(long = "models", value_name = "DIR")]
    pub model_dirs: Vec<PathBuf>,
    /// Emulated latency of a link in milliseconds, overriding the manifests: NODE/LINK=MS.
    #[arg(long = "latency", value_name = "NODE/LINK=MS", value_parser = parse_latency)]
    pub latencies: Vec<((String, String), u64)>,
}

fn parse_latency(text: &str) -> Result<((String, String), u64), String> {
    let (link, ms) = text.split_once('=').ok_or("expected NODE/LINK=MS")?;
    let (node, link) = link.split_once('/').ok_or("expected NODE/LINK=MS")?;
    let ms = ms
        .trim_end_matches("ms")
        .parse()
        .map_err(|_| format!("{ms:?} is not a number of milliseconds"))?;
    Ok(((node.to_owned(), link.to_owned()), ms))
}

impl NetworkArgs {
    /// The manifests and the network chosen from them.
    pub fn load(&self) -> anyhow::Result<(Manifests, InferenceDeliveryNetwork)> {
        if self.files.is_empty() {
            bail!("give the network's manifests with -f FILE_OR_DIRECTORY");
        }
        let manifests = Manifests::load(&self.files)?;
        let network = match &self.network {
            Some(name) => manifests
                .networks
                .iter()
                .find(|n| &n.name_any() == name)
                .ok_or_else(|| anyhow!("no InferenceDeliveryNetwork {name:?} in the manifests"))?,
            None => match manifests.networks.as_slice() {
                [one] => one,
                [] => bail!("no InferenceDeliveryNetwork in the manifests"),
                _ => bail!("the manifests hold several networks: choose one with --network"),
            },
        }
        .clone();
        Ok((manifests, network))
    }

    /// Options for a local network on ports from `base_port`.
    pub fn options(&self, base_port: u16) -> Options {
        let model_dirs = if self.model_dirs.is_empty() {
            self.files
                .iter()
                .flat_map(|f| {
                    let dir = if f.is_dir() {
                        f.clone()
                    } else {
                        f.parent()
                            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
                    };
                    [dir.clone(), dir.join("models"), dir.join("../models")]
                })
                .collect()
        } else {
            self.model_dirs.clone()
        };
        Options {
            model_dirs,
            base_port,
            latency_ms: self.latencies.iter().cloned().collect::<HashMap<_, _>>(),
            learned_state: None,
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let _telemetry = telemetry::init(LogFormat::Text, &args.log_level, "idn");
    // Before loading: a change made while the nodes start is a change to apply.
    let loaded = Fingerprint::of(&args.network.files);
    let (manifests, network) = args.network.load()?;
    let options = Options {
        learned_state: args.learned_state.clone(),
        ..args.network.options(args.base_port)
    };
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(async {
            let mut running = LocalNetwork::start(&manifests, &network, &options).await?;
            print_network(&running, &network, !args.no_watch);
            if args.no_watch {
                telemetry::shutdown_signal().await;
            } else {
                watch(&mut running, &args.network, loaded).await;
            }
            eprintln!("stopping {} nodes", running.nodes.len());
            running.stop().await;
            Ok(ExitCode::SUCCESS)
        })
}

/// How often the manifests are read for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Reloads `running` whenever the manifests' contents differ from those `loaded`, until Ctrl-C
/// or SIGTERM. A reload, once begun, finishes before the signal is heeded, so no node is left
/// half-restarted.
async fn watch(running: &mut LocalNetwork, args: &NetworkArgs, loaded: Fingerprint) {
    let shutdown = telemetry::shutdown_signal();
    tokio::pin!(shutdown);
    let mut seen = loaded;
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let now = Fingerprint::of(&args.files);
        if now == seen {
            continue;
        }
        seen = now;
        match reload(running, args).await {
            Ok(reloaded) => {
                let mut stdout = std::io::stdout().lock();
                // A script waiting for the new revision reads this line.
                let _ = writeln!(stdout, "{reloaded}").and_then(|()| stdout.flush());
            }
            Err(failed) => eprintln!("not reloaded: {failed}"),
        }
    }
}

/// Loads the manifests of `args` again and applies them to `running`.
pub async fn reload(
    running: &mut LocalNetwork,
    args: &NetworkArgs,
) -> Result<Reloaded, NotReloaded> {
    let (manifests, network) = args.load()?;
    running.reload(&manifests, &network).await
}

fn print_network(running: &LocalNetwork, network: &InferenceDeliveryNetwork, watching: bool) {
    println!(
        "network {}: {} nodes on loopback\n",
        running.name,
        running.nodes.len()
    );
    println!(
        "{:<10} {:<9} {:<17} {:<17} {:<14} {:<16} links",
        "node", "tier", "address", "grpc", "services", "models"
    );
    for node in &running.nodes {
        let spec = network.spec.nodes.iter().find(|n| n.name == node.name);
        let links: Vec<String> = spec
            .map(|s| {
                s.links
                    .iter()
                    .map(|l| {
                        format!(
                            "{} -> {}",
                            l.name,
                            l.node
                                .as_deref()
                                .or(l.endpoint.as_ref().map(|e| e.url.as_str()))
                                .unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{:<10} {:<9} {:<17} {:<17} {:<14} {:<16} {}",
            node.name,
            node.tier,
            node.addr,
            node.grpc_addr,
            node.services.join(","),
            node.models.join(","),
            links.join(", ")
        );
    }
    if let Some(entry) = running.nodes.first()
        && let Some(service) = entry.services.first()
    {
        println!(
            "\nsend requests to http://{}/v2/models/{service}/infer (Open Inference Protocol v2), \
             or over gRPC to {}",
            entry.addr, entry.grpc_addr
        );
    }
    println!("Ctrl-C stops every node.");
    if watching {
        println!("Changed manifests restart the nodes whose config changed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_parse_as_node_link_ms() {
        assert_eq!(
            parse_latency("access/edge=5"),
            Ok((("access".into(), "edge".into()), 5))
        );
        assert_eq!(
            parse_latency("edge/cloud=40ms"),
            Ok((("edge".into(), "cloud".into()), 40))
        );
        assert!(parse_latency("edge=40").is_err());
        assert!(parse_latency("a/b=soon").unwrap_err().contains("\"soon\""));
    }
}
