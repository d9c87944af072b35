//! In-process ONNX Runtime on the served models: the limit the node-agent is measured against.
//!
//! No HTTP, no JSON, no queue: each thread owns a session opened exactly as an inference
//! worker of the agent opens it ([`runtime::open_session`]) and calls [`runtime::run`] on one
//! single-sample (batch 1) input, the first MNIST test image, back to back. Every call is timed
//! with `Instant`; after a warm-up the calls of a fixed window give p50/p99 and throughput.
//!
//! Two modes per model: concurrency 1 (one thread) and saturation (one thread per core, each
//! with its own session, like the agent's pool). Results go to stdout as JSON lines, one per
//! model and mode, for `bench/run.sh`; everything else goes to stderr.
//!
//! `cargo bench` runs this from the crate's folder (node-agent/), so give absolute model paths:
//!
//! ```text
//! cargo bench -p idn-node-agent --bench inprocess -- \
//!     --model mnist-mlp=$PWD/examples/models/mnist-mlp.onnx --duration 10 --warmup 2
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use idn_node_agent::config::ModelConfig;
use idn_node_agent::runtime::{self, Model, ModelState};
use idn_node_agent::tensor::{Tensor, TensorData};

#[derive(Parser)]
#[command(about = "In-process ONNX Runtime latency and throughput, batch 1")]
struct Args {
    /// Model to run, as NAME=PATH (repeatable); the graph must take `input` FP32 [N,784].
    #[arg(long = "model", required = true, value_parser = parse_model)]
    models: Vec<(String, PathBuf)>,
    /// Raw uint8 MNIST images (784 bytes each); the first one is the input.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/mnist-test-1000.images.u8"))]
    images: PathBuf,
    /// Seconds measured per model and mode.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unmeasured calls before each measurement.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Threads at saturation; 0 means one per available core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_model(arg: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {arg:?}"))?;
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// Latencies and throughput of one measurement window.
struct Measurement {
    requests: usize,
    seconds: f64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `threads` threads, each with its own session, for warm-up then `duration`; all threads
/// start measuring together (barrier) so the window is shared.
fn measure(
    model: &Model,
    input: &Tensor,
    threads: usize,
    warmup: Duration,
    duration: Duration,
) -> Measurement {
    let ModelState::Ready { signature, bytes } = &model.state else {
        panic!(
            "model {} is not ready: {:?}",
            model.config.name, model.state
        );
    };
    let outputs = model.config.outputs.clone();
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (signature, bytes, input, outputs, barrier) = (
                signature.clone(),
                Arc::clone(bytes),
                input.clone(),
                outputs.clone(),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                let mut session = runtime::open_session(&bytes).expect("opening a session");
                let mut call = || {
                    // The clone stands for the decoded request the agent moves into `run`; it
                    // is made outside the timed region.
                    let inputs = vec![input.clone()];
                    let start = Instant::now();
                    let result = runtime::run(&mut session, &signature, inputs, &outputs);
                    let elapsed = start.elapsed();
                    std::hint::black_box(result.expect("inference"));
                    elapsed
                };
                let warm_until = Instant::now() + warmup;
                while Instant::now() < warm_until {
                    call();
                }
                barrier.wait();
                let mut latencies = Vec::with_capacity(1 << 20);
                let start = Instant::now();
                while start.elapsed() < duration {
                    latencies.push(call());
                }
                (latencies, start.elapsed())
            })
        })
        .collect();
    barrier.wait();
    let mut latencies = Vec::new();
    let mut seconds: f64 = 0.0;
    for worker in workers {
        let (mut l, elapsed) = worker.join().expect("bench thread panicked");
        latencies.append(&mut l);
        seconds = seconds.max(elapsed.as_secs_f64());
    }
    latencies.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Measurement {
        requests: latencies.len(),
        seconds,
        p50_us: us(percentile(&latencies, 50.0)),
        p99_us: us(percentile(&latencies, 99.0)),
        mean_us: us(latencies.iter().sum::<Duration>()) / latencies.len() as f64,
    }
}

fn main() {
    let args = Args::parse();
    let images = std::fs::read(&args.images)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", args.images.display()));
    assert!(
        images.len() >= 784,
        "{} holds no image",
        args.images.display()
    );
    let input = Tensor {
        name: "input".into(),
        shape: vec![1, 784],
        data: TensorData::Fp32(
            images[..784]
                .iter()
                .map(|&p| f32::from(p) / 255.0)
                .collect(),
        ),
    };
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let saturation = if args.threads == 0 {
        cores
    } else {
        args.threads
    };
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    for (name, path) in &args.models {
        let model = Model::load(ModelConfig {
            name: name.clone(),
            version: "1".into(),
            path: path.clone(),
            sha256: None,
            inputs: vec!["input".into()],
            outputs: vec!["probs".into()],
            labels: vec![],
        });
        for (concurrency, threads) in [(1, 1), (saturation, saturation)] {
            eprintln!(
                "inprocess: {name}, {threads} thread(s), {duration:?} after {warmup:?} warm-up"
            );
            let m = measure(&model, &input, threads, warmup, duration);
            let line = serde_json::json!({
                "system": "inprocess",
                "model": name,
                "mode": if threads == 1 { "c1" } else { "saturation" },
                "concurrency": concurrency,
                "threads": threads,
                "requests": m.requests,
                "errors": 0,
                "seconds": m.seconds,
                "rps": m.requests as f64 / m.seconds,
                "p50_us": m.p50_us,
                "p99_us": m.p99_us,
                "mean_us": m.mean_us,
            });
            println!("{line}");
        }
    }
}
