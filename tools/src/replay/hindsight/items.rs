//! Both tiers' answers to every request of a stream, computed in-process.

use idn_contract::confidence::{Confidence, argmax};

use super::Item;
use crate::inference::{InferenceError, SampleModel};
use crate::replay::{Stream, class_name};

/// Requests run through a model at once.
const BATCH: usize = 512;

/// For every request of `stream` (its inputs as the replay sends them), the local model's
/// confidence (largest probability) and class, the upstream model's class and the label;
/// classes are named after `labels` as the replay names answers.
pub fn items(
    stream: &Stream,
    local: &SampleModel,
    upstream: &SampleModel,
    labels: Option<&[String]>,
) -> Result<Vec<Item>, InferenceError> {
    let confidence = Confidence::default();
    let mut items = Vec::with_capacity(stream.len());
    for range in stream.batches(BATCH) {
        let inputs = stream.batch(range.clone());
        let near = local.run(inputs.clone())?;
        let far = upstream.run(inputs)?;
        for ((n, near), far) in range.zip(near.rows()).zip(far.rows()) {
            items.push(Item {
                confidence: confidence.score(near),
                local: class_name(argmax(near), labels),
                upstream: class_name(argmax(far), labels),
                label: stream.label(n).to_owned(),
            });
        }
    }
    Ok(items)
}
