//! Rendering: a network's plan into the Kubernetes objects of each node — a ConfigMap with
//! the node-agent config, a Deployment running the node-agent, and a Service. Pure: the
//! controller applies the result, `idn render` prints it, tests compare it to golden files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use idn_contract::config::{Limits, NodeAgentConfig, Protocol, TlsConfig};
use idn_contract::names::{MANAGED_BY_LABEL, MANAGER, sha256_hex};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, HTTPGetAction, ImageVolumeSource, KeyToPath, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretProjection, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::plan::{self, AGENT_GRPC_PORT, AGENT_PORT, Addressing, Declared, NodePlan};
use crate::resources::{
    InferenceDeliveryNetwork, InferenceModel, LinkSpec, NodeSpec, NodeStatus, SecretKey,
    TLS_CERT_KEY, TLS_KEY_KEY,
};
use crate::scaling;

/// Label naming the network an object belongs to (the orphan sweep selects on it).
pub const NETWORK_LABEL: &str = "idn.dev/network";
/// Label naming the node an object serves.
pub const NODE_LABEL: &str = "idn.dev/node";
/// Annotation whose change rolls a node's pods: the hash of everything the pod runs.
pub const CONFIG_HASH_ANNOTATION: &str = "idn.dev/config-hash";
/// Key of the node-agent config in its ConfigMap.
pub const CONFIG_KEY: &str = "agent.yaml";

const CONFIG_DIR: &str = "/etc/idn";
const MODELS_DIR: &str = "/models";
const LINKS_DIR: &str = "/var/run/idn/links";
/// Where a node's own certificate and key are mounted (its TLS Secret).
const TLS_DIR: &str = "/var/run/idn/tls";
/// Where the token a node requires is mounted.
const AUTH_DIR: &str = "/var/run/idn/auth";
/// Where learned state is kept: an emptyDir, so it survives a container restart (not the
/// pod's replacement: a new pod starts afresh, or is seeded over HTTP).
const LEARNED_DIR: &str = "/var/lib/idn";
/// Non-root user of the node-agent image.
const AGENT_UID: i64 = 65532;

/// What the objects depend on besides the declared resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Node-agent image when the network names none.
    pub agent_image: String,
    /// Image of the init container that downloads `url` models (needs `sh`, `curl`,
    /// `sha256sum`).
    pub fetch_image: String,
    /// Where node-agents export their spans, when they do.
    pub otlp: Option<OtlpExport>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            agent_image: format!("idn-node-agent:{}", env!("CARGO_PKG_VERSION")),
            fetch_image: "curlimages/curl:8.11.1".to_owned(),
            otlp: None,
        }
    }
}

/// An OTLP collector for the node-agents' spans.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpExport {
    /// Base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, when not the default.
    pub protocol: Option<String>,
}

impl OtlpExport {
    /// The node-agent's environment for the export.
    fn env(&self) -> Vec<EnvVar> {
        let var = |name: &str, value: &str| EnvVar {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            ..EnvVar::default()
        };
        let mut env = vec![var("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint)];
        if let Some(protocol) = &self.protocol {
            env.push(var("OTEL_EXPORTER_OTLP_PROTOCOL", protocol));
        }
        env.push(var("OTEL_SERVICE_NAME", "idn-node-agent"));
        env
    }
}

/// The objects of one network, and each node's status before any replica is observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    pub config_maps: Vec<ConfigMap>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub autoscalers: Vec<HorizontalPodAutoscaler>,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    pub nodes: Vec<NodeStatus>,
}

/// In-cluster addressing: nodes reach each other through their Services; models are files
/// under `/models`; tokens are mounted secrets; the network provides the latency.
pub struct ClusterAddressing<'a> {
    pub network: &'a str,
    pub namespace: &'a str,
}

