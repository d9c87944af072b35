//! The controller against a scripted API server (tower-test): each scenario fills the caches
//! the controller's watches would hold and lists the requests a reconcile must make, in order,
//! with canned responses. An unexpected request, a missing one or one more fails the test, and
//! so does any read: a reconcile reads its caches, never the API server.

use std::path::Path;
use std::sync::Arc;

use http::{Method, Request, Response};
use idn_operator::controller::{self, Context, Error, Verb};
use idn_operator::manifests::Manifests;
use idn_operator::metrics::OperatorMetrics;
use idn_operator::render::Settings;
use idn_operator::resources::InferenceDeliveryNetwork;
use idn_operator::resources::{DeliveryStrategy, InferenceModel, ModelPlacement};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ObjectMeta, PartialObjectMeta, PartialObjectMetaExt};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn example() -> Manifests {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist");
    let mut manifests = Manifests::load(&[root]).unwrap();
    let network = &mut manifests.networks[0];
    network.meta_mut().uid = Some("0a1b2c3d".into());
    network.meta_mut().generation = Some(1);
    manifests
}

/// One expected request: method, path, and how to answer given the request body.
struct Step {
    method: Method,
    path: String,
    status: u16,
    answer: Box<dyn Fn(&Value) -> Value + Send>,
}

fn step(method: Method, path: &str, answer: impl Fn(&Value) -> Value + Send + 'static) -> Step {
    Step {
        method,
        path: path.to_owned(),
        status: 200,
        answer: Box::new(answer),
    }
}

