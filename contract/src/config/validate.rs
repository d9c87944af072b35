//! Validation of a parsed config: every problem, each prefixed by its field path.

use std::collections::HashSet;

use super::classes::check_labels;
use super::{
    API_VERSION, Combine, KIND, Limits, ModelConfig, NodeAgentConfig, StrategyConfig, Target,
};
use crate::confidence::{Confidence, ConfidenceMetric};
use crate::graph::find_cycle;
use crate::names::{is_dns_label, is_model_name};

impl NodeAgentConfig {
    /// Every problem of the config, each prefixed by its field path; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.api_version != API_VERSION {
            problems.push(format!(
                "apiVersion: {:?} is not supported (expected {API_VERSION:?})",
                self.api_version
            ));
        }
        if self.kind != KIND {
            problems.push(format!("kind: {:?} is not {KIND:?}", self.kind));
        }
        if !is_dns_label(&self.node) {
            problems.push(format!(
                "node: {:?} must be a DNS label (lowercase letters, digits, '-', at most 63)",
                self.node
            ));
        }
        self.limits.validate(&mut problems);
        let mut names = HashSet::new();
        for (i, model) in self.models.iter().enumerate() {
            let field = format!("models[{i}]");
            if !names.insert(model.name.as_str()) {
                problems.push(format!("{field}.name: {:?} is declared twice", model.name));
            }
            model.validate(&field, &mut problems);
            check_labels(&model.labels, &format!("{field}.labels"), &mut problems);
        }
        self.validate_upstreams(&mut problems);
        self.validate_services(&mut problems);
        if let Some(tls) = &self.tls {
            for (field, file) in [("certFile", &tls.cert_file), ("keyFile", &tls.key_file)] {
                if file.as_os_str().is_empty() {
                    problems.push(format!("tls.{field}: must name a file"));
                }
            }
        }
        problems
    }

    fn validate_upstreams(&self, problems: &mut Vec<String>) {
        let mut names = HashSet::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            let field = format!("upstreams[{i}]");
            check_name(&upstream.name, &field, &mut names, problems);
            let uri = upstream.url.parse::<http::Uri>().ok();
            let scheme = uri.as_ref().and_then(|u| u.scheme_str());
            let has_host = uri
                .as_ref()
                .and_then(|u| u.host())
                .is_some_and(|h| !h.is_empty());
            if !matches!(scheme, Some("http" | "https")) || !has_host {
                problems.push(format!(
                    "{field}.url: {:?} must be an http:// or https:// URL with a host",
                    upstream.url
                ));
            } else if upstream.ca_file.is_some() && scheme != Some("https") {
                problems.push(format!(
                    "{field}.caFile: only an https:// upstream uses a CA"
                ));
            }
            if upstream.timeout_ms == 0 {
                problems.push(format!("{field}.timeoutMs: must be at least 1"));
            }
            check_labels(&upstream.labels, &format!("{field}.labels"), problems);
        }
    }

    fn validate_services(&self, problems: &mut Vec<String>) {
        let mut names = HashSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let field = format!("services[{i}]");
            check_name(&service.name, &field, &mut names, problems);
            if self.models.iter().any(|m| m.name == service.name) {
                problems.push(format!(
                    "{field}.name: {:?} is also a model name; clients could not tell them apart",
                    service.name
                ));
            }
            if service.deadline_ms == 0 {
                problems.push(format!("{field}.deadlineMs: must be at least 1"));
            }
            if service.max_hops == 0 {
                problems.push(format!("{field}.maxHops: must be at least 1"));
            }
            self.validate_strategy(&service.strategy, &format!("{field}.strategy"), problems);
            if let Some(store) = &service.hard_examples {
                store.validate(&format!("{field}.hardExamples"), problems);
                if !matches!(
                    service.strategy,
                    StrategyConfig::Threshold(_) | StrategyConfig::Forward(_)
                ) {
                    problems.push(format!(
                        "{field}.hardExamples: only threshold and forward strategies forward items"
                    ));
                }
            }
            self.validate_classes(service, &field, problems);
        }
        if let Some(cycle) = self.service_cycle() {
            problems.push(format!("services: forwarding cycle {}", cycle.join(" -> ")));
        }
    }

    fn validate_strategy(
        &self,
        strategy: &StrategyConfig,
        field: &str,
        problems: &mut Vec<String>,
    ) {
        match strategy {
            StrategyConfig::Local(target) => {
                self.validate_target(target, &format!("{field}.local"), problems)
            }
            StrategyConfig::Forward(forward) => {
                self.validate_target(&forward.to, &format!("{field}.forward.to"), problems);
                if let Some(model) = &forward.fallback_model {
                    self.validate_model_ref(
                        model,
                        &format!("{field}.forward.fallbackModel"),
                        problems,
                    );
                }
            }
            StrategyConfig::Threshold(threshold) => {
                let field = format!("{field}.threshold");
                self.validate_target(&threshold.local, &format!("{field}.local"), problems);
                self.validate_target(&threshold.forward, &format!("{field}.forward"), problems);
                validate_unit(threshold.tau, &format!("{field}.tau"), problems);
                validate_confidence(&threshold.confidence, &field, problems);
                if let Some(adapt) = &threshold.adapt {
                    adapt.validate(&format!("{field}.adapt"), problems);
                }
            }
            StrategyConfig::Ensemble(ensemble) => {
                let field = format!("{field}.ensemble");
                if ensemble.members.is_empty() {
                    problems.push(format!(
                        "{field}.members: an ensemble needs at least one member"
                    ));
                }
                for (i, member) in ensemble.members.iter().enumerate() {
                    let at = format!("{field}.members[{i}]");
                    self.validate_target(&member.target, &at, problems);
                    if !(member.weight.is_finite() && member.weight >= 0.0) {
                        problems.push(format!(
                            "{at}.weight: {} must be a finite number ≥ 0",
                            member.weight
                        ));
                    }
                    if !member.cost.is_finite() {
                        problems.push(format!("{at}.cost: {} must be finite", member.cost));
                    }
                }
                if let Some(tau) = ensemble.tau {
                    validate_unit(tau, &format!("{field}.tau"), problems);
                }
                if ensemble.max_members == Some(0) {
                    problems.push(format!("{field}.maxMembers: must be at least 1"));
                }
                validate_confidence(&ensemble.confidence, &field, problems);
                if let Some(learn) = &ensemble.learn {
                    learn.validate(&format!("{field}.learn"), problems);
                    if !matches!(ensemble.combine, Combine::WeightedMean | Combine::Vote) {
                        problems.push(format!(
                            "{field}.learn: learned weights need combine: weightedMean or vote"
                        ));
                    }
                }
            }
        }
    }

    fn validate_model_ref(&self, model: &str, field: &str, problems: &mut Vec<String>) {
        if !self.models.iter().any(|m| m.name == model) {
            problems.push(format!("{field}: unknown model {model:?}"));
        }
    }

    fn validate_target(&self, target: &Target, field: &str, problems: &mut Vec<String>) {
        match target {
            Target::Model(model) => {
                self.validate_model_ref(model, &format!("{field}.model"), problems)
            }
            Target::Upstream { upstream, .. } => {
                if !self.upstreams.iter().any(|u| &u.name == upstream) {
                    problems.push(format!("{field}.upstream: unknown upstream {upstream:?}"));
                }
            }
            Target::Service(service) => {
                if !self.services.iter().any(|s| &s.name == service) {
                    problems.push(format!("{field}.service: unknown service {service:?}"));
                }
            }
        }
    }

    /// A cycle of local service references (`service: x` targets), if any.
    fn service_cycle(&self) -> Option<Vec<String>> {
        let next = |name: &String| -> Vec<String> {
            self.services
                .iter()
                .filter(|s| &s.name == name)
                .flat_map(|s| s.strategy.targets())
                .filter_map(|target| match target {
                    Target::Service(next) => Some(next.clone()),
                    _ => None,
                })
                .collect()
        };
        find_cycle(self.services.iter().map(|s| s.name.clone()), next)
    }
}

