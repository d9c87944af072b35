//! `InferenceDeliveryNetwork`: the topology — nodes, their tiers and scheduling, the links
//! between them, and the services each node offers.

use std::collections::BTreeMap;

use idn_contract::config::Protocol;
use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, SecretKeySelector, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An inference delivery network: nodes across tiers, linked, each offering services.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "idn.dev",
    version = "v1alpha1",
    kind = "InferenceDeliveryNetwork",
    namespaced,
    shortname = "infnet",
    category = "idn",
    status = "InferenceDeliveryNetworkStatus",
    doc = "An inference delivery network: nodes across tiers, linked, each offering services",
    printcolumn = r#"{"name": "Nodes", "type": "string", "jsonPath": ".status.readyNodes"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 22 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("the name must be a DNS label of at most 22 characters: objects are named <network>-<node>")
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceDeliveryNetworkSpec {
    /// Node-agent image; defaults to the one the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The nodes of the network; names are unique (a list map keyed by name).
    #[schemars(length(min = 1, max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub nodes: Vec<NodeSpec>,
}

/// Tier of the infrastructure a node runs in.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum Tier {
    /// Devices and access points, nearest to clients.
    Access,
    /// Edge sites.
    #[default]
    Edge,
    /// Regional data centres.
    Regional,
    /// Central cloud.
    Cloud,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Access => "access",
            Tier::Edge => "edge",
            Tier::Regional => "regional",
            Tier::Cloud => "cloud",
        }
    }
}

/// One node: a node-agent Deployment with its models, links and services.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("give replicas or autoscaling, not both: the autoscaler sets the replicas"))]
pub struct NodeSpec {
    /// Node name, unique in the network (a DNS label; objects are named `<network>-<node>`).
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 40)
    )]
    pub name: String,
    /// Tier: access, edge, regional or cloud.
    #[serde(default)]
    pub tier: Tier,
    /// Node-agent replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Scale the node's replicas with their CPU use, through a HorizontalPodAutoscaler (which
    /// then owns the replica count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Resources of the node-agent container (a small default request applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pin the node to machines, e.g. `{idn.dev/tier: edge}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations, e.g. for tainted edge machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Links to other nodes of this network or to remote endpoints; names are unique.
    #[serde(default)]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub links: Vec<LinkSpec>,
    /// Services this node offers; names are unique.
    #[serde(default)]
    #[schemars(length(max = 32), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub services: Vec<NodeServiceSpec>,
    /// Serve the node's REST and gRPC ports over TLS; its probes then use HTTPS, and links
    /// from the other nodes of this network use `https://` and trust the Secret's `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NodeTls>,
    /// Require a bearer token on the node's inference calls (health, metadata and metrics
    /// stay open). The other nodes of this network that link to it send that token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NodeAuth>,
}

/// Key of a `kubernetes.io/tls` Secret holding the certificate chain.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Key of a `kubernetes.io/tls` Secret holding the private key.
pub const TLS_KEY_KEY: &str = "tls.key";
/// Key of a TLS Secret holding the CA that signs its certificate (as cert-manager writes it).
pub const TLS_CA_KEY: &str = "ca.crt";

/// The certificate a node serves with.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeTls {
    /// A `kubernetes.io/tls` Secret in the network's namespace: `tls.crt` (the chain, the
    /// node's certificate first) and `tls.key`. The certificate must name the node's Service,
    /// `<network>-<node>.<namespace>.svc`, for links from this network, and the name other
    /// clusters call it by. When another node of the network links to this one, the Secret
    /// also needs `ca.crt`, the CA those nodes trust (cert-manager writes it; for a
    /// self-signed certificate, the certificate itself). Read at start: a renewed certificate
    /// takes effect when the pods restart.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// The bearer token a node requires.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeAuth {
    /// Secret key (network's namespace) holding the token callers must present as
    /// `Authorization: Bearer <token>`; surrounding whitespace is ignored.
    pub token_secret: SecretKeySelector,
}

/// A key of a Secret in the network's namespace that a node's pod mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretKey<'a> {
    pub name: &'a str,
    pub key: &'a str,
}

impl<'a> From<&'a SecretKeySelector> for SecretKey<'a> {
    fn from(selector: &'a SecretKeySelector) -> Self {
        SecretKey {
            name: &selector.name,
            key: &selector.key,
        }
    }
}

/// Where a link's bearer token and CA bundle come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkSecrets<'a> {
    pub token: Option<SecretKey<'a>>,
    pub ca: Option<SecretKey<'a>>,
}

/// Bounds and target of a node's HorizontalPodAutoscaler.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: Option<i32>,
    /// Most replicas.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU use the autoscaler keeps, in percent of the container's CPU request
    /// (default 80).
    #[serde(
        default,
        rename = "targetCPUUtilization",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
}

impl AutoscalingSpec {
    pub fn min(&self) -> i32 {
        self.min_replicas.unwrap_or(1)
    }
}

impl NodeSpec {
    /// The replicas the node runs at least: its replica count, or its autoscaler's minimum.
    pub fn min_replicas(&self) -> i32 {
        match &self.autoscaling {
            Some(autoscaling) => autoscaling.min(),
            None => self.replicas.unwrap_or(1),
        }
    }