/// Serves `steps` in order and returns the bodies received, once the client is gone without
/// another request.
async fn serve(mut handle: ApiHandle, steps: Vec<Step>) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    for step in steps {
        let (request, send) = handle
            .next_request()
            .await
            .expect("the controller stopped calling the API");
        assert_ne!(
            request.method(),
            Method::GET,
            "the reconcile read {} from the API server, not from its caches",
            request.uri()
        );
        assert_eq!(
            (request.method(), request.uri().path()),
            (&step.method, step.path.as_str()),
            "unexpected request {} {}",
            request.method(),
            request.uri()
        );
        let bytes = http_body_util::BodyExt::collect(request.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let answer = (step.answer)(&body);
        seen.push((step.path, body));
        send.send_response(
            Response::builder()
                .status(step.status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
    if let Some((request, _)) = handle.next_request().await {
        panic!(
            "a request after the last expected one: {} {}",
            request.method(),
            request.uri()
        );
    }
    seen
}

/// What the namespace holds before the reconcile, as the controller's watches have seen it:
/// the manifests, the operator's objects (metadata, by kind) and Secrets.
struct Cluster {
    manifests: Manifests,
    owned: Vec<(&'static str, Value)>,
    secrets: Vec<Value>,
}

impl Cluster {
    fn new(manifests: &Manifests) -> Self {
        Cluster {
            manifests: manifests.clone(),
            owned: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// With the operator's objects of `nodes` (ConfigMap, Deployment and Service each) and the
    /// disruption budgets of `budgets`, all owned by the network.
    fn with_objects(mut self, nodes: &[&str], budgets: &[&str]) -> Self {
        for node in nodes {
            let meta = owned_meta(&format!("mnist-{node}"), "0a1b2c3d");
            for kind in ["ConfigMap", "Deployment", "Service"] {
                self.owned.push((kind, meta.clone()));
            }
        }
        for node in budgets {
            let meta = owned_meta(&format!("mnist-{node}"), "0a1b2c3d");
            self.owned.push(("PodDisruptionBudget", meta));
        }
        self
    }

    fn stores(&self) -> controller::Stores {
        let m = &self.manifests;
        controller::Stores {
            networks: cache(m.networks.clone()),
            models: cache::<InferenceModel>(m.models.clone()),
            strategies: cache::<DeliveryStrategy>(m.strategies.clone()),
            placements: cache::<ModelPlacement>(m.placements.clone()),
            secrets: cache::<Secret>(
                self.secrets
                    .iter()
                    .map(|s| serde_json::from_value(s.clone()).unwrap())
                    .collect(),
            ),
            config_maps: self.owned::<ConfigMap>(),
            deployments: self.owned::<Deployment>(),
            services: self.owned::<Service>(),
            autoscalers: self.owned::<HorizontalPodAutoscaler>(),
            disruption_budgets: self.owned::<PodDisruptionBudget>(),
        }
    }

    fn owned<K: Resource<DynamicType = ()> + Clone>(&self) -> Store<PartialObjectMeta<K>> {
        cache(
            self.owned
                .iter()
                .filter(|(kind, _)| *kind == K::kind(&()))
                .map(|(_, meta)| {
                    let meta: ObjectMeta = serde_json::from_value(meta.clone()).unwrap();
                    meta.into_response_partial::<K>()
                })
                .collect(),
        )
    }
}

/// A cache that has listed `objects`.
fn cache<K: Resource<DynamicType = ()> + Clone>(objects: Vec<K>) -> Store<K> {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// Reconciles `network` with caches holding `cluster`, against a server that answers `steps`
/// in order; returns the outcome and the bodies the server received.
async fn scenario(
    network: InferenceDeliveryNetwork,
    cluster: Cluster,
    steps: Vec<Step>,
) -> (Result<Action, Error>, Vec<(String, Value)>) {
    scenario_with(network, cluster.stores(), steps).await
}

/// [`scenario`] with the caches as given.
async fn scenario_with(
    network: InferenceDeliveryNetwork,
    stores: controller::Stores,
    steps: Vec<Step>,
) -> (Result<Action, Error>, Vec<(String, Value)>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(serve(handle, steps));
    let ctx = context(Client::new(service, "default"));
    ctx.watch(Some("default"), stores);
    let result = controller::reconcile(Arc::new(network), ctx).await;
    (result, server.await.unwrap())
}

fn context(client: Client) -> Arc<Context> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "idn-operator".into(),
            instance: None,
        },
    );
    Arc::new(Context::new(
        client,
        Settings::default(),
        recorder,
        Arc::new(OperatorMetrics::default()),
    ))
}

const NS: &str = "/namespaces/default";
const IDN: &str = "/apis/idn.dev/v1alpha1/namespaces/default";

/// Server-side applies of every node's objects (and the disruption budgets of `budgets`, the
/// nodes with several replicas), answered with the applied object.
fn applies(nodes: &[&str], budgets: &[&str]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (prefix, kind) in [
        ("/api/v1", "configmaps"),
        ("/apis/apps/v1", "deployments"),
        ("/api/v1", "services"),
    ] {
        for node in nodes {
            steps.push(step(
                Method::PATCH,
                &format!("{prefix}{NS}/{kind}/mnist-{node}"),
                |body| body.clone(),
            ));
        }
    }
    for node in budgets {
        steps.push(step(
            Method::PATCH,
            &format!("/apis/policy/v1{NS}/poddisruptionbudgets/mnist-{node}"),
            |body| body.clone(),
        ));
    }
    steps
}

/// Metadata of an object of the network `mnist`: its labels, and an owner reference to the
/// network of UID `owner`.
fn owned_meta(name: &str, owner: &str) -> Value {
    json!({
        "name": name, "namespace": "default",
        "labels": {"app.kubernetes.io/managed-by": "idn-operator", "idn.dev/network": "mnist"},
        "ownerReferences": [{
            "apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork",
            "name": "mnist", "uid": owner, "controller": true
        }]
    })
}

fn status_patch(network: &InferenceDeliveryNetwork) -> Step {
    let network = serde_json::to_value(network).unwrap();
    step(
        Method::PATCH,
        &format!("{IDN}/inferencedeliverynetworks/mnist/status"),
        move |body| {
            let mut answer = network.clone();
            answer["status"] = body["status"].clone();
            answer
        },
    )
}

/// Condition `type_` of a status as written.
fn condition(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
        .clone()
}

fn event() -> Step {
    step(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/default/events",
        |body| body.clone(),
    )
}

#[tokio::test]
async fn a_new_network_gets_its_objects_and_status() {
    let manifests = example();
    let network = manifests.networks[0].clone();
    // Two nodes' objects exist already: they are applied again, not deleted.
    let cluster = Cluster::new(&manifests).with_objects(&["access", "edge"], &[]);
    let mut steps = applies(&["access", "edge", "cloud"], &["cloud"]);
    steps.push(status_patch(&network));
    let (result, seen) = scenario(network, cluster, steps).await;
    assert!(result.is_ok(), "{result:?}");

    let deployment = &seen
        .iter()
        .find(|(p, _)| p.ends_with("deployments/mnist-edge"))
        .unwrap()
        .1;
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["uid"],
        "0a1b2c3d"
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    let status = &seen.last().unwrap().1["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["readyNodes"], "0/3");
    assert_eq!(
        status["nodes"][1]["endpoint"],
        "http://mnist-edge.default.svc:8000"
    );
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ready", "Progressing", "Degraded", "InvalidSpec"]);
    assert_eq!(status["conditions"][0]["status"], "False");
    assert_eq!(status["conditions"][3]["status"], "False");
}

/// The example without its edge node: access links straight to the cloud.
fn without_edge() -> Manifests {
    let mut manifests = example();
    let network = &mut manifests.networks[0];
    network.spec.nodes.remove(1);
    network.spec.nodes[0].links[0].node = Some("cloud".into());
    manifests.placements[0].spec.nodes.remove(1);
    manifests
}

/// Deletes of the edge node's ConfigMap, Deployment and Service, answered `status` with a
/// Status of `fields`.
fn edge_deletes(status: u16, fields: Value) -> Vec<Step> {
    let mut answer = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}});
    answer
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    [
        ("/api/v1", "configmaps"),
        ("/apis/apps/v1", "deployments"),
        ("/api/v1", "services"),
    ]
    .into_iter()
    .map(|(prefix, kind)| {
        let answer = answer.clone();
        Step {
            status,
            ..step(
                Method::DELETE,
                &format!("{prefix}{NS}/{kind}/mnist-edge"),
                move |_| answer.clone(),
            )
        }
    })
    .collect()
}

#[tokio::test]
async fn objects_of_a_removed_node_are_deleted() {
    let manifests = without_edge();
    let network = manifests.networks[0].clone();
    let cluster = Cluster::new(&manifests).with_objects(&["access", "edge", "cloud"], &["cloud"]);
    let mut steps = applies(&["access", "cloud"], &["cloud"]);
    steps.extend(edge_deletes(200, json!({"status": "Success"})));
    // Nothing to delete among the scaling objects: cloud keeps its disruption budget.
    steps.push(event());
    steps.push(status_patch(&network));
    let (result, seen) = scenario(network, cluster, steps).await;
    assert!(result.is_ok(), "{result:?}");
    let event = &seen.iter().find(|(p, _)| p.ends_with("/events")).unwrap().1;
    assert_eq!(event["reason"], "Pruned");
    assert_eq!(
        event["note"],
        "deleted ConfigMap mnist-edge, Deployment mnist-edge, Service mnist-edge"
    );
    assert_eq!(seen.last().unwrap().1["status"]["readyNodes"], "0/2");
}

#[tokio::test]
async fn objects_already_gone_are_not_reported_as_pruned() {
    let manifests = without_edge();
    let network = manifests.networks[0].clone();
    // The edge node's objects are gone already, though the caches have not seen it yet.
    let cluster = Cluster::new(&manifests).with_objects(&["edge"], &[]);
    let mut steps = applies(&["access", "cloud"], &["cloud"]);
    let gone = json!({"status": "Failure", "reason": "NotFound", "code": 404});
    steps.extend(edge_deletes(404, gone));
    // No Pruned event: the status patch follows at once.
    steps.push(status_patch(&network));
    let (result, _) = scenario(network, cluster, steps).await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn objects_the_network_does_not_own_are_not_deleted() {
    let manifests = example();
    let network = manifests.networks[0].clone();
    let mut steps = applies(&["access", "edge", "cloud"], &["cloud"]);
    // Each carries the network's label but is not the network's: another owner (a network of
    // the same name deleted and created again), no operator label, no owner at all.
    let other_owner = owned_meta("mnist-old", "ffff0000");
    let mut unmanaged = owned_meta("mnist-old", "0a1b2c3d");
    unmanaged["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app.kubernetes.io/managed-by");
    let mut unowned = owned_meta("mnist-old", "0a1b2c3d");
    unowned.as_object_mut().unwrap().remove("ownerReferences");
    let mut cluster = Cluster::new(&manifests);
    for meta in [other_owner, unmanaged, unowned] {
        for kind in ["ConfigMap", "Deployment", "Service"] {
            cluster.owned.push((kind, meta.clone()));
        }
    }
    steps.push(status_patch(&network));
    let (result, seen) = scenario(network, cluster, steps).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        seen.iter().all(|(path, _)| !path.contains("mnist-old")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_refused_apply_is_reported_in_status_and_an_event() {
    let mut manifests = example();
    manifests.networks[0].status = Some(serde_json::from_value(json!({
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "AllNodesReady", "message": "3/3 nodes ready", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1},
            {"type": "Degraded", "status": "False", "reason": "NoFailures", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
        ]
    })).unwrap());
    let network = manifests.networks[0].clone();
    let refusal = "Deployment.apps \"mnist-edge\" is invalid: spec.template.spec.containers[0].image: Required value";
    // The config maps and the first Deployment are applied; the second is refused.
    let mut steps: Vec<Step> = applies(&["access", "edge", "cloud"], &[])
        .into_iter()
        .take(4)
        .collect();
    steps.push(Step {
        status: 422,
        ..step(Method::PATCH, &format!("/apis/apps/v1{NS}/deployments/mnist-edge"), move |_| {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": refusal, "reason": "Invalid", "code": 422, "metadata": {}})
        })
    });
    steps.push(status_patch(&network));
    steps.push(event());
    let (result, seen) = scenario(network, Cluster::new(&manifests), steps).await;
    let Err(Error::Api { verb, object, .. }) = &result else {
        panic!("expected a refused apply, got {result:?}")
    };
    assert_eq!(
        (*verb, object.as_str()),
        (Verb::Apply, "Deployment mnist-edge")
    );
    let expected = format!("cannot apply Deployment mnist-edge: {refusal} (422 Invalid)");
    let status = &seen[seen.len() - 2].1["status"];
    let condition = |t: &str| condition(status, t);
    assert_eq!(condition("Ready")["status"], "Unknown");
    assert_eq!(condition("Ready")["reason"], "ApplyFailed");
    assert_eq!(condition("Ready")["message"], expected.as_str());
    assert_eq!(condition("Degraded")["status"], "True");
    assert_eq!(condition("Degraded")["message"], expected.as_str());
    let event = &seen.last().unwrap().1;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "Degraded");
    assert_eq!(event["note"], expected.as_str());
}

/// A watch that cannot list (its list refused, say) never fills its cache: the reconcile gives
/// up after a while and is retried with backoff, rather than waiting for ever.
#[tokio::test(start_paused = true)]
async fn a_cache_that_never_fills_is_an_error_not_a_hang() {
    let manifests = example();
    let network = manifests.networks[0].clone();
    let mut stores = Cluster::new(&manifests).stores();
    let (secrets, _still_watching) = reflector::store();
    stores.secrets = secrets;
    let (result, seen) = scenario_with(network, stores, Vec::new()).await;
    assert!(
        matches!(&result, Err(Error::CachesNotReady(namespace)) if namespace == "default"),
        "{result:?}"
    );
    assert!(seen.is_empty());
}

#[tokio::test]
async fn an_invalid_spec_gets_a_condition_and_an_event_and_no_objects() {
    let mut manifests = example();
    manifests.networks[0].spec.nodes[1].services[0].strategy = "no-such-strategy".into();
    let network = manifests.networks[0].clone();
    let steps = vec![status_patch(&network), event()];
    let (result, seen) = scenario(network, Cluster::new(&manifests), steps).await;
    let Err(Error::InvalidSpec(message)) = result else {
        panic!("expected an invalid spec, got {result:?}")
    };
    assert!(
        message.contains(
            "spec.nodes[1].services[0].strategy: unknown DeliveryStrategy \"no-such-strategy\""
        ),
        "{message}"
    );
    let status = &seen[0].1["status"];
    let invalid = condition(status, "InvalidSpec");
    assert_eq!(invalid["status"], "True");
    assert_eq!(invalid["reason"], "InvalidReference");
    let event = &seen[1].1;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert!(event["note"].as_str().unwrap().contains("no-such-strategy"));
}

#[tokio::test]
async fn a_missing_link_secret_is_an_invalid_spec() {
    let mut manifests = example();
    let link = &mut manifests.networks[0].spec.nodes[2].links;
    link.push(serde_json::from_value(json!({
        "name": "other-cluster",
        "endpoint": {"url": "http://idn.other.example:8000", "tokenSecret": {"name": "other-token", "key": "token"}}
    })).unwrap());
    let network = manifests.networks[0].clone();
    // A Secret of that name without the key is no better than none.
    let mut cluster = Cluster::new(&manifests);
    cluster.secrets.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "other-token", "namespace": "default"},
        "data": {"tokn": ""}
    }));
    let steps = vec![status_patch(&network), event()];
    let (result, _) = scenario(network.clone(), cluster, steps).await;
    let Err(Error::InvalidSpec(message)) = result else {
        panic!("expected an invalid spec, got {result:?}")
    };
    assert!(message.contains("spec.nodes[2].links[0].endpoint.tokenSecret: Secret \"other-token\" with key \"token\" not found"), "{message}");

    // Once the Secret has the key, the network is applied (the cache keeps keys, not values).
    let mut cluster = Cluster::new(&manifests);
    cluster.secrets.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "other-token", "namespace": "default"},
        "data": {"token": ""}
    }));
    let mut steps = applies(&["access", "edge", "cloud"], &["cloud"]);
    steps.push(status_patch(&network));
    let (result, _) = scenario(network, cluster, steps).await;
    assert!(result.is_ok(), "{result:?}");
}

