//! Changed manifests applied to a running local network, the way the operator rolls exactly the
//! node Deployments whose config changed: the network is planned again on the same ports, and
//! only the nodes whose config differs restart. A reload applies everything or nothing.

use std::fmt;
use std::path::PathBuf;

use anyhow::anyhow;
use idn_contract::config::NodeAgentConfig;
use idn_contract::names::sha256_hex;
use idn_operator::manifests::{self, Manifests};
use idn_operator::resources::InferenceDeliveryNetwork;

use super::{LocalNetwork, bind, plan_configs, start_node};

/// What the manifests hold: each file [`Manifests::load`] reads, with the sha256 of its bytes
/// or why it cannot be read. Equal fingerprints: nothing to reload.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, String)>);

impl Fingerprint {
    pub fn of(paths: &[PathBuf]) -> Self {
        let fingerprint = |file: PathBuf| {
            let digest = std::fs::read(&file)
                .map_or_else(|e| format!("unreadable: {e}"), |bytes| sha256_hex(&bytes));
            (file, digest)
        };
        let files = paths
            .iter()
            .flat_map(|path| match manifests::files(path) {
                Ok(files) => files.into_iter().map(fingerprint).collect(),
                Err(e) => vec![(path.clone(), format!("unreadable: {e}"))],
            })
            .collect();
        Fingerprint(files)
    }
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub struct Reloaded {
    /// The nodes restarted with their new config, in the network's order.
    pub restarted: Vec<String>,
    pub unchanged: usize,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let restarted = match self.restarted.as_slice() {
            [] => "no node".to_owned(),
            names => names.join(", "),
        };
        write!(f, "reloaded: {restarted} ({} unchanged)", self.unchanged)
    }
}

/// Why a reload was not applied. Every node runs the config it ran before, except those
/// `down`: their previous config could not start again either.
#[derive(Debug)]
pub struct NotReloaded {
    pub problems: Vec<String>,
    pub down: Vec<String>,
}

impl From<anyhow::Error> for NotReloaded {
    fn from(error: anyhow::Error) -> Self {
        NotReloaded {
            problems: vec![format!("{error:#}")],
            down: Vec::new(),
        }
    }
}

impl fmt::Display for NotReloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; ", self.problems.join("; "))?;
        match self.down.as_slice() {
            [] => write!(f, "the network runs as before"),
            down => write!(f, "down: {} (restart idn up)", down.join(", ")),
        }
    }
}

impl LocalNetwork {
    /// Plans `network` again on the ports the nodes have, and restarts the nodes whose config
    /// changed. When the manifests do not plan, or a node cannot start its new config, nothing
    /// is applied: the nodes restarted so far go back to their previous config.
    pub async fn reload(
        &mut self,
        manifests: &Manifests,
        network: &InferenceDeliveryNetwork,
    ) -> Result<Reloaded, NotReloaded> {
        let running: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let declared: Vec<&str> = network.spec.nodes.iter().map(|n| n.name.as_str()).collect();
        if running != declared {
            return Err(anyhow!(
                "the nodes changed ({} -> {}): restart idn up to apply that",
                running.join(", "),
                declared.join(", ")
            )
            .into());
        }
        let planned = plan_configs(manifests, network, &self.options, &self.ports)?;
        let previous: Vec<NodeAgentConfig> = self.nodes.iter().map(|n| n.config.clone()).collect();
        let changed = changed_nodes(&previous, &planned);
        for (done, &i) in changed.iter().enumerate() {
            if let Err(mut failed) = self.restart(i, planned[i].clone()).await {
                // All or nothing: those restarted before it run their previous config again.
                for &j in changed[..done].iter().rev() {
                    if let Err(back) = self.restart(j, previous[j].clone()).await {
                        failed.problems.extend(back.problems);
                        failed.down.extend(back.down);
                    }
                }
                return Err(failed);
            }
        }
        Ok(Reloaded {
            restarted: changed
                .iter()
                .map(|&i| self.nodes[i].name.clone())
                .collect(),
            unchanged: self.nodes.len() - changed.len(),
        })
    }

