//! The node's side of learning: seeding its services from the learned-state file at start,
//! writing that file back, and reporting what the learners know when metrics are scraped.

use std::path::Path;

use super::Node;
use crate::delivery::Service;
use crate::error::{Error, Result};
use crate::learn::{lock, state};
use crate::metrics::LearnedFigures;

/// Starts each learning service from the state file, when there is one; a service whose
/// learner no longer fits its saved state (another method, grid or members) starts afresh.
pub(super) fn seed(services: &[Service], file: Option<&Path>) -> Result<()> {
    let Some(file) = file else { return Ok(()) };
    let mut saved = state::read(file).map_err(Error::LearnedState)?;
    for service in services {
        let Some(state) = saved.remove(service.name()) else {
            continue;
        };
        match service.seed(state) {
            Ok(()) => {
                tracing::info!(service = %service.name(), file = %file.display(), "resumed learned state")
            }
            Err(reason) => {
                tracing::warn!(service = %service.name(), %reason, "learned state does not fit; starting afresh")
            }
        }
    }
    Ok(())
}

impl Node {
    /// Writes what the services learned to the state file, when one is configured; a failure
    /// is logged and the node serves on.
    pub fn save_learned(&self) {
        let Some(file) = &self.config.learned_state_file else {
            return;
        };
        let states: state::States = self
            .services
            .iter()
            .filter_map(|s| Some((s.name().to_owned(), s.learned()?)))
            .collect();
        if let Err(e) = state::write(file, &states) {
            tracing::warn!(file = %file.display(), error = %e, "cannot write learned state");
        }
    }

    /// Whether the node has anything to save.
    pub fn keeps_learned_state(&self) -> bool {
        self.config.learned_state_file.is_some()
    }

    /// Sets the learning series from the learners' current state (called when scraped).
    pub(crate) fn report_learning(&self) {
        let node = &self.config.node;
        for service in &self.services {
            let name = service.name();
            if let Some(learner) = service.threshold_learner() {
                let snapshot = lock(learner).snapshot();
                self.metrics.set_learned(
                    node,
                    name,
                    LearnedFigures {
                        tau: snapshot.tau,
                        regret: snapshot.regret,
                        cost: snapshot.cost,
                        forward_cost: snapshot.forward_cost,
                    },
                );
                self.metrics.set_waiting(node, name, snapshot.waiting);
            }
            if let Some(learner) = service.weight_learner() {
                let learner = lock(learner);
                let learned = learner.export();
                self.metrics
                    .set_weights(node, name, &learned.members, &learned.weights);
                self.metrics.set_waiting(node, name, learner.waiting());
            }
            if let Some(store) = &service.hard_examples {
                self.metrics
                    .set_hard_examples(node, name, lock(store).len());
            }
        }
    }
}
