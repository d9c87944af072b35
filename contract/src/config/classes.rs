//! Class names: which classes each target and each service answers in, so strategies can match
//! answers by name rather than by column, and the checks that make such matching sound.

use std::collections::HashSet;

use super::{
    EnsembleMember, EnsembleStrategy, NodeAgentConfig, ServiceConfig, StrategyConfig, Target,
};

/// A target of a service as validation sees it: where it is declared, what provenance calls it
/// and the classes its answers hold (None: not named).
struct ClassTarget<'a> {
    field: String,
    name: String,
    classes: Option<&'a [String]>,
}

impl NodeAgentConfig {
    /// The classes service `name` answers in: its `labels`, else those of its strategy's first
    /// target; None when nothing names them (answers are then combined by column).
    pub fn service_classes(&self, name: &str) -> Option<&[String]> {
        self.service_classes_within(name, self.services.len())
    }

    /// The classes `target` answers in: a model's `labels`, a local service's classes, an
    /// upstream's `labels`.
    pub fn target_classes(&self, target: &Target) -> Option<&[String]> {
        self.target_classes_within(target, self.services.len())
    }

    /// The classes an ensemble member answers in: its own `labels`, else its target's.
    pub fn member_classes<'a>(&'a self, member: &'a EnsembleMember) -> Option<&'a [String]> {
        self.member_classes_within(member, self.services.len())
    }

    // `depth` bounds the walk through local services, which a cyclic config would not end.
    fn service_classes_within(&self, name: &str, depth: usize) -> Option<&[String]> {
        let service = self.services.iter().find(|s| s.name == name)?;
        if !service.labels.is_empty() {
            return Some(&service.labels);
        }
        let depth = depth.checked_sub(1)?;
        match &service.strategy {
            StrategyConfig::Local(target) => self.target_classes_within(target, depth),
            StrategyConfig::Forward(forward) => self.target_classes_within(&forward.to, depth),
            StrategyConfig::Threshold(threshold) => {
                self.target_classes_within(&threshold.local, depth)
            }
            StrategyConfig::Ensemble(ensemble) => ensemble
                .by_cost()
                .first()
                .and_then(|m| self.member_classes_within(m, depth)),
        }
    }

    fn target_classes_within(&self, target: &Target, depth: usize) -> Option<&[String]> {
        match target {
            Target::Model(model) => {
                let model = self.models.iter().find(|m| &m.name == model)?;
                named(&model.labels)
            }
            Target::Service(service) => self.service_classes_within(service, depth),
            Target::Upstream { upstream, .. } => {
                let upstream = self.upstreams.iter().find(|u| &u.name == upstream)?;
                named(&upstream.labels)
            }
        }
    }

