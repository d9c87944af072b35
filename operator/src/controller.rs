//! The controller: reconciles each InferenceDeliveryNetwork into its nodes' objects.
//!
//! A reconcile reads the network's resources, renders the desired objects (pure), applies each
//! with server-side apply under one field manager, deletes what carries the network's label but
//! is no longer desired, and writes the status. An invalid spec writes an `InvalidSpec`
//! condition and a Warning event, then retries with backoff; it never crashes the process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector as store, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use idn_contract::names::{MANAGED_BY_LABEL, MANAGER};

use crate::conditions::{self, ConditionStatus, ConditionType, Observed, Reason};
use crate::metrics::OperatorMetrics;
use crate::plan::Declared;
use crate::render::{self, NETWORK_LABEL, Rendered, Settings};
use crate::resources::{
    DeliveryStrategy, InferenceDeliveryNetwork, InferenceDeliveryNetworkStatus, InferenceModel,
    ModelPlacement, NodeStatus,
};

/// Why a reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// Label of the error in metrics.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::NoNamespace(_) => "no_namespace",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Arc<OperatorMetrics>,
    /// Consecutive failures per network, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The networks each running controller watches, to catch object name clashes.
    networks: Mutex<Vec<Store<InferenceDeliveryNetwork>>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        recorder: Recorder,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Context {
            client,
            settings,
            recorder,
            metrics,
            failures: Mutex::default(),
            networks: Mutex::default(),
        }
    }

    /// Every network the controllers know of.
    fn known_networks(&self) -> Vec<InferenceDeliveryNetwork> {
        let stores = self.networks.lock().expect("not poisoned");
        stores
            .iter()
            .flat_map(|s| s.state())
            .map(|n| (*n).clone())
            .collect()
    }
}

/// Reconciles one network, recording the outcome in the metrics and in its span (exported
/// with the traces; at debug level, so that the logs keep their shape).
#[tracing::instrument(
    name = "reconcile",
    level = "debug",
    skip_all,
    fields(
        kind = %InferenceDeliveryNetwork::kind(&()),
        namespace = network.namespace().unwrap_or_default(),
        name = network.name_any(),
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
)]
pub async fn reconcile(
    network: Arc<InferenceDeliveryNetwork>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let start = Instant::now();
    let result = reconcile_network(&network, &ctx).await;
    let error = result.as_ref().err().map(Error::metric_label);
    ctx.metrics.observe_reconcile(start.elapsed(), error);
    let span = tracing::Span::current();
    span.record("outcome", error.unwrap_or("ok"));
    if error.is_some() {
        span.record("otel.status_code", "ERROR");
    }
    if result.is_ok() {
        ctx.failures
            .lock()
            .expect("not poisoned")
            .remove(&key(&network));
    }
    result
}

/// Retries a failed reconcile after 5 s, doubling per consecutive failure up to 5 minutes.
pub(crate) fn error_policy(
    network: Arc<InferenceDeliveryNetwork>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let failures = {
        let mut map = ctx.failures.lock().expect("not poisoned");
        let n = map.entry(key(&network)).or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff(failures);
    match error {
        Error::InvalidSpec(_) => tracing::info!(network = %key(&network), ?delay, "{error}"),
        _ => tracing::warn!(network = %key(&network), ?delay, "reconcile failed: {error}"),
    }
    Action::requeue(delay)
}

/// Delay before retry number `failures` (1-based).
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_secs(
        5u64.saturating_mul(1 << failures.saturating_sub(1).min(6))
            .min(300),
    )
}

fn key(network: &InferenceDeliveryNetwork) -> String {
    format!(
        "{}/{}",
        network.namespace().unwrap_or_default(),
        network.name_any()
    )
}

