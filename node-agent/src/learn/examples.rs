//! Hard examples (`hardExamples`): a bounded, sampled store of the items a service forwarded,
//! each with the forward target's answer and the local answer it replaced: the per-node data
//! that serving-rate-aware retraining needs (the items a tier could not answer, labelled by
//! the tier above). Off unless configured, since it holds clients' inputs; read and drained
//! through `/v2/models/{service}/hard-examples`.

use std::collections::VecDeque;

use idn_contract::config::HardExamplesConfig;
use idn_contract::provenance::Decision;
use serde::Serialize;
use serde_json::Value;

use crate::delivery::Answer;
use crate::wire::tensor::Tensor;

#[derive(Debug)]
pub(crate) struct HardExamples {
    config: HardExamplesConfig,
    kept: VecDeque<HardExample>,
    rng: fastrand::Rng,
    /// Items offered since start, kept or not.
    offered: u64,
}

/// One forwarded item.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HardExample {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The item's inputs, as OIP v2 tensors with a batch of one.
    pub inputs: Vec<Value>,
    /// What this node's local target answered, when it answered first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalAnswer>,
    /// What the forward target answered.
    pub answer: ForwardAnswer,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LocalAnswer {
    pub class: usize,
    pub confidence: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ForwardAnswer {
    pub class: usize,
    pub probs: Vec<f32>,
    pub node: String,
    pub model: String,
}

/// What a client reads.
#[derive(Debug, Serialize)]
pub(crate) struct Contents {
    pub capacity: usize,
    pub sample_rate: f64,
    pub offered: u64,
    pub examples: Vec<HardExample>,
}

impl HardExamples {
    pub(crate) fn new(config: &HardExamplesConfig) -> Self {
        HardExamples {
            config: config.clone(),
            kept: VecDeque::new(),
            rng: fastrand::Rng::new(),
            offered: 0,
        }
    }

    /// Offers the items of `sub_batch` (inputs) that `forwarded` answered; `local` holds the
    /// local answer of each, when there was one. Fallback answers are not the forward
    /// target's and are not kept.
    pub(crate) fn offer(
        &mut self,
        id: Option<&str>,
        sub_batch: &[Tensor],
        forwarded: &Answer,
        local: Option<&[LocalAnswer]>,
    ) {
        let classes = forwarded.classes;
        for (row, item) in forwarded.items.iter().enumerate() {
            if item.decision == Decision::Fallback {
                continue;
            }
            self.offered += 1;
            if self.rng.f64() >= self.config.sample_rate {
                continue;
            }
            let probs = forwarded.probs[row * classes..(row + 1) * classes].to_vec();
            let example = HardExample {
                id: id.map(str::to_owned),
                inputs: sub_batch
                    .iter()
                    .map(|t| crate::wire::tensor_json(&t.select_rows(&[row])))
                    .collect(),
                local: local.map(|l| l[row]),
                answer: ForwardAnswer {
                    class: idn_contract::confidence::argmax(&probs),
                    probs,
                    node: item.node.clone(),
                    model: item.model.clone(),
                },
            };
            if self.kept.len() == self.config.capacity {
                self.kept.pop_front();
            }
            self.kept.push_back(example);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.kept.len()
    }

    /// What is kept; `drain` empties the store in the same step, so nothing is read twice
    /// or lost between a read and a clear.
    pub(crate) fn contents(&mut self, drain: bool) -> Contents {
        let examples = if drain {
            self.kept.drain(..).collect()
        } else {
            self.kept.iter().cloned().collect()
        };
        Contents {
            capacity: self.config.capacity,
            sample_rate: self.config.sample_rate,
            offered: self.offered,
            examples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::provenance::Provenance;
    use crate::wire::tensor::TensorData;

    fn forwarded(decisions: &[Decision]) -> Answer {
        Answer {
            classes: 2,
            probs: decisions.iter().flat_map(|_| [0.2, 0.8]).collect(),
            items: decisions
                .iter()
                .map(|&decision| Provenance {
                    node: "cloud".into(),
                    model: "big".into(),
                    decision,
                    confidence: 0.8,
                    path: vec!["edge".into(), "cloud".into()],
                })
                .collect(),
        }
    }

    fn inputs(rows: usize) -> Vec<Tensor> {
        vec![Tensor {
            name: "input".into(),
            shape: vec![rows, 2],
            data: TensorData::Fp32((0..rows * 2).map(|i| i as f32).collect()),
        }]
    }

    #[test]
    fn the_newest_forwarded_items_are_kept_with_both_answers() {
        let config = HardExamplesConfig {
            capacity: 2,
            sample_rate: 1.0,
        };
        let mut store = HardExamples::new(&config);
        let local = [LocalAnswer {
            class: 0,
            confidence: 0.6,
        }; 3];
        let decisions = [Decision::Served, Decision::Fallback, Decision::Served];
        store.offer(Some("r1"), &inputs(3), &forwarded(&decisions), Some(&local));
        let contents = store.contents(false);
        assert_eq!(
            contents.offered, 2,
            "a fallback is not the upstream's answer"
        );
        assert_eq!(contents.examples.len(), 2);
        let last = &contents.examples[1];
        assert_eq!(last.inputs[0]["data"], serde_json::json!([4.0, 5.0]));
        assert_eq!(last.inputs[0]["shape"], serde_json::json!([1, 2]));
        assert_eq!((last.answer.class, last.local.unwrap().class), (1, 0));
        store.offer(None, &inputs(1), &forwarded(&[Decision::Served]), None);
        let drained = store.contents(true);
        assert_eq!(drained.examples.len(), 2);
        assert!(drained.examples[1].local.is_none());
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn a_sample_rate_keeps_a_share() {
        let config = HardExamplesConfig {
            capacity: 10_000,
            sample_rate: 0.25,
        };
        let mut store = HardExamples::new(&config);
        for _ in 0..1000 {
            store.offer(None, &inputs(4), &forwarded(&[Decision::Served; 4]), None);
        }
        let kept = store.len() as f64 / 4000.0;
        assert!((0.2..0.3).contains(&kept), "{kept}");
    }
}