    /// Stops node `i` (letting it drain) and starts `config` on its ports; when that fails,
    /// its previous config starts again.
    async fn restart(&mut self, i: usize, config: NodeAgentConfig) -> Result<(), NotReloaded> {
        let node = &mut self.nodes[i];
        let name = node.name.clone();
        let ports = self.ports[&name];
        let previous = node.config.clone();
        node.stop().await;
        let error = match start_on(&name, ports, config).await {
            Ok(started) => {
                self.nodes[i] = started;
                return Ok(());
            }
            Err(e) => format!("node {name} failed to start: {e:#}"),
        };
        match start_on(&name, ports, previous).await {
            Ok(started) => {
                self.nodes[i] = started;
                Err(NotReloaded {
                    problems: vec![error],
                    down: Vec::new(),
                })
            }
            Err(e) => Err(NotReloaded {
                problems: vec![
                    error,
                    format!("node {name} failed to start its previous config: {e:#}"),
                ],
                down: vec![name],
            }),
        }
    }
}

/// Starts `config` as node `name` on `ports` again.
async fn start_on(
    name: &str,
    ports: (u16, u16),
    config: NodeAgentConfig,
) -> anyhow::Result<super::LocalNode> {
    let (listeners, _) = bind(name, ports).await?;
    start_node(config, listeners)
}

/// The positions of the nodes whose planned config differs from the one running; both lists
/// follow the network's order of nodes.
fn changed_nodes(running: &[NodeAgentConfig], planned: &[NodeAgentConfig]) -> Vec<usize> {
    running
        .iter()
        .zip(planned)
        .enumerate()
        .filter(|(_, (running, planned))| running != planned)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(node: &str) -> NodeAgentConfig {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut config =
            NodeAgentConfig::load(&root.join("examples/node-agent/mnist.yaml")).unwrap();
        config.node = node.to_owned();
        config
    }

    #[test]
    fn only_nodes_whose_config_differs_change() {
        let running = [config("access"), config("edge"), config("cloud")];
        assert!(changed_nodes(&running, &running).is_empty());
        let mut planned = running.clone();
        planned[1].models[0].sha256 = Some("00".repeat(32));
        planned[2].models[0].path = "other.onnx".into();
        assert_eq!(changed_nodes(&running, &planned), [1, 2]);
    }

    #[test]
    fn a_fingerprint_changes_with_a_manifest_and_with_the_files_read() {
        let dir = std::env::temp_dir().join(format!("idn-fingerprint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), "kind: A\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "draft").unwrap();
        let paths = [dir.clone()];
        let before = Fingerprint::of(&paths);

        std::fs::write(dir.join("notes.txt"), "other").unwrap();
        std::fs::write(dir.join("a.yaml"), "kind: A\n").unwrap();
        assert_eq!(Fingerprint::of(&paths), before, "same bytes, no other YAML");

        std::fs::write(dir.join("a.yaml"), "kind: B\n").unwrap();
        let edited = Fingerprint::of(&paths);
        assert_ne!(edited, before);

        std::fs::write(dir.join("b.yml"), "kind: A\n").unwrap();
        assert_ne!(Fingerprint::of(&paths), edited, "a file added");

        let missing = [dir.join("gone.yaml")];
        let error = Fingerprint::of(&missing);
        assert!(
            error.0[0].1.starts_with("unreadable: cannot read"),
            "{error:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reports_read_as_one_line() {
        let reloaded = Reloaded {
            restarted: vec!["access".into(), "edge".into()],
            unchanged: 1,
        };
        assert_eq!(reloaded.to_string(), "reloaded: access, edge (1 unchanged)");
        let failed = NotReloaded {
            problems: vec!["node edge failed to start: model m is not ready".into()],
            down: Vec::new(),
        };
        assert_eq!(
            failed.to_string(),
            "node edge failed to start: model m is not ready; the network runs as before"
        );
    }
}
