//! A whole network on one machine: every node of the manifests runs as a node-agent in this
//! process, on loopback, with each link's latency emulated. Configs come from the same planning
//! code the operator uses, so what runs here is what would run in the cluster. Changed manifests
//! are applied by [`LocalNetwork::reload`] (in `reload.rs`).

mod reload;

pub use reload::{Fingerprint, NotReloaded, Reloaded};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use idn_contract::config::{NodeAgentConfig, Protocol, TlsConfig};
use idn_contract::names::sha256_hex;
use idn_node_agent::node::Node;
use idn_node_agent::server;
use kube::ResourceExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use idn_operator::manifests::Manifests;
use idn_operator::plan::{self, Addressing, Declared};
use idn_operator::resources::{InferenceDeliveryNetwork, InferenceModel, LinkSpec};

/// How the local network is laid out.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Directories searched for model files (by sha256, then by file name).
    pub model_dirs: Vec<PathBuf>,
    /// First port; nodes take consecutive ports. 0 picks free ports.
    pub base_port: u16,
    /// Link latencies overriding the manifests: `(node, link) -> ms`.
    pub latency_ms: HashMap<(String, String), u64>,
    /// Directory of the nodes' learned-state files; none: learning starts afresh each run.
    pub learned_state: Option<PathBuf>,
}

/// A node running in this process.
pub struct LocalNode {
    pub name: String,
    pub tier: String,
    pub addr: SocketAddr,
    /// Where it serves OIP v2 over gRPC.
    pub grpc_addr: SocketAddr,
    pub services: Vec<String>,
    pub models: Vec<String>,
    /// The config it runs, which a reload compares with the newly planned one.
    config: NodeAgentConfig,
    /// None once stopped.
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl LocalNode {
    /// Stops serving and waits for the drain; a node already stopped returns at once.
    async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let _ = (&mut self.task).await;
        }
    }
}

/// Every node of one network, running.
pub struct LocalNetwork {
    pub name: String,
    pub nodes: Vec<LocalNode>,
    /// REST and gRPC port of each node: a reload plans and binds the same ones.
    ports: HashMap<String, (u16, u16)>,
    options: Options,
}

struct LocalAddressing<'a> {
    /// REST and gRPC port of each node.
    ports: &'a HashMap<String, (u16, u16)>,
    models: HashMap<String, PathBuf>,
    latency_ms: &'a HashMap<(String, String), u64>,
    learned_state: Option<&'a Path>,
}

impl Addressing for LocalAddressing<'_> {
    fn node_url(&self, node: &str, protocol: Protocol, tls: bool) -> String {
        let (rest, grpc) = self.ports[node];
        let port = match protocol {
            Protocol::Rest => rest,
            Protocol::Grpc => grpc,
        };
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}")
    }
    fn model_path(&self, model: &InferenceModel) -> PathBuf {
        self.models[&model.name_any()].clone()
    }
    fn ca_file(&self, link: &str) -> PathBuf {
        PathBuf::from(format!("{link}.ca.crt"))
    }
    fn token_file(&self, link: &str) -> PathBuf {
        PathBuf::from(format!("{link}.token"))
    }
    fn tls(&self, node: &str) -> TlsConfig {
        TlsConfig {
            cert_file: PathBuf::from(format!("{node}.tls.crt")),
            key_file: PathBuf::from(format!("{node}.tls.key")),
        }
    }
    fn auth_token_file(&self, node: &str) -> PathBuf {
        PathBuf::from(format!("{node}.auth.token"))
    }
    fn listen(&self, node: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[node].0))
    }
    fn grpc_listen(&self, node: &str) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[node].1))
    }
    fn delay_ms(&self, node: &str, link: &LinkSpec) -> u64 {
        self.latency_ms
            .get(&(node.to_owned(), link.name.clone()))
            .copied()
            .or(link.latency_ms)
            .unwrap_or(0)
    }
    fn learned_state_file(&self, node: &str) -> Option<PathBuf> {
        Some(self.learned_state?.join(format!("{node}.json")))
    }
}

