//! What `idn calibrate` prints: a table for people, and YAML/JSON for manifests and scripts.
//!
//! The machine-readable form carries, for each tier but the last, the node-agent strategy that
//! applies its threshold, built from the agent's own config types so that field names cannot
//! drift from what the agent reads.

use idn_contract::confidence::{Confidence, ConfidenceMetric, Gate};
use idn_contract::config::{ForwardStrategy, StrategyConfig, Target, ThresholdStrategy};
use serde::Serialize;

use crate::calibrate::{Calibration, Goal, Outcome, Rule};
use crate::table::{self, Align};

/// A calibrated cascade.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The confidence the thresholds apply to (`metric`, `temperature`); with a learned gate,
    /// each tier's strategy carries its own coefficients.
    #[serde(flatten)]
    pub confidence: Confidence,
    /// What the thresholds achieve; with `linkLatency`, a `minAccuracyRatio` target minimises
    /// the expected link latency rather than the requests reaching the last tier.
    // A one-key map (`minAccuracyRatio: 0.99`) in YAML as in JSON, rather than a YAML tag.
    #[serde(with = "serde_norway::with::singleton_map")]
    pub target: Goal,
    /// Whether the thresholds meet the target; when not, the rest describes the closest found.
    pub feasible: bool,
    /// Whether every distinct confidence value was tried (false only for long cascades on
    /// large samples).
    pub exhaustive: bool,
    /// Items in the sample.
    pub samples: usize,
    /// Accuracy of the cascade.
    pub accuracy: f64,
    /// Accuracy of the cascade over that of its last model alone (absent when that is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_ratio: Option<f64>,
    /// Fraction of requests reaching the last tier.
    pub reached_last_tier: f64,
    /// What the links between tiers cost, when their latencies are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_latency: Option<LinkLatencyReport>,
    /// The tiers in cascade order.
    pub tiers: Vec<TierReport>,
}

/// The latency requests pay on the links between tiers, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkLatencyReport {
    /// Latency of each link, in cascade order: the first from tier 1 to tier 2.
    pub links_ms: Vec<f64>,
    /// Expected per request: Σ over links of (fraction of requests reaching the tier the link
    /// leads to) × its latency.
    pub expected_ms: f64,
    /// The same if every request went to the last tier: the sum of the links.
    pub all_to_last_tier_ms: f64,
    /// `expectedMs` / `allToLastTierMs` (absent when that is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

impl LinkLatencyReport {
    fn new(outcome: &Outcome, links_ms: &[f64]) -> Self {
        let expected_ms = outcome.link_latency(links_ms);
        let all_to_last_tier_ms: f64 = links_ms.iter().sum();
        LinkLatencyReport {
            links_ms: links_ms.to_vec(),
            expected_ms,
            all_to_last_tier_ms,
            ratio: (all_to_last_tier_ms > 0.0).then(|| expected_ms / all_to_last_tier_ms),
        }
    }
}

/// One tier of a calibrated cascade; fractions are of the whole sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierReport {
    /// The model's name (its file stem).
    pub model: String,
    /// Threshold: answered here when confidence ≥ τ. Absent for the last tier, which answers
    /// everything, and for a tier that forwards everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tau: Option<f64>,
    /// Fraction of requests reaching this tier.
    pub reached: f64,
    /// Fraction of requests answered by this tier.
    pub answered: f64,
    /// Accuracy on the requests this tier answers; absent when it answers none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_answered: Option<f64>,
    /// Accuracy of this model answering the whole sample alone.
    pub accuracy_alone: f64,
    /// The gate fitted for this tier, when the confidence is learned (not for the last tier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<Gate>,
    /// The node-agent strategy for this tier's service (not for the last tier).
    #[serde(
        with = "serde_norway::with::singleton_map",
        skip_serializing_if = "Option::is_none"
    )]
    pub strategy: Option<StrategyConfig>,
}

