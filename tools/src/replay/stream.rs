//! The stream of requests a replay sends: a sample's items in order, or repeated and shuffled,
//! changing from some request on to a transform of the items or to a second sample.

use std::ops::Range;
use std::sync::Arc;

use idn_node_agent::wire::tensor::Tensor;

use crate::dataset::shift::{self, Transform};
use crate::dataset::{Dataset, DatasetError};

/// How the base sample becomes a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// Passes over the sample: the stream is `repeat` times as long, items repeating.
    pub repeat: usize,
    /// Each pass in its own random order.
    pub shuffle: bool,
    /// Seeds the shuffling and the noise of a shift.
    pub seed: u64,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            repeat: 1,
            shuffle: false,
            seed: 0,
        }
    }
}

/// What the stream changes to at the shift point.
#[derive(Debug, Clone)]
pub enum Shift {
    /// The same items, transformed.
    Transform(Transform),
    /// Another sample's items, in the stream's order.
    Dataset(Arc<Dataset>),
}

/// The requests of a replay, request `n` being item `plan[n]` of the base sample or, from the
/// shift point on, of what it shifts to.
#[derive(Debug, Clone)]
pub struct Stream {
    base: Arc<Dataset>,
    shift: Option<(usize, Shift)>,
    plan: Vec<usize>,
    seed: u64,
}

impl Stream {
    /// Every item of `sample` once, in order.
    pub fn plain(sample: Arc<Dataset>) -> Self {
        Stream::new(sample, Order::default(), None).expect("a stream without a shift is valid")
    }

    /// The stream of `base` in `order`, shifting at request `at` when `shift` is given. A
    /// transform needs image-like items; the shift point must fall inside the stream.
    pub fn new(
        base: Arc<Dataset>,
        order: Order,
        shift: Option<(usize, Shift)>,
    ) -> Result<Self, DatasetError> {
        let len = base.len() * order.repeat.max(1);
        let mut rng = fastrand::Rng::with_seed(order.seed);
        let mut plan = passes(base.len(), len, order.shuffle, &mut rng);
        if let Some((at, shift)) = &shift {
            if *at >= len {
                return Err(DatasetError::invalid(
                    &base.source,
                    format!("the shift at request {at} is past the stream's {len} requests"),
                ));
            }
            match shift {
                Shift::Transform(_) => shift::check(&base)?,
                Shift::Dataset(to) => {
                    plan.truncate(*at);
                    plan.extend(passes(to.len(), len - at, order.shuffle, &mut rng));
                }
            }
        }
        Ok(Stream {
            base,
            shift,
            plan,
            seed: order.seed,
        })
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.plan.len()
    }

    /// Whether there is no request (never true: samples are not empty).
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// The request at which the stream changes, if it does.
    pub fn shift_at(&self) -> Option<usize> {
        self.shift.as_ref().map(|(at, _)| *at)
    }

    /// The samples the stream draws from: the base, then the one it shifts to.
    pub fn samples(&self) -> impl Iterator<Item = &Dataset> {
        let to = match &self.shift {
            Some((_, Shift::Dataset(to))) => Some(to.as_ref()),
            _ => None,
        };
        std::iter::once(self.base.as_ref()).chain(to)
    }

    /// The inputs of request `n`, each of shape `[1, ...]`.
    pub fn inputs(&self, n: usize) -> Vec<Tensor> {
        let (sample, transform) = self.source(n);
        let inputs = sample.item(self.plan[n]);
        match transform {
            // The noise of request n depends on the seed and n alone, whatever the concurrency.
            Some(t) => {
                let mut rng = fastrand::Rng::with_seed(self.seed ^ (n as u64).wrapping_mul(K));
                inputs.iter().map(|i| t.apply(i, &mut rng)).collect()
            }
            None => inputs,
        }
    }

    /// Requests `0..len` in consecutive ranges of at most `size`, none crossing the shift point
    /// (the items on either side may not stack into one batch).
    pub fn batches(&self, size: usize) -> Vec<Range<usize>> {
        let size = size.max(1);
        // Without a shift, the second segment is empty.
        let at = self.shift_at().unwrap_or(self.len());
        [0..at, at..self.len()]
            .into_iter()
            .flat_map(|segment| {
                segment
                    .clone()
                    .step_by(size)
                    .map(move |start| start..(start + size).min(segment.end))
            })
            .collect()
    }

    /// The inputs of requests `range` (one of [`Stream::batches`]), each request's as
    /// [`Stream::inputs`] gives them, stacked into one tensor `[range.len(), ...]` per input.
    pub fn batch(&self, range: Range<usize>) -> Vec<Tensor> {
        let mut requests = range.map(|n| self.inputs(n));
        let mut batch = requests.next().unwrap_or_default();
        for inputs in requests {
            for (stacked, input) in batch.iter_mut().zip(inputs) {
                // Requests of one side of the shift have the same inputs, datatypes and shapes.
                let same = stacked.data.append(&input.data);
                debug_assert!(same, "{} changed datatype within a batch", input.name);
                stacked.shape[0] += 1;
            }
        }
        batch
    }

    /// The class name of request `n`.
    pub fn label(&self, n: usize) -> &str {
        let sample = self.source(n).0;
        &sample.classes[sample.labels[self.plan[n]]]
    }

    fn source(&self, n: usize) -> (&Dataset, Option<&Transform>) {
        match &self.shift {
            Some((at, shift)) if n >= *at => match shift {
                Shift::Transform(t) => (&self.base, Some(t)),
                Shift::Dataset(to) => (to, None),
            },
            _ => (&self.base, None),
        }
    }
}

