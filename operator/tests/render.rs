//! Rendering the example network: golden objects, and how spec changes and mistakes show.

use std::path::Path;

use idn_operator::manifests::Manifests;
use idn_operator::plan::Declared;
use idn_operator::render::{self, CONFIG_HASH_ANNOTATION, OtlpExport, Rendered, Settings};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;
use kube::Resource;
use serde_json::json;

fn example() -> Manifests {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mnist");
    let mut manifests = Manifests::load(&[root]).unwrap();
    manifests.networks[0].meta_mut().uid = Some("0a1b2c3d".into());
    manifests
}

fn render(manifests: &Manifests) -> Result<Rendered, Vec<String>> {
    render_with(manifests, &Settings::default())
}

fn render_with(manifests: &Manifests, settings: &Settings) -> Result<Rendered, Vec<String>> {
    let declared = Declared {
        network: &manifests.networks[0],
        models: &manifests.models,
        strategies: &manifests.strategies,
        placements: &manifests.placements,
    };
    render::render(&declared, settings)
}

/// The pod template of node `i`'s Deployment.
fn pod_spec(rendered: &Rendered, i: usize) -> k8s_openapi::api::core::v1::PodSpec {
    let spec = rendered.deployments[i].spec.clone().unwrap();
    spec.template.spec.unwrap()
}

fn hashes(rendered: &Rendered) -> Vec<String> {
    rendered
        .deployments
        .iter()
        .map(|d| {
            let template = &d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
            template.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION].clone()
        })
        .collect()
}

#[test]
fn golden_objects_of_the_example_network() {
    let rendered = render(&example()).unwrap();
    for ((config_map, deployment), service) in rendered
        .config_maps
        .iter()
        .zip(&rendered.deployments)
        .zip(&rendered.services)
    {
        let name = config_map.metadata.name.clone().unwrap();
        insta::assert_yaml_snapshot!(format!("{name}-configmap"), config_map);
        insta::assert_yaml_snapshot!(format!("{name}-deployment"), deployment);
        insta::assert_yaml_snapshot!(format!("{name}-service"), service);
    }
    // The cloud node runs two replicas: one may be evicted at a time.
    let [budget] = &rendered.disruption_budgets[..] else {
        panic!("one disruption budget: {:?}", rendered.disruption_budgets)
    };
    insta::assert_yaml_snapshot!("mnist-cloud-poddisruptionbudget", budget);
    assert!(rendered.autoscalers.is_empty());
}

#[test]
fn pods_are_given_longer_to_stop_than_their_agent_drains() {
    let rendered = render(&example()).unwrap();
    for (i, config_map) in rendered.config_maps.iter().enumerate() {
        let agent = &config_map.data.as_ref().unwrap()["agent.yaml"];
        let config = idn_contract::config::NodeAgentConfig::from_yaml(agent).unwrap();
        let drain = i64::try_from(config.limits.drain_timeout_seconds).unwrap();
        let grace = pod_spec(&rendered, i).termination_grace_period_seconds;
        assert!(
            grace.is_some_and(|grace| grace > drain),
            "node {i}: terminationGracePeriodSeconds {grace:?}, drain {drain} s"
        );
    }
}

#[test]
fn node_agents_export_their_spans_where_the_operator_is_told() {
    let settings = Settings {
        otlp: Some(OtlpExport {
            endpoint: "http://collector:4318".into(),
            protocol: Some("http/protobuf".into()),
        }),
        ..Settings::default()
    };
    let traced = render_with(&example(), &settings).unwrap();
    let plain = render(&example()).unwrap();
    for (traced, plain) in traced.deployments.iter().zip(&plain.deployments) {
        let container =
            |d: &Deployment| d.spec.clone().unwrap().template.spec.unwrap().containers[0].clone();
        let env: Vec<(String, String)> = container(traced)
            .env
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap()))
            .collect();
        let expected = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "idn-node-agent"),
        ];
        assert_eq!(env, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
        // Nothing else changes.
        let untraced = Container {
            env: None,
            ..container(traced)
        };
        assert_eq!(untraced, container(plain));
    }
}