impl Report {
    /// Describes `calibration` of the cascade of `models` (names, in cascade order) where tier
    /// i forwards to the upstream named `upstreams[i]` and, with a learned confidence, scores
    /// with `gates[i]` (empty otherwise).
    ///
    /// # Panics
    /// When `models` does not name every tier, or `upstreams` every tier but the last.
    pub fn new(
        calibration: &Calibration,
        models: &[String],
        upstreams: &[String],
        confidence: Confidence,
        gates: &[Gate],
    ) -> Self {
        let outcome = &calibration.outcome;
        assert_eq!(models.len(), outcome.tiers.len(), "one name per tier");
        assert_eq!(
            upstreams.len() + 1,
            models.len(),
            "one upstream per tier but the last"
        );
        let items = outcome.items as f64;
        let fraction = |count: usize| count as f64 / items;
        let tiers = outcome
            .tiers
            .iter()
            .enumerate()
            .map(|(i, tier)| {
                let next = || Target::Upstream {
                    upstream: upstreams[i].clone(),
                    service: None,
                };
                let gate = gates.get(i).copied();
                let (tau, strategy) = match tier.rule {
                    Rule::Threshold(tau) => (
                        Some(tau),
                        Some(StrategyConfig::Threshold(ThresholdStrategy {
                            local: Target::Model(models[i].clone()),
                            forward: next(),
                            tau,
                            confidence: Confidence {
                                gate: gate.or(confidence.gate),
                                ..confidence
                            },
                            adapt: None,
                        })),
                    ),
                    Rule::ForwardAll => (
                        None,
                        Some(StrategyConfig::Forward(ForwardStrategy {
                            to: next(),
                            fallback_model: None,
                        })),
                    ),
                    Rule::Last => (None, None),
                };
                TierReport {
                    model: models[i].clone(),
                    tau,
                    reached: fraction(tier.reached),
                    answered: fraction(tier.answered),
                    accuracy_answered: (tier.answered > 0)
                        .then(|| tier.correct as f64 / tier.answered as f64),
                    accuracy_alone: fraction(tier.correct_alone),
                    gate,
                    strategy,
                }
            })
            .collect::<Vec<_>>();
        let last_alone = tiers.last().map_or(0.0, |t| t.accuracy_alone);
        Report {
            confidence,
            target: calibration.goal,
            feasible: calibration.feasible,
            exhaustive: calibration.exhaustive,
            samples: outcome.items,
            accuracy: outcome.accuracy(),
            accuracy_ratio: (last_alone > 0.0).then(|| outcome.accuracy() / last_alone),
            reached_last_tier: fraction(outcome.last_reached()),
            link_latency: calibration
                .link_latency_ms
                .as_deref()
                .map(|links| LinkLatencyReport::new(outcome, links)),
            tiers,
        }
    }

    /// YAML, for manifests.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a report serializes")
    }

    /// Pretty JSON, for scripts.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes") + "\n"
    }

    /// A summary and one row per tier, for people.
    pub fn to_table(&self) -> String {
        let mut out = self.summary_lines();
        out.push('\n');
        out += &self.tier_table();
        let gates: Vec<(String, Gate)> = self
            .tiers
            .iter()
            .filter_map(|t| Some((t.model.clone(), t.gate?)))
            .collect();
        out += &gate_lines(&gates);
        out += "\nA tier answers a request when its confidence ≥ tau and forwards it to the next \
                tier otherwise;\nthe last tier answers all it gets. `--output yaml` gives the \
                node-agent strategies.\n";
        out
    }

    /// What was asked and what the thresholds achieve, one line each.
    fn summary_lines(&self) -> String {
        let last = self.tiers.last().expect("a cascade has tiers");
        let mut out = format!(
            "{}-tier cascade on {} samples, confidence {} at temperature {}\n",
            self.tiers.len(),
            self.samples,
            metric_name(self.confidence.metric),
            self.confidence.temperature,
        );
        out += &match self.target {
            Goal::MinAccuracyRatio(ratio) => format!(
                "target:  accuracy ≥ {ratio} × {} alone ({}) = {}, {}\n",
                last.model,
                percent(last.accuracy_alone),
                percent(ratio * last.accuracy_alone),
                if self.link_latency.is_some() {
                    "lowest expected link latency"
                } else {
                    "fewest requests reaching it"
                },
            ),
            Goal::MaxLastTier(fraction) => format!(
                "target:  at most {} of requests reaching {}, highest accuracy\n",
                percent(fraction),
                last.model,
            ),
        };
        if !self.feasible {
            out += "NO THRESHOLDS MEET THE TARGET; the closest found:\n";
        }
        out += &format!(
            "result:  accuracy {} ({} × {} alone), {} of requests reach {}\n",
            percent(self.accuracy),
            self.accuracy_ratio
                .map_or("-".to_owned(), |ratio| format!("{ratio:.4}")),
            last.model,
            percent(self.reached_last_tier),
            last.model,
        );
        if let Some(latency) = &self.link_latency {
            let links: Vec<String> = latency.links_ms.iter().map(|&l| ms(l)).collect();
            out += &format!(
                "latency: {} ms expected per request on the links ({} ms); {} ms if all reach \
                 {}{}\n",
                ms(latency.expected_ms),
                links.join(" + "),
                ms(latency.all_to_last_tier_ms),
                last.model,
                latency
                    .ratio
                    .map_or(String::new(), |ratio| format!(" (ratio {ratio:.4})")),
            );
        }
        if !self.exhaustive {
            out += "note:    a long cascade on a large sample: the first tiers' thresholds were \
                    searched on a grid, not every confidence value\n";
        }
        out
    }

    /// One row per tier: its τ, the share it sees and answers, its accuracy.
    fn tier_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .tiers
            .iter()
            .enumerate()
            .map(|(i, tier)| {
                let tau = match (&tier.tau, &tier.strategy) {
                    (Some(tau), _) => tau.to_string(),
                    (None, Some(_)) => "forward all".to_owned(),
                    (None, None) => "-".to_owned(),
                };
                vec![
                    (i + 1).to_string(),
                    tier.model.clone(),
                    tau,
                    percent(tier.reached),
                    percent(tier.answered),
                    tier.accuracy_answered.map_or("-".to_owned(), percent),
                    percent(tier.accuracy_alone),
                ]
            })
            .collect();
        table::render(
            &[
                ("tier", Align::Right),
                ("model", Align::Left),
                ("tau", Align::Right),
                ("reached", Align::Right),
                ("answered", Align::Right),
                ("accuracy answered", Align::Right),
                ("accuracy alone", Align::Right),
            ],
            &rows,
        )
    }
}

