//! In-process ONNX Runtime on the served models: the limit the node-agent is measured against.
//!
//! No HTTP, no JSON, no queue: each thread owns a session opened exactly as an inference
//! worker of the agent opens it ([`Model::open_session`]) and runs it (`ModelSession::run`) on
//! one single-sample (batch 1) input, the first MNIST test image, back to back. Every call is
//! timed with `Instant`; after a warm-up the calls of a fixed window give p50/p99 and
//! throughput.
//!
//! Two modes per model: concurrency 1 (one thread) and saturation (one thread per core, each
//! with its own session, like the agent's pool). Results go to stdout as JSON lines, one per
//! model and mode, for `bench/run.sh`; everything else goes to stderr.
//!
//! With `--body FILE` (an OIP v2 JSON request), two more single-thread measurements break the
//! agent's request path down without HTTP, to show where its time goes beyond the model:
//! `codec` (decode the JSON body, check it against the signature, run, encode the JSON answer,
//! all on one thread) and `pool` (hand the input to the agent's [`InferencePool`] from a tokio
//! task and await the answer: the thread hand-off of every request, plus the run).
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
use idn_contract::config::ModelConfig;
use idn_node_agent::model::{InferencePool, Model};
use idn_node_agent::wire::tensor::{Tensor, TensorData};
use idn_node_agent::wire::{self, InferResponse};

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
    /// OIP v2 JSON request body; when given, also measure the `codec` and `pool` breakdowns.
    #[arg(long)]
    body: Option<PathBuf>,
    /// A measurement during which other processes used more cores than this is repeated.
    #[arg(long, default_value_t = 0.3)]
    max_other: f64,
    /// How many times a disturbed measurement is repeated at most.
    #[arg(long, default_value_t = 2)]
    retries: usize,
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

