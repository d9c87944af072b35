//! Services with their strategies resolved against the node, once, at start: every target is an
//! index into the node's models, services or upstreams, so request-time code never looks a name
//! up and cannot fail on one; and every target's columns are mapped to its service's classes
//! by name (see [`Columns`]).

use std::sync::Mutex;
use std::time::Duration;

use super::classes::Columns;
use idn_contract::confidence::Confidence;
use idn_contract::config::{self, Combine, EnsembleMode, NodeAgentConfig, ServiceConfig};

use crate::error::RequestError;
use crate::learn::state::ServiceState;
use crate::learn::{HardExamples, ThresholdLearner, WeightLearner, lock};

/// A service of this node and the strategy that answers it.
#[derive(Debug)]
pub(crate) struct Service {
    pub config: ServiceConfig,
    pub strategy: Strategy,
    /// The items it forwarded, when it keeps them (`hardExamples`).
    pub hard_examples: Option<Mutex<HardExamples>>,
}

/// A strategy whose targets are resolved.
#[derive(Debug)]
pub(crate) enum Strategy {
    Local(Target),
    Forward {
        to: Target,
        /// A local model answering (degraded) when `to` fails.
        fallback: Option<Target>,
    },
    Threshold(Threshold),
    Ensemble(Ensemble),
}

#[derive(Debug)]
pub(crate) struct Threshold {
    pub local: Target,
    pub forward: Target,
    pub tau: f64,
    pub confidence: Confidence,
    /// What learns τ online, when the strategy adapts (boxed: most thresholds do not).
    pub learner: Option<Box<Mutex<ThresholdLearner>>>,
}

#[derive(Debug)]
pub(crate) struct Ensemble {
    /// Cheapest first: the order a sequential ensemble queries them in.
    pub members: Vec<Member>,
    pub combine: Combine,
    pub mode: EnsembleMode,
    pub tau: Option<f64>,
    /// Most members a sequential ensemble queries.
    pub max_members: usize,
    pub confidence: Confidence,
    /// What learns the member weights from labels, when the strategy learns them.
    pub learner: Option<Mutex<WeightLearner>>,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub target: Target,
    pub weight: f64,
}

/// Where a strategy sends (part of) a request.
#[derive(Debug)]
pub(crate) struct Target {
    /// The name provenance reports: the model, the service, or `upstream[/service]`.
    pub name: String,
    pub kind: TargetKind,
    /// Where its answer's columns go among the service's classes.
    pub columns: Columns,
}

#[derive(Debug)]
pub(crate) enum TargetKind {
    /// A model of this node, by index, and the output holding its probabilities.
    Model { index: usize, output: String },
    /// Another service of this node, by index.
    Service(usize),
    /// An upstream of this node, by index, and the service to call there.
    Upstream {
        index: usize,
        upstream: String,
        service: String,
    },
}

