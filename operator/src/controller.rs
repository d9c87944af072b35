//! The controller: reconciles each InferenceDeliveryNetwork into its nodes' objects.
//!
//! A reconcile reads the network's resources from its watches' caches, renders the desired
//! objects (pure), applies each with server-side apply under one field manager, deletes what is
//! the network's (labels and owner reference) but no longer desired, and writes the status. An
//! invalid spec writes an `InvalidSpec` condition and a Warning event, then retries with
//! backoff; it never crashes the process. So does an object the API server refuses: `Degraded`
//! (and the event) name the object, the request and the API server's message, and `Ready` turns
//! `Unknown`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
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
    /// The API server refused or failed a request about `object` (`Kind name`, or the kind's
    /// plural for a list).
    #[error("cannot {verb} {object}: {}", api_message(.source))]
    Api {
        verb: Verb,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{0} has no namespace")]
    NoNamespace(String),
    /// No running controller caches the namespace.
    #[error("namespace {0} is not watched")]
    NotWatched(String),
    /// A watch of the namespace has not listed within [`CACHE_SYNC_TIMEOUT`] (its errors are in
    /// the log: a refused list, an API server away), or stopped.
    #[error("the caches of namespace {0} are not filled yet; see the watch errors in the log")]
    CachesNotReady(String),
}

impl Error {
    /// Label of the error in metrics.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Error::Api { .. } => "kube",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::NoNamespace(_) => "no_namespace",
            Error::NotWatched(_) => "not_watched",
            Error::CachesNotReady(_) => "caches_not_ready",
        }
    }
}

/// What the controller asked of the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Apply,
    Delete,
    WriteStatus,
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verb::Apply => "apply",
            Verb::Delete => "delete",
            Verb::WriteStatus => "write the status of",
        })
    }
}

/// The API server's own words for a refusal (its message, code and reason), or the error.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

/// `Kind name`, as errors and conditions name an object.
fn describe<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{} {name}", K::kind(&()))
}

