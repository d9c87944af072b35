//! Leader election through a `coordination.k8s.io/v1` Lease, so that several operator replicas
//! can run and exactly one reconciles. The holder renews the lease; a lease not renewed within
//! its duration may be taken over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

/// One candidate for a lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElection {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// How often the holder renews: well inside the lease duration.
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    /// Takes or renews the lease; `false` while another live holder has it. A concurrent
    /// update by another candidate (409) is a lost race, not an error.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let result = match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| true)
            }
            Some(mut lease) => {
                let current = lease.spec.clone().unwrap_or_default();
                if !self.may_take(&current, now) {
                    return Ok(false);
                }
                lease.spec = Some(self.spec(Some(current), now));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| true)
            }
        };
        match result {
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            other => other,
        }
    }

    /// Gives the lease up (on shutdown), so a standby replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        if let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(&self.identity)
        {
            spec.holder_identity = None;
            if let Err(e) = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                tracing::warn!(error = %e, "cannot release the leader lease");
            }
        }
    }

    fn may_take(&self, spec: &LeaseSpec, now: Timestamp) -> bool {
        let held_by_other = spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty() && h != self.identity);
        !held_by_other || expired(spec, now)
    }

    fn spec(&self, previous: Option<LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let previous = previous.unwrap_or_default();
        let renewing = previous.holder_identity.as_deref() == Some(&self.identity);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: if renewing {
                previous.acquire_time
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(previous.lease_transitions.unwrap_or(0) + i32::from(!renewing)),
            ..LeaseSpec::default()
        }
    }
}

/// Whether the holder failed to renew within the lease duration.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(MicroTime(renewed)) = spec.renew_time else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed + duration < now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_expires_after_its_duration_without_renewal() {
        let now = Timestamp::from_second(1000).unwrap();
        assert!(!expired(&spec("a", 990, 15), now));
        assert!(expired(&spec("a", 980, 15), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