async fn reconcile_network(
    network: &InferenceDeliveryNetwork,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = network
        .namespace()
        .ok_or_else(|| Error::NoNamespace(network.name_any()))?;
    let client = &ctx.client;
    let models: Vec<InferenceModel> = list(client, &namespace, None).await?;
    let strategies: Vec<DeliveryStrategy> = list(client, &namespace, None).await?;
    let placements: Vec<ModelPlacement> = list(client, &namespace, None).await?;
    let declared = Declared {
        network,
        models: &models,
        strategies: &strategies,
        placements: &placements,
    };
    let rendered = render::render(&declared, &ctx.settings);
    let mut conflicts = render::name_conflicts(network, &ctx.known_networks());
    conflicts.extend(missing_secrets(client, &namespace, network).await?);
    let rendered = match rendered {
        Ok(rendered) if conflicts.is_empty() => rendered,
        result => {
            let mut problems = result.err().unwrap_or_default();
            problems.extend(conflicts);
            let message = problems.join("; ");
            let observed = vec![
                Observed::new(
                    ConditionType::Ready,
                    false,
                    Reason::InvalidSpec,
                    "the spec is invalid; see InvalidSpec",
                ),
                Observed::new(
                    ConditionType::Progressing,
                    false,
                    Reason::InvalidSpec,
                    "nothing is applied until the spec is fixed",
                ),
                Observed::new(ConditionType::Degraded, false, Reason::InvalidSpec, ""),
                Observed::new(
                    ConditionType::InvalidSpec,
                    true,
                    Reason::InvalidReference,
                    message.clone(),
                ),
            ];
            let status = network.status.clone().unwrap_or_default();
            write_status(ctx, network, status.nodes, observed).await?;
            return Err(Error::InvalidSpec(message));
        }
    };
    let deployments = apply_all(client, &namespace, &rendered).await?;
    let removed = delete_orphans(client, &namespace, &network.name_any(), &rendered).await?;
    if !removed.is_empty() {
        publish(
            ctx,
            network,
            EventType::Normal,
            "Pruned",
            format!("deleted {}", removed.join(", ")),
        )
        .await;
    }
    let (nodes, observed) = observe(&rendered.nodes, &deployments);
    let ready = observed
        .iter()
        .any(|c| c.type_ == ConditionType::Ready && c.status == ConditionStatus::True);
    write_status(ctx, network, nodes, observed).await?;
    // The Deployments' events trigger the next reconcile as pods become ready; while the
    // network is not ready, a short requeue also bounds how long its status can lag should an
    // event be missed.
    let next = if ready {
        SETTLED_RESYNC
    } else {
        ROLLOUT_RESYNC
    };
    Ok(Action::requeue(next))
}

/// Time to the next reconcile of a ready network, without any change to trigger one.
const SETTLED_RESYNC: Duration = Duration::from_secs(300);
/// Time to the next reconcile of a network still rolling out.
const ROLLOUT_RESYNC: Duration = Duration::from_secs(15);

/// Every object of the network's namespace of kind `K`, optionally selected by label.
async fn list<K>(client: &Client, namespace: &str, selector: Option<&str>) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = selector.map_or_else(ListParams::default, |s| ListParams::default().labels(s));
    Ok(api.list(&params).await?.items)
}

/// The Secret keys the network's pods would mount (certificates, required tokens, links'
/// tokens and CAs) that do not exist, each reported at the field that asks for it.
async fn missing_secrets(
    client: &Client,
    namespace: &str,
    network: &InferenceDeliveryNetwork,
) -> Result<Vec<String>, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    // Each Secret is read once, however many keys of it are needed.
    let mut secrets: BTreeMap<&str, Option<Secret>> = BTreeMap::new();
    let mut missing = Vec::new();
    for (field, wanted) in network.spec.secret_keys() {
        let secret = match secrets.get(wanted.name) {
            Some(secret) => secret,
            None => {
                let secret = api.get_opt(wanted.name).await?;
                secrets.entry(wanted.name).or_insert(secret)
            }
        };
        let present = secret
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .is_some_and(|d| d.contains_key(wanted.key));
        if !present {
            missing.push(format!(
                "{field}: Secret {:?} with key {:?} not found",
                wanted.name, wanted.key
            ));
        }
    }
    Ok(missing)
}

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    Ok(api
        .patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?)
}

