//! Confidence of a classifier's answer, computed from its class probabilities.
//!
//! These are the scores a cascade thresholds ("serve locally if confidence ≥ τ") and that the
//! calibration tool sweeps. All are in [0, 1], higher meaning more confident.
//!
//! Besides the three fixed metrics there is a learned one, `logistic`: a [`Gate`] that weighs
//! the three into the probability that the local answer is right, fitted by `idn calibrate
//! --gate logistic` on a labelled sample.

use serde::{Deserialize, Serialize};

/// How confidence is computed from one row of probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum ConfidenceMetric {
    /// The largest probability p1.
    #[default]
    MaxProbability,
    /// p1 − p2, the gap between the two largest probabilities.
    Margin,
    /// 1 − H(p)/log C: 1 for a one-hot answer, 0 for a uniform one.
    Entropy,
    /// A learned gate: sigmoid of a weighted sum of the three metrics above (`gate` gives the
    /// weights), an estimate of the probability that the answer is right.
    Logistic,
}

/// Coefficients of the `logistic` metric: the score is
/// sigmoid(bias + top1 × p1 + margin × (p1 − p2) + entropy × (1 − H(p)/log C)).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gate {
    /// Intercept.
    pub bias: f64,
    /// Weight of the largest probability p1.
    pub top1: f64,
    /// Weight of the margin p1 − p2.
    pub margin: f64,
    /// Weight of the entropy confidence 1 − H(p)/log C.
    pub entropy: f64,
}

/// What a [`Gate`] reads of one row of probabilities: the three fixed metrics, in the order
/// top1, margin, entropy.
pub type Features = [f64; 3];

impl Gate {
    /// The gate's score of one row's features, in [0, 1].
    pub fn score(&self, [top1, margin, entropy]: Features) -> f64 {
        let z = self.bias + self.top1 * top1 + self.margin * margin + self.entropy * entropy;
        1.0 / (1.0 + (-z).exp())
    }

    /// The coefficients in the order bias, top1, margin, entropy.
    pub fn coefficients(&self) -> [f64; 4] {
        [self.bias, self.top1, self.margin, self.entropy]
    }
}

/// A confidence metric with optional temperature scaling (Guo et al. 2017): probabilities are
/// re-normalised as softmax(log p / T) before scoring; T > 1 softens over-confident models.
/// The `logistic` metric needs `gate`; the others refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Confidence {
    /// Score computed from the probabilities.
    pub metric: ConfidenceMetric,
    /// Temperature T > 0 applied before scoring; 1 leaves the probabilities unchanged.
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 0.0, "exclusiveMinimum" = true)))]
    pub temperature: f64,
    /// Coefficients of the `logistic` metric (after temperature scaling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
}

impl Default for Confidence {
    fn default() -> Self {
        Confidence {
            metric: ConfidenceMetric::MaxProbability,
            temperature: 1.0,
            gate: None,
        }
    }
}

impl Confidence {
    /// The confidence of one row of class probabilities.
    pub fn score(&self, probs: &[f32]) -> f64 {
        let features = self.features(probs);
        match self.metric {
            ConfidenceMetric::MaxProbability => features[0],
            ConfidenceMetric::Margin => features[1],
            ConfidenceMetric::Entropy => features[2],
            // Validation refuses `logistic` without a gate; were one missing anyway, forwarding
            // every item is the safe reading.
            ConfidenceMetric::Logistic => self.gate.map_or(0.0, |gate| gate.score(features)),
        }
    }

    /// Confidence of each row of a `[rows, classes]` matrix.
    pub fn scores(&self, probs: &[f32], classes: usize) -> Vec<f64> {
        probs
            .chunks_exact(classes.max(1))
            .map(|row| self.score(row))
            .collect()
    }

    /// The three fixed metrics of one row after temperature scaling: what a [`Gate`] reads.
    /// All 0 for an empty row.
    pub fn features(&self, probs: &[f32]) -> Features {
        if probs.is_empty() {
            return [0.0; 3];
        }
        if self.temperature == 1.0 {
            return features(probs.iter().map(|&p| f64::from(p)));
        }
        // softmax(log p / T) = p^(1/T) / Σ p^(1/T)
        let inv = 1.0 / self.temperature;
        let scaled: Vec<f64> = probs
            .iter()
            .map(|&p| f64::from(p.max(0.0)).powf(inv))
            .collect();
        let total: f64 = scaled.iter().sum();
        if total <= 0.0 {
            return [0.0; 3];
        }
        features(scaled.into_iter().map(|p| p / total))
    }
}

/// p1, p1 − p2 and 1 − H(p)/log C in one pass over a row.
fn features(probs: impl ExactSizeIterator<Item = f64>) -> Features {
    let classes = probs.len();
    let (p1, p2, entropy) = probs.fold((0.0f64, 0.0f64, 0.0f64), |(p1, p2, h), p| {
        let h = if p > 0.0 { h - p * p.ln() } else { h };
        if p > p1 {
            (p, p1, h)
        } else {
            (p1, p2.max(p), h)
        }
    });
    let certainty = if classes < 2 {
        1.0
    } else {
        (1.0 - entropy / (classes as f64).ln()).clamp(0.0, 1.0)
    };
    [p1, p1 - p2, certainty]
}

