//! What a node learns while it serves: a threshold's τ (`threshold.adapt`), an ensemble's
//! member weights (`ensemble.learn`), and the hard examples a service keeps for retraining
//! (`hardExamples`). Learned state is per replica; `learnedStateFile` keeps it across restarts.

use serde::{Deserialize, Serialize};

/// `threshold.adapt`: learn τ online from whether local answers were right. Per item the cost
/// is `forwardCost` when forwarded and `alpha` when served locally with a wrong answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdaptConfig {
    /// `hedge`: exponential weights over a grid of τ with importance-weighted feedback;
    /// `lcb`: serve locally where a lower confidence bound on the local accuracy makes it
    /// cheaper than forwarding.
    pub method: AdaptMethod,
    /// Cost of a wrong local answer, in the unit of the forward cost (by default one service
    /// deadline of latency): forwarding pays when P(wrong) · alpha exceeds the forward cost.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Fixed cost of forwarding one item; default: the forward target's measured latency as a
    /// share of the service's deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_cost: Option<f64>,
    /// Probability of forwarding an item the learner would serve locally, so that the
    /// upstream's verdict keeps arriving where the learner is sure (at most 0.5).
    #[serde(default = "default_exploration")]
    pub exploration: f64,
    /// Where the learner learns whether a local answer was right.
    #[serde(default)]
    pub feedback: FeedbackSource,
    /// Step size of `hedge`; default `0.2 / alpha` (chosen on MNIST test images, held apart
    /// from the results' data: it follows a shift within about 500 requests there, against
    /// 3500 for `0.05 / alpha`, for 1.3 points more cost on a stationary stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// How fast old evidence fades: `hedge` shares this fraction of the weight among all
    /// thresholds per item (fixed share; default 0.00001); `lcb` discounts a confidence
    /// bin's counts by it per verdict in that bin (default 0.001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgetting: Option<f64>,
    /// Number of candidate thresholds (and confidence bins), evenly spaced in [0, 1].
    #[serde(default = "default_grid")]
    pub grid: usize,
    /// Seed of the randomised decisions; default: a random one per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Most requests whose items wait for a label (`feedback: labels`); older ones are
    /// dropped first.
    #[serde(default = "default_pending")]
    pub pending: usize,
}

/// The online threshold algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum AdaptMethod {
    Hedge,
    Lcb,
}

/// Where a learner learns whether an answer was right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum FeedbackSource {
    /// From the forward target's answer to the items forwarded (explored ones included):
    /// the entry node never needs ground truth.
    #[default]
    Upstream,
    /// Also from labels clients post to `/v2/models/{service}/feedback` by request id, for
    /// every item served locally (an item never labelled counts as right).
    Labels,
}

/// `ensemble.learn`: member weights learned online from labels (weighted majority / Hedge on
/// the 0-1 loss): a member that answers an item wrongly has its weight multiplied by
/// exp(−learningRate). Needs `combine: weightedMean` or `vote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightLearning {
    #[serde(default = "default_weight_rate")]
    pub learning_rate: f64,
    /// Fraction of the total weight shared among all members per label (fixed share), so a
    /// member that lost its weight can win it back when it becomes right again.
    #[serde(default = "default_forgetting")]
    pub forgetting: f64,
    /// Most requests whose items wait for a label; older ones are dropped first.
    #[serde(default = "default_pending")]
    pub pending: usize,
}

/// `hardExamples`: keep a bounded, sampled store of the items a service forwarded, with the
/// forward target's answer. Off unless configured: the store holds clients' inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HardExamplesConfig {
    /// Most items kept; when full, the oldest is dropped.
    pub capacity: usize,
    /// Probability that a forwarded item is kept.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
}

fn default_alpha() -> f64 {
    1.0
}

fn default_exploration() -> f64 {
    0.05
}

fn default_forgetting() -> f64 {
    0.001
}

fn default_grid() -> usize {
    101
}

fn default_pending() -> usize {
    10_000
}

fn default_weight_rate() -> f64 {
    0.1
}

fn default_sample_rate() -> f64 {
    1.0
}

impl AdaptConfig {
    /// How fast old evidence fades, for the configured method.
    pub fn forgetting(&self) -> f64 {
        self.forgetting.unwrap_or(match self.method {
            AdaptMethod::Hedge => 1e-5,
            AdaptMethod::Lcb => 1e-3,
        })
    }

    /// The step size of `hedge`.
    pub fn hedge_rate(&self) -> f64 {
        self.learning_rate
            .unwrap_or(0.2 / self.alpha.max(f64::MIN_POSITIVE))
    }