fn validate_unit(value: f64, field: &str, problems: &mut Vec<String>) {
    if !(0.0..=1.0).contains(&value) {
        problems.push(format!("{field}: {value} is outside [0, 1]"));
    }
}

fn validate_confidence(confidence: &Confidence, field: &str, problems: &mut Vec<String>) {
    let field = format!("{field}.confidence");
    if !(confidence.temperature.is_finite() && confidence.temperature > 0.0) {
        problems.push(format!(
            "{field}.temperature: {} must be a finite number > 0",
            confidence.temperature
        ));
    }
    match (confidence.metric, &confidence.gate) {
        (ConfidenceMetric::Logistic, None) => problems.push(format!(
            "{field}.gate: the logistic metric needs its coefficients (bias, top1, margin, entropy)"
        )),
        (ConfidenceMetric::Logistic, Some(gate)) => {
            let names = ["bias", "top1", "margin", "entropy"];
            for (name, value) in names.into_iter().zip(gate.coefficients()) {
                if !value.is_finite() {
                    problems.push(format!("{field}.gate.{name}: {value} must be finite"));
                }
            }
        }
        (_, Some(_)) => problems.push(format!(
            "{field}.gate: only the logistic metric reads a gate; drop it or set metric: logistic"
        )),
        (_, None) => {}
    }
}

