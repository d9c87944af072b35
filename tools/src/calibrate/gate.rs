//! Fitting a learned gate: a logistic model of a tier's confidence features predicting that its
//! answer is right, so that the threshold searches run on an estimated probability of being
//! right instead of a fixed metric.
//!
//! The fit maximises the L2-penalised log-likelihood by Newton's method (iteratively reweighted
//! least squares) with a backtracking line search. The penalty, [`L2`] on the three weights
//! (not the bias), keeps the coefficients finite when the sample is separable and steadies the
//! three strongly correlated features; with a thousand items it moves the fit very little
//! otherwise.

use idn_contract::confidence::{Confidence, Features, Gate};

use super::{CalibrateError, TierProbs, TierScores};

/// Weight of the penalty ½ λ ‖w‖² added to the summed negative log-likelihood.
pub const L2: f64 = 1.0;

/// Newton steps before the fit stops; it converges in about ten on real samples.
const MAX_STEPS: usize = 100;

/// Why no gate can be fitted on a sample.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no items to fit on")]
    Empty,
    /// Every answer is right or every answer is wrong: the data say nothing about which
    /// features separate the two.
    #[error(
        "the model is {} on all {items} items it is fitted on, so a gate has nothing to learn; \
         use a fixed metric",
        if *.right { "right" } else { "wrong" }
    )]
    OneClass { items: usize, right: bool },
}

/// The gate maximising the penalised likelihood of `correct` given `features`.
///
/// # Panics
/// When `features` and `correct` differ in length.
pub fn fit(features: &[Features], correct: &[bool]) -> Result<Gate, FitError> {
    assert_eq!(features.len(), correct.len(), "one label per item");
    let items = correct.len();
    if items == 0 {
        return Err(FitError::Empty);
    }
    let right = correct.iter().filter(|&&c| c).count();
    if right == 0 || right == items {
        return Err(FitError::OneClass {
            items,
            right: right == items,
        });
    }
    let rows: Vec<[f64; 4]> = features.iter().map(|&[a, b, c]| [1.0, a, b, c]).collect();
    let y: Vec<f64> = correct.iter().map(|&c| f64::from(u8::from(c))).collect();
    // Start from the base rate, the best gate that ignores the features.
    let rate = right as f64 / items as f64;
    let mut theta = [(rate / (1.0 - rate)).ln(), 0.0, 0.0, 0.0];
    let mut loss = objective(&rows, &y, &theta);
    for _ in 0..MAX_STEPS {
        let (gradient, hessian) = derivatives(&rows, &y, &theta);
        let step = solve(hessian, gradient);
        // Halve the Newton step until the objective decreases: far from the optimum of a
        // nearly separable sample the full step overshoots.
        let mut scale = 1.0;
        let (next, next_loss) = loop {
            let next: [f64; 4] = std::array::from_fn(|j| theta[j] - scale * step[j]);
            let next_loss = objective(&rows, &y, &next);
            if next_loss <= loss || scale < 1e-10 {
                break (next, next_loss);
            }
            scale /= 2.0;
        };
        let moved = (0..4)
            .map(|j| (next[j] - theta[j]).abs())
            .fold(0.0, f64::max);
        theta = next;
        loss = next_loss;
        if moved < 1e-9 {
            break;
        }
    }
    let [bias, top1, margin, entropy] = theta;
    Ok(Gate {
        bias,
        top1,
        margin,
        entropy,
    })
}

