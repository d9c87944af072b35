//! Planning: from the declared resources of one network to the node-agent config of each node.
//!
//! Pure and shared by the controller (which turns plans into Kubernetes objects) and `idn up`
//! (which runs them on loopback). Where the two differ — how nodes reach each other, where model
//! files are, whether link latency is emulated — is an [`Addressing`]. Every problem of the
//! declared resources is collected with the field it comes from.

use std::collections::HashMap;
use std::path::PathBuf;

use idn_contract::config::{
    self as agent, API_VERSION, KIND, Limits, ModelConfig, NodeAgentConfig, Protocol,
    ServiceConfig, StrategyConfig, Target, UpstreamConfig,
};
use idn_contract::graph::find_cycle;
use idn_contract::names::is_dns_label;
use kube::ResourceExt;

use crate::resources::{
    DeliveryStrategy, DeliveryStrategySpec, EnsembleMember as EnsembleMemberSpec,
    EnsembleStrategy as EnsembleSpec, InferenceDeliveryNetwork, InferenceModel, LinkSpec,
    ModelPlacement, NodeServiceSpec, NodeSpec,
};

/// Port the node-agent serves REST on in a pod.
pub const AGENT_PORT: u16 = 8000;
/// Port the node-agent serves gRPC on in a pod (Triton's convention).
pub const AGENT_GRPC_PORT: u16 = 8001;

/// The longest node name: with a network name of at most 22 characters, `<network>-<node>`
/// stays within the 63 characters of a DNS label, as Service names must.
const MAX_NODE_NAME: usize = 40;
/// The longest name of a link with secrets, which the Deployment mounts as volume
/// `link-<name>`: volume names are DNS labels of at most 63 characters.
const MAX_SECRET_LINK_NAME: usize = 58;

/// The resources a network refers to, all from its namespace.
pub struct Declared<'a> {
    pub network: &'a InferenceDeliveryNetwork,
    pub models: &'a [InferenceModel],
    pub strategies: &'a [DeliveryStrategy],
    pub placements: &'a [ModelPlacement],
}

/// Where things are, for the environment the plan is for.
pub trait Addressing {
    /// Base URL of a node's OIP API in `protocol`, `https://` when the node serves TLS.
    fn node_url(&self, node: &str, protocol: Protocol, tls: bool) -> String;
    /// Path of a model file as the node-agent sees it.
    fn model_path(&self, model: &InferenceModel) -> PathBuf;
    /// Path of a link's bearer token file as the node-agent sees it.
    fn token_file(&self, link: &str) -> PathBuf;
    /// Path of a link's CA bundle as the node-agent sees it.
    fn ca_file(&self, link: &str) -> PathBuf;
    /// Paths of a node's own certificate and key as its node-agent sees them.
    fn tls(&self, node: &str) -> agent::TlsConfig;
    /// Path of the token a node requires, as its node-agent sees it.
    fn auth_token_file(&self, node: &str) -> PathBuf;
    /// Listen address of a node.
    fn listen(&self, node: &str) -> std::net::SocketAddr;
    /// gRPC listen address of a node.
    fn grpc_listen(&self, node: &str) -> std::net::SocketAddr;
    /// Emulated latency of `node`'s `link` (0: none; a real network provides it).
    fn delay_ms(&self, node: &str, link: &LinkSpec) -> u64;
    /// Where a node whose services learn keeps what they learned; none: nowhere.
    fn learned_state_file(&self, node: &str) -> Option<PathBuf>;
    /// Limits of a node's request path.
    fn limits(&self) -> Limits {
        Limits::default()
    }
}

/// What one node runs.
#[derive(Debug, Clone)]
pub struct NodePlan<'a> {
    pub spec: &'a NodeSpec,
    pub config: NodeAgentConfig,
    /// The InferenceModels the node loads.
    pub models: Vec<&'a InferenceModel>,
}