impl Limits {
    fn validate(&self, problems: &mut Vec<String>) {
        // Zero would refuse every request, or close every connection at once.
        for (field, value) in [
            ("limits.maxBodyBytes", self.max_body_bytes as u64),
            ("limits.maxBatchSize", self.max_batch_size as u64),
            ("limits.queueDepth", self.queue_depth as u64),
            ("limits.readTimeoutSeconds", self.read_timeout_seconds),
            (
                "limits.headerReadTimeoutSeconds",
                self.header_read_timeout_seconds,
            ),
            ("limits.idleTimeoutSeconds", self.idle_timeout_seconds),
            (
                "limits.keepaliveIntervalSeconds",
                self.keepalive_interval_seconds,
            ),
            (
                "limits.keepaliveTimeoutSeconds",
                self.keepalive_timeout_seconds,
            ),
            (
                "limits.maxConcurrentStreams",
                u64::from(self.max_concurrent_streams),
            ),
        ] {
            if value == 0 {
                problems.push(format!("{field}: must be at least 1"));
            }
        }
    }
}

impl ModelConfig {
    fn validate(&self, field: &str, problems: &mut Vec<String>) {
        if !is_model_name(&self.name) {
            problems.push(format!(
                "{field}.name: {:?} must be non-empty and use only letters, digits, '-', '_' and '.'",
                self.name
            ));
        }
        if self.version.is_empty() || self.version.contains('/') {
            problems.push(format!(
                "{field}.version: {:?} must be non-empty without '/'",
                self.version
            ));
        }
        if let Some(sha) = &self.sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            problems.push(format!(
                "{field}.sha256: {sha:?} is not 64 hexadecimal digits"
            ));
        }
        for (list, names) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            if names.is_empty() {
                problems.push(format!("{field}.{list}: at least one name is required"));
            }
        }
    }
}

/// An upstream's or a service's name: unique among its kind, and one URL path segment.
fn check_name<'a>(
    name: &'a str,
    field: &str,
    names: &mut HashSet<&'a str>,
    problems: &mut Vec<String>,
) {
    if !names.insert(name) {
        problems.push(format!("{field}.name: {name:?} is declared twice"));
    }
    if !is_model_name(name) {
        problems.push(format!(
            "{field}.name: {name:?} must use only letters, digits, '-', '_' and '.'"
        ));
    }
}
