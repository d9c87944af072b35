//! The controller against a scripted API server (tower-test): each scenario lists the requests
//! a reconcile must make, in order, with canned responses. An unexpected request fails the test.

use std::path::Path;
use std::sync::Arc;

use http::{Method, Request, Response};
use idn_operator::controller::{self, Context, Error};
use idn_operator::manifests::Manifests;
use idn_operator::metrics::OperatorMetrics;
use idn_operator::render::Settings;
use idn_operator::resources::InferenceDeliveryNetwork;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
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

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
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

/// Serves `steps` in order and returns the bodies received.
async fn serve(mut handle: ApiHandle, steps: Vec<Step>) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    for step in steps {
        let (request, send) = handle
            .next_request()
            .await
            .expect("the controller stopped calling the API");
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
    seen
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

/// The requests that read a network's resources.
fn reads(manifests: &Manifests) -> Vec<Step> {
    fn items<T: serde::Serialize>(resources: &[T]) -> Value {
        list(
            resources
                .iter()
                .map(|r| serde_json::to_value(r).unwrap())
                .collect(),
        )
    }
    let (models, strategies, placements) = (
        items(&manifests.models),
        items(&manifests.strategies),
        items(&manifests.placements),
    );
    vec![
        step(Method::GET, &format!("{IDN}/inferencemodels"), move |_| {
            models.clone()
        }),
        step(
            Method::GET,
            &format!("{IDN}/deliverystrategies"),
            move |_| strategies.clone(),
        ),
        step(Method::GET, &format!("{IDN}/modelplacements"), move |_| {
            placements.clone()
        }),
    ]
}

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

/// Label-selected lists of the network's objects, holding `existing` names (`budgets` for the
/// disruption budgets; no autoscalers).
fn sweeps(existing: &[&str], budgets: &[&str]) -> Vec<Step> {
    [
        ("/api/v1", "v1", "configmaps", "ConfigMap", existing),
        ("/apis/apps/v1", "apps/v1", "deployments", "Deployment", existing),
        ("/api/v1", "v1", "services", "Service", existing),
        ("/apis/autoscaling/v2", "autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", &[]),
        ("/apis/policy/v1", "policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", budgets),
    ]
        .into_iter()
        .map(|(prefix, api_version, kind, k, names)| {
            let items: Vec<Value> = names
                .iter()
                .map(|name| json!({"apiVersion": api_version, "kind": k, "metadata": {"name": name, "namespace": "default"}}))
                .collect();
            let answer = list(items);
            step(Method::GET, &format!("{prefix}{NS}/{kind}"), move |_| answer.clone())
        })
        .collect()
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
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut steps = reads(&manifests);
    steps.extend(applies(&["access", "edge", "cloud"], &["cloud"]));
    steps.extend(sweeps(
        &["mnist-access", "mnist-edge", "mnist-cnn-old"][..2],
        &[],
    ));
    steps.push(status_patch(&network));
    let server = tokio::spawn(serve(handle, steps));
    let result =
        controller::reconcile(Arc::new(network), context(Client::new(service, "default"))).await;
    assert!(result.is_ok(), "{result:?}");
    let seen = server.await.unwrap();

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

#[tokio::test]
async fn objects_of_a_removed_node_are_deleted() {
    let mut manifests = example();
    // The edge node leaves; access now links straight to the cloud.
    let network = &mut manifests.networks[0];
    network.spec.nodes.remove(1);
    network.spec.nodes[0].links[0].node = Some("cloud".into());
    network.spec.nodes[0].links[0].name = "edge".into();
    manifests.placements[0].spec.nodes.remove(1);
    let network = manifests.networks[0].clone();
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut steps = reads(&manifests);
    steps.extend(applies(&["access", "cloud"], &["cloud"]));
    let existing = ["mnist-access", "mnist-edge", "mnist-cloud"];
    let mut sweep = sweeps(&existing, &["mnist-cloud"]).into_iter();
    for (prefix, kind) in [
        ("/api/v1", "configmaps"),
        ("/apis/apps/v1", "deployments"),
        ("/api/v1", "services"),
    ] {
        steps.push(sweep.next().unwrap());
        steps.push(step(
            Method::DELETE,
            &format!("{prefix}{NS}/{kind}/mnist-edge"),
            |_| json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        ));
    }
    // Nothing to delete among the scaling objects: cloud keeps its disruption budget.
    steps.extend(sweep);
    steps.push(event());
    steps.push(status_patch(&network));
    let server = tokio::spawn(serve(handle, steps));
    let result =
        controller::reconcile(Arc::new(network), context(Client::new(service, "default"))).await;
    assert!(result.is_ok(), "{result:?}");
    let seen = server.await.unwrap();
    let event = &seen.iter().find(|(p, _)| p.ends_with("/events")).unwrap().1;
    assert_eq!(event["reason"], "Pruned");
    assert_eq!(
        event["note"],
        "deleted ConfigMap mnist-edge, Deployment mnist-edge, Service mnist-edge"
    );
    assert_eq!(seen.last().unwrap().1["status"]["readyNodes"], "0/2");
}

#[tokio::test]
async fn an_invalid_spec_gets_a_condition_and_an_event_and_no_objects() {
    let mut manifests = example();
    manifests.networks[0].spec.nodes[1].services[0].strategy = "no-such-strategy".into();
    let network = manifests.networks[0].clone();
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut steps = reads(&manifests);
    steps.push(status_patch(&network));
    steps.push(event());
    let server = tokio::spawn(serve(handle, steps));
    let result =
        controller::reconcile(Arc::new(network), context(Client::new(service, "default"))).await;
    let Err(Error::InvalidSpec(message)) = result else {
        panic!("expected an invalid spec, got {result:?}")
    };
    assert!(
        message.contains(
            "spec.nodes[1].services[0].strategy: unknown DeliveryStrategy \"no-such-strategy\""
        ),
        "{message}"
    );
    let seen = server.await.unwrap();
    let status = &seen[3].1["status"];
    let invalid = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "InvalidSpec")
        .unwrap();
    assert_eq!(invalid["status"], "True");
    assert_eq!(invalid["reason"], "InvalidReference");
    let event = &seen[4].1;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidSpec");
    assert!(event["note"].as_str().unwrap().contains("no-such-strategy"));
}

/// Reconciles the example network as `manifests` has it, with `secrets` answering the
/// controller's reads of Secrets; the InvalidSpec message it ends with.
async fn invalid_spec(manifests: &Manifests, secrets: Vec<Step>) -> String {
    let network = manifests.networks[0].clone();
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut steps = reads(manifests);
    steps.extend(secrets);
    steps.push(status_patch(&network));
    steps.push(event());
    let server = tokio::spawn(serve(handle, steps));
    let result =
        controller::reconcile(Arc::new(network), context(Client::new(service, "default"))).await;
    let Err(Error::InvalidSpec(message)) = result else {
        panic!("expected an invalid spec, got {result:?}")
    };
    server.await.unwrap();
    message
}

/// A read of Secret `name`, which does not exist.
fn secret_not_found(name: &str) -> Step {
    Step {
        status: 404,
        ..step(
            Method::GET,
            &format!("/api/v1/namespaces/default/secrets/{name}"),
            |_| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "metadata": {}}),
        )
    }
}

