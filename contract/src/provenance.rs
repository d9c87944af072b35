//! Provenance vocabulary: how each batch item was answered, and the keys under which a node
//! reports it in the OIP response `parameters` (the node-agent writes them, the tools read them).

/// How an item was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// By a model at the node the request entered.
    Served,
    /// By another node the request was forwarded to.
    Forwarded,
    /// By combining several members' answers.
    Ensembled,
    /// By a local model after an upstream failed: degraded.
    Fallback,
}

impl Decision {
    pub const ALL: [Decision; 4] = [
        Decision::Served,
        Decision::Forwarded,
        Decision::Ensembled,
        Decision::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Served => "served",
            Decision::Forwarded => "forwarded",
            Decision::Ensembled => "ensembled",
            Decision::Fallback => "fallback",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Decision::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

/// Node whose model answered.
pub const NODE: &str = "idn_node";
/// Model (or ensemble members, joined by '+') that answered.
pub const MODEL: &str = "idn_model";
/// The [`Decision`], as its `as_str`.
pub const DECISION: &str = "idn_decision";
/// Confidence of the answer, as the answering node measures it.
pub const CONFIDENCE: &str = "idn_confidence";
/// Nodes from the entry node to the answering node.
pub const PATH: &str = "idn_path";
/// Forwards the request took.
pub const HOPS: &str = "idn_hops";
/// Whether any item was answered by a fallback.
pub const DEGRADED: &str = "idn_degraded";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip_through_their_names() {
        for decision in Decision::ALL {
            assert_eq!(Decision::parse(decision.as_str()), Some(decision));
        }
        assert_eq!(Decision::parse("guessed"), None);
    }
}