impl Measurement {
    fn from_latencies(mut latencies: Vec<Duration>, seconds: f64) -> Self {
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
}

/// Calls `call` (which times itself) for `warmup`, then for `duration`; returns the latencies.
fn time_loop(
    warmup: Duration,
    duration: Duration,
    mut call: impl FnMut() -> Duration,
) -> Measurement {
    let warm_until = Instant::now() + warmup;
    while Instant::now() < warm_until {
        call();
    }
    let mut latencies = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    while start.elapsed() < duration {
        latencies.push(call());
    }
    Measurement::from_latencies(latencies, start.elapsed().as_secs_f64())
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
    if let Err(reason) = model.readiness() {
        panic!("model {} is not ready: {reason}", model.name());
    }
    let outputs = model.config().outputs.clone();
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (model, input, outputs, barrier) = (
                model.clone(),
                input.clone(),
                outputs.clone(),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                let mut session = model.open_session().expect("opening a session");
                let mut call = || {
                    // The clone stands for the decoded request the agent moves into `run`; it
                    // is made outside the timed region.
                    let inputs = vec![input.clone()];
                    let start = Instant::now();
                    let result = session.run(inputs, &outputs);
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
    Measurement::from_latencies(latencies, seconds)
}

/// The agent's per-request work minus HTTP and the thread hand-off, on one thread: decode the
/// JSON body, check it, run the model, encode the JSON answer (what `server::run_infer` does).
fn measure_codec(model: &Model, body: &[u8], warmup: Duration, duration: Duration) -> Measurement {
    let signature = model.readiness().expect("a ready model");
    let mut session = model.open_session().expect("opening a session");
    let config = model.config();
    time_loop(warmup, duration, || {
        let start = Instant::now();
        let request = wire::decode_request(body, None).expect("a valid request body");
        signature
            .check_inputs(&config.name, &request.inputs, usize::MAX)
            .expect("inputs that fit the model");
        let outputs = session
            .run(request.inputs, &config.outputs)
            .expect("inference");
        let response = InferResponse {
            model_name: config.name.clone(),
            model_version: config.version.clone(),
            id: request.id,
            parameters: wire::Parameters::new(),
            outputs,
        };
        let encoded = wire::encode_response(&response, |_| false);
        let elapsed = start.elapsed();
        std::hint::black_box(encoded.bytes);
        elapsed
    })
}

/// One request at a time through the agent's inference pool (one worker thread), from a task
/// on a multi-thread tokio runtime as in the agent: `ModelSession::run` plus the hand-off to the
/// worker thread (bounded channel) and back (oneshot), no HTTP.
fn measure_pool(
    model: &Model,
    input: &Tensor,
    warmup: Duration,
    duration: Duration,
) -> Measurement {
    let pool = InferencePool::start(std::slice::from_ref(model), 1, 16);
    let tokio = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let (input, outputs) = (input.clone(), model.config().outputs.clone());
    let task = tokio.spawn(async move {
        let mut latencies = Vec::with_capacity(1 << 20);
        let mut measuring_since = None;
        let warm_until = Instant::now() + warmup;
        loop {
            let inputs = vec![input.clone()];
            let start = Instant::now();
            let result = pool.infer(0, inputs, outputs.clone(), None).await;
            let elapsed = start.elapsed();
            std::hint::black_box(result.expect("inference"));
            let now = Instant::now();
            match measuring_since {
                None if now >= warm_until => measuring_since = Some(now),
                None => continue,
                Some(since) if now.duration_since(since) >= duration => {
                    return (latencies, now.duration_since(since));
                }
                Some(_) => latencies.push(elapsed),
            }
        }
    });
    let (latencies, seconds) = tokio.block_on(task).expect("the bench task");
    Measurement::from_latencies(latencies, seconds.as_secs_f64())
}

/// CPU time so far, in clock ticks (Linux `/proc`): the machine's busy time and this process's.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq: busy = all but idle and iowait
    let busy = cpu.get(..7)?.iter().sum::<u64>() - cpu[3] - cpu[4];
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name
    let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

/// Cores used during a measurement: by this process, and by the rest of the machine.
struct Cpu {
    bench: f64,
    other: f64,
}

/// Runs `f`, and again (at most `retries` more times) while other processes used more than
/// `max_other` cores meanwhile: on a shared machine another user's compile takes cores from the
/// bench and lowers its numbers. Keeps the least disturbed try; `attempts` says how many.
fn steady(
    retries: usize,
    max_other: f64,
    mut f: impl FnMut() -> Measurement,
) -> (Measurement, Option<Cpu>, usize) {
    let mut kept: Option<(Measurement, Option<Cpu>)> = None;
    for attempt in 1..=retries + 1 {
        let (before, start) = (cpu_ticks(), Instant::now());
        let m = f();
        let (after, wall) = (cpu_ticks(), start.elapsed().as_secs_f64());
        // /proc counts in clock ticks, 100 per second on Linux.
        let cpu = before.zip(after).map(|((busy0, own0), (busy1, own1))| {
            let bench = (own1 - own0) as f64 / 100.0 / wall;
            let busy = (busy1 - busy0) as f64 / 100.0 / wall;
            Cpu {
                bench,
                other: busy - bench,
            }
        });
        let other = cpu.as_ref().map_or(0.0, |c| c.other);
        let better = match &kept {
            Some((_, Some(k))) => other < k.other,
            _ => true,
        };
        if better {
            kept = Some((m, cpu));
        }
        if other <= max_other {
            let (m, cpu) = kept.expect("kept above");
            return (m, cpu, attempt);
        }
        eprintln!("  other processes used {other:.2} cores meanwhile; measuring again");
    }
    let (m, cpu) = kept.expect("at least one try");
    (m, cpu, retries + 1)
}

fn print(
    system: &str,
    model: &str,
    mode: &str,
    threads: usize,
    (m, cpu, attempts): &(Measurement, Option<Cpu>, usize),
    max_other: f64,
) {
    let cpu_cores = cpu.as_ref().map(|c| {
        serde_json::json!({ "bench": c.bench, "other": c.other, "machine_busy": c.bench + c.other })
    });
    let line = serde_json::json!({
        "system": system,
        "model": model,
        "mode": mode,
        "concurrency": threads,
        "threads": threads,
        "requests": m.requests,
        "errors": 0,
        "seconds": m.seconds,
        "rps": m.requests as f64 / m.seconds,
        "p50_us": m.p50_us,
        "p99_us": m.p99_us,
        "mean_us": m.mean_us,
        "cpu_cores": cpu_cores,
        "attempts": attempts,
        "disturbed": cpu.as_ref().is_some_and(|c| c.other > max_other),
    });
    println!("{line}");
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
    let body = args.body.as_ref().map(|path| {
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    });
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
            let m = steady(args.retries, args.max_other, || {
                measure(&model, &input, threads, warmup, duration)
            });
            let mode = if concurrency == 1 { "c1" } else { "saturation" };
            print("inprocess", name, mode, threads, &m, args.max_other);
        }
        if let Some(body) = &body {
            eprintln!("inprocess: {name}, codec breakdown (decode + run + encode), 1 thread");
            print(
                "inprocess-codec",
                name,
                "c1",
                1,
                &steady(args.retries, args.max_other, || {
                    measure_codec(&model, body, warmup, duration)
                }),
                args.max_other,
            );
            eprintln!("inprocess: {name}, pool breakdown (hand-off + run), 1 worker");
            print(
                "inprocess-pool",
                name,
                "c1",
                1,
                &steady(args.retries, args.max_other, || {
                    measure_pool(&model, &input, warmup, duration)
                }),
                args.max_other,
            );
        }
    }
}