    /// Whether the node may run more than one replica, so that a disruption budget means
    /// something.
    pub fn may_replicate(&self) -> bool {
        match &self.autoscaling {
            Some(autoscaling) => autoscaling.max_replicas > 1,
            None => self.replicas.unwrap_or(1) > 1,
        }
    }
}

/// A link from this node: to another node of the network, or to a remote endpoint (e.g. a
/// node of an IDN in another cluster).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.node) != has(self.endpoint)").message("give exactly one of node or endpoint"))]
pub struct LinkSpec {
    /// Name services use to refer to this link.
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// Another node of this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A remote OIP v2 endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<RemoteEndpoint>,
    /// Latency a call over this link adds (round trip), in milliseconds; informational in a
    /// cluster, emulated on loopback by `idn up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 60000))]
    pub latency_ms: Option<u64>,
    /// Longest wait for one call over this link, in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600000))]
    pub timeout_ms: Option<u64>,
    /// How the link speaks OIP v2: `rest` (default; binary tensors between nodes) or `grpc`
    /// (to a node's gRPC port, or an endpoint whose url is a gRPC server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Names of the classes answers over this link hold, column by column, when they differ
    /// from the service's (another order, or other classes); matched by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

impl LinkSpec {
    /// The secrets the link calls with: an endpoint's own; for a link to a node of the
    /// network (`nodes`), the token that node requires and the CA of its TLS Secret.
    pub fn secrets<'a>(&'a self, nodes: &'a [NodeSpec]) -> LinkSecrets<'a> {
        if let Some(endpoint) = &self.endpoint {
            return LinkSecrets {
                token: endpoint.token_secret.as_ref().map(SecretKey::from),
                ca: endpoint.ca_secret.as_ref().map(SecretKey::from),
            };
        }
        let Some(other) = nodes.iter().find(|n| Some(&n.name) == self.node.as_ref()) else {
            return LinkSecrets::default();
        };
        LinkSecrets {
            token: other
                .auth
                .as_ref()
                .map(|a| SecretKey::from(&a.token_secret)),
            ca: other.tls.as_ref().map(|tls| SecretKey {
                name: &tls.secret_name,
                key: TLS_CA_KEY,
            }),
        }
    }
}

impl InferenceDeliveryNetworkSpec {
    /// Every Secret key the network's pods mount, with the field of the spec that asks for
    /// it.
    pub fn secret_keys(&self) -> Vec<(String, SecretKey<'_>)> {
        let mut keys = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(tls) = &node.tls {
                for key in [TLS_CERT_KEY, TLS_KEY_KEY] {
                    let name = &tls.secret_name;
                    keys.push((
                        format!("spec.nodes[{i}].tls.secretName"),
                        SecretKey { name, key },
                    ));
                }
            }
            if let Some(auth) = &node.auth {
                let field = format!("spec.nodes[{i}].auth.tokenSecret");
                keys.push((field, SecretKey::from(&auth.token_secret)));
            }
            for (j, link) in node.links.iter().enumerate() {
                let secrets = link.secrets(&self.nodes);
                let at = format!("spec.nodes[{i}].links[{j}]");
                let (token_field, ca_field) = match link.endpoint {
                    Some(_) => (
                        format!("{at}.endpoint.tokenSecret"),
                        format!("{at}.endpoint.caSecret"),
                    ),
                    // The other node's secrets, which this link needs too.
                    None => (format!("{at}.node"), format!("{at}.node")),
                };
                keys.extend(secrets.token.map(|key| (token_field, key)));
                keys.extend(secrets.ca.map(|key| (ca_field, key)));
            }
        }
        keys
    }
}

/// A remote OIP v2 endpoint and the secrets holding its bearer token and CA.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.caSecret) || self.url.startsWith('https://')").message("caSecret needs an https:// url"))]
pub struct RemoteEndpoint {
    /// Base URL, e.g. `https://idn-cloud.other-cluster.example`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Secret key holding the bearer token sent to the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<SecretKeySelector>,
    /// Secret key holding the PEM CA bundle that signs the endpoint's certificate (default:
    /// the public web roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<SecretKeySelector>,
}

/// A service a node offers and how its strategy is bound to this node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeServiceSpec {
    /// Name clients call, e.g. `mnist`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"), length(min = 1, max = 63))]
    pub name: String,
    /// DeliveryStrategy (same namespace) the node applies.
    #[schemars(length(min = 1))]
    pub strategy: String,
    /// The node's model for the strategy's local role (local, threshold, forward fallback);
    /// must be placed on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The link for the strategy's upstream role (forward, threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Observed state of a network.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InferenceDeliveryNetworkStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded and InvalidSpec.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Ready nodes over all nodes, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes: Option<String>,
    /// Per-node readiness and endpoint.
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
}

/// Observed state of one node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub tier: Tier,
    /// Replicas wanted.
    pub replicas: i32,
    /// Replicas passing their readiness probe.
    pub ready_replicas: i32,
    /// In-cluster URL of the node's OIP v2 API.
    pub endpoint: String,
    /// In-cluster address of the node's OIP v2 gRPC service.
    #[serde(default)]
    pub grpc_endpoint: String,
    /// Services the node offers.
    #[serde(default)]
    pub services: Vec<String>,
    /// Models the node loads.
    #[serde(default)]
    pub models: Vec<String>,
}