/// Applies every object; returns the Deployments as the API server answered (with status).
async fn apply_all(
    client: &Client,
    namespace: &str,
    rendered: &Rendered,
) -> Result<Vec<Deployment>, Error> {
    for config_map in &rendered.config_maps {
        apply(client, namespace, config_map).await?;
    }
    let mut deployments = Vec::new();
    for deployment in &rendered.deployments {
        deployments.push(apply(client, namespace, deployment).await?);
    }
    for service in &rendered.services {
        apply(client, namespace, service).await?;
    }
    for autoscaler in &rendered.autoscalers {
        apply(client, namespace, autoscaler).await?;
    }
    for budget in &rendered.disruption_budgets {
        apply(client, namespace, budget).await?;
    }
    Ok(deployments)
}

/// Deletes the network's objects that are no longer desired (a node removed from the spec).
async fn delete_orphans(
    client: &Client,
    namespace: &str,
    network: &str,
    rendered: &Rendered,
) -> Result<Vec<String>, Error> {
    let selector = format!("{NETWORK_LABEL}={network}");
    let mut removed = Vec::new();
    macro_rules! sweep {
        ($kind:ty, $desired:expr) => {{
            let desired: HashSet<String> = $desired.iter().map(|o| o.name_any()).collect();
            let api: Api<$kind> = Api::namespaced(client.clone(), namespace);
            for object in list::<$kind>(client, namespace, Some(&selector)).await? {
                let name = object.name_any();
                if !desired.contains(&name) {
                    api.delete(&name, &DeleteParams::background()).await?;
                    removed.push(format!("{} {name}", <$kind as Resource>::kind(&())));
                }
            }
        }};
    }
    sweep!(ConfigMap, rendered.config_maps);
    sweep!(Deployment, rendered.deployments);
    sweep!(Service, rendered.services);
    sweep!(HorizontalPodAutoscaler, rendered.autoscalers);
    sweep!(PodDisruptionBudget, rendered.disruption_budgets);
    Ok(removed)
}

/// Node readiness and the network's conditions, from the Deployments' status.
pub(crate) fn observe(
    nodes: &[NodeStatus],
    deployments: &[Deployment],
) -> (Vec<NodeStatus>, Vec<Observed>) {
    let mut observed_nodes = nodes.to_vec();
    let mut rollout = Rollout::default();
    for (node, deployment) in observed_nodes.iter_mut().zip(deployments) {
        let status = deployment.status.clone().unwrap_or_default();
        node.ready_replicas = status.ready_replicas.unwrap_or(0);
        let generation_seen = status.observed_generation >= deployment.metadata.generation;
        if !generation_seen
            || status.updated_replicas.unwrap_or(0) < node.replicas
            || node.ready_replicas < node.replicas
        {
            rollout.rolling.push(node.name.clone());
        }
        let failed = status.conditions.unwrap_or_default().into_iter().any(|c| {
            (c.type_ == "Progressing" && c.status == "False")
                || (c.type_ == "ReplicaFailure" && c.status == "True")
        });
        if failed {
            rollout.failing.push(node.name.clone());
        }
    }
    let conditions = rollout.conditions(&observed_nodes);
    (observed_nodes, conditions)
}

/// The nodes whose Deployments are still rolling out, and those whose rollout failed.
#[derive(Default)]
struct Rollout {
    rolling: Vec<String>,
    failing: Vec<String>,
}