#[test]
fn an_autoscaled_node_leaves_its_replicas_to_the_autoscaler() {
    let mut manifests = example();
    let edge = &mut manifests.networks[0].spec.nodes[1];
    edge.autoscaling =
        Some(serde_json::from_value(json!({"minReplicas": 2, "maxReplicas": 5})).unwrap());
    let rendered = render(&manifests).unwrap();
    let [autoscaler] = &rendered.autoscalers[..] else {
        panic!("one autoscaler: {:?}", rendered.autoscalers)
    };
    insta::assert_yaml_snapshot!("mnist-edge-horizontalpodautoscaler", autoscaler);
    let deployment = rendered.deployments[1].spec.as_ref().unwrap();
    assert_eq!(deployment.replicas, None);
    assert_eq!(rendered.nodes[1].replicas, 2);
    let budgets: Vec<_> = rendered
        .disruption_budgets
        .iter()
        .map(|b| b.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(budgets, ["mnist-edge", "mnist-cloud"]);
}

#[test]
fn a_strategy_change_rolls_exactly_the_nodes_that_use_it() {
    let mut manifests = example();
    let before = hashes(&render(&manifests).unwrap());
    let edge = manifests
        .strategies
        .iter_mut()
        .find(|s| s.metadata.name.as_deref() == Some("cascade-edge"))
        .unwrap();
    edge.spec.threshold.as_mut().unwrap().tau = 0.5;
    let after = hashes(&render(&manifests).unwrap());
    assert_eq!(before[0], after[0], "access keeps its pods");
    assert_ne!(before[1], after[1], "edge rolls");
    assert_eq!(before[2], after[2], "cloud keeps its pods");
}

#[test]
fn a_model_change_rolls_the_nodes_that_load_it() {
    let mut manifests = example();
    let before = hashes(&render(&manifests).unwrap());
    let cnn = manifests
        .models
        .iter_mut()
        .find(|m| m.metadata.name.as_deref() == Some("mnist-cnn"))
        .unwrap();
    cnn.spec.source.url = Some("http://models.idn-examples.svc/v2/mnist-cnn.onnx".into());
    let after = hashes(&render(&manifests).unwrap());
    assert_eq!(before[..2], after[..2]);
    assert_ne!(before[2], after[2]);
}

#[test]
fn model_sources_become_downloads_or_volumes() {
    let mut manifests = example();
    let linear_sha256 = manifests.models[0].spec.source.sha256.clone();
    let sources = [
        json!({"url": "http://models.idn-examples.svc/mnist-linear.onnx", "sha256": linear_sha256}),
        json!({"volume": {"claimName": "models", "path": "mnist/mlp.onnx"}}),
        json!({"image": {"reference": "registry.example/models/mnist:1", "path": "/cnn.onnx"}, "sha256": "0".repeat(64)}),
    ];
    for (model, source) in manifests.models.iter_mut().zip(sources) {
        model.spec.source = serde_json::from_value(source).unwrap();
    }
    let rendered = render(&manifests).unwrap();
    let pod = |i: usize| pod_spec(&rendered, i);
    let init = pod(0).init_containers.unwrap();
    let script = &init[0].command.as_ref().unwrap()[2];
    assert!(script.contains("curl -fsSL --retry 3 -o /models/mnist-linear.onnx 'http://models.idn-examples.svc/mnist-linear.onnx'"), "{script}");
    assert!(script.contains("sha256sum -c -"), "{script}");
    let edge = pod(1);
    assert!(edge.init_containers.is_none());
    assert_eq!(
        edge.volumes.as_ref().unwrap()[1]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "models"
    );
    assert!(
        rendered.config_maps[1].data.as_ref().unwrap()["agent.yaml"]
            .contains("path: /models/volumes/mnist-mlp/mnist/mlp.onnx")
    );
    let cloud = pod(2);
    assert_eq!(
        cloud.volumes.as_ref().unwrap()[1]
            .image
            .as_ref()
            .unwrap()
            .reference
            .as_deref(),
        Some("registry.example/models/mnist:1")
    );
    assert!(
        rendered.config_maps[2].data.as_ref().unwrap()["agent.yaml"]
            .contains("path: /models/images/mnist-cnn/cnn.onnx")
    );
}

#[test]
fn pods_are_hardened() {
    let rendered = render(&example()).unwrap();
    for deployment in &rendered.deployments {
        let pod = deployment.spec.clone().unwrap().template.spec.unwrap();
        assert_eq!(
            pod.security_context.as_ref().unwrap().run_as_non_root,
            Some(true)
        );
        for container in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let security = container.security_context.as_ref().unwrap();
            assert_eq!(
                security.read_only_root_filesystem,
                Some(true),
                "{}",
                container.name
            );
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert!(container.resources.as_ref().unwrap().requests.is_some());
        }
        let agent = &pod.containers[0];
        assert_eq!(
            agent
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/v2/health/ready")
        );
        assert_eq!(
            agent
                .liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/v2/health/live")
        );
    }
}