/// Per tier, per item, the features a gate reads, after the temperature of `confidence`.
pub fn features(tiers: &[TierProbs<'_>], confidence: &Confidence) -> Vec<Vec<Features>> {
    tiers
        .iter()
        .map(|tier| {
            tier.probs
                .chunks_exact(tier.classes.len().max(1))
                .map(|row| confidence.features(row))
                .collect()
        })
        .collect()
}

/// Fits a gate for every tier but the last on the items `rows` and scores every item with it;
/// the last tier, which answers all it gets, keeps its scores. `scores` gives each item's
/// right/wrong, `names` the tiers' names for errors.
pub fn gated(
    features: &[Vec<Features>],
    scores: &[TierScores],
    names: &[String],
    rows: &[usize],
) -> Result<(Vec<Gate>, Vec<TierScores>), CalibrateError> {
    let last = scores.len().saturating_sub(1);
    let gates = features[..last]
        .iter()
        .zip(&scores[..last])
        .zip(names)
        .map(|((features, tier), name)| {
            let picked: Vec<Features> = rows.iter().map(|&r| features[r]).collect();
            let correct: Vec<bool> = rows.iter().map(|&r| tier.correct[r]).collect();
            fit(&picked, &correct).map_err(|error| CalibrateError::Gate {
                name: name.clone(),
                error,
            })
        })
        .collect::<Result<Vec<Gate>, _>>()?;
    let gated = scores
        .iter()
        .enumerate()
        .map(|(i, tier)| match gates.get(i) {
            Some(gate) => TierScores {
                confidence: features[i].iter().map(|&f| gate.score(f)).collect(),
                correct: tier.correct.clone(),
            },
            None => tier.clone(),
        })
        .collect();
    Ok((gates, gated))
}

/// Summed negative log-likelihood plus the penalty.
fn objective(rows: &[[f64; 4]], y: &[f64], theta: &[f64; 4]) -> f64 {
    let nll: f64 = rows
        .iter()
        .zip(y)
        .map(|(x, &y)| softplus(dot(x, theta)) - y * dot(x, theta))
        .sum();
    nll + 0.5 * L2 * theta[1..].iter().map(|w| w * w).sum::<f64>()
}

/// Gradient and Hessian of [`objective`].
fn derivatives(rows: &[[f64; 4]], y: &[f64], theta: &[f64; 4]) -> ([f64; 4], [[f64; 4]; 4]) {
    let mut gradient = [0.0; 4];
    let mut hessian = [[0.0; 4]; 4];
    for (x, &y) in rows.iter().zip(y) {
        let p = sigmoid(dot(x, theta));
        let weight = p * (1.0 - p);
        for j in 0..4 {
            gradient[j] += (p - y) * x[j];
            for k in 0..4 {
                hessian[j][k] += weight * x[j] * x[k];
            }
        }
    }
    for j in 1..4 {
        gradient[j] += L2 * theta[j];
        hessian[j][j] += L2;
    }
    // The bias is not penalised; a saturated sample could leave its curvature at 0.
    hessian[0][0] += 1e-9;
    (gradient, hessian)
}

/// Solves `a` x = `b` for a symmetric positive definite `a` (Cholesky).
fn solve(a: [[f64; 4]; 4], b: [f64; 4]) -> [f64; 4] {
    let mut l = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            l[i][j] = if i == j {
                (a[i][i] - sum).max(f64::MIN_POSITIVE).sqrt()
            } else {
                (a[i][j] - sum) / l[j][j]
            };
        }
    }
    let mut z = [0.0; 4];
    for i in 0..4 {
        z[i] = (b[i] - (0..i).map(|k| l[i][k] * z[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; 4];
    for i in (0..4).rev() {
        x[i] = (z[i] - (i + 1..4).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

fn dot(x: &[f64; 4], theta: &[f64; 4]) -> f64 {
    x.iter().zip(theta).map(|(a, b)| a * b).sum()
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// ln(1 + eᶻ) without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(rng: &mut fastrand::Rng) -> Features {
        [rng.f64(), rng.f64(), rng.f64()]
    }

    #[test]
    fn known_coefficients_are_recovered() {
        let truth = Gate {
            bias: -2.0,
            top1: 3.0,
            margin: 1.5,
            entropy: -1.0,
        };
        let mut rng = fastrand::Rng::with_seed(3);
        let features: Vec<Features> = (0..40_000).map(|_| uniform(&mut rng)).collect();
        let correct: Vec<bool> = features
            .iter()
            .map(|&f| rng.f64() < truth.score(f))
            .collect();
        let fitted = fit(&features, &correct).unwrap();
        for (got, want) in fitted.coefficients().iter().zip(truth.coefficients()) {
            assert!((got - want).abs() < 0.15, "{fitted:?} against {truth:?}");
        }
    }

    #[test]
    fn the_fit_is_the_penalised_optimum() {
        let mut rng = fastrand::Rng::with_seed(5);
        let features: Vec<Features> = (0..300).map(|_| uniform(&mut rng)).collect();
        let correct: Vec<bool> = features.iter().map(|f| f[0] + rng.f64() > 0.9).collect();
        let gate = fit(&features, &correct).unwrap();
        let rows: Vec<[f64; 4]> = features.iter().map(|&[a, b, c]| [1.0, a, b, c]).collect();
        let y: Vec<f64> = correct.iter().map(|&c| f64::from(u8::from(c))).collect();
        let (gradient, _) = derivatives(&rows, &y, &gate.coefficients());
        assert!(gradient.iter().all(|g| g.abs() < 1e-6), "{gradient:?}");
    }

    #[test]
    fn separable_data_give_finite_coefficients_that_separate() {
        // Right exactly when top1 > 0.5, with a gap around it: unpenalised, the weights would
        // grow without bound.
        let features: Vec<Features> = (0..200)
            .map(|i| {
                let top1 = f64::from(i) / 500.0 + if i < 100 { 0.2 } else { 0.4 };
                [top1, top1 * 0.8, top1 * top1]
            })
            .collect();
        let correct: Vec<bool> = features.iter().map(|f| f[0] > 0.5).collect();
        let gate = fit(&features, &correct).unwrap();
        assert!(
            gate.coefficients()
                .iter()
                .all(|c| c.is_finite() && c.abs() < 1e3),
            "{gate:?}"
        );
        let scores: Vec<f64> = features.iter().map(|&f| gate.score(f)).collect();
        assert!(
            features
                .iter()
                .zip(&scores)
                .all(|(f, &s)| (s > 0.5) == (f[0] > 0.5))
        );
        assert!(gate.top1 + gate.margin + gate.entropy > 0.0);
    }

    #[test]
    fn one_class_samples_are_refused_saying_which() {
        let features = vec![[0.9, 0.8, 0.7]; 4];
        assert_eq!(
            fit(&features, &[true; 4]),
            Err(FitError::OneClass {
                items: 4,
                right: true
            })
        );
        let wrong = fit(&features, &[false; 4]).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "the model is wrong on all 4 items it is fitted on, so a gate has nothing to learn; \
             use a fixed metric"
        );
        assert_eq!(fit(&[], &[]), Err(FitError::Empty));
    }

    #[test]
    fn gated_fits_on_the_given_rows_only_and_keeps_the_last_tier() {
        // Tier 1 is right when top1 is high on items 0..100, but the reverse on 100..200.
        let features: Vec<Features> = (0..200)
            .map(|i| {
                let top1 = f64::from(i % 100) / 100.0;
                [top1, top1, top1]
            })
            .collect();
        let correct: Vec<bool> = (0..200).map(|i| (i < 100) == (i % 100 >= 50)).collect();
        let scores = vec![
            TierScores {
                confidence: vec![0.0; 200],
                correct,
            },
            TierScores {
                confidence: vec![1.0; 200],
                correct: vec![true; 200],
            },
        ];
        let names = ["a".to_owned(), "b".to_owned()];
        let all_features = vec![features.clone(), features];
        let first: Vec<usize> = (0..100).collect();
        let (gates, gated_scores) = gated(&all_features, &scores, &names, &first).unwrap();
        assert_eq!(gates.len(), 1);
        assert!(gates[0].top1 > 0.0, "{:?}", gates[0]);
        assert_eq!(gated_scores[1], scores[1]);
        assert_eq!(gated_scores[0].correct, scores[0].correct);
        // Every item is scored, including those the gate was not fitted on.
        assert!(gated_scores[0].confidence[150] > gated_scores[0].confidence[110]);
        let second: Vec<usize> = (100..200).collect();
        let (gates, _) = gated(&all_features, &scores, &names, &second).unwrap();
        assert!(gates[0].top1 < 0.0, "{:?}", gates[0]);
        // A tier that is always right on the rows is named in the error.
        let right_only: Vec<usize> = (50..100).collect();
        let error = gated(&all_features, &scores, &names, &right_only).unwrap_err();
        assert_eq!(
            error.to_string(),
            "gate of a: the model is right on all 50 items it is fitted on, so a gate has \
             nothing to learn; use a fixed metric"
        );
    }
}