/// Resolves every service of `config`; the problems, when a strategy names a model, service or
/// upstream the node does not have (validation reports them first; this holds for configs
/// built in code too).
pub(crate) fn resolve(config: &NodeAgentConfig) -> Result<Vec<Service>, Vec<String>> {
    let mut problems = Vec::new();
    let services: Vec<Service> = config
        .services
        .iter()
        .enumerate()
        .filter_map(|(i, service)| {
            let mut resolver = Resolver {
                config,
                service,
                classes: config.service_classes(&service.name),
                field: format!("services[{i}].strategy"),
                problems: &mut problems,
            };
            let strategy = resolver.strategy()?;
            Some(Service {
                config: service.clone(),
                strategy,
                hard_examples: service
                    .hard_examples
                    .as_ref()
                    .map(|c| Mutex::new(HardExamples::new(c))),
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(services)
    } else {
        Err(problems)
    }
}

/// Resolves the targets of one service, noting each name that does not resolve.
struct Resolver<'a> {
    config: &'a NodeAgentConfig,
    service: &'a ServiceConfig,
    /// The classes the service answers in, when named.
    classes: Option<&'a [String]>,
    field: String,
    problems: &'a mut Vec<String>,
}

impl Resolver<'_> {
    fn strategy(&mut self) -> Option<Strategy> {
        Some(match &self.service.strategy {
            config::StrategyConfig::Local(target) => Strategy::Local(self.target(target)?),
            config::StrategyConfig::Forward(forward) => {
                let to = self.target(&forward.to);
                let fallback = forward.fallback_model.as_deref().map(|m| {
                    let classes = self.config.target_classes(&config::Target::Model(m.into()));
                    self.model(m, classes)
                });
                Strategy::Forward {
                    to: to?,
                    fallback: match fallback {
                        Some(resolved) => Some(resolved?),
                        None => None,
                    },
                }
            }
            config::StrategyConfig::Threshold(threshold) => {
                let local = self.target(&threshold.local);
                let forward = self.target(&threshold.forward);
                let deadline = Duration::from_millis(self.service.deadline_ms);
                Strategy::Threshold(Threshold {
                    local: local?,
                    forward: forward?,
                    tau: threshold.tau,
                    confidence: threshold.confidence,
                    learner: threshold.adapt.as_ref().map(|adapt| {
                        Box::new(Mutex::new(ThresholdLearner::new(
                            adapt,
                            threshold.tau,
                            deadline,
                        )))
                    }),
                })
            }
            config::StrategyConfig::Ensemble(ensemble) => {
                Strategy::Ensemble(self.ensemble(ensemble)?)
            }
        })
    }

    fn ensemble(&mut self, ensemble: &config::EnsembleStrategy) -> Option<Ensemble> {
        let members: Vec<Option<Member>> = ensemble
            .by_cost()
            .into_iter()
            .map(|member| {
                let classes = self.config.member_classes(member);
                Some(Member {
                    target: self.target_in(&member.target, classes)?,
                    weight: member.weight,
                })
            })
            .collect();
        let members: Vec<Member> = members.into_iter().collect::<Option<_>>()?;
        let learner = ensemble.learn.as_ref().map(|learn| {
            let start: Vec<(String, f64)> = members
                .iter()
                .map(|m| (m.target.name.clone(), m.weight))
                .collect();
            Mutex::new(WeightLearner::new(learn, &start))
        });
        Some(Ensemble {
            learner,
            max_members: ensemble.max_members.unwrap_or(members.len()),
            members,
            combine: ensemble.combine,
            mode: ensemble.mode,
            tau: ensemble.tau,
            confidence: ensemble.confidence,
        })
    }

    fn target(&mut self, target: &config::Target) -> Option<Target> {
        self.target_in(target, self.config.target_classes(target))
    }

    /// Resolves `target`, whose answers hold `classes`.
    fn target_in(&mut self, target: &config::Target, classes: Option<&[String]>) -> Option<Target> {
        let columns = Columns::resolve(self.classes, classes);
        match target {
            config::Target::Model(model) => self.model(model, classes),
            config::Target::Service(name) => {
                let index = self.config.services.iter().position(|s| &s.name == name);
                let index = self.found(index, "service", name)?;
                Some(Target {
                    name: target.display_name(),
                    kind: TargetKind::Service(index),
                    columns,
                })
            }
            config::Target::Upstream { upstream, service } => {
                let index = self
                    .config
                    .upstreams
                    .iter()
                    .position(|u| &u.name == upstream);
                let index = self.found(index, "upstream", upstream)?;
                Some(Target {
                    name: target.display_name(),
                    kind: TargetKind::Upstream {
                        index,
                        upstream: upstream.clone(),
                        // The upstream serves the same service unless the target names another.
                        service: service.clone().unwrap_or_else(|| self.service.name.clone()),
                    },
                    columns,
                })
            }
        }
    }

    fn model(&mut self, name: &str, classes: Option<&[String]>) -> Option<Target> {
        let index = self.config.models.iter().position(|m| m.name == name);
        let index = self.found(index, "model", name)?;
        let Some(output) = self.config.models[index].outputs.first() else {
            self.problems.push(format!(
                "{}: model {name:?} has no output to answer with",
                self.field
            ));
            return None;
        };
        Some(Target {
            name: name.to_owned(),
            kind: TargetKind::Model {
                index,
                output: output.clone(),
            },
            columns: Columns::resolve(self.classes, classes),
        })
    }

    fn found(&mut self, index: Option<usize>, what: &str, name: &str) -> Option<usize> {
        if index.is_none() {
            self.problems
                .push(format!("{}: unknown {what} {name:?}", self.field));
        }
        index
    }
}

impl Service {
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn threshold_learner(&self) -> Option<&Mutex<ThresholdLearner>> {
        match &self.strategy {
            Strategy::Threshold(threshold) => threshold.learner.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn weight_learner(&self) -> Option<&Mutex<WeightLearner>> {
        match &self.strategy {
            Strategy::Ensemble(ensemble) => ensemble.learner.as_ref(),
            _ => None,
        }
    }

    /// What the service learned so far; none when it does not learn.
    pub(crate) fn learned(&self) -> Option<ServiceState> {
        if let Some(learner) = self.threshold_learner() {
            return Some(ServiceState::Threshold(lock(learner).export()));
        }
        let learner = self.weight_learner()?;
        Some(ServiceState::Ensemble(lock(learner).export()))
    }

    /// Starts the service's learner from `state`; refused when the service does not learn,
    /// or learns something `state` does not fit.
    pub(crate) fn seed(&self, state: ServiceState) -> Result<(), String> {
        match (self.threshold_learner(), self.weight_learner(), state) {
            (Some(learner), _, ServiceState::Threshold(learned)) => lock(learner).seed(learned),
            (_, Some(learner), ServiceState::Ensemble(learned)) => lock(learner).seed(learned),
            (None, None, _) => Err(format!(
                "service {:?} does not learn (no threshold.adapt or ensemble.learn)",
                self.name()
            )),
            _ => Err(format!(
                "the state is for another kind of strategy than service {:?}'s",
                self.name()
            )),
        }
    }

    /// Learns from labels a client posts for request `id`; returns the items learned from.
    pub(crate) fn label(&self, id: &str, labels: &[Option<usize>]) -> Result<usize, RequestError> {
        match (self.threshold_learner(), self.weight_learner()) {
            (Some(learner), _) => lock(learner).label(id, labels),
            (_, Some(learner)) => lock(learner).label(id, labels),
            (None, None) => Err(RequestError::Invalid(format!(
                "service {:?} does not learn from labels (give it threshold.adapt with feedback: labels, or ensemble.learn)",
                self.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(services: &str) -> NodeAgentConfig {
        NodeAgentConfig::from_yaml(&format!(
            "apiVersion: idn.dev/v1alpha1
kind: NodeAgentConfig
node: edge
models:
  - {{name: small, path: small.onnx, inputs: [x], outputs: [probs]}}
  - {{name: big, path: big.onnx, inputs: [x], outputs: [scores, probs]}}
upstreams: [{{name: cloud, url: 'http://cloud:8000'}}]
services:
{services}"
        ))
        .unwrap()
    }

    #[test]
    fn targets_resolve_to_indices_and_names() {
        let services = resolve(&config(
            "  - {name: a, strategy: {local: {service: b}}}
  - name: b
    strategy:
      ensemble:
        members: [{upstream: cloud, cost: 9}, {model: big, cost: 1}, {upstream: cloud, service: other, cost: 1}]
        maxMembers: 2",
        ))
        .unwrap();
        let Strategy::Local(target) = &services[0].strategy else {
            panic!("{:?}", services[0].strategy)
        };
        assert!(matches!(target.kind, TargetKind::Service(1)));
        let Strategy::Ensemble(ensemble) = &services[1].strategy else {
            panic!("{:?}", services[1].strategy)
        };
        let names: Vec<&str> = ensemble
            .members
            .iter()
            .map(|m| m.target.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["big", "cloud/other", "cloud"],
            "cheapest first, stable"
        );
        assert!(matches!(
            &ensemble.members[0].target.kind,
            TargetKind::Model { index: 1, output } if output == "scores"
        ));
        assert!(matches!(
            &ensemble.members[2].target.kind,
            TargetKind::Upstream { index: 0, service, .. } if service == "b"
        ));
        assert_eq!(ensemble.max_members, 2);
    }

    #[test]
    fn unknown_names_are_every_one_reported() {
        let problems = resolve(&config(
            "  - name: a
    strategy: {threshold: {local: {model: tiny}, forward: {upstream: edge}, tau: 0.5}}
  - name: b
    strategy: {forward: {to: {service: c}, fallbackModel: huge}}",
        ))
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "services[0].strategy: unknown model \"tiny\"",
                "services[0].strategy: unknown upstream \"edge\"",
                "services[1].strategy: unknown service \"c\"",
                "services[1].strategy: unknown model \"huge\"",
            ]
        );
    }
}