impl Rollout {
    fn conditions(&self, nodes: &[NodeStatus]) -> Vec<Observed> {
        let ready = nodes
            .iter()
            .filter(|n| n.ready_replicas >= n.replicas)
            .count();
        let total = nodes.len();
        let not_ready: Vec<String> = nodes
            .iter()
            .filter(|n| n.ready_replicas < n.replicas)
            .map(|n| format!("{} ({}/{})", n.name, n.ready_replicas, n.replicas))
            .collect();
        vec![
            if ready == total {
                Observed::new(
                    ConditionType::Ready,
                    true,
                    Reason::AllNodesReady,
                    format!("{ready}/{total} nodes ready"),
                )
            } else {
                Observed::new(
                    ConditionType::Ready,
                    false,
                    Reason::NodesNotReady,
                    format!(
                        "{ready}/{total} nodes ready; waiting for {}",
                        not_ready.join(", ")
                    ),
                )
            },
            if self.rolling.is_empty() {
                Observed::new(
                    ConditionType::Progressing,
                    false,
                    Reason::RolloutComplete,
                    "every node runs its current config",
                )
            } else {
                Observed::new(
                    ConditionType::Progressing,
                    true,
                    Reason::RollingOut,
                    format!("rolling out {}", self.rolling.join(", ")),
                )
            },
            if self.failing.is_empty() {
                Observed::new(ConditionType::Degraded, false, Reason::NoFailures, "")
            } else {
                Observed::new(
                    ConditionType::Degraded,
                    true,
                    Reason::RolloutFailed,
                    format!("failing: {}", self.failing.join(", ")),
                )
            },
            Observed::new(
                ConditionType::InvalidSpec,
                false,
                Reason::Valid,
                "every reference resolves",
            ),
        ]
    }
}

/// Writes the status with server-side apply, and publishes the events of its transitions.
async fn write_status(
    ctx: &Context,
    network: &InferenceDeliveryNetwork,
    nodes: Vec<NodeStatus>,
    observed: Vec<Observed>,
) -> Result<(), Error> {
    let previous = network.status.clone().unwrap_or_default();
    let conditions = conditions::merge(
        &previous.conditions,
        observed,
        network.metadata.generation,
        Timestamp::now(),
    );
    let ready_nodes = format!(
        "{}/{}",
        nodes
            .iter()
            .filter(|n| n.ready_replicas >= n.replicas)
            .count(),
        nodes.len()
    );
    let status = InferenceDeliveryNetworkStatus {
        observed_generation: network.metadata.generation,
        conditions,
        ready_nodes: Some(ready_nodes),
        nodes,
    };
    if status == previous {
        return Ok(());
    }
    let api: Api<InferenceDeliveryNetwork> =
        Api::namespaced(ctx.client.clone(), &network.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "idn.dev/v1alpha1",
        "kind": "InferenceDeliveryNetwork",
        "status": status,
    });
    api.patch_status(
        &network.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    for (type_, event_type) in [
        (ConditionType::InvalidSpec, EventType::Warning),
        (ConditionType::Ready, EventType::Normal),
        (ConditionType::Degraded, EventType::Warning),
    ] {
        let became_true = conditions::is_true(&status.conditions, type_)
            && !conditions::is_true(&previous.conditions, type_);
        if became_true {
            let message = status
                .conditions
                .iter()
                .find(|c| c.type_ == type_.as_str())
                .map(|c| c.message.clone())
                .unwrap_or_default();
            publish(ctx, network, event_type, type_.as_str(), message).await;
        }
    }
    Ok(())
}

/// Publishes an event; a failure to record it is logged, not fatal.
async fn publish(
    ctx: &Context,
    network: &InferenceDeliveryNetwork,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &network.object_ref(&())).await {
        tracing::warn!(network = %key(network), error = %e, "cannot publish event");
    }
}

/// An API for kind `K` in one namespace, or in all when `namespace` is `None`.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// A namespaced kind the controller watches.
trait Watched:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static
{
}

/// The metadata of the operator's own objects of kind `K`, as triggers of their owners.
fn owned_by<K>(
    client: &Client,
    namespace: Option<&str>,
    owned: &watcher::Config,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let stream = watcher(api, owned.clone());
    logged(
        K::kind(&()).into_owned(),
        stream.default_backoff().touched_objects(),
    )
}