impl Addressing for ClusterAddressing<'_> {
    fn node_url(&self, node: &str, protocol: Protocol, tls: bool) -> String {
        let port = match protocol {
            Protocol::Rest => AGENT_PORT,
            Protocol::Grpc => AGENT_GRPC_PORT,
        };
        let scheme = if tls { "https" } else { "http" };
        format!(
            "{scheme}://{}.{}.svc:{port}",
            object_name(self.network, node),
            self.namespace
        )
    }
    fn model_path(&self, model: &InferenceModel) -> PathBuf {
        let name = model.name_any();
        let source = &model.spec.source;
        match (&source.volume, &source.image) {
            (Some(volume), _) => PathBuf::from(format!("{MODELS_DIR}/volumes/{name}"))
                .join(volume.path.trim_start_matches('/')),
            (None, Some(image)) => PathBuf::from(format!("{MODELS_DIR}/images/{name}"))
                .join(image.path.trim_start_matches('/')),
            (None, None) => PathBuf::from(format!("{MODELS_DIR}/{name}.onnx")),
        }
    }
    fn ca_file(&self, link: &str) -> PathBuf {
        PathBuf::from(format!("{LINKS_DIR}/{link}/ca.crt"))
    }
    fn token_file(&self, link: &str) -> PathBuf {
        PathBuf::from(format!("{LINKS_DIR}/{link}/token"))
    }
    fn tls(&self, _node: &str) -> TlsConfig {
        TlsConfig {
            cert_file: PathBuf::from(format!("{TLS_DIR}/{TLS_CERT_KEY}")),
            key_file: PathBuf::from(format!("{TLS_DIR}/{TLS_KEY_KEY}")),
        }
    }
    fn auth_token_file(&self, _node: &str) -> PathBuf {
        PathBuf::from(format!("{AUTH_DIR}/token"))
    }
    fn listen(&self, _node: &str) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([0, 0, 0, 0], AGENT_PORT))
    }
    fn grpc_listen(&self, _node: &str) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([0, 0, 0, 0], AGENT_GRPC_PORT))
    }
    fn delay_ms(&self, _node: &str, _link: &LinkSpec) -> u64 {
        0
    }
    fn learned_state_file(&self, _node: &str) -> Option<PathBuf> {
        Some(PathBuf::from(format!("{LEARNED_DIR}/learned.json")))
    }
    /// A replica told to stop goes on serving while its Service's endpoints and every node's
    /// kube-proxy forget it, so that no request meets its closed listener.
    fn limits(&self) -> Limits {
        Limits {
            drain_delay_seconds: DRAIN_DELAY_SECONDS,
            ..Limits::default()
        }
    }
}

/// Seconds a stopping node-agent pod goes on serving (see `ClusterAddressing::limits`):
/// endpoint changes reach kube-proxies within a second or two.
const DRAIN_DELAY_SECONDS: u64 = 5;

/// `<network>-<node>`: the name of every object of a node.
pub fn object_name(network: &str, node: &str) -> String {
    format!("{network}-{node}")
}

/// Nodes of `network` whose objects would take the names of another network's objects
/// (`<network>-<node>` can coincide: `edge` + `eu-west` and `edge-eu` + `west`). The older
/// network keeps its names; the newer one is told which node to rename.
pub fn name_conflicts(
    network: &InferenceDeliveryNetwork,
    others: &[InferenceDeliveryNetwork],
) -> Vec<String> {
    let name = network.name_any();
    let age = |n: &InferenceDeliveryNetwork| {
        (
            n.metadata.creation_timestamp.clone().map(|t| t.0),
            n.name_any(),
        )
    };
    let mut problems = Vec::new();
    for other in others.iter().filter(|o| {
        o.namespace() == network.namespace() && o.name_any() != name && age(o) < age(network)
    }) {
        for (i, node) in network.spec.nodes.iter().enumerate() {
            let object = object_name(&name, &node.name);
            if let Some(taken) = other
                .spec
                .nodes
                .iter()
                .find(|n| object_name(&other.name_any(), &n.name) == object)
            {
                problems.push(format!(
                    "spec.nodes[{i}].name: its objects would be named {object}, like those of node {:?} of InferenceDeliveryNetwork {:?}",
                    taken.name,
                    other.name_any()
                ));
            }
        }
    }
    problems
}

