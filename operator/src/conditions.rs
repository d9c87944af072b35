//! Status conditions, built in one place so every condition carries a typed kind, status and
//! reason, a message, the observed generation, and a transition time that changes only when
//! the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The conditions of an InferenceDeliveryNetwork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The network is serving: every node has its replicas ready.
    Ready,
    /// Objects are being created or rolled out.
    Progressing,
    /// Some node's rollout failed (its progress deadline passed, or a replica failed).
    Degraded,
    /// The spec or a resource it refers to is invalid; nothing was applied.
    InvalidSpec,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::InvalidSpec => "InvalidSpec",
        }
    }
}

/// A condition's status, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    /// The controller could not read what decides it (an apply failed before the Deployments'
    /// status was read back).
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// Why a condition has its status: one CamelCase word each, as `kubectl describe` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    AllNodesReady,
    NodesNotReady,
    RolloutComplete,
    RollingOut,
    NoFailures,
    RolloutFailed,
    Valid,
    /// A reference does not resolve (unknown model or strategy, cycle, missing secret, ...).
    InvalidReference,
    /// Set on the other conditions while the spec is invalid.
    InvalidSpec,
    /// The API server refused or failed a request about one of the network's objects.
    ApplyFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AllNodesReady => "AllNodesReady",
            Reason::NodesNotReady => "NodesNotReady",
            Reason::RolloutComplete => "RolloutComplete",
            Reason::RollingOut => "RollingOut",
            Reason::NoFailures => "NoFailures",
            Reason::RolloutFailed => "RolloutFailed",
            Reason::Valid => "Valid",
            Reason::InvalidReference => "InvalidReference",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::ApplyFailed => "ApplyFailed",
        }
    }
}

/// A condition as the controller computes it, before times are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: ConditionType,
        status: impl Into<ConditionStatus>,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Observed {
            type_,
            status: status.into(),
            reason,
            message: message.into(),
        }
    }
}

/// The conditions of a network whose spec is invalid (`message`: every problem): nothing is
/// applied.
pub fn invalid_spec(message: String) -> Vec<Observed> {
    vec![
        Observed::new(
            ConditionType::Ready,
            false,
            Reason::InvalidSpec,
            "the spec is invalid; see InvalidSpec",
        ),
        Observed::new(
            ConditionType::Progressing,
            false,
            Reason::InvalidSpec,
            "nothing is applied until the spec is fixed",
        ),
        Observed::new(ConditionType::Degraded, false, Reason::InvalidSpec, ""),
        Observed::new(
            ConditionType::InvalidSpec,
            true,
            Reason::InvalidReference,
            message,
        ),
    ]
}

/// The conditions of a network whose valid spec the API server refused in part (`message`
/// names the object, the request and the API server's answer). Whether its nodes are ready was
/// not read, so Ready is Unknown; the objects already applied stay.
pub fn apply_failed(message: String) -> Vec<Observed> {
    vec![
        Observed::new(
            ConditionType::Ready,
            ConditionStatus::Unknown,
            Reason::ApplyFailed,
            message.clone(),
        ),
        Observed::new(
            ConditionType::Progressing,
            false,
            Reason::ApplyFailed,
            "stopped at the refused object; retried with backoff",
        ),
        Observed::new(ConditionType::Degraded, true, Reason::ApplyFailed, message),
        valid_spec(),
    ]
}

/// InvalidSpec False: planning found no problem.
pub fn valid_spec() -> Observed {
    Observed::new(
        ConditionType::InvalidSpec,
        false,
        Reason::Valid,
        "every reference resolves",
    )
}

/// The conditions to write: `observed`, keeping each previous transition time when its status
/// did not change.
pub fn merge(
    previous: &[Condition],
    observed: Vec<Observed>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    observed
        .into_iter()
        .map(|o| {
            let (type_, status) = (o.type_.as_str(), o.status.as_str());
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == type_ && p.status == status)
                .map_or(Time(now), |p| p.last_transition_time.clone());
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: o.reason.as_str().to_owned(),
                message: o.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Condition `type_` of `conditions`, if it is True.
pub fn find_true(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions
        .iter()
        .find(|c| c.type_ == type_.as_str() && c.status == ConditionStatus::True.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_changes_only_when_the_status_flips() {
        let ready = ConditionType::Ready;
        let first = merge(
            &[],
            vec![Observed::new(ready, false, Reason::NodesNotReady, "0/3")],
            Some(1),
            at(100),
        );
        assert_eq!(first[0].last_transition_time, Time(at(100)));
        assert_eq!(first[0].observed_generation, Some(1));
        assert_eq!(
            (first[0].type_.as_str(), first[0].status.as_str()),
            ("Ready", "False")
        );
        assert_eq!(first[0].reason, "NodesNotReady");

        let same = merge(
            &first,
            vec![Observed::new(ready, false, Reason::NodesNotReady, "1/3")],
            Some(2),
            at(200),
        );
        assert_eq!(same[0].last_transition_time, Time(at(100)));
        assert_eq!(same[0].message, "1/3");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(
            &same,
            vec![Observed::new(ready, true, Reason::AllNodesReady, "3/3")],
            Some(2),
            at(300),
        );
        assert_eq!(flipped[0].last_transition_time, Time(at(300)));
        assert!(find_true(&flipped, ready).is_some());
        assert!(find_true(&flipped, ConditionType::Degraded).is_none());
    }
}