/// Objects of kind `K` whose changes may concern any network of their namespace.
fn related<K>(
    client: &Client,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Watched,
{
    let stream = watcher(scoped::<K>(client, namespace), watcher::Config::default());
    logged(
        K::kind(&()).into_owned(),
        stream.default_backoff().touched_objects(),
    )
}

/// A watch with its own backoff, whose errors are logged and kept out of the controller.
/// kube-runtime's controller pauses all its watches behind one shared backoff on any error: after
/// an API server restart every watch fails once or twice (connection refused, then 410 Gone),
/// and the pauses added up to minutes without a reconcile. Here each watch backs off alone and
/// the others keep delivering.
fn logged<T: Send + 'static>(
    watch: String,
    stream: impl Stream<Item = Result<T, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send + 'static {
    stream.filter_map(move |item| {
        futures_util::future::ready(match item {
            Ok(object) => Some(Ok(object)),
            Err(error) => {
                tracing::warn!(%watch, %error, "watch failed; retrying after a backoff");
                None
            }
        })
    })
}

/// Runs the controller over the networks of one namespace (or all) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &ctx.client;
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    let (store, writer) = store::store();
    let networks = store::reflector(
        writer,
        watcher(
            scoped::<InferenceDeliveryNetwork>(client, namespace),
            watcher::Config::default(),
        ),
    );
    let controller = Controller::for_stream(
        logged(
            InferenceDeliveryNetwork::kind(&()).into_owned(),
            networks.default_backoff().applied_objects(),
        ),
        store.clone(),
    );
    ctx.networks
        .lock()
        .expect("not poisoned")
        .push(store.clone());
    // A change to a model, strategy or placement may affect any network of its namespace.
    let same_namespace = move |namespace: Option<String>| {
        store
            .state()
            .into_iter()
            .filter(|n| n.namespace() == namespace)
            .map(|n| ObjectRef::from_obj(&*n))
            .collect::<Vec<_>>()
    };
    let (by_model, by_strategy, by_placement) = (
        same_namespace.clone(),
        same_namespace.clone(),
        same_namespace,
    );
    controller
        .owns_stream(owned_by::<Deployment>(client, namespace, &owned))
        .owns_stream(owned_by::<ConfigMap>(client, namespace, &owned))
        .owns_stream(owned_by::<Service>(client, namespace, &owned))
        .owns_stream(owned_by::<HorizontalPodAutoscaler>(
            client, namespace, &owned,
        ))
        .owns_stream(owned_by::<PodDisruptionBudget>(client, namespace, &owned))
        .watches_stream(related::<InferenceModel>(client, namespace), move |m| {
            by_model(m.namespace())
        })
        .watches_stream(related::<DeliveryStrategy>(client, namespace), move |s| {
            by_strategy(s.namespace())
        })
        .watches_stream(related::<ModelPlacement>(client, namespace), move |p| {
            by_placement(p.namespace())
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::clone(&ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn node(name: &str, replicas: i32) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            replicas,
            ..NodeStatus::default()
        }
    }

    fn deployment(generation: i64, observed: i64, ready: i32, updated: i32) -> Deployment {
        Deployment {
            metadata: kube::api::ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                ready_replicas: Some(ready),
                updated_replicas: Some(updated),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn all_nodes_ready_means_ready_and_not_progressing() {
        let (nodes, conditions) = observe(
            &[node("a", 1), node("b", 2)],
            &[deployment(1, 1, 1, 1), deployment(3, 3, 2, 2)],
        );
        assert_eq!(nodes[1].ready_replicas, 2);
        assert_eq!(
            conditions[0],
            Observed::new(
                ConditionType::Ready,
                true,
                Reason::AllNodesReady,
                "2/2 nodes ready"
            )
        );
        assert_eq!(conditions[1].status, ConditionStatus::False);
    }

    #[test]
    fn a_rollout_in_progress_is_progressing_and_names_the_waiting_nodes() {
        let (_, conditions) = observe(
            &[node("a", 1), node("b", 1)],
            &[deployment(2, 1, 1, 0), deployment(1, 1, 0, 1)],
        );
        assert_eq!(conditions[0].status, ConditionStatus::False);
        assert_eq!(
            conditions[0].message,
            "1/2 nodes ready; waiting for b (0/1)"
        );
        assert_eq!(conditions[1].message, "rolling out a, b");
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
