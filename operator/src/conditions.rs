//! Status conditions, built in one place so every condition carries a reason, a message, the
//! observed generation, and a transition time that changes only when the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The network is serving: every node has its replicas ready.
pub const READY: &str = "Ready";
/// Objects are being created or rolled out.
pub const PROGRESSING: &str = "Progressing";
/// Some node cannot reach its desired state (failed rollout, unavailable replicas).
pub const DEGRADED: &str = "Degraded";
/// The spec or a resource it refers to is invalid; nothing was applied.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// A condition as the controller computes it, before times are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Observed {
            type_,
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
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
            let status = if o.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map_or(Time(now), |p| p.last_transition_time.clone());
            Condition {
                type_: o.type_.to_owned(),
                status,
                reason: o.reason,
                message: o.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether condition `type_` is True in `conditions`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_changes_only_when_the_status_flips() {
        let first = merge(
            &[],
            vec![Observed::new(READY, false, "NodesNotReady", "0/3")],
            Some(1),
            at(100),
        );
        assert_eq!(first[0].last_transition_time, Time(at(100)));
        assert_eq!(first[0].observed_generation, Some(1));

        let same = merge(
            &first,
            vec![Observed::new(READY, false, "NodesNotReady", "1/3")],
            Some(2),
            at(200),
        );
        assert_eq!(same[0].last_transition_time, Time(at(100)));
        assert_eq!(same[0].message, "1/3");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(
            &same,
            vec![Observed::new(READY, true, "AllNodesReady", "3/3")],
            Some(2),
            at(300),
        );
        assert_eq!(flipped[0].last_transition_time, Time(at(300)));
        assert!(is_true(&flipped, READY));
    }
}