/// Plans every node, or returns every problem found.
pub fn plan<'a>(
    declared: &Declared<'a>,
    addressing: &dyn Addressing,
) -> Result<Vec<NodePlan<'a>>, Vec<String>> {
    let mut problems = Vec::new();
    let name = declared.network.name_any();
    // The API server enforces this too (CEL); manifests rendered offline get the same check.
    // Service names are RFC 1035 labels, which start with a letter.
    if name.len() > 22
        || !is_dns_label(&name)
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        problems.push(format!(
            "metadata.name: {name:?} must be a DNS label of at most 22 characters (objects are named <network>-<node>)"
        ));
    }
    let placed = placed_models(declared, &mut problems);
    let nodes = &declared.network.spec.nodes;
    let plans: Vec<NodePlan> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let field = format!("spec.nodes[{i}]");
            if node.name.len() > MAX_NODE_NAME || !is_dns_label(&node.name) {
                problems.push(format!(
                    "{field}.name: {:?} must be a DNS label of at most {MAX_NODE_NAME} characters (objects are named <network>-<node>, at most 63)",
                    node.name
                ));
            }
            let models = placed.get(node.name.as_str()).cloned().unwrap_or_default();
            plan_node(declared, node, &field, models, addressing, &mut problems)
        })
        .collect();
    if let Some(cycle) = forwarding_cycle(&plans) {
        problems.push(format!(
            "spec.nodes: forwarding cycle {}",
            cycle.join(" -> ")
        ));
    }
    if problems.is_empty() {
        Ok(plans)
    } else {
        Err(problems)
    }
}

/// Models placed on each node, from every ModelPlacement of the network.
fn placed_models<'a>(
    declared: &Declared<'a>,
    problems: &mut Vec<String>,
) -> HashMap<&'a str, Vec<&'a InferenceModel>> {
    let network = declared.network.name_any();
    let mut placed: HashMap<&str, Vec<&InferenceModel>> = HashMap::new();
    for placement in declared
        .placements
        .iter()
        .filter(|p| p.spec.network == network)
    {
        let name = placement.name_any();
        for (i, entry) in placement.spec.nodes.iter().enumerate() {
            let field = format!("ModelPlacement {name}: spec.nodes[{i}]");
            if !declared
                .network
                .spec
                .nodes
                .iter()
                .any(|n| n.name == entry.node)
            {
                problems.push(format!("{field}.node: unknown node {:?}", entry.node));
                continue;
            }
            for (j, model_name) in entry.models.iter().enumerate() {
                match declared.models.iter().find(|m| m.name_any() == *model_name) {
                    Some(model) => {
                        let models = placed.entry(entry.node.as_str()).or_default();
                        if !models.iter().any(|m| m.name_any() == *model_name) {
                            models.push(model);
                        }
                    }
                    None => problems.push(format!(
                        "{field}.models[{j}]: unknown InferenceModel {model_name:?}"
                    )),
                }
            }
        }
    }
    placed
}

fn plan_node<'a>(
    declared: &Declared<'a>,
    node: &'a NodeSpec,
    field: &str,
    models: Vec<&'a InferenceModel>,
    addressing: &dyn Addressing,
    problems: &mut Vec<String>,
) -> NodePlan<'a> {
    let upstreams = upstreams(declared, node, field, addressing, problems);
    let services: Vec<ServiceConfig> = node
        .services
        .iter()
        .enumerate()
        .filter_map(|(i, service)| {
            let field = format!("{field}.services[{i}]");
            bind_service(declared, node, service, &field, &models, problems)
        })
        .collect();
    let config = NodeAgentConfig {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        node: node.name.clone(),
        tier: Some(node.tier.as_str().to_owned()),
        listen: addressing.listen(&node.name),
        grpc_listen: Some(addressing.grpc_listen(&node.name)),
        limits: addressing.limits(),
        models: models
            .iter()
            .map(|m| ModelConfig {
                name: m.name_any(),
                version: "1".to_owned(),
                path: addressing.model_path(m),
                sha256: m.spec.source.sha256.clone(),
                inputs: m.spec.inputs.clone(),
                outputs: m.spec.outputs.clone(),
                labels: m.spec.labels.clone(),
            })
            .collect(),
        upstreams,
        learned_state_file: services
            .iter()
            .any(learns)
            .then(|| addressing.learned_state_file(&node.name))
            .flatten(),
        services,
        auth: node.auth.as_ref().map(|_| agent::AuthConfig {
            token_file: addressing.auth_token_file(&node.name),
        }),
        tls: node.tls.as_ref().map(|_| addressing.tls(&node.name)),
    };
    // The agent's own checks catch anything the bindings above let through.
    if problems.is_empty() {
        problems.extend(
            config
                .validate()
                .into_iter()
                .map(|p| format!("{field} (rendered node-agent config): {p}")),
        );
    }
    NodePlan {
        spec: node,
        config,
        models,
    }
}