#[test]
fn mistakes_are_reported_with_their_field() {
    type Edit = fn(&mut Manifests);
    let cases: [(Edit, &str); 10] = [
        (
            |m| m.networks[0].meta_mut().name = Some("1-very-long-network-name-x".into()),
            "metadata.name: \"1-very-long-network-name-x\" must be a DNS label of at most 22 characters",
        ),
        // Names the API server would refuse: a Service "mnist-<node>" over 63 characters, a
        // volume "link-<link>" over 63.
        (
            |m| m.networks[0].spec.nodes[2].name = "c".repeat(60),
            "spec.nodes[2].name: \"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\" must be a DNS label of at most 40 characters",
        ),
        (
            |m| {
                m.networks[0].spec.nodes[2].links.push(
                    serde_json::from_value(json!({
                        "name": "l".repeat(60),
                        "endpoint": {"url": "https://idn.other.example", "caSecret": {"name": "ca", "key": "ca.crt"}}
                    }))
                    .unwrap(),
                )
            },
            "spec.nodes[2].links[0].name: a link with secrets has a name of at most 58 characters",
        ),
        (
            |m| m.placements[0].spec.nodes[0].models[0] = "resnet".into(),
            "ModelPlacement mnist: spec.nodes[0].models[0]: unknown InferenceModel \"resnet\"",
        ),
        (
            |m| m.placements[0].spec.nodes[0].node = "fog".into(),
            "ModelPlacement mnist: spec.nodes[0].node: unknown node \"fog\"",
        ),
        (
            |m| m.networks[0].spec.nodes[1].services[0].model = Some("mnist-cnn".into()),
            "spec.nodes[1].services[0].model: InferenceModel \"mnist-cnn\" is not placed on node \"edge\"",
        ),
        (
            |m| m.networks[0].spec.nodes[0].links[0].node = Some("fog".into()),
            "spec.nodes[0].links[0].node: unknown node \"fog\"",
        ),
        (
            |m| m.networks[0].spec.nodes[0].services[0].link = Some("cloud".into()),
            "spec.nodes[0].services[0].link: node \"access\" has no link \"cloud\"",
        ),
        (
            |m| m.networks[0].spec.nodes[0].services[0].link = None,
            "spec.nodes[0].services[0].link: DeliveryStrategy \"cascade-access\" needs an upstream link",
        ),
        (
            |m| m.networks[0].spec.nodes[2].services[0].name = "digits".into(),
            "spec.nodes[1].services[0].link: node \"cloud\" (at the other end of link \"cloud\") offers no service \"mnist\"",
        ),
    ];
    for (edit, expected) in cases {
        let mut manifests = example();
        edit(&mut manifests);
        let problems = render(&manifests).unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected}\nnot in {problems:?}"
        );
    }
}

#[test]
fn forwarding_cycles_between_nodes_are_rejected() {
    let mut manifests = example();
    // cloud now forwards mnist back to access.
    let cloud = &mut manifests.networks[0].spec.nodes[2];
    cloud
        .links
        .push(serde_json::from_value(json!({"name": "access", "node": "access"})).unwrap());
    cloud.services[0].strategy = "cascade-edge".into();
    cloud.services[0].link = Some("access".into());
    let problems = render(&manifests).unwrap_err();
    assert!(
        problems
            .contains(&"spec.nodes: forwarding cycle access -> edge -> cloud -> access".to_owned()),
        "{problems:?}"
    );
}