/// The example network with its cloud node serving TLS with Secret `cloud-tls` and requiring
/// the token in Secret `cloud-token`: the edge, which links to the cloud, needs both too.
fn guarded_cloud() -> Manifests {
    let mut manifests = example();
    let mut cloud = serde_json::to_value(&manifests.networks[0].spec.nodes[2]).unwrap();
    cloud["tls"] = json!({"secretName": "cloud-tls"});
    cloud["auth"] = json!({"tokenSecret": {"name": "cloud-token", "key": "token"}});
    manifests.networks[0].spec.nodes[2] = serde_json::from_value(cloud).unwrap();
    manifests
}

/// A `kubernetes.io/tls` Secret as the cache keeps it, with `keys`.
fn tls_secret(name: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> =
        keys.iter().map(|k| ((*k).to_owned(), json!(""))).collect();
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default"},
        "data": data
    })
}

#[tokio::test]
async fn a_missing_certificate_or_token_secret_is_an_invalid_spec() {
    let manifests = guarded_cloud();
    let network = manifests.networks[0].clone();
    // The TLS Secret has the certificate and key but no CA for the edge's link; the token
    // Secret is missing. Both are read from the cache: the server answers no GET.
    let mut cluster = Cluster::new(&manifests);
    cluster
        .secrets
        .push(tls_secret("cloud-tls", &["tls.crt", "tls.key"]));
    let steps = vec![status_patch(&network), event()];
    let (result, _) = scenario(network, cluster, steps).await;
    let Err(Error::InvalidSpec(message)) = result else {
        panic!("expected an invalid spec, got {result:?}")
    };
    for expected in [
        "spec.nodes[1].links[0].node: Secret \"cloud-tls\" with key \"ca.crt\" not found",
        "spec.nodes[2].auth.tokenSecret: Secret \"cloud-token\" with key \"token\" not found",
    ] {
        assert!(message.contains(expected), "{expected} not in {message}");
    }
    assert!(!message.contains("tls.crt"), "{message}");
    assert!(!message.contains("tls.key"), "{message}");
}