    fn member_classes_within<'a>(
        &'a self,
        member: &'a EnsembleMember,
        depth: usize,
    ) -> Option<&'a [String]> {
        named(&member.labels).or_else(|| self.target_classes_within(&member.target, depth))
    }

    /// Every target of `strategy` (declared at `field`) with its classes.
    fn class_targets<'a>(
        &'a self,
        strategy: &'a StrategyConfig,
        field: &str,
    ) -> Vec<ClassTarget<'a>> {
        let target = |target: &Target, field: String| ClassTarget {
            field,
            name: target.display_name(),
            classes: self.target_classes(target),
        };
        match strategy {
            StrategyConfig::Local(to) => vec![target(to, format!("{field}.local"))],
            StrategyConfig::Forward(forward) => {
                let mut targets = vec![target(&forward.to, format!("{field}.forward.to"))];
                if let Some(model) = &forward.fallback_model {
                    let fallback = Target::Model(model.clone());
                    targets.push(target(&fallback, format!("{field}.forward.fallbackModel")));
                }
                targets
            }
            StrategyConfig::Threshold(threshold) => vec![
                target(&threshold.local, format!("{field}.threshold.local")),
                target(&threshold.forward, format!("{field}.threshold.forward")),
            ],
            StrategyConfig::Ensemble(ensemble) => ensemble
                .members
                .iter()
                .enumerate()
                .map(|(i, member)| ClassTarget {
                    field: format!("{field}.ensemble.members[{i}]"),
                    name: member.target.display_name(),
                    classes: self.member_classes(member),
                })
                .collect(),
        }
    }

    /// The problems of the class names service `service` (at `field`) matches answers by:
    /// duplicates, members naming classes they cannot have, targets sharing no class with the
    /// service, and unnamed targets whose columns cannot be trusted to be the service's.
    pub(super) fn validate_classes(
        &self,
        service: &ServiceConfig,
        field: &str,
        problems: &mut Vec<String>,
    ) {
        check_labels(&service.labels, &format!("{field}.labels"), problems);
        let strategy_field = format!("{field}.strategy");
        if let StrategyConfig::Ensemble(ensemble) = &service.strategy {
            for (i, member) in ensemble.members.iter().enumerate() {
                let at = format!("{strategy_field}.ensemble.members[{i}].labels");
                check_labels(&member.labels, &at, problems);
                if !member.labels.is_empty() && !matches!(member.target, Target::Upstream { .. }) {
                    problems.push(format!(
                        "{at}: only an upstream member declares labels (a model's classes are its labels, a service's its own)"
                    ));
                }
            }
        }
        let targets = self.class_targets(&service.strategy, &strategy_field);
        let Some(classes) = self.service_classes(&service.name) else {
            // Nothing to match names against: columns are read in order, which only holds
            // while every target that names its classes names the same ones.
            let mut named = targets.iter().filter_map(|t| Some((t, t.classes?)));
            if let Some((first, classes)) = named.next() {
                for (target, _) in named.filter(|(_, c)| c != &classes) {
                    problems.push(format!(
                        "{}: {} names other classes than {} (or another order) while the service's are unknown; declare {field}.labels",
                        target.field, target.name, first.name
                    ));
                }
            }
            return;
        };
        let known: HashSet<&String> = classes.iter().collect();
        let reordered = targets
            .iter()
            .find(|t| t.classes.is_some_and(|c| c != classes));
        for target in &targets {
            match target.classes {
                Some(own) if !own.iter().any(|c| known.contains(c)) => problems.push(format!(
                    "{}: no class of {} ({}) is among the service's ({})",
                    target.field,
                    target.name,
                    own.join(", "),
                    classes.join(", ")
                )),
                None => {
                    if let Some(other) = reordered {
                        problems.push(format!(
                            "{}: {} names no classes, so its columns cannot be matched to the service's while {} answers others or in another order; declare its labels",
                            target.field, target.name, other.name
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }
}

impl EnsembleStrategy {
    /// The members cheapest first, the order a sequential ensemble queries them in (stable:
    /// members of equal cost keep the order the config gives them).
    pub fn by_cost(&self) -> Vec<&EnsembleMember> {
        let mut order: Vec<&EnsembleMember> = self.members.iter().collect();
        order.sort_by(|a, b| a.cost.total_cmp(&b.cost));
        order
    }
}

/// Labels as classes: none declared names no classes.
fn named(labels: &[String]) -> Option<&[String]> {
    Some(labels).filter(|l| !l.is_empty())
}

/// Class names are matched by name, so each may appear once.
pub(super) fn check_labels(labels: &[String], field: &str, problems: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for label in labels {
        if !seen.insert(label) {
            problems.push(format!("{field}: {label:?} is declared twice"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rest: &str) -> NodeAgentConfig {
        NodeAgentConfig::from_yaml(&format!(
            "models:
  - {{name: small, path: s.onnx, inputs: [x], outputs: [probs], labels: [a, b, c]}}
  - {{name: plain, path: p.onnx, inputs: [x], outputs: [probs]}}
upstreams:
  - {{name: cloud, url: 'http://cloud:8000', labels: [c, b, a]}}
  - {{name: bare, url: 'http://bare:8000'}}
{rest}
node: edge
kind: NodeAgentConfig
apiVersion: idn.dev/v1alpha1"
        ))
        .unwrap()
    }

    #[test]
    fn a_service_answers_in_its_labels_or_its_first_targets_classes() {
        let config = config(
            "services:
  - {name: t, strategy: {threshold: {local: {model: small}, forward: {upstream: cloud}, tau: 0.5}}}
  - name: e
    strategy: {ensemble: {members: [{model: small, cost: 2}, {upstream: cloud, cost: 1, labels: [b, a]}]}}
  - {name: s, strategy: {local: {service: e}}}
  - {name: d, labels: [x, a], strategy: {local: {model: small}}}
  - {name: p, strategy: {forward: {to: {upstream: bare}}}}",
        );
        let classes = |name| config.service_classes(name).map(<[String]>::to_vec);
        let names = |n: &[&str]| Some(n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(classes("t"), names(&["a", "b", "c"]), "threshold's local");
        assert_eq!(
            classes("e"),
            names(&["b", "a"]),
            "the cheapest member's own"
        );
        assert_eq!(
            classes("s"),
            names(&["b", "a"]),
            "through the local service"
        );
        assert_eq!(classes("d"), names(&["x", "a"]), "declared");
        assert_eq!(classes("p"), None, "nothing names them");
    }

    #[test]
    fn permuted_and_partial_targets_validate() {
        let config = config(
            "services:
  - name: e
    labels: [a, b, c, d]
    strategy: {ensemble: {members: [{model: small}, {upstream: cloud}, {upstream: bare, labels: [d, a]}]}}",
        );
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }

    #[test]
    fn class_problems_are_reported_with_their_field() {
        let cases = [
            (
                "{name: e, labels: [a, a], strategy: {local: {model: small}}}",
                "services[0].labels: \"a\" is declared twice",
            ),
            (
                "{name: e, strategy: {ensemble: {members: [{model: small, labels: [a]}]}}}",
                "services[0].strategy.ensemble.members[0].labels: only an upstream member declares labels",
            ),
            (
                "{name: e, strategy: {ensemble: {members: [{upstream: bare, labels: [x, x]}]}}}",
                "services[0].strategy.ensemble.members[0].labels: \"x\" is declared twice",
            ),
            (
                "{name: e, strategy: {ensemble: {members: [{model: small}, {upstream: bare, labels: [x, y]}]}}}",
                "services[0].strategy.ensemble.members[1]: no class of bare (x, y) is among the service's (a, b, c)",
            ),
            (
                "{name: e, strategy: {ensemble: {members: [{model: plain}, {upstream: cloud}, {model: small}]}}}",
                "services[0].strategy.ensemble.members[2]: small names other classes than cloud (or another order) while the service's are unknown; declare services[0].labels",
            ),
            (
                "{name: e, strategy: {ensemble: {members: [{model: small}, {upstream: cloud}, {upstream: bare}]}}}",
                "services[0].strategy.ensemble.members[2]: bare names no classes, so its columns cannot be matched to the service's while cloud answers others or in another order; declare its labels",
            ),
        ];
        for (service, expected) in cases {
            let problems = config(&format!("services: [{service}]")).validate();
            assert_eq!(problems.len(), 1, "{service}: {problems:?}");
            assert!(problems[0].starts_with(expected), "{service}: {problems:?}");
        }
    }

    #[test]
    fn unnamed_targets_beside_agreeing_names_stay_positional() {
        let config = config(
            "services:
  - {name: t, strategy: {threshold: {local: {model: small}, forward: {upstream: bare}, tau: 0.5}}}
  - {name: f, strategy: {forward: {to: {upstream: bare}, fallbackModel: small}}}",
        );
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }

    #[test]
    fn duplicate_labels_of_models_and_upstreams_are_rejected() {
        let mut config = config("");
        config.models[0].labels.push("a".into());
        config.upstreams[0].labels.push("c".into());
        assert_eq!(
            config.validate(),
            [
                "models[0].labels: \"a\" is declared twice",
                "upstreams[0].labels: \"c\" is declared twice",
            ]
        );
    }
}