/// Renders every node of the network, or returns every problem of the declared resources.
pub fn render(declared: &Declared, settings: &Settings) -> Result<Rendered, Vec<String>> {
    let network = declared.network;
    let name = network.name_any();
    let namespace = network.namespace().unwrap_or_else(|| "default".to_owned());
    let addressing = ClusterAddressing {
        network: &name,
        namespace: &namespace,
    };
    let plans = plan::plan(declared, &addressing)?;
    let mut rendered = Rendered::default();
    for node in &plans {
        let config = serde_norway::to_string(&node.config).expect("configs serialize");
        let meta = object_meta(network, &name, &namespace, node);
        rendered.config_maps.push(ConfigMap {
            metadata: meta.clone(),
            data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), config.clone())])),
            ..ConfigMap::default()
        });
        rendered.deployments.push(deployment(
            network,
            node,
            meta.clone(),
            &config,
            settings,
            &addressing,
        ));
        rendered
            .autoscalers
            .extend(scaling::autoscaler(&meta, node.spec));
        rendered
            .disruption_budgets
            .extend(scaling::disruption_budget(
                &meta,
                node.spec,
                selector(&name, node),
            ));
        rendered.services.push(service(meta, &name, node));
        let tls = node.spec.tls.is_some();
        rendered.nodes.push(NodeStatus {
            name: node.spec.name.clone(),
            tier: node.spec.tier,
            replicas: node.spec.min_replicas(),
            ready_replicas: 0,
            endpoint: addressing.node_url(&node.spec.name, Protocol::Rest, tls),
            grpc_endpoint: addressing.node_url(&node.spec.name, Protocol::Grpc, tls),
            services: node.config.service_names(),
            models: node.config.model_names(),
        });
    }
    Ok(rendered)
}

fn labels(network: &str, node: &NodePlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "idn-node-agent".to_owned(),
        ),
        (
            "app.kubernetes.io/instance".to_owned(),
            object_name(network, &node.spec.name),
        ),
        (MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned()),
        (NETWORK_LABEL.to_owned(), network.to_owned()),
        (NODE_LABEL.to_owned(), node.spec.name.clone()),
        (
            "idn.dev/tier".to_owned(),
            node.spec.tier.as_str().to_owned(),
        ),
    ])
}

fn selector(network: &str, node: &NodePlan) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NETWORK_LABEL.to_owned(), network.to_owned()),
        (NODE_LABEL.to_owned(), node.spec.name.clone()),
    ])
}

fn object_meta(
    owner: &InferenceDeliveryNetwork,
    network: &str,
    namespace: &str,
    node: &NodePlan,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(network, &node.spec.name)),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels(network, node)),
        // Garbage collection removes a node's objects with its network; without a uid (a
        // network read from a file) there is nothing to own them yet.
        owner_references: owner_reference(owner).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(owner: &InferenceDeliveryNetwork) -> Option<OwnerReference> {
    owner.meta().uid.as_ref()?;
    owner.controller_owner_ref(&())
}

/// The hash that rolls a node's pods when anything they run changes: the agent config (which
/// holds models' sha256, strategies and links) and where each model comes from.
fn config_hash(config: &str, models: &[&InferenceModel]) -> String {
    let mut hashed = config.as_bytes().to_vec();
    for model in models {
        hashed.extend(serde_json::to_vec(&model.spec.source).expect("sources serialize"));
    }
    let mut hash = sha256_hex(&hashed);
    hash.truncate(16);
    hash
}

/// Seconds a pod gets beyond its agent's drain timeout before Kubernetes kills it: enough to
/// save learned state and exit after the drain.
const GRACE_AFTER_DRAIN_SECONDS: u64 = 10;

