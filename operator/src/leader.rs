//! Leader election through a `coordination.k8s.io/v1` Lease, so that several operator replicas
//! can run and at most one reconciles, as client-go's leader election does it:
//!
//! - A candidate never compares the lease's `renewTime` with its own clock (the replicas' wall
//!   clocks may differ). It takes a lease held by another only once it has seen the same record
//!   unchanged for the lease's whole duration, by its own monotonic clock.
//! - The leader renews every retry period and stops leading when it has not renewed within the
//!   renew deadline, shorter than the lease duration: it has stopped before any candidate can
//!   consider the lease expired.
//! - Every call to the API server has a timeout, so a hung request cannot hold a leader past its
//!   deadline.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

/// How long the election waits for and between its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease lasts without renewal, as candidates measure it.
    pub lease: Duration,
    /// How long the leader keeps leading without a successful renewal; shorter than `lease`.
    pub renew_deadline: Duration,
    /// Time between two tries, of a candidate for the lease and of the leader to renew it.
    pub retry: Duration,
}

impl Default for Timing {
    /// client-go's defaults.
    fn default() -> Self {
        Timing {
            lease: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// Why a try for the lease failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} Lease {name}: {source}")]
    Api {
        verb: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{verb} Lease {name}: no answer within {timeout:?}")]
    Timeout {
        verb: &'static str,
        name: String,
        timeout: Duration,
    },
}

/// A lease record as this candidate last saw it, and since when (its own monotonic clock).
#[derive(Debug, Clone)]
struct Observation {
    record: LeaseSpec,
    since: Instant,
}

/// One candidate for a lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observation>,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing) -> Self {
        LeaderElection {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            observed: None,
        }
    }

    /// Tries for the lease until this replica holds it; returns when the successful try
    /// started, from which the renew deadline counts.
    pub async fn acquire(&mut self) -> Instant {
        loop {
            let attempt = Instant::now();
            let deadline = attempt + self.timing.renew_deadline;
            match self.try_acquire(deadline).await {
                Ok(true) => return attempt,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// Renews the lease every retry period; returns when this replica must stop leading: another
    /// holder took the lease, or no renewal succeeded within the renew deadline of the last one
    /// (`acquired`: when the try that took the lease started).
    pub async fn hold(&mut self, acquired: Instant) {
        let mut renewed = acquired;
        loop {
            tokio::time::sleep(self.timing.retry).await;
            let deadline = renewed + self.timing.renew_deadline;
            let attempt = Instant::now();
            match self.try_acquire(deadline).await {
                Ok(true) => renewed = attempt,
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader lease"),
            }
            if !still_leading(renewed, Instant::now(), self.timing.renew_deadline) {
                return;
            }
        }
    }

    /// Takes or renews the lease, each call answered before `deadline`; `false` while another
    /// live holder has it. A concurrent update by another candidate (409) is a lost race, not an
    /// error.
    async fn try_acquire(&mut self, deadline: Instant) -> Result<bool, Error> {
        let lease = self
            .call("get", deadline, self.api.get_opt(&self.name))
            .await?;
        let now = Timestamp::now();
        let result = match lease {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                let params = PostParams::default();
                self.call("create", deadline, self.api.create(&params, &lease))
                    .await
            }
            Some(mut lease) => {
                let current = lease.spec.clone().unwrap_or_default();
                let observed = observe(self.observed.take(), current.clone(), Instant::now());
                let take = may_take(&self.identity, &observed, Instant::now(), &self.timing);
                self.observed = Some(observed);
                if !take {
                    return Ok(false);
                }
                lease.spec = Some(self.spec(Some(current), now));
                let params = PostParams::default();
                self.call(
                    "replace",
                    deadline,
                    self.api.replace(&self.name, &params, &lease),
                )
                .await
            }
        };
        match result {
            Ok(lease) => {
                // Our own record: the next try compares against it.
                let record = lease.spec.unwrap_or_default();
                self.observed = Some(observe(None, record, Instant::now()));
                Ok(true)
            }
            Err(Error::Api {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (on shutdown), so a standby replica takes over at once.
    pub async fn release(&self) {
        let deadline = Instant::now() + self.timing.retry;
        let Ok(Some(mut lease)) = self
            .call("get", deadline, self.api.get_opt(&self.name))
            .await
        else {
            return;
        };
        if let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(&self.identity)
        {
            spec.holder_identity = None;
            let params = PostParams::default();
            let replace = self.api.replace(&self.name, &params, &lease);
            if let Err(e) = self.call("replace", deadline, replace).await {
                tracing::warn!(error = %e, "cannot release the leader lease");
            }
        }
    }

    /// One call to the API server, abandoned at `deadline`.
    async fn call<T>(
        &self,
        verb: &'static str,
        deadline: Instant,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        let name = self.name.clone();
        let timeout = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout_at(deadline, request).await {
            Ok(result) => result.map_err(|source| Error::Api { verb, name, source }),
            Err(_) => Err(Error::Timeout {
                verb,
                name,
                timeout,
            }),
        }
    }

    fn spec(&self, previous: Option<LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let previous = previous.unwrap_or_default();
        let renewing = previous.holder_identity.as_deref() == Some(&self.identity);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease.as_secs() as i32),
            acquire_time: if renewing {
                previous.acquire_time
            } else {
                Some(MicroTime(now))
            },
            // For people and other tools; no candidate of ours compares it with its clock.
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + i32::from(!renewing)),
            ..LeaseSpec::default()
        }
    }
}

/// The observation after reading `record` at `now`: since when the same record has been seen.
fn observe(previous: Option<Observation>, record: LeaseSpec, now: Instant) -> Observation {
    match previous {
        Some(previous) if previous.record == record => previous,
        _ => Observation { record, since: now },
    }
}

/// Whether `identity` may take the lease it observed: it is free, ours, or its holder has not
/// renewed it for the lease's whole duration as this candidate measures it.
fn may_take(identity: &str, observed: &Observation, now: Instant, timing: &Timing) -> bool {
    let record = &observed.record;
    let held_by_other = record
        .holder_identity
        .as_deref()
        .is_some_and(|h| !h.is_empty() && h != identity);
    let duration = record
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(timing.lease, Duration::from_secs);
    !held_by_other || now.saturating_duration_since(observed.since) >= duration
}

/// Whether a leader whose last successful renewal started at `renewed` may still lead at `now`.
fn still_leading(renewed: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now.saturating_duration_since(renewed) < renew_deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_lease_expires_after_its_duration_unchanged_by_the_candidates_clock() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let seen = observe(None, record("a", 1000), t0);
        assert!(!may_take("b", &seen, t0 + secs(14), &timing));
        assert!(may_take("b", &seen, t0 + secs(15), &timing));
        // The same record read again later keeps its first sighting.
        let again = observe(Some(seen), record("a", 1000), t0 + secs(10));
        assert_eq!(again.since, t0);
    }

    #[test]
    fn a_renewal_restarts_the_count_whatever_time_it_claims() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let seen = observe(None, record("a", 1000), t0);
        // A renewal whose renewTime is far in the past (a leader whose clock is behind) is
        // still a renewal: the candidate waits a whole duration from when it saw it.
        let renewed = observe(Some(seen), record("a", 1), t0 + secs(12));
        assert!(!may_take("b", &renewed, t0 + secs(20), &timing));
        assert!(may_take("b", &renewed, t0 + secs(27), &timing));
    }

    #[test]
    fn a_renew_time_from_a_clock_ahead_does_not_keep_a_dead_leader() {
        // Compared with wall clocks, a renewTime an hour ahead would look fresh for an hour.
        let t0 = Instant::now();
        let seen = observe(None, record("a", 3600 + 1000), t0);
        assert!(may_take("b", &seen, t0 + secs(15), &Timing::default()));
    }

    #[test]
    fn a_free_or_own_lease_may_be_taken_at_once() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let free = observe(None, LeaseSpec::default(), t0);
        assert!(may_take("b", &free, t0, &timing));
        let released = observe(None, record("", 1000), t0);
        assert!(may_take("b", &released, t0, &timing));
        let own = observe(None, record("b", 1000), t0);
        assert!(may_take("b", &own, t0, &timing));
    }

    /// A leader whose API server stops answering: the renewals hang.
    #[tokio::test]
    async fn a_leader_whose_renewals_hang_stops_within_its_renew_deadline() {
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = kube::Client::new(service, "idn-system");
        let timing = Timing {
            lease: Duration::from_millis(1500),
            renew_deadline: Duration::from_millis(1000),
            retry: Duration::from_millis(200),
        };
        let mut election =
            LeaderElection::new(Api::namespaced(client, "idn-system"), "idn", "a", timing);
        let acquired = Instant::now();
        tokio::time::timeout(timing.lease, election.hold(acquired))
            .await
            .expect("still leading after a whole lease duration without a renewal");
        assert!(acquired.elapsed() >= timing.renew_deadline);
    }

    #[test]
    fn the_leader_stops_before_any_candidate_may_take_over() {
        let timing = Timing::default();
        let renewed = Instant::now();
        assert!(still_leading(
            renewed,
            renewed + secs(9),
            timing.renew_deadline
        ));
        assert!(!still_leading(
            renewed,
            renewed + secs(10),
            timing.renew_deadline
        ));
        // A candidate that saw the renewal at once may take over only at `lease` after it.
        let seen = observe(None, record("a", 1000), renewed);
        let first_take = renewed + timing.lease;
        assert!(!may_take("b", &seen, first_take - secs(1), &timing));
        assert!(timing.renew_deadline < timing.lease);
    }
}