/// The node's links as upstreams of its agent: to another node of the network by its address
/// (over https when it serves TLS, trusting its Secret's CA, and with the token it requires),
/// or to a remote endpoint.
fn upstreams(
    declared: &Declared,
    node: &NodeSpec,
    field: &str,
    addressing: &dyn Addressing,
    problems: &mut Vec<String>,
) -> Vec<UpstreamConfig> {
    let nodes = &declared.network.spec.nodes;
    node.links
        .iter()
        .enumerate()
        .filter_map(|(i, link)| {
            let protocol = link.protocol.unwrap_or_default();
            let url = match (&link.node, &link.endpoint) {
                (Some(other), _) if other == &node.name => {
                    problems.push(format!(
                        "{field}.links[{i}].node: a node cannot link to itself"
                    ));
                    return None;
                }
                (Some(other), _) => match nodes.iter().find(|n| &n.name == other) {
                    Some(other) => addressing.node_url(&other.name, protocol, other.tls.is_some()),
                    None => {
                        problems.push(format!("{field}.links[{i}].node: unknown node {other:?}"));
                        return None;
                    }
                },
                (None, Some(endpoint)) => endpoint.url.clone(),
                (None, None) => {
                    problems.push(format!("{field}.links[{i}]: give node or endpoint"));
                    return None;
                }
            };
            let secrets = link.secrets(nodes);
            let has_secrets = secrets.token.is_some() || secrets.ca.is_some();
            if has_secrets && link.name.len() > MAX_SECRET_LINK_NAME {
                problems.push(format!(
                    "{field}.links[{i}].name: a link with secrets has a name of at most {MAX_SECRET_LINK_NAME} characters (its volume is named link-<name>, at most 63)"
                ));
            }
            Some(UpstreamConfig {
                name: link.name.clone(),
                url,
                timeout_ms: link.timeout_ms.unwrap_or(1000),
                token_file: secrets.token.map(|_| addressing.token_file(&link.name)),
                ca_file: secrets.ca.map(|_| addressing.ca_file(&link.name)),
                // Nodes of the network are idn node-agents, which speak the binary extension;
                // a remote endpoint may be any OIP server, so it gets JSON. (gRPC tensors are
                // raw bytes either way.)
                binary_data: link.node.is_some() && protocol == Protocol::Rest,
                protocol,
                delay_ms: addressing.delay_ms(&node.name, link),
                labels: link.labels.clone(),
            })
        })
        .collect()
}

/// Binds a DeliveryStrategy's roles (the node's model, its upstream link) for one service.
fn bind_service(
    declared: &Declared,
    node: &NodeSpec,
    service: &NodeServiceSpec,
    field: &str,
    models: &[&InferenceModel],
    problems: &mut Vec<String>,
) -> Option<ServiceConfig> {
    let Some(strategy) = declared
        .strategies
        .iter()
        .find(|s| s.name_any() == service.strategy)
    else {
        problems.push(format!(
            "{field}.strategy: unknown DeliveryStrategy {:?}",
            service.strategy
        ));
        return None;
    };
    let before = problems.len();
    let mut binder = Binder {
        declared,
        node,
        service,
        field,
        models,
        problems,
    };
    let spec = &strategy.spec;
    let strategy_config = binder.strategy(spec);
    if problems.len() > before {
        return None;
    }
    Some(ServiceConfig {
        name: service.name.clone(),
        output: "probs".to_owned(),
        strategy: strategy_config?,
        deadline_ms: spec.deadline_ms.unwrap_or(1000),
        max_hops: spec.max_hops.unwrap_or(8),
        on_upstream_failure: spec.on_upstream_failure.unwrap_or_default(),
        hard_examples: spec.hard_examples.clone(),
        labels: spec.labels.clone(),
    })
}