#[tokio::test]
async fn a_missing_link_secret_is_an_invalid_spec() {
    let mut manifests = example();
    let link = &mut manifests.networks[0].spec.nodes[2].links;
    link.push(serde_json::from_value(json!({
        "name": "other-cluster",
        "endpoint": {"url": "http://idn.other.example:8000", "tokenSecret": {"name": "other-token", "key": "token"}}
    })).unwrap());
    let message = invalid_spec(&manifests, vec![secret_not_found("other-token")]).await;
    assert!(message.contains("spec.nodes[2].links[0].endpoint.tokenSecret: Secret \"other-token\" with key \"token\" not found"), "{message}");
}

#[tokio::test]
async fn a_missing_certificate_or_token_secret_is_an_invalid_spec() {
    let mut manifests = example();
    let mut cloud = serde_json::to_value(&manifests.networks[0].spec.nodes[2]).unwrap();
    cloud["tls"] = json!({"secretName": "cloud-tls"});
    cloud["auth"] = json!({"tokenSecret": {"name": "cloud-token", "key": "token"}});
    manifests.networks[0].spec.nodes[2] = serde_json::from_value(cloud).unwrap();
    // Each Secret is read once: the token for the edge's link and the cloud's auth, the TLS
    // Secret for the edge's CA and the cloud's certificate (which has no CA).
    let tls = step(
        Method::GET,
        "/api/v1/namespaces/default/secrets/cloud-tls",
        |_| json!({"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/tls", "metadata": {"name": "cloud-tls", "namespace": "default"}, "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
    );
    let message = invalid_spec(&manifests, vec![secret_not_found("cloud-token"), tls]).await;
    for expected in [
        "spec.nodes[1].links[0].node: Secret \"cloud-tls\" with key \"ca.crt\" not found",
        "spec.nodes[2].auth.tokenSecret: Secret \"cloud-token\" with key \"token\" not found",
    ] {
        assert!(message.contains(expected), "{expected} not in {message}");
    }
    assert!(!message.contains("tls.crt"), "{message}");
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
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut steps = reads(&manifests);
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
    steps.extend(sweeps(&[], &[]));
    steps.push(status_patch(&network));
    steps.push(event());
    let server = tokio::spawn(serve(handle, steps));
    let result =
        controller::reconcile(Arc::new(network), context(Client::new(service, "default"))).await;
    assert!(result.is_ok(), "{result:?}");
    let seen = server.await.unwrap();
    let status = &seen[seen.len() - 2].1["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["readyNodes"], "3/3");
    assert_eq!(status["nodes"][2]["readyReplicas"], 2);
    let condition = |t: &str| {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()
            .clone()
    };
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
