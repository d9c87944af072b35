//! The inference pool: a fixed set of worker threads, each owning one ONNX Runtime session per
//! ready model, fed by a bounded queue.
//!
//! Inference never runs on the async reactor. The queue bound is the overload policy: when it
//! is full the request is refused at once (overloaded) instead of waiting in memory. A job
//! whose request expired while it waited (its caller went away, or its deadline passed) is
//! dropped by the worker instead of run: under overload, workers run only what someone awaits.

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
    deadline: Option<Instant>,
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

    /// Runs a model on checked inputs; refused at once when the queue is full, and not run
    /// when `deadline` passes before a worker takes it.
    pub async fn infer(
        &self,
        model: usize,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Inference, RequestError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            model,
            inputs,
            outputs,
            deadline: deadline.map(tokio::time::Instant::into_std),
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
        if job.reply.is_closed() {
            // Nobody waits for the answer any more.
            continue;
        }
        if job
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            let _ = job.reply.send(Err(RequestError::DeadlineExceeded(
                "the deadline passed while the request waited for an inference worker".into(),
            )));
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of one worker over a model whose file is absent: a job that reaches the worker
    /// is answered "no session", without ONNX Runtime.
    fn pool() -> InferencePool {
        let model = Model::load(crate::model::test_config("absent"));
        InferencePool::start(&[model], 1, 4)
    }

    #[tokio::test]
    async fn a_job_whose_deadline_passed_is_not_run() {
        let pool = pool();
        let passed = tokio::time::Instant::now();
        let expired = pool.infer(0, Vec::new(), Vec::new(), Some(passed)).await;
        assert!(
            matches!(expired, Err(RequestError::DeadlineExceeded(_))),
            "{expired:?}"
        );
        let later = passed + Duration::from_secs(60);
        for deadline in [None, Some(later)] {
            let run = pool.infer(0, Vec::new(), Vec::new(), deadline).await;
            assert!(matches!(run, Err(RequestError::Internal(_))), "{run:?}");
        }
    }
}