/// Whether a service learns while serving (its state is then worth keeping).
fn learns(service: &ServiceConfig) -> bool {
    match &service.strategy {
        StrategyConfig::Threshold(threshold) => threshold.adapt.is_some(),
        StrategyConfig::Ensemble(ensemble) => ensemble.learn.is_some(),
        _ => false,
    }
}

/// What binding one service's strategy needs, and where its problems go.
struct Binder<'b, 'a> {
    declared: &'b Declared<'a>,
    node: &'b NodeSpec,
    service: &'b NodeServiceSpec,
    field: &'b str,
    models: &'b [&'b InferenceModel],
    problems: &'b mut Vec<String>,
}

impl Binder<'_, '_> {
    fn strategy(&mut self, spec: &DeliveryStrategySpec) -> Option<StrategyConfig> {
        let field = self.field;
        if spec.local.is_some() {
            self.model("local")
                .map(|m| StrategyConfig::Local(Target::Model(m)))
        } else if let Some(forward) = &spec.forward {
            let fallback = if forward.fallback_to_model {
                self.model("fallback")
            } else {
                None
            };
            let link = self.link(self.service.link.as_ref(), &format!("{field}.link"));
            link.map(|l| {
                StrategyConfig::Forward(agent::ForwardStrategy {
                    to: link_target(l),
                    fallback_model: fallback,
                })
            })
        } else if let Some(threshold) = &spec.threshold {
            let local = self.model("threshold's local answer");
            let forward = self.link(self.service.link.as_ref(), &format!("{field}.link"));
            local.zip(forward).map(|(m, l)| {
                StrategyConfig::Threshold(agent::ThresholdStrategy {
                    local: Target::Model(m),
                    forward: link_target(l),
                    tau: threshold.tau,
                    confidence: threshold.confidence,
                    adapt: threshold.adapt.clone(),
                })
            })
        } else if let Some(ensemble) = &spec.ensemble {
            Some(StrategyConfig::Ensemble(self.ensemble(ensemble)))
        } else {
            self.problems.push(format!(
                "DeliveryStrategy {:?}: spec: give one of local, forward, threshold or ensemble",
                self.service.strategy
            ));
            None
        }
    }

    fn placed(&self, name: &str) -> bool {
        self.models.iter().any(|m| m.name_any() == name)
    }

    /// The node's model, which the strategy needs for `role`.
    fn model(&mut self, role: &str) -> Option<String> {
        let field = self.field;
        match &self.service.model {
            Some(name) if self.placed(name) => Some(name.clone()),
            Some(name) => {
                self.problems.push(format!(
                    "{field}.model: InferenceModel {name:?} is not placed on node {:?} (add it to a ModelPlacement)",
                    self.node.name
                ));
                None
            }
            None => {
                self.problems.push(format!(
                    "{field}.model: DeliveryStrategy {:?} needs the node's model ({role})",
                    self.service.strategy
                ));
                None
            }
        }
    }

