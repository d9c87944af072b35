//! What a target answers: class probabilities per batch item, each item with its provenance;
//! and the batch plumbing every strategy shares (sub-batches, splicing rows back).

use crate::wire::provenance::Provenance;
use crate::wire::tensor::{Tensor, TensorData};
use idn_contract::provenance::Decision;

/// A batch answered: class probabilities (items × classes) and each item's provenance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub classes: usize,
    pub probs: Vec<f32>,
    pub items: Vec<Provenance>,
}

impl Answer {
    /// Replaces the items at `rows` by the items of `other` (same classes), in order.
    pub(super) fn splice(&mut self, rows: &[usize], other: Answer) {
        let c = self.classes;
        for (j, &row) in rows.iter().enumerate() {
            self.probs[row * c..(row + 1) * c].copy_from_slice(&other.probs[j * c..(j + 1) * c]);
        }
        for (&row, item) in rows.iter().zip(other.items) {
            self.items[row] = item;
        }
    }

    /// The rows whose confidence is below `tau`.
    pub(super) fn rows_below(&self, tau: f64) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| self.items[i].confidence < tau)
            .collect()
    }

    /// Marks what a forward target of this node answered here (`served`) as forwarded to it:
    /// the hop to another model or service of `node` shows as `node` once more in the path.
    /// Items answered further on are forwarded already.
    pub(super) fn forwarded_within(&mut self, node: &str) {
        for item in &mut self.items {
            if item.decision == Decision::Served {
                item.decision = Decision::Forwarded;
                item.path.push(node.to_owned());
            }
        }
    }

    /// Marks the items at `rows` as answered by a fallback (degraded).
    pub(super) fn fall_back(&mut self, rows: impl IntoIterator<Item = usize>) {
        for row in rows {
            self.items[row].decision = Decision::Fallback;
        }
    }
}

/// The batch size of checked inputs (they share their first dimension).
pub(super) fn batch_size(inputs: &[Tensor]) -> usize {
    inputs.first().map_or(0, Tensor::batch_size)
}

/// The sub-batch of `inputs` at `rows`, in that order.
pub(super) fn select_rows(inputs: &[Tensor], rows: &[usize]) -> Vec<Tensor> {
    inputs.iter().map(|t| t.select_rows(rows)).collect()
}

/// Scales a row of probabilities to sum to 1 (a row of zeros stays as it is).
pub(super) fn renormalise(row: &mut [f32]) {
    let sum: f32 = row.iter().sum();
    if sum > 0.0 {
        row.iter_mut().for_each(|p| *p /= sum);
    }
}

/// A probability output as `(classes, data)`: FP32 of shape `[items, classes]`.
pub(super) fn probabilities(tensor: Tensor, items: usize) -> Result<(usize, Vec<f32>), String> {
    match (tensor.shape.as_slice(), tensor.data) {
        ([n, classes], TensorData::Fp32(data)) if *n == items && *classes > 0 => {
            Ok((*classes, data))
        }
        (shape, data) => Err(format!(
            "output {:?} is {} {shape:?}, expected FP32 [{items}, classes]",
            tensor.name,
            data.datatype()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(node: &str, probs: &[f32]) -> Answer {
        let item = Provenance {
            node: node.into(),
            model: "m".into(),
            decision: Decision::Served,
            confidence: 0.5,
            path: vec![node.into()],
        };
        Answer {
            classes: 2,
            probs: probs.to_vec(),
            items: vec![item; probs.len() / 2],
        }
    }

    #[test]
    fn splicing_puts_rows_back_where_they_came_from() {
        let mut local = answer("edge", &[0.1, 0.9, 0.2, 0.8, 0.3, 0.7]);
        local.splice(&[2, 0], answer("cloud", &[1.0, 0.0, 0.5, 0.5]));
        assert_eq!(local.probs, [0.5, 0.5, 0.2, 0.8, 1.0, 0.0]);
        let nodes: Vec<&str> = local.items.iter().map(|i| i.node.as_str()).collect();
        assert_eq!(nodes, ["cloud", "edge", "cloud"]);
    }

    #[test]
    fn a_probability_output_must_have_one_row_per_item() {
        let tensor = |shape: Vec<usize>, data| Tensor {
            name: "probs".into(),
            shape,
            data,
        };
        let ok = tensor(vec![2, 3], TensorData::Fp32(vec![0.0; 6]));
        assert_eq!(probabilities(ok, 2), Ok((3, vec![0.0; 6])));
        let short = tensor(vec![1, 3], TensorData::Fp32(vec![0.0; 3]));
        assert_eq!(
            probabilities(short, 2).unwrap_err(),
            "output \"probs\" is FP32 [1, 3], expected FP32 [2, classes]"
        );
        let ints = tensor(vec![2, 1], TensorData::Int64(vec![0, 1]));
        assert!(probabilities(ints, 2).unwrap_err().contains("is INT64"));
    }
}