/// Wraps a failed request about `object` with what was asked.
fn failed(verb: Verb, object: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api {
        verb,
        object,
        source,
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
    /// The caches of each running controller, by the namespace it watches (`None`: all).
    scopes: Mutex<Vec<(Option<String>, Stores)>>,
}

/// What a controller's watches have seen, which reconciles read instead of asking the API
/// server: a reconcile lists nothing and gets nothing.
#[derive(Clone)]
pub struct Stores {
    pub networks: Store<InferenceDeliveryNetwork>,
    pub models: Store<InferenceModel>,
    pub strategies: Store<DeliveryStrategy>,
    pub placements: Store<ModelPlacement>,
    /// Secrets with their values dropped: which keys they have is all a reconcile reads.
    pub secrets: Store<Secret>,
    /// The operator's own objects (by its label), for the orphan sweep.
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pub deployments: Store<PartialObjectMeta<Deployment>>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub autoscalers: Store<PartialObjectMeta<HorizontalPodAutoscaler>>,
    pub disruption_budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
}

impl Stores {
    /// Waits until every watch has listed once; `false` if one of them stopped first.
    async fn ready(&self) -> bool {
        // The watches list meanwhile, so waiting for each in turn takes as long as the slowest.
        self.networks.wait_until_ready().await.is_ok()
            && self.models.wait_until_ready().await.is_ok()
            && self.strategies.wait_until_ready().await.is_ok()
            && self.placements.wait_until_ready().await.is_ok()
            && self.secrets.wait_until_ready().await.is_ok()
            && self.config_maps.wait_until_ready().await.is_ok()
            && self.deployments.wait_until_ready().await.is_ok()
            && self.services.wait_until_ready().await.is_ok()
            && self.autoscalers.wait_until_ready().await.is_ok()
            && self.disruption_budgets.wait_until_ready().await.is_ok()
    }
}

/// The cached objects of `namespace`.
fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .map(|o| (**o).clone())
        .collect()
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
            scopes: Mutex::default(),
        }
    }

    /// Makes `stores` the caches reconciles read for `namespace` (`None`: every namespace).
    pub fn watch(&self, namespace: Option<&str>, stores: Stores) {
        let mut scopes = self.scopes.lock().expect("not poisoned");
        scopes.push((namespace.map(str::to_owned), stores));
    }

    /// The caches that hold `namespace`.
    fn stores_for(&self, namespace: &str) -> Option<Stores> {
        let scopes = self.scopes.lock().expect("not poisoned");
        scopes
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))
            .map(|(_, stores)| stores.clone())
    }

    /// Every network the controllers know of.
    fn known_networks(&self) -> Vec<InferenceDeliveryNetwork> {
        let scopes = self.scopes.lock().expect("not poisoned");
        scopes
            .iter()
            .flat_map(|(_, stores)| stores.networks.state())
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
    let stores = ctx
        .stores_for(&namespace)
        .ok_or_else(|| Error::NotWatched(namespace.clone()))?;
    // A reconcile waits for its caches, but not for ever: a watch that cannot list (refused,
    // API server away) is an error retried with backoff, not a silent hang.
    let ready = tokio::time::timeout(CACHE_SYNC_TIMEOUT, stores.ready()).await;
    if ready != Ok(true) {
        return Err(Error::CachesNotReady(namespace));
    }
    let models = in_namespace(&stores.models, &namespace);
    let strategies = in_namespace(&stores.strategies, &namespace);
    let placements = in_namespace(&stores.placements, &namespace);
    let declared = Declared {
        network,
        models: &models,
        strategies: &strategies,
        placements: &placements,
    };
    let rendered = render::render(&declared, &ctx.settings);
    let mut conflicts = render::name_conflicts(network, &ctx.known_networks());
    conflicts.extend(missing_secrets(&stores.secrets, &namespace, network));
    let previous_nodes = network.status.clone().unwrap_or_default().nodes;
    let rendered = match rendered {
        Ok(rendered) if conflicts.is_empty() => rendered,
        result => {
            let mut problems = result.err().unwrap_or_default();
            problems.extend(conflicts);
            let message = problems.join("; ");
            let observed = conditions::invalid_spec(message.clone());
            write_status(ctx, network, previous_nodes, observed).await?;
            return Err(Error::InvalidSpec(message));
        }
    };
    // A refused object is a state of the network, not only a log line: its status and a
    // Warning event name the object and the API server's message.
    let applied = match apply_all(client, &namespace, &rendered).await {
        Ok(deployments) => delete_orphans(client, &stores, &namespace, network, &rendered)
            .await
            .map(|removed| (deployments, removed)),
        Err(error) => Err(error),
    };
    let (deployments, removed) = match applied {
        Ok(applied) => applied,
        Err(error) => {
            let observed = conditions::apply_failed(error.to_string());
            write_status(ctx, network, previous_nodes, observed).await?;
            return Err(error);
        }
    };
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

/// How long a reconcile waits for its watches' first lists.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Time to the next reconcile of a ready network, without any change to trigger one.
const SETTLED_RESYNC: Duration = Duration::from_secs(300);
/// Time to the next reconcile of a network still rolling out.
const ROLLOUT_RESYNC: Duration = Duration::from_secs(15);

/// The Secret keys the network's pods would mount (certificates, required tokens, links'
/// tokens and CAs) that the Secrets cache does not hold, each reported at the field that asks
/// for it.
fn missing_secrets(
    secrets: &Store<Secret>,
    namespace: &str,
    network: &InferenceDeliveryNetwork,
) -> Vec<String> {
    network
        .spec
        .secret_keys()
        .into_iter()
        .filter(|(_, wanted)| {
            let key = ObjectRef::new(wanted.name).within(namespace);
            !secrets
                .get(&key)
                .is_some_and(|s| s.data.as_ref().is_some_and(|d| d.contains_key(wanted.key)))
        })
        .map(|(field, wanted)| {
            format!(
                "{field}: Secret {:?} with key {:?} not found",
                wanted.name, wanted.key
            )
        })
        .collect()
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
    let name = object.name_any();
    api.patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(failed(Verb::Apply, describe::<K>(&name)))
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

/// Deletes the network's objects that are no longer desired (a node removed from the spec),
/// as the caches of the operator's own objects know them.
async fn delete_orphans(
    client: &Client,
    stores: &Stores,
    namespace: &str,
    network: &InferenceDeliveryNetwork,
    rendered: &Rendered,
) -> Result<Vec<String>, Error> {
    let sweep = Sweep {
        client,
        namespace,
        network,
    };
    let mut removed = sweep
        .run(&stores.config_maps, &rendered.config_maps)
        .await?;
    removed.extend(
        sweep
            .run(&stores.deployments, &rendered.deployments)
            .await?,
    );
    removed.extend(sweep.run(&stores.services, &rendered.services).await?);
    removed.extend(
        sweep
            .run(&stores.autoscalers, &rendered.autoscalers)
            .await?,
    );
    let budgets = &rendered.disruption_budgets;
    removed.extend(sweep.run(&stores.disruption_budgets, budgets).await?);
    Ok(removed)
}

/// The orphan sweep of one network.
struct Sweep<'a> {
    client: &'a Client,
    namespace: &'a str,
    network: &'a InferenceDeliveryNetwork,
}

impl Sweep<'_> {
    /// Deletes the cached objects of kind `K` that are the network's but not `desired`;
    /// returns them as `Kind name`.
    async fn run<K: Watched>(
        &self,
        cached: &Store<PartialObjectMeta<K>>,
        desired: &[K],
    ) -> Result<Vec<String>, Error> {
        let desired: HashSet<String> = desired.iter().map(|o| o.name_any()).collect();
        let api: Api<K> = Api::namespaced(self.client.clone(), self.namespace);
        let mut removed = Vec::new();
        for object in cached.state() {
            let name = object.name_any();
            if object.namespace().as_deref() != Some(self.namespace)
                || desired.contains(&name)
                || !belongs_to(&object.metadata, self.network)
            {
                continue;
            }
            let described = describe::<K>(&name);
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => removed.push(described),
                // Deleted since the cache saw it (by an earlier sweep, whose watch event is
                // still on its way): nothing left to do.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(failed(Verb::Delete, described)(source)),
            }
        }
        Ok(removed)
    }
}