    /// The link `name` of the node, whose other end (a node of the network) must offer the
    /// service too, since services are forwarded under their own name.
    fn link(&mut self, name: Option<&String>, at: &str) -> Option<String> {
        let Some(name) = name else {
            self.problems.push(format!(
                "{at}: DeliveryStrategy {:?} needs an upstream link",
                self.service.strategy
            ));
            return None;
        };
        let Some(spec) = self.node.links.iter().find(|l| &l.name == name) else {
            self.problems.push(format!(
                "{at}: node {:?} has no link {name:?}",
                self.node.name
            ));
            return None;
        };
        let nodes = &self.declared.network.spec.nodes;
        let other = spec
            .node
            .as_ref()
            .and_then(|n| nodes.iter().find(|o| &o.name == n));
        if let Some(other) = other
            && !other.services.iter().any(|s| s.name == self.service.name)
        {
            self.problems.push(format!(
                "{at}: node {:?} (at the other end of link {name:?}) offers no service {:?}",
                other.name, self.service.name
            ));
            return None;
        }
        Some(name.clone())
    }

    fn ensemble(&mut self, ensemble: &EnsembleSpec) -> agent::EnsembleStrategy {
        let members = ensemble
            .members
            .iter()
            .enumerate()
            .filter_map(|(i, member)| self.member(i, member))
            .collect();
        agent::EnsembleStrategy {
            members,
            combine: ensemble.combine,
            mode: ensemble.mode,
            tau: ensemble.tau,
            max_members: ensemble.max_members,
            confidence: ensemble.confidence,
            learn: ensemble.learn.clone(),
        }
    }

    fn member(&mut self, i: usize, member: &EnsembleMemberSpec) -> Option<agent::EnsembleMember> {
        let at = format!(
            "DeliveryStrategy {}: spec.ensemble.members[{i}] (for {})",
            self.service.strategy, self.field
        );
        let target = match (&member.model, &member.link) {
            (Some(m), _) if self.placed(m) => Target::Model(m.clone()),
            (Some(m), _) => {
                self.problems.push(format!(
                    "{at}.model: InferenceModel {m:?} is not placed on node {:?}",
                    self.node.name
                ));
                return None;
            }
            (None, l) => link_target(self.link(l.as_ref(), &format!("{at}.link"))?),
        };
        Some(agent::EnsembleMember {
            target,
            weight: member.weight,
            cost: member.cost,
            // A link member's classes are its link's `labels`.
            labels: Vec::new(),
        })
    }
}

fn link_target(link: String) -> Target {
    Target::Upstream {
        upstream: link,
        service: None,
    }
}

/// A cycle of (node, service) hops along every target of every bound service, if any: a link
/// to another node of the network (of a forward, a threshold or an ensemble member) goes to the
/// same service there unless the target names another, and a local service target stays on the
/// node. Models end a path.
fn forwarding_cycle(plans: &[NodePlan]) -> Option<Vec<String>> {
    let next = |(node_name, service_name): &(String, String)| -> Vec<(String, String)> {
        let Some(plan) = plans.iter().find(|p| &p.spec.name == node_name) else {
            return Vec::new();
        };
        let to_node = |link_name: &str| {
            let link = plan.spec.links.iter().find(|l| l.name == link_name)?;
            link.node.clone()
        };
        // The declared link of the service counts even when its strategy could not be bound
        // (a model not placed, say): the cycle is a problem of its own, reported beside that.
        let declared = plan
            .spec
            .services
            .iter()
            .filter(|s| &s.name == service_name)
            .filter_map(|s| Some((to_node(s.link.as_deref()?)?, service_name.clone())));
        let bound = plan
            .config
            .services
            .iter()
            .filter(|s| &s.name == service_name)
            .flat_map(|s| s.strategy.targets())
            .filter_map(|target| match target {
                Target::Model(_) => None,
                Target::Service(other) => Some((node_name.clone(), other.clone())),
                Target::Upstream { upstream, service } => {
                    let other = service.as_ref().unwrap_or(service_name);
                    Some((to_node(upstream)?, other.clone()))
                }
            });
        declared.chain(bound).collect()
    };
    let starts = plans.iter().flat_map(|plan| {
        plan.spec
            .services
            .iter()
            .map(|service| (plan.spec.name.clone(), service.name.clone()))
    });
    find_cycle(starts, next).map(|cycle| cycle.into_iter().map(|(node, _)| node).collect())
}
