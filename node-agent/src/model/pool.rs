//! The inference pool: a fixed set of worker threads, each owning one ONNX Runtime session per
//! ready model, fed by a bounded queue.
//!
//! Inference never runs on the async reactor. The queue bound is the overload policy: when it
//! is full the request is refused at once (overloaded) instead of waiting in memory.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;

use super::runtime::{Model, ModelSession};
use crate::error::RequestError;
use crate::wire::tensor::Tensor;

/// Outputs of one inference and the time the model took.
#[derive(Debug)]
pub struct Inference {
    pub outputs: Vec<Tensor>,
    pub elapsed: Duration,
}

struct Job {
    model: usize,
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
    reply: oneshot::Sender<Result<Inference, RequestError>>,
}

/// Handle to the worker threads; cloning shares the same queue.
#[derive(Clone)]
pub struct InferencePool {
    queue: Sender<Job>,
    queue_depth: usize,
}

impl InferencePool {
    /// Starts `threads` workers over `models` (indexed as in the slice).
    pub fn start(models: &[Model], threads: usize, queue_depth: usize) -> Self {
        let (queue, jobs) = crossbeam_channel::bounded(queue_depth);
        let models: Arc<[Model]> = models.into();
        for i in 0..threads.max(1) {
            let jobs = jobs.clone();
            let models = Arc::clone(&models);
            thread::Builder::new()
                .name(format!("idn-infer-{i}"))
                .spawn(move || work(&models, &jobs))
                .expect("spawning an inference thread");
        }
        InferencePool { queue, queue_depth }
    }

    /// Runs a model on checked inputs; refused at once when the queue is full.
    pub async fn infer(
        &self,
        model: usize,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
    ) -> Result<Inference, RequestError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            model,
            inputs,
            outputs,
            reply,
        };
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => RequestError::Overloaded {
                queue_depth: self.queue_depth,
            },
            TrySendError::Disconnected(_) => {
                RequestError::Unavailable("the agent is shutting down".into())
            }
        })?;
        answer
            .await
            .map_err(|_| RequestError::Unavailable("the inference worker stopped".into()))?
    }
}

/// A worker: opens its sessions, then serves jobs until every sender is gone.
fn work(models: &[Model], jobs: &Receiver<Job>) {
    let mut sessions: Vec<Option<ModelSession>> = models
        .iter()
        .map(|m| {
            if !m.is_ready() {
                return None;
            }
            m.open_session()
                .inspect_err(|e| tracing::error!(model = %m.name(), error = %e, "worker cannot open a session"))
                .ok()
        })
        .collect();
    for job in jobs {
        let result = match sessions.get_mut(job.model).and_then(Option::as_mut) {
            Some(session) => {
                let start = Instant::now();
                session
                    .run(job.inputs, &job.outputs)
                    .map(|outputs| Inference {
                        outputs,
                        elapsed: start.elapsed(),
                    })
            }
            None => Err(RequestError::Internal(format!(
                "inference failed: model #{} has no session on this worker",
                job.model
            ))),
        };
        // The client may have gone away; its answer is then dropped.
        let _ = job.reply.send(result);
    }
}