/// Whether an object is `network`'s to delete: it carries the operator's label and the
/// network's, and names the network (by UID, not name) among its owners. A label alone is
/// not enough: another tool may set it, and a network deleted and created again under the same
/// name is another owner until garbage collection has run.
fn belongs_to(meta: &ObjectMeta, network: &InferenceDeliveryNetwork) -> bool {
    let labels = meta.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    let owned = network.uid().is_some_and(|uid| {
        meta.owner_references
            .iter()
            .flatten()
            .any(|owner| owner.uid == uid)
    });
    label(MANAGED_BY_LABEL) == Some(MANAGER)
        && label(NETWORK_LABEL) == Some(network.name_any().as_str())
        && owned
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
            conditions::valid_spec(),
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
    let name = network.name_any();
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(failed(
        Verb::WriteStatus,
        describe::<InferenceDeliveryNetwork>(&name),
    ))?;
    for (type_, event_type) in [
        (ConditionType::InvalidSpec, EventType::Warning),
        (ConditionType::Ready, EventType::Normal),
        (ConditionType::Degraded, EventType::Warning),
    ] {
        // News: a condition that became true, or is true for another reason than before; a
        // warning also when its message changes (another problem of the same kind: the one a
        // first reconcile saw against caches still filling is not the one the user must fix).
        let Some(now) = conditions::find_true(&status.conditions, type_) else {
            continue;
        };
        let before = conditions::find_true(&previous.conditions, type_);
        let news = before.is_none_or(|b| {
            b.reason != now.reason || (event_type == EventType::Warning && b.message != now.message)
        });
        if news {
            publish(
                ctx,
                network,
                event_type,
                type_.as_str(),
                now.message.clone(),
            )
            .await;
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

/// A watch of `api` whose objects `writer` caches, trimmed by `trim` first, as the stream of
/// the objects it touches.
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    trim: impl FnMut(&mut K) + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&()).into_owned();
    let stream = watcher(api, config).modify(trim).default_backoff();
    logged(kind, stream.reflect(writer).touched_objects())
}

/// The server-side apply bookkeeping, which no reconcile reads: not worth its memory.
fn without_managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// A Secret as the cache keeps it: which keys it has, not their values.
fn without_values(secret: &mut Secret) {
    without_managed_fields(secret);
    secret.string_data = None;
    for value in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
        value.0.clear();
    }
}

/// Objects of kind `K` whose changes may concern any network of their namespace, cached.
fn related<K: Watched + Sync>(
    client: &Client,
    namespace: Option<&str>,
    writer: Writer<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    let config = watcher::Config::default();
    cached(
        scoped(client, namespace),
        config,
        writer,
        without_managed_fields,
    )
}