#[tokio::test]
async fn a_guarded_node_is_applied_once_its_secrets_are_cached() {
    let manifests = guarded_cloud();
    let network = manifests.networks[0].clone();
    let mut cluster = Cluster::new(&manifests);
    cluster
        .secrets
        .push(tls_secret("cloud-tls", &["tls.crt", "tls.key", "ca.crt"]));
    cluster.secrets.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cloud-token", "namespace": "default"},
        "data": {"token": ""}
    }));
    let mut steps = applies(&["access", "edge", "cloud"], &["cloud"]);
    steps.push(status_patch(&network));
    let (result, seen) = scenario(network, cluster, steps).await;
    assert!(result.is_ok(), "{result:?}");
    // The edge calls the cloud over https, and the cloud's status says so.
    let edge_config = seen
        .iter()
        .find(|(path, _)| path.ends_with("/configmaps/mnist-edge"))
        .map(|(_, body)| body["data"]["agent.yaml"].as_str().unwrap().to_owned())
        .unwrap();
    assert!(
        edge_config.contains("https://mnist-cloud.default.svc"),
        "{edge_config}"
    );
}

#[tokio::test]
async fn an_updated_network_reports_ready_nodes_and_keeps_transition_times() {
    let mut manifests = example();
    let network = &mut manifests.networks[0];
    network.meta_mut().generation = Some(2);
    network.status = Some(serde_json::from_value(json!({
        "observedGeneration": 1,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "NodesNotReady", "message": "0/3", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1},
            {"type": "InvalidSpec", "status": "False", "reason": "Valid", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}
        ]
    })).unwrap());
    let network = manifests.networks[0].clone();
    let mut steps = Vec::new();
    for mut apply in applies(&["access", "edge", "cloud"], &["cloud"]) {
        if apply.path.contains("/deployments/") {
            // The kubelets have started every replica.
            apply.answer = Box::new(|body| {
                let mut deployment = body.clone();
                let replicas = body["spec"]["replicas"].clone();
                deployment["metadata"]["generation"] = json!(4);
                deployment["status"] = json!({"observedGeneration": 4, "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas});
                deployment
            });
        }
        steps.push(apply);
    }
    steps.push(status_patch(&network));
    steps.push(event());
    let (result, seen) = scenario(network, Cluster::new(&manifests), steps).await;
    assert!(result.is_ok(), "{result:?}");
    let status = &seen[seen.len() - 2].1["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["readyNodes"], "3/3");
    assert_eq!(status["nodes"][2]["readyReplicas"], 2);
    let condition = |t: &str| condition(status, t);
    assert_eq!(condition("Ready")["status"], "True");
    assert_ne!(
        condition("Ready")["lastTransitionTime"],
        "2026-01-01T00:00:00Z",
        "Ready flipped"
    );
    assert_eq!(
        condition("InvalidSpec")["lastTransitionTime"],
        "2026-01-01T00:00:00Z",
        "InvalidSpec did not"
    );
    assert_eq!(condition("Progressing")["status"], "False");
    assert_eq!(seen.last().unwrap().1["reason"], "Ready");
}