/// The pod's termination grace period: longer than the agent's drain delay and drain together,
/// so that SIGKILL never cuts a drain short (Kubernetes' default, 30 s, equals the default
/// drain timeout).
fn termination_grace_seconds(config: &NodeAgentConfig) -> i64 {
    let limits = &config.limits;
    let seconds =
        limits.drain_delay_seconds + limits.drain_timeout_seconds + GRACE_AFTER_DRAIN_SECONDS;
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

fn deployment(
    network: &InferenceDeliveryNetwork,
    node: &NodePlan,
    meta: ObjectMeta,
    config: &str,
    settings: &Settings,
    addressing: &ClusterAddressing,
) -> Deployment {
    let name = network.name_any();
    let (volumes, mounts, init) = volumes(node, &network.spec.nodes, settings, addressing);
    let agent = agent_container(network, node, settings, mounts);
    let mut template_meta = ObjectMeta {
        labels: Some(labels(&name, node)),
        annotations: Some(BTreeMap::from([(
            CONFIG_HASH_ANNOTATION.to_owned(),
            config_hash(config, &node.models),
        )])),
        ..ObjectMeta::default()
    };
    template_meta
        .labels
        .get_or_insert_default()
        .extend(selector(&name, node));
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            // An autoscaled node's replicas belong to its autoscaler: applying a count here
            // would reset it on every reconcile.
            replicas: node
                .spec
                .autoscaling
                .is_none()
                .then(|| node.spec.replicas.unwrap_or(1)),
            selector: LabelSelector {
                match_labels: Some(selector(&name, node)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    init_containers: init.map(|c| vec![c]),
                    containers: vec![agent],
                    volumes: Some(volumes),
                    security_context: Some(pod_security()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: node.spec.node_selector.clone(),
                    tolerations: node.spec.tolerations.clone(),
                    affinity: node.spec.affinity.clone(),
                    termination_grace_period_seconds: Some(termination_grace_seconds(&node.config)),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The node-agent container: its config, probes, resources and a hardened security context.
fn agent_container(
    network: &InferenceDeliveryNetwork,
    node: &NodePlan,
    settings: &Settings,
    mounts: Vec<VolumeMount>,
) -> Container {
    // The kubelet does not verify the certificate of an HTTPS probe.
    let scheme = node.spec.tls.as_ref().map(|_| "HTTPS".to_owned());
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            scheme: scheme.clone(),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    Container {
        name: "node-agent".to_owned(),
        image: Some(
            network
                .spec
                .image
                .clone()
                .unwrap_or_else(|| settings.agent_image.clone()),
        ),
        args: Some(vec![
            "--config".to_owned(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
            "--log-format".to_owned(),
            "json".to_owned(),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: i32::from(AGENT_PORT),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("grpc".to_owned()),
                container_port: i32::from(AGENT_GRPC_PORT),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(probe("/v2/health/ready", 5)),
        liveness_probe: Some(probe("/v2/health/live", 10)),
        resources: Some(
            node.spec
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        env: settings.otlp.as_ref().map(OtlpExport::env),
        ..Container::default()
    }
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(AGENT_UID),
        run_as_group: Some(AGENT_UID),
        fs_group: Some(AGENT_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".to_owned())),
            ("memory".to_owned(), Quantity("128Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("512Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// Volumes and mounts of a node's pod: the config, the models (downloaded into an emptyDir by
/// an init container, or mounted from a claim or an image), the node's own certificate and
/// token, and its links' tokens and CAs (`nodes`: the network's, which links may point to).
fn volumes(
    node: &NodePlan,
    nodes: &[NodeSpec],
    settings: &Settings,
    addressing: &ClusterAddressing,
) -> (Vec<Volume>, Vec<VolumeMount>, Option<Container>) {
    let mut pod = PodVolumes::default();
    pod.add(
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: object_name(addressing.network, &node.spec.name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        CONFIG_DIR,
    );
    let downloads = pod.add_models(node, addressing);
    let init = (!downloads.is_empty()).then(|| {
        pod.add(
            Volume {
                name: "models".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            MODELS_DIR,
        );
        fetch_container(&downloads, settings)
    });
    pod.add_node_secrets(node.spec);
    pod.add_link_secrets(node.spec, nodes);
    if node.config.learned_state_file.is_some() {
        pod.add_writable(
            Volume {
                name: "learned".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            LEARNED_DIR,
        );
    }
    (pod.volumes, pod.mounts, init)
}

/// A pod's volumes, each mounted read-only in the agent's container.
#[derive(Default)]
struct PodVolumes {
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

impl PodVolumes {
    fn add(&mut self, volume: Volume, path: &str) {
        self.mounts.push(read_only_mount(&volume.name, path));
        self.volumes.push(volume);
    }

    /// Mounts `volume` where the agent writes.
    fn add_writable(&mut self, volume: Volume, path: &str) {
        self.mounts.push(VolumeMount {
            read_only: Some(false),
            ..read_only_mount(&volume.name, path)
        });
        self.volumes.push(volume);
    }

    /// Mounts the models that come from a claim or an image; returns the download commands of
    /// those that come from a URL.
    fn add_models(&mut self, node: &NodePlan, addressing: &ClusterAddressing) -> Vec<String> {
        let mut downloads = Vec::new();
        for (i, model) in node.models.iter().enumerate() {
            let name = model.name_any();
            let source = &model.spec.source;
            let volume = format!("model-{i}");
            if let Some(claim) = &source.volume {
                let volume = Volume {
                    name: volume,
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.claim_name.clone(),
                        read_only: Some(true),
                    }),
                    ..Volume::default()
                };
                self.add(volume, &format!("{MODELS_DIR}/volumes/{name}"));
            } else if let Some(image) = &source.image {
                let volume = Volume {
                    name: volume,
                    image: Some(ImageVolumeSource {
                        reference: Some(image.reference.clone()),
                        pull_policy: Some("IfNotPresent".to_owned()),
                    }),
                    ..Volume::default()
                };
                self.add(volume, &format!("{MODELS_DIR}/images/{name}"));
            } else if let (Some(url), Some(sha256)) = (&source.url, &source.sha256) {
                let path = addressing.model_path(model);
                downloads.push(format!(
                    "curl -fsSL --retry 3 -o {path} {url} && echo '{sha256}  {path}' | sha256sum -c -",
                    path = path.display(),
                    url = shell_quote(url),
                ));
            }
        }
        downloads
    }

    /// The node's certificate and key, and the token it requires.
    fn add_node_secrets(&mut self, node: &NodeSpec) {
        if let Some(tls) = &node.tls {
            let keys = [TLS_CERT_KEY, TLS_KEY_KEY].map(|key| SecretKey {
                name: &tls.secret_name,
                key,
            });
            self.add(projected("tls", &keys.map(|k| (k, k.key))), TLS_DIR);
        }
        if let Some(auth) = &node.auth {
            let token = SecretKey::from(&auth.token_secret);
            self.add(projected("auth", &[(token, "token")]), AUTH_DIR);
        }
    }

    /// A link's token and CA may live in different secrets: one projected volume holds both.
    fn add_link_secrets(&mut self, node: &NodeSpec, nodes: &[NodeSpec]) {
        for link in &node.links {
            let secrets = link.secrets(nodes);
            let files: Vec<(SecretKey, &str)> = [(secrets.token, "token"), (secrets.ca, "ca.crt")]
                .into_iter()
                .filter_map(|(key, path)| Some((key?, path)))
                .collect();
            if files.is_empty() {
                continue;
            }
            let volume = projected(&format!("link-{}", link.name), &files);
            self.add(volume, &format!("{LINKS_DIR}/{}", link.name));
        }
    }
}

/// A volume named `name` holding each Secret key of `files` at its path (one source per
/// Secret).
fn projected(name: &str, files: &[(SecretKey, &str)]) -> Volume {
    let mut sources: Vec<SecretProjection> = Vec::new();
    for (secret, path) in files {
        let item = KeyToPath {
            key: secret.key.to_owned(),
            path: (*path).to_owned(),
            ..KeyToPath::default()
        };
        match sources.iter_mut().find(|s| s.name == secret.name) {
            Some(source) => source.items.get_or_insert_default().push(item),
            None => sources.push(SecretProjection {
                name: secret.name.to_owned(),
                items: Some(vec![item]),
                ..SecretProjection::default()
            }),
        }
    }
    let sources = sources
        .into_iter()
        .map(|secret| VolumeProjection {
            secret: Some(secret),
            ..VolumeProjection::default()
        })
        .collect();
    Volume {
        name: name.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The init container that downloads URL-sourced models and checks their sha256.
fn fetch_container(downloads: &[String], settings: &Settings) -> Container {
    Container {
        name: "fetch-models".to_owned(),
        image: Some(settings.fetch_image.clone()),
        command: Some(vec![
            "sh".to_owned(),
            "-ec".to_owned(),
            downloads.join("\n"),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            read_only: Some(false),
            ..read_only_mount("models", MODELS_DIR)
        }]),
        resources: Some(default_resources()),
        security_context: Some(container_security()),
        ..Container::default()
    }
}

/// Quotes a URL for `sh` (the CRD pattern already limits it to http(s) URLs).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn service(meta: ObjectMeta, network: &str, node: &NodePlan) -> Service {
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            selector: Some(selector(network, node)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".to_owned()),
                    port: i32::from(AGENT_PORT),
                    target_port: Some(IntOrString::String("http".to_owned())),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("grpc".to_owned()),
                    port: i32::from(AGENT_GRPC_PORT),
                    target_port: Some(IntOrString::String("grpc".to_owned())),
                    // Lets meshes and gateways route it as HTTP/2.
                    app_protocol: Some("kubernetes.io/h2c".to_owned()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
