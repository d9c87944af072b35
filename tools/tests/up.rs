//! `idn up` and `idn replay`: a whole network on loopback from the example manifests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use idn_contract::confidence::{Confidence, argmax};
use idn_operator::manifests::Manifests;
use idn_operator::resources::NodeServiceSpec;
use idn_tools::cli::up::{self, NetworkArgs};
use idn_tools::dataset::{Dataset, Source};
use idn_tools::local::{LocalNetwork, Options, Reloaded};
use idn_tools::replay::{self, Load, Stream, Target};
use kube::ResourceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example() -> Manifests {
    Manifests::load(&[root().join("examples/mnist")]).unwrap()
}

/// No emulated latency: these tests check answers, not timing.
fn options(base_port: u16) -> Options {
    let mut options = Options {
        model_dirs: vec![root().join("examples/models")],
        base_port,
        ..Options::default()
    };
    for (node, link) in [("access", "edge"), ("edge", "cloud")] {
        options.latency_ms.insert((node.into(), link.into()), 0);
    }
    options
}

fn reference(model: &str) -> Vec<f32> {
    std::fs::read(root().join(format!("examples/data/reference/{model}.probs.f32")))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn tau(manifests: &Manifests, strategy: &str) -> f64 {
    let s = manifests
        .strategies
        .iter()
        .find(|s| s.name_any() == strategy)
        .unwrap();
    s.spec.threshold.as_ref().unwrap().tau
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_figures_equal_the_offline_computation() {
    let manifests = example();
    let network = LocalNetwork::start(&manifests, &manifests.networks[0], &options(0))
        .await
        .unwrap();
    let mut sample = Dataset::load(
        Source::Raw {
            images: &root().join("examples/data/mnist-test-1000.images.u8"),
            labels: &root().join("examples/data/mnist-test-1000.labels.u8"),
        },
        None,
    )
    .unwrap();
    sample.name_inputs(&["input".to_owned()]).unwrap();
    let sample = Arc::new(sample);
    let base = format!("http://{}", network.node("access").unwrap().addr);
    let outcomes = replay::replay(
        &[Target::new(&base, "mnist", false)],
        Arc::new(Stream::plain(Arc::clone(&sample))),
        &Load {
            concurrency: 4,
            rate: None,
            labels: None,
        },
        || {},
    )
    .await
    .remove(0);
    network.stop().await;
    let summary = replay::summarize(&outcomes);

    // Offline: the declared cascade applied to the reference probabilities.
    let taus = [
        tau(&manifests, "cascade-access"),
        tau(&manifests, "cascade-edge"),
    ];
    let tiers = [
        reference("mnist-linear"),
        reference("mnist-mlp"),
        reference("mnist-cnn"),
    ];
    let confidence = Confidence::default();
    let (mut correct, mut answered) = (0, [0usize; 3]);
    for i in 0..sample.len() {
        let row = |t: usize| &tiers[t][i * 10..(i + 1) * 10];
        let tier = (0..2)
            .find(|&t| confidence.score(row(t)) >= taus[t])
            .unwrap_or(2);
        answered[tier] += 1;
        correct += usize::from(argmax(row(tier)) == sample.labels[i]);
        assert_eq!(
            outcomes[i].node.as_deref(),
            Some(["access", "edge", "cloud"][tier]),
            "item {i}"
        );
    }
    assert_eq!(summary.errors, 0);
    assert_eq!(summary.accuracy, correct as f64 / 1000.0);
    let shares: Vec<(String, f64)> = ["access", "edge", "cloud"]
        .iter()
        .zip(answered)
        .map(|(n, a)| (n.to_string(), a as f64 / 1000.0))
        .collect();
    let mut got = summary.answered_by.clone();
    got.sort_by_key(|(n, _)| ["access", "edge", "cloud"].iter().position(|x| x == n));
    assert_eq!(got, shares);
}

/// `idn replay` against a network whose entry node serves the cascade and, as a second
/// service, its own model alone: both get the same stream, which turns upside down halfway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shifted_stream_side_by_side_reports_windows() {
    let mut manifests = example();
    add_linear_service(&mut manifests);
    let out = std::env::temp_dir().join(format!("idn-replay-shift-{}", std::process::id()));
    let stdout = replay_shifted(
        &manifests,
        &["--shift", "rotate:180", "--window", "50"],
        &out,
    )
    .await;
    assert!(
        stdout.contains("service    linear\nrequests   200 (0 errors)"),
        "{stdout}"
    );

    let csv = std::fs::read_to_string(out.join("windows.csv")).unwrap();
    // start,end,shifted,service,accuracy,forwarded,fallback,errors,mean_ms
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 8, "4 windows of 2 services: {csv}");
    let figure = |row: &[&str], column: usize| row[column].parse::<f64>().unwrap();
    for service in ["mnist", "linear"] {
        let own: Vec<&Vec<&str>> = rows.iter().filter(|r| r[3] == service).collect();
        let shifted: Vec<&str> = own.iter().map(|r| r[2]).collect();
        assert_eq!(shifted, ["false", "false", "true", "true"]);
        let before = figure(own[1], 4);
        let after = figure(own[2], 4);
        assert!(
            before > 0.8 && after < before - 0.3,
            "{service}: {before} -> {after}"
        );
    }
    let forwarded = |service: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r[3] == service)
            .map(|r| figure(r, 5))
            .collect()
    };
    assert!(
        forwarded("linear").iter().all(|&f| f == 0.0),
        "a local service forwards nothing"
    );
    assert!(
        forwarded("mnist").iter().all(|&f| f > 0.0),
        "the cascade forwards some"
    );
    let png = std::fs::read(out.join("windows.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let svg = std::fs::read_to_string(out.join("windows.svg")).unwrap();
    assert!(svg.contains(">shift: rotate:180</text>"));
    std::fs::remove_dir_all(out).unwrap();
}

/// `idn replay --hindsight` on a two-tier cascade (access forwards to edge, which serves its
/// model): a service that never forwards costs what "never forward" costs in hindsight, and a
/// cascade with a fixed τ of the grid costs no less than the best fixed τ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hindsight_sets_services_against_the_best_fixed_tau() {
    let mut manifests = example();
    let cascade = manifests
        .strategies
        .iter_mut()
        .find(|s| s.name_any() == "cascade-access")
        .unwrap();
    cascade.spec.threshold.as_mut().unwrap().tau = 0.95;
    let nodes = &mut manifests.networks[0].spec.nodes;
    nodes[1].services[0].strategy = "serve-local".into();
    nodes[1].services[0].link = None;
    add_linear_service(&mut manifests);
    let out = std::env::temp_dir().join(format!("idn-replay-hindsight-{}", std::process::id()));
    let flags = [
        "--shift",
        "rotate:90",
        "--window",
        "25",
        "--hindsight",
        "examples/models/mnist-linear.onnx,examples/models/mnist-mlp.onnx",
        "--forward-cost",
        "0.1",
    ];
    let stdout = replay_shifted(&manifests, &flags, &out).await;
    let md = std::fs::read_to_string(out.join("hindsight.md")).unwrap();
    let row = |first: &str| -> Vec<String> {
        md.lines()
            .find(|l| l.starts_with(&format!("| {first} |")))
            .unwrap_or_else(|| panic!("no row {first}: {md}"))
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect()
    };
    let number = |cell: &str| cell.trim_end_matches('%').parse::<f64>().unwrap();
    // | segment | requests | best fixed τ | cost per item | accuracy | forwarded | never | always |
    let whole = row("whole stream");
    assert_eq!(whole[2], "0-199");
    // | service | cost per item | regret | regret / best's cost | before the shift | recovery |
    let linear = row("linear");
    assert_eq!(
        linear[2], whole[7],
        "serving locally costs what never forwarding does"
    );
    let mnist = row("mnist");
    assert!(number(&mnist[3]) >= 0.0, "a fixed τ of the grid: {md}");
    assert!(number(&mnist[2]) >= number(&whole[4]), "{md}");
    assert!(number(&mnist[5]) >= 0.0, "nor before the shift: {md}");
    assert!(stdout.contains("Before the shift, mnist costs"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("hindsight.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 8 * 2, "{csv}");
    for plot in ["hindsight-regret", "hindsight-cost"] {
        let png = std::fs::read(out.join(format!("{plot}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(out.join(format!("{plot}.svg"))).unwrap();
        assert!(svg.contains(">shift: rotate:90</text>"), "{plot}");
    }
    std::fs::remove_dir_all(out).unwrap();
}

/// The access node's model alone, as a second service `linear`.
fn add_linear_service(manifests: &mut Manifests) {
    manifests.networks[0].spec.nodes[0]
        .services
        .push(NodeServiceSpec {
            name: "linear".into(),
            strategy: "serve-local".into(),
            model: Some("mnist-linear".into()),
            link: None,
        });
}

/// Starts the network of `manifests` and runs `idn replay` of 200 requests, shifting at
/// request 100, to its access node's services `mnist` and `linear` with `flags` and `--out
/// out`; the replay's stdout, after checking that it succeeded.
async fn replay_shifted(manifests: &Manifests, flags: &[&str], out: &Path) -> String {
    let network = LocalNetwork::start(manifests, &manifests.networks[0], &options(0))
        .await
        .unwrap();
    let url = format!("http://{}", network.node("access").unwrap().addr);
    let mut args: Vec<String> = [
        "replay",
        "--url",
        &url,
        "--services",
        "mnist,linear",
        "--limit",
        "200",
        "--shift-at",
        "100",
        "--concurrency",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .into();
    args.extend(flags.iter().map(|f| f.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_idn"))
            .args(args)
            .current_dir(root())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    network.stop().await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_to_start_is_reported_and_the_others_are_stopped() {
    let manifests = example();
    // The edge model's file does not match its sha256.
    let dir = std::env::temp_dir().join(format!("idn-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for model in ["mnist-linear", "mnist-cnn"] {
        std::fs::copy(
            root().join(format!("examples/models/{model}.onnx")),
            dir.join(format!("{model}.onnx")),
        )
        .unwrap();
    }
    std::fs::copy(
        root().join("examples/models/mnist-linear.onnx"),
        dir.join("mnist-mlp.onnx"),
    )
    .unwrap();
    // Ports found free may be taken by a test running beside this one before the nodes bind
    // them; only a start that got its ports says anything about edge.
    let mut attempts = 0;
    let (free, message) = loop {
        let free = free_ports(3);
        let mut options = options(free);
        options.model_dirs = vec![dir.clone()];
        let error = LocalNetwork::start(&manifests, &manifests.networks[0], &options)
            .await
            .err()
            .expect("edge cannot start");
        let message = format!("{error:#}");
        attempts += 1;
        if !message.contains("cannot listen on") || attempts == 10 {
            break (free, message);
        }
    };
    assert!(
        message.starts_with("node edge failed to start: model mnist-mlp is not ready: sha256 of"),
        "{message}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", free)).is_err(),
        "access was left running"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The first of `n` consecutive free loopback ports (the nodes take consecutive ports).
/// A base port from which `n` REST ports and the `n` gRPC ports 100 above are free.
fn free_ports(n: u16) -> u16 {
    (0..50)
        .find_map(|_| {
            let first = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            let base = first.local_addr().ok()?.port();
            let rest: Option<Vec<_>> = (1..n)
                .chain(100..100 + n)
                .map(|i| std::net::TcpListener::bind(("127.0.0.1", base.checked_add(i)?)).ok())
                .collect();
            rest.map(|_| base)
        })
        .expect("consecutive free ports")
}

#[test]
fn idn_up_starts_and_stops_cleanly() {
    let mut up = Command::new(env!("CARGO_BIN_EXE_idn"))
        .args(["up", "-f", "examples/mnist", "--base-port", "0"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let entry = lines
        .by_ref()
        .map(Result::unwrap)
        .find_map(|l| l.strip_prefix("send requests to ").map(str::to_owned))
        .expect("idn up prints its entry point");
    let addr = entry
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "{addr} accepts connections"
    );
    let status = terminate(&mut up);
    assert!(status.success(), "idn up exits cleanly: {status}");
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "nodes stopped"
    );
}

/// Sends SIGTERM to `up`, as a service manager would, and waits for it to exit.
fn terminate(up: &mut Child) -> ExitStatus {
    let pid = up.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    up.wait().unwrap()
}

#[test]
fn a_malformed_manifest_names_the_file_and_the_field() {
    let dir = std::env::temp_dir().join(format!("idn-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(root().join("examples/mnist/40-network.yaml"))
        .unwrap()
        .replace("tier: edge", "tier: fog");
    std::fs::write(dir.join("network.yaml"), text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_idn"))
        .args(["up", "-f"])
        .arg(dir.join("network.yaml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("network.yaml, document 1: spec.nodes[1].tier: unknown variant `fog`"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// sha256 of the example models' files.
const MLP: &str = "876e5f9e9ef615794730338f9e7c4a6e1437b39da6256d77a82568791991f00a";
const CNN: &str = "af1626189ab8d487d0549afa5da47936e5963e055c8c35c4c60cad0cd98929a6";

/// A copy of the example manifests in a fresh directory named after `test`.
fn manifest_copy(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idn-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(root().join("examples/mnist")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// Rewrites the models' manifest so that the model of sha256 `from` has `to`, as a training
/// loop does: a temporary file renamed over it.
fn set_revision(dir: &Path, from: &str, to: &str) {
    let models = dir.join("10-models.yaml");
    let text = std::fs::read_to_string(&models).unwrap();
    assert!(text.contains(from));
    let temporary = dir.join("10-models.yaml.tmp");
    std::fs::write(&temporary, text.replace(from, to)).unwrap();
    std::fs::rename(temporary, models).unwrap();
}

/// One HTTP/1.1 connection, kept open: it breaks when the node behind it stops.
async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// The sha256 that `model`'s metadata reports over `connection`.
async fn revision(
    connection: &mut SendRequest<Empty<Bytes>>,
    model: &str,
) -> Result<String, hyper::Error> {
    connection.ready().await?;
    let request = http::Request::get(format!("/v2/models/{model}"))
        .header(http::header::HOST, "localhost")
        .body(Empty::new())
        .unwrap();
    let body = connection
        .send_request(request)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    let metadata: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Ok(metadata["parameters"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// A new revision of the edge model restarts the edge node alone, on its ports; a revision no
/// file has, manifests that do not parse, or a change to the set of nodes change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_revision_restarts_only_its_node() {
    let dir = manifest_copy("reload");
    let args = NetworkArgs {
        files: vec![dir.clone()],
        network: None,
        model_dirs: vec![root().join("examples/models")],
        latencies: options(0).latency_ms.into_iter().collect(),
    };
    let (manifests, network) = args.load().unwrap();
    let mut running = LocalNetwork::start(&manifests, &network, &args.options(0))
        .await
        .unwrap();
    let addr = |running: &LocalNetwork, node: &str| running.node(node).unwrap().addr;
    let (access_addr, edge_addr) = (addr(&running, "access"), addr(&running, "edge"));
    let mut access = connect(access_addr).await;
    let mut edge = connect(edge_addr).await;
    assert_eq!(revision(&mut edge, "mnist-mlp").await.unwrap(), MLP);

    set_revision(&dir, MLP, CNN);
    let reloaded = up::reload(&mut running, &args).await.unwrap();
    assert_eq!(
        reloaded,
        Reloaded {
            restarted: vec!["edge".into()],
            unchanged: 2
        }
    );
    assert_eq!(reloaded.to_string(), "reloaded: edge (2 unchanged)");
    assert!(
        revision(&mut edge, "mnist-mlp").await.is_err(),
        "edge restarted"
    );
    assert_eq!(addr(&running, "edge"), edge_addr, "on the same port");
    let mut edge = connect(edge_addr).await;
    assert_eq!(revision(&mut edge, "mnist-mlp").await.unwrap(), CNN);
    assert!(
        revision(&mut access, "mnist-linear").await.is_ok(),
        "access kept serving throughout"
    );

    // No file has this sha256: the one named like the model is found, and does not match.
    set_revision(&dir, CNN, &"0".repeat(64));
    let failed = up::reload(&mut running, &args)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        failed.starts_with("node edge failed to start: model mnist-mlp is not ready: sha256"),
        "{failed}"
    );
    assert!(failed.ends_with("; the network runs as before"), "{failed}");
    let mut edge = connect(edge_addr).await;
    assert_eq!(
        revision(&mut edge, "mnist-mlp").await.unwrap(),
        CNN,
        "edge runs its previous config again"
    );

    std::fs::write(dir.join("10-models.yaml"), "kind: [").unwrap();
    let failed = up::reload(&mut running, &args)
        .await
        .unwrap_err()
        .to_string();
    assert!(failed.contains("10-models.yaml, document 1:"), "{failed}");

    std::fs::copy(
        root().join("examples/mnist/10-models.yaml"),
        dir.join("10-models.yaml"),
    )
    .unwrap();
    let network_file = dir.join("40-network.yaml");
    let text = std::fs::read_to_string(&network_file).unwrap();
    std::fs::write(&network_file, text.replace("name: cloud\n", "name: core\n")).unwrap();
    let failed = up::reload(&mut running, &args)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        failed,
        "the nodes changed (access, edge, cloud -> access, edge, core): restart idn up to \
         apply that; the network runs as before"
    );
    for (connection, model) in [(&mut access, "mnist-linear"), (&mut edge, "mnist-mlp")] {
        assert!(
            revision(connection, model).await.is_ok(),
            "{model}: no failed reload restarted a node"
        );
    }
    running.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn idn_up_reloads_when_the_manifests_change() {
    let dir = manifest_copy("watch");
    let mut up = Command::new(env!("CARGO_BIN_EXE_idn"))
        .args([
            "up",
            "--models",
            "examples/models",
            "--base-port",
            "0",
            "-f",
        ])
        .arg(&dir)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(up.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap);
    assert!(
        lines.any(|l| l.starts_with("Changed manifests restart")),
        "idn up says it watches"
    );
    set_revision(&dir, MLP, CNN);
    assert_eq!(
        lines.find(|l| l.starts_with("reloaded:")).as_deref(),
        Some("reloaded: edge (2 unchanged)")
    );
    assert!(terminate(&mut up).success());
    std::fs::remove_dir_all(dir).unwrap();
}