/// Finds a model's file: in `dirs`, the file whose sha256 matches the model's, else one named
/// like the model's source (URL or path basename) or `<name>.onnx`.
pub fn find_model_file(model: &InferenceModel, dirs: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let name = model.name_any();
    let source = &model.spec.source;
    let wanted_names: Vec<String> = [
        source.url.as_deref().and_then(|u| u.rsplit('/').next()),
        source
            .volume
            .as_ref()
            .and_then(|v| Path::new(&v.path).file_name()?.to_str()),
        source
            .image
            .as_ref()
            .and_then(|i| Path::new(&i.path).file_name()?.to_str()),
    ]
    .into_iter()
    .flatten()
    .map(str::to_owned)
    .chain([format!("{name}.onnx")])
    .collect();
    let candidates: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    if let Some(sha) = &source.sha256 {
        for path in &candidates {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            if sha256_hex(&bytes).eq_ignore_ascii_case(sha) {
                return Ok(path.clone());
            }
        }
    }
    candidates
        .into_iter()
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| wanted_names.iter().any(|w| w == f))
        })
        .ok_or_else(|| {
            anyhow!(
                "InferenceModel {name}: no model file with its sha256 or named {} in {}",
                wanted_names.join(" or "),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

impl LocalNetwork {
    /// Plans and starts every node of `network`. A node that cannot start, or whose models
    /// are not ready, stops the others and is reported.
    pub async fn start(
        manifests: &Manifests,
        network: &InferenceDeliveryNetwork,
        options: &Options,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = &options.learned_state {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut listeners = Vec::new();
        let mut ports = HashMap::new();
        for (i, node) in network.spec.nodes.iter().enumerate() {
            // gRPC beside REST: base port + i, and base port + 100 + i.
            let port = |offset: u16| match options.base_port {
                0 => 0,
                base => base + offset + i as u16,
            };
            let (bound, taken) = bind(&node.name, (port(0), port(100))).await?;
            ports.insert(node.name.clone(), taken);
            listeners.push(bound);
        }
        let configs = plan_configs(manifests, network, options, &ports)?;
        let mut running = LocalNetwork {
            name: network.name_any(),
            nodes: Vec::new(),
            ports,
            options: options.clone(),
        };
        for (config, listener) in configs.into_iter().zip(listeners) {
            let node_name = config.node.clone();
            match start_node(config, listener) {
                Ok(node) => running.nodes.push(node),
                Err(e) => {
                    running.stop().await;
                    bail!("node {node_name} failed to start: {e:#}");
                }
            }
        }
        Ok(running)
    }

    /// Stops every node and waits for them to drain.
    pub async fn stop(self) {
        for mut node in self.nodes {
            node.stop().await;
        }
    }

    pub fn node(&self, name: &str) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// The config of each node of `network`, in its order, for nodes on `ports`.
fn plan_configs(
    manifests: &Manifests,
    network: &InferenceDeliveryNetwork,
    options: &Options,
    ports: &HashMap<String, (u16, u16)>,
) -> anyhow::Result<Vec<NodeAgentConfig>> {
    let name = network.name_any();
    let scope = manifests.in_namespace(&network.namespace().unwrap_or_default());
    let models = scope
        .models
        .iter()
        .map(|m| Ok((m.name_any(), find_model_file(m, &options.model_dirs)?)))
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let addressing = LocalAddressing {
        ports,
        models,
        latency_ms: &options.latency_ms,
        learned_state: options.learned_state.as_deref(),
    };
    let declared = Declared {
        network,
        models: &scope.models,
        strategies: &scope.strategies,
        placements: &scope.placements,
    };
    let plans = plan::plan(&declared, &addressing).map_err(|problems| {
        anyhow!(
            "InferenceDeliveryNetwork {name} is invalid:\n  {}",
            problems.join("\n  ")
        )
    })?;
    Ok(plans.into_iter().map(|plan| plan.config).collect())
}

/// Listens on loopback for `node`: REST on the first port, gRPC on the second (0: any free);
/// the listeners, and the ports they took.
async fn bind(
    node: &str,
    (rest, grpc): (u16, u16),
) -> anyhow::Result<(server::Listeners, (u16, u16))> {
    let listen = |port: u16| async move {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("node {node}: cannot listen on 127.0.0.1:{port}"))?;
        let port = listener.local_addr()?.port();
        anyhow::Ok((listener, port))
    };
    let (rest, rest_port) = listen(rest).await?;
    let (grpc, grpc_port) = listen(grpc).await?;
    Ok((
        server::Listeners::new(rest, Some(grpc)),
        (rest_port, grpc_port),
    ))
}

fn start_node(config: NodeAgentConfig, listeners: server::Listeners) -> anyhow::Result<LocalNode> {
    let addr = listeners.rest_addr();
    let grpc_addr = listeners
        .grpc_addr()
        .context("every local node serves gRPC")?;
    let node = Node::start(config)?;
    let broken: Vec<String> = node
        .unready_models()
        .map(|(model, reason)| format!("model {model} is not ready: {reason}"))
        .collect();
    if !broken.is_empty() {
        bail!("{}", broken.join("; "));
    }
    let (stop, stopped) = oneshot::channel();
    let served = Arc::clone(&node);
    let task = tokio::spawn(server::serve(served, listeners, async {
        let _ = stopped.await;
    }));
    let config = node.config();
    Ok(LocalNode {
        name: config.node.clone(),
        tier: config.tier.clone().unwrap_or_default(),
        addr,
        grpc_addr,
        services: config.service_names(),
        models: config.model_names(),
        config: config.clone(),
        stop: Some(stop),
        task,
    })
}