    pub(super) fn validate(&self, field: &str, problems: &mut Vec<String>) {
        positive(self.alpha, &format!("{field}.alpha"), problems);
        if let Some(cost) = self.forward_cost
            && !(cost.is_finite() && cost >= 0.0)
        {
            problems.push(format!(
                "{field}.forwardCost: {cost} must be a finite number ≥ 0"
            ));
        }
        if !(0.0..=0.5).contains(&self.exploration) {
            problems.push(format!(
                "{field}.exploration: {} is outside [0, 0.5]",
                self.exploration
            ));
        }
        if let Some(rate) = self.learning_rate {
            positive(rate, &format!("{field}.learningRate"), problems);
        }
        if let Some(forgetting) = self.forgetting {
            fraction(forgetting, &format!("{field}.forgetting"), problems);
        }
        if !(2..=10_000).contains(&self.grid) {
            problems.push(format!(
                "{field}.grid: {} must be between 2 and 10000",
                self.grid
            ));
        }
        if self.pending == 0 {
            problems.push(format!("{field}.pending: must be at least 1"));
        }
    }
}

impl WeightLearning {
    pub(super) fn validate(&self, field: &str, problems: &mut Vec<String>) {
        positive(
            self.learning_rate,
            &format!("{field}.learningRate"),
            problems,
        );
        fraction(self.forgetting, &format!("{field}.forgetting"), problems);
        if self.pending == 0 {
            problems.push(format!("{field}.pending: must be at least 1"));
        }
    }
}

impl HardExamplesConfig {
    pub(super) fn validate(&self, field: &str, problems: &mut Vec<String>) {
        if self.capacity == 0 {
            problems.push(format!("{field}.capacity: must be at least 1"));
        }
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            problems.push(format!(
                "{field}.sampleRate: {} is outside (0, 1]",
                self.sample_rate
            ));
        }
    }
}

fn positive(value: f64, field: &str, problems: &mut Vec<String>) {
    if !(value.is_finite() && value > 0.0) {
        problems.push(format!("{field}: {value} must be a finite number > 0"));
    }
}

fn fraction(value: f64, field: &str, problems: &mut Vec<String>) {
    if !(0.0..1.0).contains(&value) {
        problems.push(format!("{field}: {value} is outside [0, 1)"));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::NodeAgentConfig;

    fn problems(strategy: &str, service_extra: &str) -> Vec<String> {
        NodeAgentConfig::from_yaml(&format!(
            "apiVersion: idn.dev/v1alpha1
kind: NodeAgentConfig
node: edge
models: [{{name: small, path: small.onnx, inputs: [x], outputs: [probs]}}]
upstreams: [{{name: cloud, url: 'http://cloud:8000'}}]
services:
  - name: mnist
    {service_extra}
    strategy: {strategy}"
        ))
        .unwrap()
        .validate()
    }

    const THRESHOLD: &str =
        "{threshold: {local: {model: small}, forward: {upstream: cloud}, tau: 0.9, adapt: ADAPT}}";

    #[test]
    fn learning_settings_parse_with_defaults_and_validate() {
        let threshold = THRESHOLD.replace("ADAPT", "{method: hedge}");
        assert_eq!(
            problems(&threshold, "hardExamples: {capacity: 10}"),
            Vec::<String>::new()
        );
        let ensemble = "{ensemble: {members: [{model: small}], combine: vote, learn: {}}}";
        assert_eq!(problems(ensemble, ""), Vec::<String>::new());
    }

    #[test]
    fn bad_learning_settings_are_rejected_naming_the_field() {
        let adapt = THRESHOLD.replace(
            "ADAPT",
            "{method: lcb, alpha: 0, exploration: 0.9, forgetting: 1, grid: 1, pending: 0}",
        );
        let at = "services[0].strategy.threshold.adapt";
        assert_eq!(
            problems(&adapt, ""),
            [
                format!("{at}.alpha: 0 must be a finite number > 0"),
                format!("{at}.exploration: 0.9 is outside [0, 0.5]"),
                format!("{at}.forgetting: 1 is outside [0, 1)"),
                format!("{at}.grid: 1 must be between 2 and 10000"),
                format!("{at}.pending: must be at least 1"),
            ]
        );
        let mean = "{ensemble: {members: [{model: small}], learn: {learningRate: -1}}}";
        assert_eq!(
            problems(mean, ""),
            [
                "services[0].strategy.ensemble.learn.learningRate: -1 must be a finite number > 0",
                "services[0].strategy.ensemble.learn: learned weights need combine: weightedMean or vote",
            ]
        );
        let local = "{local: {model: small}}";
        assert_eq!(
            problems(local, "hardExamples: {capacity: 0, sampleRate: 2}"),
            [
                "services[0].hardExamples.capacity: must be at least 1",
                "services[0].hardExamples.sampleRate: 2 is outside (0, 1]",
                "services[0].hardExamples: only threshold and forward strategies forward items",
            ]
        );
    }
}