#[test]
fn forwarding_cycles_through_ensemble_members_are_rejected() {
    let mut manifests = example();
    // cloud now asks access as an ensemble member: no service of the cycle has a `link`.
    manifests.strategies.push(
        serde_json::from_value(json!({
            "apiVersion": "idn.dev/v1alpha1", "kind": "DeliveryStrategy",
            "metadata": {"name": "ask-access", "namespace": "default"},
            "spec": {"ensemble": {"members": [{"model": "mnist-cnn"}, {"link": "access"}]}}
        }))
        .unwrap(),
    );
    let cloud = &mut manifests.networks[0].spec.nodes[2];
    cloud
        .links
        .push(serde_json::from_value(json!({"name": "access", "node": "access"})).unwrap());
    cloud.services[0].strategy = "ask-access".into();
    let problems = render(&manifests).unwrap_err();
    assert_eq!(
        problems,
        ["spec.nodes: forwarding cycle access -> edge -> cloud -> access"],
    );
}

#[test]
fn a_newer_network_may_not_take_an_older_ones_object_names() {
    let manifests = example();
    let older: idn_operator::resources::InferenceDeliveryNetwork = serde_json::from_value(json!({
        "apiVersion": "idn.dev/v1alpha1", "kind": "InferenceDeliveryNetwork",
        "metadata": {"name": "edge-eu", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodes": [{"name": "west"}]}
    }))
    .unwrap();
    let mut newer = manifests.networks[0].clone();
    newer.metadata.name = Some("edge".into());
    newer.spec.nodes[1].name = "eu-west".into();
    newer.metadata.creation_timestamp =
        serde_json::from_value(json!("2026-02-01T00:00:00Z")).unwrap();
    let problems = render::name_conflicts(&newer, std::slice::from_ref(&older));
    assert_eq!(
        problems,
        [
            "spec.nodes[1].name: its objects would be named edge-eu-west, like those of node \"west\" of InferenceDeliveryNetwork \"edge-eu\""
        ]
    );
    assert!(
        render::name_conflicts(&older, &[newer]).is_empty(),
        "the older network keeps its names"
    );
}

#[test]
fn a_remote_link_mounts_its_token_and_ca() {
    let mut manifests = example();
    let cloud = &mut manifests.networks[0].spec.nodes[2];
    cloud.links.push(
        serde_json::from_value(json!({
            "name": "other-cluster",
            "endpoint": {
                "url": "https://idn.other.example",
                "tokenSecret": {"name": "other", "key": "token"},
                "caSecret": {"name": "other-ca", "key": "ca.crt"}
            }
        }))
        .unwrap(),
    );
    let rendered = render(&manifests).unwrap();
    let config = &rendered.config_maps[2].data.as_ref().unwrap()["agent.yaml"];
    assert!(
        config.contains("url: https://idn.other.example"),
        "{config}"
    );
    assert!(
        config.contains("tokenFile: /var/run/idn/links/other-cluster/token"),
        "{config}"
    );
    assert!(
        config.contains("caFile: /var/run/idn/links/other-cluster/ca.crt"),
        "{config}"
    );
    let pod = rendered.deployments[2]
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "link-other-cluster")
        .unwrap();
    let sources = volume.projected.unwrap().sources.unwrap();
    let files: Vec<(String, String, String)> = sources
        .iter()
        .map(|s| {
            let secret = s.secret.as_ref().unwrap();
            let item = &secret.items.as_ref().unwrap()[0];
            (secret.name.clone(), item.key.clone(), item.path.clone())
        })
        .collect();
    assert_eq!(
        files,
        [
            ("other".into(), "token".into(), "token".into()),
            ("other-ca".into(), "ca.crt".into(), "ca.crt".into())
        ]
    );
}

/// The example network with its cloud node serving TLS and requiring a token.
fn with_a_guarded_cloud() -> Manifests {
    let mut manifests = example();
    let cloud = &mut manifests.networks[0].spec.nodes[2];
    cloud.tls = Some(serde_json::from_value(json!({"secretName": "cloud-tls"})).unwrap());
    cloud.auth = Some(
        serde_json::from_value(json!({"tokenSecret": {"name": "cloud-token", "key": "token"}}))
            .unwrap(),
    );
    manifests
}

