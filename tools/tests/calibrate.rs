//! `idn calibrate` end to end: the real binary on the example models and sample, checked
//! against an independent recomputation from the reference probabilities that Python
//! onnxruntime produced (examples/data/reference).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use idn_contract::confidence::{Confidence, argmax};
use idn_contract::config::NodeAgentConfig;
use serde_json::Value;

const MODELS: [&str; 3] = ["mnist-linear", "mnist-mlp", "mnist-cnn"];
const CLASSES: usize = 10;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `idn calibrate` on the three example tiers from `dir` with `extra` arguments.
fn calibrate_in(dir: &Path, extra: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idn"));
    command.current_dir(dir).arg("calibrate");
    for model in MODELS {
        command
            .arg("--model")
            .arg(root().join(format!("examples/models/{model}.onnx")));
    }
    command.args(extra).output().expect("idn runs")
}

fn calibrate(extra: &[&str]) -> Output {
    calibrate_in(&root(), extra)
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "idn failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The report in YAML, read back exactly (serde_json's default float parser may be one ulp off,
/// and a τ one ulp off could move an item).
fn report(extra: &[&str]) -> Value {
    let mut args = extra.to_vec();
    args.extend(["--output", "yaml"]);
    serde_norway::from_str(&stdout(&calibrate(&args))).unwrap()
}

/// The reference outputs and labels of the example sample.
struct Reference {
    labels: Vec<usize>,
    probs: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let data = root().join("examples/data");
    let labels: Vec<usize> = std::fs::read(data.join("mnist-test-1000.labels.u8"))
        .unwrap()
        .into_iter()
        .map(usize::from)
        .collect();
    let probs = MODELS
        .iter()
        .map(|model| {
            let bytes = std::fs::read(data.join(format!("reference/{model}.probs.f32"))).unwrap();
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(values.len(), labels.len() * CLASSES);
            values
        })
        .collect();
    Reference { labels, probs }
}

/// Per tier: (reached, answered, correct among answered), by running the cascade item by item
/// with the reported thresholds (`None`: the tier forwards everything), tier i scoring with
/// `confidences[i]`.
fn replay(
    reference: &Reference,
    confidences: &[Confidence],
    taus: &[Option<f64>],
) -> Vec<[usize; 3]> {
    let mut tiers = vec![[0; 3]; MODELS.len()];
    for (item, &label) in reference.labels.iter().enumerate() {
        for (tier, probs) in reference.probs.iter().enumerate() {
            let row = &probs[item * CLASSES..(item + 1) * CLASSES];
            tiers[tier][0] += 1;
            let answers = match taus.get(tier) {
                None => true,
                Some(None) => false,
                Some(Some(tau)) => confidences[tier].score(row) >= *tau,
            };
            if answers {
                tiers[tier][1] += 1;
                tiers[tier][2] += usize::from(argmax(row) == label);
                break;
            }
        }
    }
    tiers
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// Checks a report's numbers against the recomputation with its thresholds, each tier scoring
/// as its strategy says (with a learned gate, its own coefficients).
fn check_against_reference(report: &Value) {
    let reference = reference();
    let tiers = report["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), MODELS.len());
    let taus: Vec<Option<f64>> = tiers[..tiers.len() - 1]
        .iter()
        .map(|t| t["tau"].as_f64())
        .collect();
    let confidences: Vec<Confidence> = tiers[..tiers.len() - 1]
        .iter()
        .map(|t| {
            let stated = &t["strategy"]["threshold"]["confidence"];
            let confidence = if stated.is_null() {
                serde_json::json!({"metric": report["metric"], "temperature": report["temperature"]})
            } else {
                stated.clone()
            };
            serde_json::from_value(confidence).unwrap()
        })
        .collect();
    let replayed = replay(&reference, &confidences, &taus);
    let n = reference.labels.len() as f64;
    check_link_latency(report, &replayed, n);
    let mut correct = 0;
    for ((tier, model), [reached, answered, right]) in tiers.iter().zip(MODELS).zip(replayed) {
        assert_eq!(tier["model"], model);
        assert!(
            close(tier["reached"].as_f64().unwrap(), reached as f64 / n),
            "{tier}"
        );
        assert!(
            close(tier["answered"].as_f64().unwrap(), answered as f64 / n),
            "{tier}"
        );
        if answered > 0 {
            let accuracy = tier["accuracyAnswered"].as_f64().unwrap();
            assert!(close(accuracy, right as f64 / answered as f64), "{tier}");
        }
        correct += right;
    }
    assert!(close(
        report["accuracy"].as_f64().unwrap(),
        correct as f64 / n
    ));
    let last = tiers.last().unwrap();
    assert!(close(
        report["reachedLastTier"].as_f64().unwrap(),
        last["reached"].as_f64().unwrap()
    ));
    // Each model alone, as examples/data/README.md states it: 88.5 %, 97.5 %, 99.4 %.
    let alone: Vec<f64> = tiers
        .iter()
        .map(|t| t["accuracyAlone"].as_f64().unwrap())
        .collect();
    assert_eq!(alone, [0.885, 0.975, 0.994]);
}

/// Checks the reported link latency, when there is one, against the replayed cascade: Σ over
/// links of (requests reaching the tier the link leads to) × its latency, per request.
fn check_link_latency(report: &Value, replayed: &[[usize; 3]], n: f64) {
    let Some(latency) = report.get("linkLatency") else {
        return;
    };
    let links: Vec<f64> = latency["linksMs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap())
        .collect();
    assert_eq!(links.len() + 1, replayed.len());
    let expected: f64 = links
        .iter()
        .zip(&replayed[1..])
        .map(|(link, [reached, ..])| *reached as f64 / n * link)
        .sum();
    let all: f64 = links.iter().sum();
    assert!(
        (latency["expectedMs"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{latency} against {expected}"
    );
    assert!(close(latency["allToLastTierMs"].as_f64().unwrap(), all));
    assert!(close(latency["ratio"].as_f64().unwrap(), expected / all));
}

/// Every non-last tier's strategy, dropped into a node-agent config of that tier, is valid.
fn check_strategies_are_node_agent_config(report: &Value) {
    let tiers = report["tiers"].as_array().unwrap();
    for (i, tier) in tiers[..tiers.len() - 1].iter().enumerate() {
        let config = serde_json::json!({
            "apiVersion": "idn.dev/v1alpha1",
            "kind": "NodeAgentConfig",
            "node": format!("tier-{i}"),
            "models": [{
                "name": MODELS[i],
                "path": format!("{}.onnx", MODELS[i]),
                "inputs": ["input"],
                "outputs": ["probs"],
            }],
            "upstreams": [{"name": MODELS[i + 1], "url": format!("http://{}:8000", MODELS[i + 1])}],
            "services": [{"name": "mnist", "strategy": tier["strategy"]}],
        });
        let yaml = serde_norway::to_string(&config).unwrap();
        let config = NodeAgentConfig::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(config.validate(), Vec::<String>::new(), "{yaml}");
    }
}

/// (correct, reaching the second tier, reaching the last tier) for every pair of thresholds on
/// a 0.01 grid (plus "forward all"), from the reference outputs: a coarse, independent search
/// the calibrated thresholds must not lose to.
fn grid_outcomes() -> Vec<(usize, usize, usize)> {
    let reference = reference();
    let confidence = Confidence::default();
    let rows = |tier: usize| reference.probs[tier].chunks_exact(CLASSES);
    let scores: Vec<Vec<(f64, bool)>> = (0..MODELS.len())
        .map(|tier| {
            rows(tier)
                .zip(&reference.labels)
                .map(|(row, &label)| (confidence.score(row), argmax(row) == label))
                .collect()
        })
        .collect();
    let grid: Vec<f64> = (0..=100)
        .map(|i| f64::from(i) / 100.0)
        .chain([2.0])
        .collect();
    let mut outcomes = Vec::new();
    for &tau1 in &grid {
        for &tau2 in &grid {
            let (mut correct, mut second, mut last) = (0, 0, 0);
            for ((&(c1, r1), &(c2, r2)), &(_, r3)) in
                scores[0].iter().zip(&scores[1]).zip(&scores[2])
            {
                let right = if c1 >= tau1 {
                    r1
                } else if c2 >= tau2 {
                    second += 1;
                    r2
                } else {
                    second += 1;
                    last += 1;
                    r3
                };
                correct += usize::from(right);
            }
            outcomes.push((correct, second, last));
        }
    }
    outcomes
}

#[test]
fn min_accuracy_ratio_matches_the_reference_outputs() {
    let report = report(&["--min-accuracy-ratio", "0.99"]);
    assert_eq!(report["feasible"], true);
    assert_eq!(
        report["target"],
        serde_json::json!({"minAccuracyRatio": 0.99})
    );
    check_against_reference(&report);
    check_strategies_are_node_agent_config(&report);
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.99 * 0.994, "{accuracy}");
    assert!(report["accuracyRatio"].as_f64().unwrap() >= 0.99);
    // No grid choice reaching 0.99 × 994 correct sends fewer requests to the last tier.
    let last = (report["reachedLastTier"].as_f64().unwrap() * 1000.0).round() as usize;
    let need = (0.99f64 * 994.0).ceil() as usize;
    let fewest = grid_outcomes()
        .into_iter()
        .filter(|&(correct, _, _)| correct >= need)
        .map(|(_, _, last)| last)
        .min()
        .unwrap();
    assert!(last <= fewest, "calibrated {last}, grid {fewest}");
}

#[test]
fn link_latency_matches_the_reference_outputs() {
    let report = report(&["--min-accuracy-ratio", "0.99", "--link-latency-ms", "5,40"]);
    assert_eq!(report["feasible"], true);
    check_against_reference(&report);
    check_strategies_are_node_agent_config(&report);
    let latency = &report["linkLatency"];
    assert_eq!(latency["linksMs"], serde_json::json!([5.0, 40.0]));
    assert_eq!(latency["allToLastTierMs"], 45.0);
    let expected = latency["expectedMs"].as_f64().unwrap();
    assert!(report["accuracy"].as_f64().unwrap() >= 0.99 * 0.994);
    // In whole request-milliseconds over the 1000 requests.
    let total = (expected * 1000.0).round() as usize;
    let cost = |second: usize, last: usize| 5 * second + 40 * last;
    // No grid choice reaching 0.99 × 994 correct has a lower expected link latency.
    let need = (0.99f64 * 994.0).ceil() as usize;
    let cheapest = grid_outcomes()
        .into_iter()
        .filter(|&(correct, _, _)| correct >= need)
        .map(|(_, second, last)| cost(second, last))
        .min()
        .unwrap();
    assert!(total <= cheapest, "calibrated {total}, grid {cheapest}");
    // Nor the choice with the fewest requests reaching the last tier, replayed.
    let fewest_last = self::report(&["--min-accuracy-ratio", "0.99"]);
    let taus: Vec<Option<f64>> = fewest_last["tiers"].as_array().unwrap()[..2]
        .iter()
        .map(|t| t["tau"].as_f64())
        .collect();
    let replayed = replay(&reference(), &[Confidence::default(); 2], &taus);
    let fewest_last_cost = cost(replayed[1][0], replayed[2][0]);
    assert!(
        total <= fewest_last_cost,
        "calibrated {total}, fewest last {fewest_last_cost}"
    );
    // The table says the same.
    let table = stdout(&calibrate(&[
        "--min-accuracy-ratio",
        "0.99",
        "--link-latency-ms",
        "5,40",
    ]));
    assert!(table.contains("lowest expected link latency"), "{table}");
    let line = format!(
        "latency: {} ms expected per request on the links (5 + 40 ms); 45 ms if all reach \
         mnist-cnn (ratio {:.4})",
        format!("{expected:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.'),
        expected / 45.0
    );
    assert!(table.contains(&line), "{line}\n{table}");
}

#[test]
fn link_latency_is_only_reported_with_max_last_tier() {
    let plain = report(&["--max-last-tier", "0.10"]);
    let timed = report(&["--max-last-tier", "0.10", "--link-latency-ms", "5,40"]);
    check_against_reference(&timed);
    assert_eq!(timed["tiers"], plain["tiers"]);
    assert!(timed["linkLatency"]["expectedMs"].as_f64().unwrap() > 0.0);
}

#[test]
fn link_latencies_must_match_the_links() {
    for (links, message) in [
        ("5", "3 tiers have 2 links, got 1 link latencies"),
        ("5,40,1", "3 tiers have 2 links, got 3 link latencies"),
        ("5,NaN", "link latency NaN ms must be a finite number ≥ 0"),
    ] {
        let output = calibrate(&["--min-accuracy-ratio", "0.99", "--link-latency-ms", links]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--link-latency-ms"), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    let output = calibrate(&["--min-accuracy-ratio", "0.99", "--link-latency-ms=-5,40"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("link latency -5 ms must be a finite number ≥ 0"),
        "{stderr}"
    );
}

#[test]
fn max_last_tier_matches_the_reference_outputs() {
    let report = report(&["--max-last-tier", "0.10"]);
    assert_eq!(report["feasible"], true);
    check_against_reference(&report);
    check_strategies_are_node_agent_config(&report);
    assert!(report["reachedLastTier"].as_f64().unwrap() <= 0.10);
    // No grid choice with at most 100 requests reaching the last tier is more accurate.
    let correct = (report["accuracy"].as_f64().unwrap() * 1000.0).round() as usize;
    let most = grid_outcomes()
        .into_iter()
        .filter(|&(_, _, last)| last <= 100)
        .map(|(correct, _, _)| correct)
        .max()
        .unwrap();
    assert!(correct >= most, "calibrated {correct}, grid {most}");
}

#[test]
fn other_metrics_and_temperatures_match_too() {
    for metric in ["margin", "entropy"] {
        let report = report(&[
            "--max-last-tier",
            "0.2",
            "--metric",
            metric,
            "--temperature",
            "2",
        ]);
        assert_eq!(report["metric"], metric);
        assert_eq!(report["temperature"], 2.0);
        check_against_reference(&report);
        let strategy = &report["tiers"][0]["strategy"]["threshold"];
        assert_eq!(strategy["confidence"]["metric"], metric);
    }
}

#[test]
fn a_learned_gate_is_carried_by_the_strategies_and_replays() {
    let report = report(&[
        "--min-accuracy-ratio",
        "0.99",
        "--link-latency-ms",
        "5,40",
        "--gate",
        "logistic",
    ]);
    assert_eq!(report["metric"], "logistic");
    let tiers = report["tiers"].as_array().unwrap();
    for tier in &tiers[..2] {
        let gate = &tier["gate"];
        for key in ["bias", "top1", "margin", "entropy"] {
            assert!(gate[key].as_f64().is_some_and(f64::is_finite), "{tier}");
        }
        let confidence = &tier["strategy"]["threshold"]["confidence"];
        assert_eq!(confidence["metric"], "logistic");
        assert_eq!(&confidence["gate"], gate);
    }
    assert!(tiers[2]["gate"].is_null());
    check_against_reference(&report);
    check_strategies_are_node_agent_config(&report);
}

#[test]
fn a_learned_gate_is_compared_with_the_metric_on_the_same_splits() {
    let args = [
        "--min-accuracy",
        "0.96",
        "--confidence",
        "0.95",
        "--link-latency-ms",
        "5,40",
        "--splits",
        "3",
        "--holdout",
        "0.3",
    ];
    let plain = stdout(&calibrate(&args));
    let mut gated_args = args.to_vec();
    gated_args.extend(["--gate", "logistic"]);
    let gated = stdout(&calibrate(&gated_args));
    assert!(
        gated.contains("on the same 3 splits, target 96.00%"),
        "{gated}"
    );
    // The max-probability rows summarise the splits the run without a gate prints.
    let held = plain
        .lines()
        .find_map(|l| l.strip_prefix("guaranteed: target held on the test part in "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_owned();
    let row = gated
        .lines()
        .find(|l| l.starts_with("maxProbability  guaranteed"))
        .unwrap();
    assert!(row.contains(&format!(" {held} / 3 ")), "{row}\n{plain}");
    assert!(
        gated
            .lines()
            .any(|l| l.starts_with("logistic gate   plain")),
        "{gated}"
    );
    assert!(
        gated.contains("reach mnist-mlp  reach mnist-cnn  link ms"),
        "{gated}"
    );
}

/// Equal values, numbers within a few ulps.
fn assert_same(a: &Value, b: &Value, at: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-15 * x.abs().max(1.0),
                "{at}: {x} != {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(
                x.keys().collect::<Vec<_>>(),
                y.keys().collect::<Vec<_>>(),
                "{at}"
            );
            for (key, value) in x {
                assert_same(value, &y[key], &format!("{at}.{key}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                assert_same(x, y, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn upstreams_can_be_named_like_the_nodes() {
    let report = report(&[
        "--max-last-tier",
        "0.1",
        "--upstream",
        "edge-0",
        "--upstream",
        "cloud-0",
    ]);
    let forward = |tier: usize| &report["tiers"][tier]["strategy"]["threshold"]["forward"];
    assert_eq!(forward(0), &serde_json::json!({"upstream": "edge-0"}));
    assert_eq!(forward(1), &serde_json::json!({"upstream": "cloud-0"}));
    let output = calibrate(&["--max-last-tier", "0.1", "--upstream", "edge-0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("3 models need 2, got 1"), "{stderr}");
}

#[test]
fn yaml_and_json_say_the_same() {
    for target in [
        &["--min-accuracy-ratio", "0.99"][..],
        &["--max-last-tier", "0.10"],
        &["--min-accuracy-ratio", "0.99", "--link-latency-ms", "5,40"],
    ] {
        let mut args = target.to_vec();
        args.extend(["--output", "json"]);
        let json: Value = serde_json::from_str(&stdout(&calibrate(&args))).unwrap();
        assert_same(&report(target), &json, "report");
    }
}

#[test]
fn the_table_lists_every_tier() {
    let table = stdout(&calibrate(&["--min-accuracy-ratio", "0.99"]));
    let report = report(&["--min-accuracy-ratio", "0.99"]);
    for (tier, model) in report["tiers"].as_array().unwrap().iter().zip(MODELS) {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(model))
            .unwrap_or_else(|| panic!("no row for {model}:\n{table}"));
        let tau = tier["tau"]
            .as_f64()
            .map_or("-".to_owned(), |t| t.to_string());
        assert_eq!(row.split_whitespace().nth(2), Some(tau.as_str()), "{row}");
    }
}

#[test]
fn an_unreachable_target_fails_after_printing_the_closest() {
    let output = calibrate(&["--min-accuracy-ratio", "1.5", "--output", "yaml"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no thresholds meet the target"), "{stderr}");
    let report: Value = serde_norway::from_slice(&output.stdout).unwrap();
    assert_eq!(report["feasible"], false);
    check_against_reference(&report);
}

#[test]
fn missing_default_sample_is_named() {
    let output = calibrate_in(&std::env::temp_dir(), &["--max-last-tier", "0.1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read examples/data/mnist-test-1000.images.u8")
            && stderr.contains("run from the repository root"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_are_caught() {
    let output = calibrate(&["--min-accuracy-ratio", "0.99", "--max-last-tier", "0.1"]);
    assert!(!output.status.success());
    let output = Command::new(env!("CARGO_BIN_EXE_idn"))
        .current_dir(root())
        .args(["calibrate", "--model", "examples/models/mnist-cnn.onnx"])
        .args(["--max-last-tier", "0.1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least two models"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_idn"))
        .current_dir(root())
        .args(["calibrate", "--model", "examples/models/nope.onnx"])
        .args([
            "--model",
            "examples/models/mnist-cnn.onnx",
            "--max-last-tier",
            "0.1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("examples/models/nope.onnx cannot be used"),
        "{stderr}"
    );
}
