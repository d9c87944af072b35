//! Confidence of a classifier's answer, computed from its class probabilities.
//!
//! These are the scores a cascade thresholds ("serve locally if confidence ≥ τ") and that the
//! calibration tool sweeps. All are in [0, 1], higher meaning more confident.

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
}

/// A confidence metric with optional temperature scaling (Guo et al. 2017): probabilities are
/// re-normalised as softmax(log p / T) before scoring; T > 1 softens over-confident models.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Confidence {
    /// Score computed from the probabilities.
    pub metric: ConfidenceMetric,
    /// Temperature T > 0 applied before scoring; 1 leaves the probabilities unchanged.
    #[cfg_attr(feature = "schema", schemars(extend("minimum" = 0.0, "exclusiveMinimum" = true)))]
    pub temperature: f64,
}

impl Default for Confidence {
    fn default() -> Self {
        Confidence {
            metric: ConfidenceMetric::MaxProbability,
            temperature: 1.0,
        }
    }
}

impl Confidence {
    /// The confidence of one row of class probabilities.
    pub fn score(&self, probs: &[f32]) -> f64 {
        if probs.is_empty() {
            return 0.0;
        }
        if self.temperature == 1.0 {
            return self.metric.score(probs.iter().map(|&p| f64::from(p)));
        }
        // softmax(log p / T) = p^(1/T) / Σ p^(1/T)
        let inv = 1.0 / self.temperature;
        let scaled: Vec<f64> = probs
            .iter()
            .map(|&p| f64::from(p.max(0.0)).powf(inv))
            .collect();
        let total: f64 = scaled.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        self.metric.score(scaled.into_iter().map(|p| p / total))
    }

    /// Confidence of each row of a `[rows, classes]` matrix.
    pub fn scores(&self, probs: &[f32], classes: usize) -> Vec<f64> {
        probs
            .chunks_exact(classes.max(1))
            .map(|row| self.score(row))
            .collect()
    }
}

impl ConfidenceMetric {
    fn score(self, probs: impl ExactSizeIterator<Item = f64>) -> f64 {
        let classes = probs.len();
        match self {
            ConfidenceMetric::MaxProbability => probs.fold(0.0, f64::max),
            ConfidenceMetric::Margin => {
                let (p1, p2) = probs.fold((0.0f64, 0.0f64), |(p1, p2), p| {
                    if p > p1 { (p, p1) } else { (p1, p2.max(p)) }
                });
                p1 - p2
            }
            ConfidenceMetric::Entropy => {
                if classes < 2 {
                    return 1.0;
                }
                let entropy: f64 = probs.filter(|&p| p > 0.0).map(|p| -p * p.ln()).sum();
                (1.0 - entropy / (classes as f64).ln()).clamp(0.0, 1.0)
            }
        }
    }
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
            temperature: 1.0,
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
    fn argmax_picks_the_first_largest() {
        assert_eq!(argmax(&[0.1, 0.6, 0.3]), 1);
        assert_eq!(argmax(&[0.5, 0.5]), 0);
    }
}