#[test]
fn a_node_requiring_a_token_over_tls_mounts_them_and_its_callers_send_them() {
    let rendered = render(&with_a_guarded_cloud()).unwrap();
    let config = |i: usize| -> idn_contract::config::NodeAgentConfig {
        serde_norway::from_str(&rendered.config_maps[i].data.as_ref().unwrap()["agent.yaml"])
            .unwrap()
    };
    let cloud = config(2);
    let tls = cloud.tls.expect("the cloud serves TLS");
    assert_eq!(tls.cert_file, Path::new("/var/run/idn/tls/tls.crt"));
    assert_eq!(tls.key_file, Path::new("/var/run/idn/tls/tls.key"));
    assert_eq!(
        cloud.auth.expect("the cloud requires a token").token_file,
        Path::new("/var/run/idn/auth/token")
    );
    insta::assert_yaml_snapshot!("mnist-cloud-tls-deployment", rendered.deployments[2]);
    assert_eq!(
        rendered.nodes[2].endpoint,
        "https://mnist-cloud.default.svc:8000"
    );

    // The edge links to the cloud: over https, trusting the cloud Secret's CA, with its token.
    let link = &config(1).upstreams[0];
    assert_eq!(link.url, "https://mnist-cloud.default.svc:8000");
    assert_eq!(
        link.token_file.as_deref(),
        Some(Path::new("/var/run/idn/links/cloud/token"))
    );
    assert_eq!(
        link.ca_file.as_deref(),
        Some(Path::new("/var/run/idn/links/cloud/ca.crt"))
    );
    insta::assert_yaml_snapshot!(
        "mnist-edge-linking-to-tls-deployment",
        rendered.deployments[1]
    );

    // The access node links to the edge, which asks for neither.
    let access = config(0);
    assert!(access.upstreams[0].url.starts_with("http://"));
    assert_eq!(access.upstreams[0].token_file, None);
    assert!(access.tls.is_none() && access.auth.is_none());
    let probe = |i: usize| {
        let container = &pod_spec(&rendered, i).containers[0];
        let probe = container.readiness_probe.as_ref().unwrap();
        probe.http_get.as_ref().unwrap().scheme.clone()
    };
    assert_eq!(probe(2), Some("HTTPS".to_owned()));
    assert_eq!(probe(0), None);
}

#[test]
fn a_grpc_link_to_a_tls_node_uses_https_on_its_grpc_port() {
    let mut manifests = with_a_guarded_cloud();
    manifests.networks[0].spec.nodes[1].links[0].protocol =
        Some(idn_contract::config::Protocol::Grpc);
    let rendered = render(&manifests).unwrap();
    let config: idn_contract::config::NodeAgentConfig =
        serde_norway::from_str(&rendered.config_maps[1].data.as_ref().unwrap()["agent.yaml"])
            .unwrap();
    assert_eq!(
        config.upstreams[0].url,
        "https://mnist-cloud.default.svc:8001"
    );
    assert_eq!(
        rendered.nodes[2].grpc_endpoint,
        "https://mnist-cloud.default.svc:8001"
    );
}

#[test]
fn every_secret_key_the_pods_mount_is_named_with_its_field() {
    let manifests = with_a_guarded_cloud();
    let keys: Vec<(String, String, String)> = manifests.networks[0]
        .spec
        .secret_keys()
        .into_iter()
        .map(|(field, key)| (field, key.name.to_owned(), key.key.to_owned()))
        .collect();
    let expected = [
        ("spec.nodes[1].links[0].node", "cloud-token", "token"),
        ("spec.nodes[1].links[0].node", "cloud-tls", "ca.crt"),
        ("spec.nodes[2].tls.secretName", "cloud-tls", "tls.crt"),
        ("spec.nodes[2].tls.secretName", "cloud-tls", "tls.key"),
        ("spec.nodes[2].auth.tokenSecret", "cloud-token", "token"),
    ]
    .map(|(f, n, k)| (f.to_owned(), n.to_owned(), k.to_owned()));
    assert_eq!(keys, expected);
}