/// The metric as the node-agent config spells it.
pub fn metric_name(metric: ConfidenceMetric) -> String {
    serde_json::to_value(metric)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One line per fitted gate: the model and its coefficients.
pub fn gate_lines(gates: &[(String, Gate)]) -> String {
    gates
        .iter()
        .map(|(model, g)| {
            format!(
                "gate of {model}: sigmoid({:.3} + {:.3} top1 + {:.3} margin + {:.3} entropy)\n",
                g.bias, g.top1, g.margin, g.entropy
            )
        })
        .collect()
}

fn percent(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Milliseconds for people: at most three decimals, no trailing zeros.
fn ms(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibrate::{Outcome, TierOutcome};

    fn report(rule: Rule) -> Report {
        report_with_links(rule, None)
    }

    fn calibration(rule: Rule, link_latency_ms: Option<Vec<f64>>) -> Calibration {
        Calibration {
            goal: Goal::MinAccuracyRatio(0.99),
            link_latency_ms,
            feasible: true,
            exhaustive: true,
            outcome: Outcome {
                items: 4,
                tiers: vec![
                    TierOutcome {
                        rule,
                        reached: 4,
                        answered: 3,
                        correct: 3,
                        correct_alone: 2,
                    },
                    TierOutcome {
                        rule: Rule::Last,
                        reached: 1,
                        answered: 1,
                        correct: 1,
                        correct_alone: 4,
                    },
                ],
            },
        }
    }

    fn report_with_links(rule: Rule, link_latency_ms: Option<Vec<f64>>) -> Report {
        let confidence = Confidence {
            metric: ConfidenceMetric::Margin,
            temperature: 1.5,
            gate: None,
        };
        Report::new(
            &calibration(rule, link_latency_ms),
            &["small".into(), "big".into()],
            &["big-0".into()],
            confidence,
            &[],
        )
    }

    #[test]
    fn yaml_carries_the_node_agent_strategy() {
        let yaml = report(Rule::Threshold(0.8)).to_yaml();
        let expected = "\
metric: margin
temperature: 1.5
target:
  minAccuracyRatio: 0.99
feasible: true
exhaustive: true
samples: 4
accuracy: 1.0
accuracyRatio: 1.0
reachedLastTier: 0.25
tiers:
- model: small
  tau: 0.8
  reached: 1.0
  answered: 0.75
  accuracyAnswered: 1.0
  accuracyAlone: 0.5
  strategy:
    threshold:
      local:
        model: small
      forward:
        upstream: big-0
      tau: 0.8
      confidence:
        metric: margin
        temperature: 1.5
- model: big
  reached: 0.25
  answered: 0.25
  accuracyAnswered: 1.0
  accuracyAlone: 1.0
";
        assert_eq!(yaml, expected);
    }

    #[test]
    fn the_strategy_parses_as_node_agent_config() {
        // The JSON spelling of a strategy is the agent's own, so it reads back into its type.
        let report = report(Rule::Threshold(0.8));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let strategy: StrategyConfig =
            serde_json::from_value(json["tiers"][0]["strategy"].clone()).unwrap();
        assert_eq!(Some(strategy), report.tiers[0].strategy);
    }

    #[test]
    fn a_learned_gate_goes_into_the_tier_strategy() {
        let plain = report(Rule::Threshold(0.8));
        let gate = Gate {
            bias: -4.0,
            top1: 2.5,
            margin: 3.0,
            entropy: 1.25,
        };
        let logistic = Confidence {
            metric: ConfidenceMetric::Logistic,
            ..plain.confidence
        };
        let gated = Report::new(
            &calibration(Rule::Threshold(0.8), None),
            &["small".into(), "big".into()],
            &["big-0".into()],
            logistic,
            &[gate],
        );
        let yaml = gated.to_yaml();
        assert!(
            yaml.starts_with("metric: logistic\ntemperature: 1.5\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains(
                "      confidence:
        metric: logistic
        temperature: 1.5
        gate:
          bias: -4.0
          top1: 2.5
          margin: 3.0
          entropy: 1.25
"
            ),
            "{yaml}"
        );
        assert_eq!(gated.tiers[1].gate, None);
        assert!(gated.to_table().contains(
            "gate of small: sigmoid(-4.000 + 2.500 top1 + 3.000 margin + 1.250 entropy)\n"
        ));
        // The strategy reads back as a valid agent strategy with the gate.
        let json: serde_json::Value = serde_json::from_str(&gated.to_json()).unwrap();
        let strategy: StrategyConfig =
            serde_json::from_value(json["tiers"][0]["strategy"].clone()).unwrap();
        let StrategyConfig::Threshold(threshold) = strategy else {
            panic!("not a threshold")
        };
        assert_eq!(threshold.confidence.gate, Some(gate));
    }

    #[test]
    fn a_tier_forwarding_everything_gets_a_forward_strategy() {
        let report = report(Rule::ForwardAll);
        assert_eq!(report.tiers[0].tau, None);
        assert!(
            report
                .to_yaml()
                .contains("strategy:\n    forward:\n      to:\n        upstream: big-0\n")
        );
        assert!(report.to_table().contains("forward all"));
    }

    #[test]
    fn the_table_has_one_aligned_row_per_tier() {
        let table = report(Rule::Threshold(0.8)).to_table();
        assert!(
            table.contains("target:  accuracy ≥ 0.99 × big alone (100.00%) = 99.00%"),
            "{table}"
        );
        let rows: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.starts_with("tier"))
            .take(3)
            .collect();
        assert_eq!(
            rows,
            [
                "tier  model  tau  reached  answered  accuracy answered  accuracy alone",
                "   1  small  0.8  100.00%    75.00%            100.00%          50.00%",
                "   2  big      -   25.00%    25.00%            100.00%         100.00%",
            ]
        );
    }

    #[test]
    fn link_latency_is_reported_when_given() {
        assert!(
            !report(Rule::Threshold(0.8))
                .to_yaml()
                .contains("linkLatency")
        );
        assert!(!report(Rule::Threshold(0.8)).to_table().contains("latency:"));
        // One of four requests crosses the 40 ms link: 10 ms expected, a quarter of 40.
        let report = report_with_links(Rule::Threshold(0.8), Some(vec![40.0]));
        let yaml = report.to_yaml();
        assert!(
            yaml.contains(
                "reachedLastTier: 0.25
linkLatency:
  linksMs:
  - 40.0
  expectedMs: 10.0
  allToLastTierMs: 40.0
  ratio: 0.25
tiers:
"
            ),
            "{yaml}"
        );
        let table = report.to_table();
        assert!(
            table.contains("= 99.00%, lowest expected link latency\n"),
            "{table}"
        );
        assert!(
            table.contains(
                "latency: 10 ms expected per request on the links (40 ms); 40 ms if all reach \
                 big (ratio 0.2500)\n"
            ),
            "{table}"
        );
        // Free links: no ratio.
        let free = report_with_links(Rule::Threshold(0.8), Some(vec![0.0]));
        assert_eq!(free.link_latency.as_ref().unwrap().ratio, None);
        assert!(free.to_table().contains("(0 ms); 0 ms if all reach big\n"));
    }

    #[test]
    fn milliseconds_are_short() {
        assert_eq!(ms(4.52), "4.52");
        assert_eq!(ms(45.0), "45");
        assert_eq!(ms(100.0), "100");
        assert_eq!(ms(0.0), "0");
        assert_eq!(ms(0.1 + 0.2), "0.3");
        assert_eq!(ms(4.523_456), "4.523");
    }
}