/// The metadata of the operator's own objects of kind `K`, cached for the orphan sweep.
fn owned_by<K: Watched + Sync>(
    client: &Client,
    namespace: Option<&str>,
    writer: Writer<PartialObjectMeta<K>>,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static {
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"));
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    cached(api, owned, writer, without_managed_fields)
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

/// The networks a change to `object` concerns: those of its namespace, and of those only the
/// ones whose pods would mount `secret` (a certificate, a required token, a link's token or
/// CA) when the object is a Secret.
fn concerned<K: Resource>(
    networks: &Store<InferenceDeliveryNetwork>,
    object: &K,
    secret: Option<&str>,
) -> Vec<ObjectRef<InferenceDeliveryNetwork>> {
    networks
        .state()
        .into_iter()
        .filter(|n| n.namespace() == object.namespace())
        .filter(|n| {
            secret.is_none_or(|name| n.spec.secret_keys().iter().any(|(_, s)| s.name == name))
        })
        .map(|n| ObjectRef::from_obj(&*n))
        .collect()
}

/// Runs the controller over the networks of one namespace (or all) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = &ctx.client;
    let (networks, networks_writer) = store::store();
    let network_events = watcher(
        scoped::<InferenceDeliveryNetwork>(client, namespace),
        watcher::Config::default(),
    )
    .modify(without_managed_fields)
    .reflect(networks_writer);
    let controller = Controller::for_stream(
        logged(
            InferenceDeliveryNetwork::kind(&()).into_owned(),
            network_events.default_backoff().applied_objects(),
        ),
        networks.clone(),
    );
    let (models, models_writer) = store::store();
    let (strategies, strategies_writer) = store::store();
    let (placements, placements_writer) = store::store();
    let (secrets, secrets_writer) = store::store();
    let (config_maps, config_maps_writer) = store::store();
    let (deployments, deployments_writer) = store::store();
    let (services, services_writer) = store::store();
    let (autoscalers, autoscalers_writer) = store::store();
    let (disruption_budgets, disruption_budgets_writer) = store::store();
    ctx.watch(
        namespace,
        Stores {
            networks: networks.clone(),
            models,
            strategies,
            placements,
            secrets,
            config_maps,
            deployments,
            services,
            autoscalers,
            disruption_budgets,
        },
    );
    // A change to a model, strategy or placement may affect any network of its namespace; a
    // Secret, those that name it (a Secret created after its network is reconciled at once,
    // not after the InvalidSpec backoff).
    let (by_model, by_strategy, by_placement, by_secret) = (
        networks.clone(),
        networks.clone(),
        networks.clone(),
        networks,
    );
    controller
        .owns_stream(owned_by::<ConfigMap>(client, namespace, config_maps_writer))
        .owns_stream(owned_by::<Deployment>(
            client,
            namespace,
            deployments_writer,
        ))
        .owns_stream(owned_by::<Service>(client, namespace, services_writer))
        .owns_stream(owned_by::<HorizontalPodAutoscaler>(
            client,
            namespace,
            autoscalers_writer,
        ))
        .owns_stream(owned_by::<PodDisruptionBudget>(
            client,
            namespace,
            disruption_budgets_writer,
        ))
        .watches_stream(
            related(client, namespace, models_writer),
            move |m: InferenceModel| concerned(&by_model, &m, None),
        )
        .watches_stream(
            related(client, namespace, strategies_writer),
            move |s: DeliveryStrategy| concerned(&by_strategy, &s, None),
        )
        .watches_stream(
            related(client, namespace, placements_writer),
            move |p: ModelPlacement| concerned(&by_placement, &p, None),
        )
        .watches_stream(
            cached(
                scoped(client, namespace),
                watcher::Config::default(),
                secrets_writer,
                without_values,
            ),
            move |s: Secret| concerned(&by_secret, &s, Some(&s.name_any())),
        )
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

    fn network(name: &str, namespace: &str, secret: Option<&str>) -> InferenceDeliveryNetwork {
        let links = match secret {
            Some(secret) => serde_json::json!([{"name": "remote", "endpoint": {
                "url": "https://idn.other.example", "tokenSecret": {"name": secret, "key": "token"}}}]),
            None => serde_json::json!([]),
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodes": [{"name": "a", "links": links}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_secret_concerns_the_networks_that_name_it_and_a_strategy_every_network_beside_it() {
        let (networks, mut writer) = store::store();
        for n in [
            network("uses-it", "default", Some("token")),
            network("other-secret", "default", Some("other")),
            network("no-secret", "default", None),
            network("elsewhere", "prod", Some("token")),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(n));
        }
        let names = |refs: Vec<ObjectRef<InferenceDeliveryNetwork>>| {
            let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
            names.sort();
            names
        };
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "token", "namespace": "default"}
        }))
        .unwrap();
        assert_eq!(
            names(concerned(&networks, &secret, Some("token"))),
            ["uses-it"]
        );
        let strategy: DeliveryStrategy = serde_json::from_value(serde_json::json!({
            "apiVersion": "idn.dev/v1alpha1", "kind": "DeliveryStrategy",
            "metadata": {"name": "serve-local", "namespace": "default"},
            "spec": {"local": {}}
        }))
        .unwrap();
        assert_eq!(
            names(concerned(&networks, &strategy, None)),
            ["no-secret", "other-secret", "uses-it"]
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