#[test]
fn a_grpc_link_reaches_the_nodes_grpc_port() {
    let mut manifests = example();
    let access = &mut manifests.networks[0].spec.nodes[0];
    access.links[0].protocol = Some(idn_contract::config::Protocol::Grpc);
    let rendered = render(&manifests).unwrap();
    let config: idn_contract::config::NodeAgentConfig =
        serde_norway::from_str(&rendered.config_maps[0].data.as_ref().unwrap()["agent.yaml"])
            .unwrap();
    let link = &config.upstreams[0];
    assert_eq!(link.url, "http://mnist-edge.default.svc:8001");
    assert_eq!(link.protocol, idn_contract::config::Protocol::Grpc);
    assert!(!link.binary_data, "gRPC tensors are raw bytes");
    assert_eq!(
        rendered.nodes[1].grpc_endpoint,
        "http://mnist-edge.default.svc:8001"
    );
    // The edge node's Service routes its gRPC port.
    let ports = rendered.services[1]
        .spec
        .as_ref()
        .unwrap()
        .ports
        .clone()
        .unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p.port == 8001 && p.name.as_deref() == Some("grpc"))
    );
}

#[test]
fn a_learning_strategy_gets_its_settings_and_a_place_to_keep_what_it_learned() {
    let mut manifests = example();
    let access = manifests
        .strategies
        .iter_mut()
        .find(|s| s.metadata.name.as_deref() == Some("cascade-access"))
        .unwrap();
    access.spec.threshold.as_mut().unwrap().adapt =
        Some(serde_norway::from_str("{method: lcb, forwardCost: 0.02}").unwrap());
    access.spec.hard_examples = Some(serde_norway::from_str("{capacity: 100}").unwrap());
    let rendered = render(&manifests).unwrap();
    let config = |i: usize| -> idn_contract::config::NodeAgentConfig {
        serde_norway::from_str(&rendered.config_maps[i].data.as_ref().unwrap()["agent.yaml"])
            .unwrap()
    };
    let access = config(0);
    let idn_contract::config::StrategyConfig::Threshold(threshold) = &access.services[0].strategy
    else {
        panic!("{:?}", access.services[0].strategy)
    };
    assert_eq!(threshold.adapt.as_ref().unwrap().forward_cost, Some(0.02));
    assert_eq!(
        access.services[0].hard_examples.as_ref().unwrap().capacity,
        100
    );
    assert_eq!(
        access.learned_state_file.as_deref(),
        Some(Path::new("/var/lib/idn/learned.json"))
    );
    assert_eq!(
        config(1).learned_state_file,
        None,
        "the edge does not learn"
    );
    let pod = |i: usize| pod_spec(&rendered, i);
    let mounts = pod(0).containers[0].volume_mounts.clone().unwrap();
    let learned = mounts.iter().find(|m| m.name == "learned").unwrap();
    assert_eq!(
        (learned.mount_path.as_str(), learned.read_only),
        ("/var/lib/idn", Some(false))
    );
    assert!(
        pod(0)
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "learned" && v.empty_dir.is_some())
    );
    assert!(!pod(1).volumes.unwrap().iter().any(|v| v.name == "learned"));
}

#[test]
fn class_names_of_strategies_and_links_reach_the_agents() {
    let mut manifests = example();
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let reversed: Vec<String> = digits.iter().rev().cloned().collect();
    manifests.networks[0].spec.nodes[0].links[0].labels = reversed.clone();
    for strategy in &mut manifests.strategies {
        strategy.spec.labels = digits.clone();
    }
    let rendered = render(&manifests).unwrap();
    let config: idn_contract::config::NodeAgentConfig =
        serde_norway::from_str(&rendered.config_maps[0].data.as_ref().unwrap()["agent.yaml"])
            .unwrap();
    assert_eq!(config.upstreams[0].labels, reversed);
    assert!(config.services.iter().all(|s| s.labels == digits));

    // A link whose classes share none with the service's is the agent's config problem.
    manifests.networks[0].spec.nodes[0].links[0].labels = vec!["cat".into(), "dog".into()];
    let problems = render(&manifests).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("rendered node-agent config") && p.contains("no class of")),
        "{problems:?}"
    );
}