/// An odd constant (2⁶⁴ / φ) spreading request numbers over the seed's bits.
const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// `len` item indices of a sample of `items`, pass after pass, each pass shuffled if asked.
fn passes(items: usize, len: usize, shuffle: bool, rng: &mut fastrand::Rng) -> Vec<usize> {
    let mut plan = Vec::with_capacity(len);
    while plan.len() < len {
        let mut pass: Vec<usize> = (0..items).collect();
        if shuffle {
            rng.shuffle(&mut pass);
        }
        pass.truncate(len - plan.len());
        plan.extend(pass);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use idn_node_agent::wire::tensor::TensorData;

    /// `n` items of 4 bytes (2 × 2), item i all `i`, labelled `i % 2` of classes `names`.
    fn sample(n: usize, names: [&str; 2]) -> Arc<Dataset> {
        Arc::new(Dataset {
            source: "x.npz".into(),
            classes: names.map(String::from).into(),
            inputs: vec![Tensor {
                name: "input".into(),
                shape: vec![n, 2, 2],
                data: TensorData::Uint8((0..n).flat_map(|i| [i as u8; 4]).collect()),
            }],
            labels: (0..n).map(|i| i % 2).collect(),
        })
    }

    fn first_bytes(stream: &Stream) -> Vec<u8> {
        (0..stream.len())
            .map(|n| match &stream.inputs(n)[0].data {
                TensorData::Uint8(v) => v[0],
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_plain_stream_is_the_sample() {
        let stream = Stream::plain(sample(3, ["a", "b"]));
        assert_eq!(first_bytes(&stream), [0, 1, 2]);
        assert_eq!(stream.label(1), "b");
        assert_eq!(stream.shift_at(), None);
    }

    #[test]
    fn repeated_passes_are_shuffled_by_the_seed() {
        let order = |seed| Order {
            repeat: 3,
            shuffle: true,
            seed,
        };
        let stream = Stream::new(sample(10, ["a", "b"]), order(1), None).unwrap();
        let items = first_bytes(&stream);
        assert_eq!(items.len(), 30);
        for pass in items.chunks(10) {
            let mut sorted = pass.to_vec();
            sorted.sort();
            assert_eq!(
                sorted,
                (0..10).collect::<Vec<u8>>(),
                "each pass holds every item"
            );
        }
        assert_ne!(items[..10], items[10..20]);
        let again = Stream::new(sample(10, ["a", "b"]), order(1), None).unwrap();
        assert_eq!(first_bytes(&again), items);
        let other = Stream::new(sample(10, ["a", "b"]), order(2), None).unwrap();
        assert_ne!(first_bytes(&other), items);
    }

    #[test]
    fn a_transform_applies_from_the_shift_point_on() {
        let shift = Some((2, Shift::Transform(Transform::Invert)));
        let stream = Stream::new(sample(4, ["a", "b"]), Order::default(), shift).unwrap();
        assert_eq!(first_bytes(&stream), [0, 1, 253, 252]);
        assert_eq!(stream.label(3), "b");
        assert_eq!(stream.shift_at(), Some(2));
        assert_eq!(stream.samples().count(), 1);
    }

    #[test]
    fn a_second_sample_takes_over_at_the_shift_point() {
        let to = sample(2, ["c", "d"]);
        let order = Order {
            repeat: 2,
            ..Order::default()
        };
        let stream =
            Stream::new(sample(3, ["a", "b"]), order, Some((4, Shift::Dataset(to)))).unwrap();
        assert_eq!(first_bytes(&stream), [0, 1, 2, 0, 0, 1]);
        let labels: Vec<&str> = (0..6).map(|n| stream.label(n)).collect();
        assert_eq!(labels, ["a", "b", "a", "a", "c", "d"]);
        assert_eq!(stream.samples().count(), 2);
    }

    #[test]
    fn batches_stack_the_requests_and_stop_at_the_shift() {
        let shift = Some((3, Shift::Transform(Transform::Invert)));
        let stream = Stream::new(sample(5, ["a", "b"]), Order::default(), shift).unwrap();
        assert_eq!(stream.batches(2), [0..2, 2..3, 3..5]);
        let whole = Stream::plain(sample(5, ["a", "b"])).batches(5);
        assert_eq!((whole.len(), &whole[0]), (1, &(0..5)));
        let batch = stream.batch(2..5);
        assert_eq!(batch[0].shape, [3, 2, 2]);
        let stacked: Vec<Tensor> = (2..5).flat_map(|n| stream.inputs(n)).collect();
        let TensorData::Uint8(data) = &batch[0].data else {
            unreachable!()
        };
        let each: Vec<u8> = stacked
            .iter()
            .flat_map(|t| match &t.data {
                TensorData::Uint8(v) => v.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(*data, each);
    }

    #[test]
    fn a_shift_outside_the_stream_or_of_non_images_is_refused() {
        let shift = Some((3, Shift::Transform(Transform::Invert)));
        let err = Stream::new(sample(3, ["a", "b"]), Order::default(), shift).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.npz: the shift at request 3 is past the stream's 3 requests"
        );
        let mut flat = (*sample(3, ["a", "b"])).clone();
        flat.inputs[0].shape = vec![3, 2, 1, 2];
        let shift = Some((1, Shift::Transform(Transform::Invert)));
        let err = Stream::new(Arc::new(flat), Order::default(), shift).unwrap_err();
        assert!(
            err.to_string().contains("[2, 1, 2] are not image-like"),
            "{err}"
        );
    }
}