/// Index of the largest probability (the predicted class).
pub fn argmax(probs: &[f32]) -> usize {
    probs
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &p)| {
            if p > best.1 { (i, p) } else { best }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(metric: ConfidenceMetric) -> Confidence {
        Confidence {
            metric,
            ..Confidence::default()
        }
    }

    #[test]
    fn scores_of_known_rows() {
        let row = [0.7f32, 0.2, 0.1];
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(
            metric(ConfidenceMetric::MaxProbability).score(&row),
            0.7
        ));
        assert!(close(metric(ConfidenceMetric::Margin).score(&row), 0.5));
        let h = -(0.7f64 * 0.7f64.ln() + 0.2 * 0.2f64.ln() + 0.1 * 0.1f64.ln());
        assert!(close(
            metric(ConfidenceMetric::Entropy).score(&row),
            1.0 - h / 3f64.ln()
        ));
    }

    #[test]
    fn entropy_is_one_for_one_hot_and_zero_for_uniform() {
        let e = metric(ConfidenceMetric::Entropy);
        assert!((e.score(&[1.0, 0.0, 0.0, 0.0]) - 1.0).abs() < 1e-9);
        assert!(e.score(&[0.25; 4]).abs() < 1e-9);
    }

    #[test]
    fn temperature_softens_and_sharpens() {
        let row = [0.9f32, 0.1];
        let base = Confidence::default().score(&row);
        let soft = Confidence {
            temperature: 2.0,
            ..Confidence::default()
        }
        .score(&row);
        let sharp = Confidence {
            temperature: 0.5,
            ..Confidence::default()
        }
        .score(&row);
        assert!(soft < base && base < sharp, "{soft} {base} {sharp}");
        // T = 2 on [0.9, 0.1]: sqrt(0.9) / (sqrt(0.9) + sqrt(0.1)) = 0.75
        assert!((soft - 0.75).abs() < 1e-6);
    }

    #[test]
    fn a_logistic_gate_weighs_the_three_metrics_after_temperature() {
        let gate = Gate {
            bias: -1.0,
            top1: 2.0,
            margin: 0.5,
            entropy: -3.0,
        };
        let row = [0.7f32, 0.2, 0.1];
        let features = metric(ConfidenceMetric::MaxProbability).features(&row);
        let entropy = metric(ConfidenceMetric::Entropy).score(&row);
        assert!((features[0] - 0.7).abs() < 1e-6 && (features[1] - 0.5).abs() < 1e-6);
        assert!((features[2] - entropy).abs() < 1e-12);
        let z = -1.0 + 2.0 * features[0] + 0.5 * features[1] - 3.0 * features[2];
        let logistic = Confidence {
            metric: ConfidenceMetric::Logistic,
            gate: Some(gate),
            ..Confidence::default()
        };
        assert!((logistic.score(&row) - 1.0 / (1.0 + (-z).exp())).abs() < 1e-12);
        // The gate reads the scaled probabilities.
        let soft = Confidence {
            temperature: 2.0,
            ..logistic
        };
        let scaled = gate.score(soft.features(&row));
        assert_eq!(soft.score(&row), scaled);
        assert_ne!(soft.score(&row), logistic.score(&row));
        // A zero gate is indifferent; a missing one forwards everything.
        assert_eq!(Gate::default().score(features), 0.5);
        let missing = Confidence {
            gate: None,
            ..logistic
        };
        assert_eq!(missing.score(&row), 0.0);
    }

    #[test]
    fn a_gate_reads_and_writes_camel_case_and_refuses_unknown_keys() {
        let yaml = "{metric: logistic, temperature: 1.5, gate: {bias: -2, top1: 1, margin: 3, entropy: 0.5}}";
        let confidence: Confidence = serde_norway::from_str(yaml).unwrap();
        assert_eq!(confidence.metric, ConfidenceMetric::Logistic);
        assert_eq!(
            confidence.gate.unwrap().coefficients(),
            [-2.0, 1.0, 3.0, 0.5]
        );
        let written = serde_norway::to_string(&confidence).unwrap();
        assert_eq!(
            serde_norway::from_str::<Confidence>(&written).unwrap(),
            confidence
        );
        // Without a gate the key is left out, as before gates existed.
        let plain = serde_norway::to_string(&Confidence::default()).unwrap();
        assert_eq!(plain, "metric: maxProbability\ntemperature: 1.0\n");
        let typo = "{metric: logistic, gate: {bias: 0, top: 1, margin: 0, entropy: 0}}";
        assert!(serde_norway::from_str::<Confidence>(typo).is_err());
    }

    #[test]
    fn argmax_picks_the_first_largest() {
        assert_eq!(argmax(&[0.1, 0.6, 0.3]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
    }
}
