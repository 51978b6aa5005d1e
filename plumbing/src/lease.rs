//! Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules: the leader
//! renews every retry period and gives up when renewing has failed for the renew deadline; a
//! candidate takes the Lease when the holder has not renewed it for the lease duration, as
//! measured on the candidate's own clock (the record's timestamps are not compared with it, so
//! clock skew between instances does not matter). Every write is conditional on the
//! resourceVersion read, so two candidates cannot both win.
//!
//! `kube-lease-manager` (the maintained crate for kube 5) was considered: it keeps reporting
//! leadership while renewals fail, with no renew deadline, which would let two instances write
//! at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

/// Whether the error is a 404.
fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Leader election settings, with kube-controller-manager's flag names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// `--leader-elect`: whether to elect a leader at all (default true). Without it, the
    /// controllers start at once; run a single instance then.
    pub enabled: bool,
    /// `--leader-elect-resource-name` (default `svcplane-controllers`).
    pub lease_name: String,
    /// `--leader-elect-resource-namespace` (default `kube-system`).
    pub lease_namespace: String,
    /// This instance's identity in the Lease (default `<hostname>_<random>`).
    pub identity: String,
    /// `--leader-elect-lease-duration` (default 15s): how long others wait after the last
    /// renewal before taking over.
    pub lease_duration: Duration,
    /// `--leader-elect-renew-deadline` (default 10s): how long the leader keeps trying to
    /// renew before it stops leading.
    pub renew_deadline: Duration,
    /// `--leader-elect-retry-period` (default 2s): time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: "svcplane-controllers".into(),
            lease_namespace: "kube-system".into(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// `<hostname>_<random>`, like kube-controller-manager's: unique even for two processes on one
/// host.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "svcplane".into());
    let nanos = Timestamp::now().as_nanosecond();
    format!("{host}_{:x}{:x}", std::process::id(), nanos)
}

impl LeaderElectionConfig {
    /// Refuses settings under which two instances could lead at once.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.lease_name.is_empty() || self.lease_namespace.is_empty() || self.identity.is_empty()
        {
            return Err("leader election needs a Lease name, namespace and identity".into());
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "--leader-elect-lease-duration ({:?}) must be greater than --leader-elect-renew-deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.retry_period.is_zero() || self.renew_deadline <= self.retry_period {
            return Err(format!(
                "--leader-elect-renew-deadline ({:?}) must be greater than --leader-elect-retry-period ({:?}), which must not be zero",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    /// `namespace/name` of the Lease.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.lease_namespace, self.lease_name)
    }
}

/// What to do with the Lease as it was read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// No Lease yet: create it, held by us.
    Create(LeaseSpec),
    /// Write this spec (taking over or renewing), conditional on the version read.
    Write(LeaseSpec),
    /// Someone else holds it and renewed it recently.
    HeldBy(String),
}

/// Decides the next step from the Lease read (`None`: it does not exist). `holder_fresh` says
/// whether the current holder has renewed within the lease duration as observed locally.
pub(crate) fn next_step(
    current: Option<&LeaseSpec>,
    identity: &str,
    holder_fresh: bool,
    lease_duration: Duration,
    now: Timestamp,
) -> Step {
    let seconds = i32::try_from(lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(current) = current else {
        return Step::Create(LeaseSpec {
            holder_identity: Some(identity.into()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..Default::default()
        });
    };
    let holder = current.holder_identity.as_deref().unwrap_or_default();
    let ours = holder == identity;
    if !ours && !holder.is_empty() && holder_fresh {
        return Step::HeldBy(holder.to_string());
    }
    let transitions = current.lease_transitions.unwrap_or(0);
    Step::Write(LeaseSpec {
        holder_identity: Some(identity.into()),
        lease_duration_seconds: Some(seconds),
        acquire_time: if ours {
            current.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
        ..Default::default()
    })
}

/// The spec that hands the Lease back: no holder, expiring in a second.
pub(crate) fn released(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: current.lease_transitions,
        ..Default::default()
    }
}

/// The record as last observed, and when (on the local clock) it last changed.
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    since: Instant,
}

/// Acquires, renews and releases the Lease: the controllers' leader election and the
/// webhook's releasing replica both use it.
pub struct LeaseElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    observed: Option<Observed>,
}

impl LeaseElector {
    /// An elector for `config`'s Lease and identity.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        LeaseElector {
            api: Api::namespaced(client, &config.lease_namespace),
            config,
            observed: None,
        }
    }

    fn holder_fresh(&mut self, spec: &LeaseSpec, now: Instant) -> bool {
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != spec.holder_identity || o.renew_time != spec.renew_time);
        if changed {
            self.observed = Some(Observed {
                holder: spec.holder_identity.clone(),
                renew_time: spec.renew_time.clone(),
                since: now,
            });
        }
        let since = self.observed.as_ref().map_or(now, |o| o.since);
        now < since + self.config.lease_duration
    }

    /// One attempt to take or renew the Lease: `Ok(true)` when this identity holds it
    /// afterwards, `Ok(false)` when another identity holds it and renewed it within the lease
    /// duration (as observed by this elector), an error when the API refused (a conflict means
    /// another candidate wrote first).
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let name = self.config.lease_name.clone();
        let current = match self.api.get(&name).await {
            Ok(lease) => Some(lease),
            Err(error) if not_found(&error) => None,
            Err(error) => return Err(error),
        };
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let fresh = spec
            .as_ref()
            .is_some_and(|s| self.holder_fresh(s, Instant::now()));
        let step = next_step(
            spec.as_ref(),
            &self.config.identity,
            fresh,
            self.config.lease_duration,
            Timestamp::now(),
        );
        match step {
            Step::HeldBy(holder) => {
                tracing::debug!(%holder, lease = %self.config.lease(), "the Lease is held by another instance");
                Ok(false)
            }
            Step::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(self.config.lease_namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await?;
                Ok(true)
            }
            Step::Write(spec) => {
                let mut lease = current.expect("a Lease to write over");
                lease.spec = Some(spec);
                self.api
                    .replace(&name, &PostParams::default(), &lease)
                    .await?;
                Ok(true)
            }
        }
    }

    /// Tries every retry period until this instance holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.lease(), identity = %self.config.identity, "acquired the leader Lease");
                    return;
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::info!(lease = %self.config.lease(), %error, "could not acquire the leader Lease yet");
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease every retry period; returns why leadership was lost.
    pub async fn hold(&mut self) -> String {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = last_renewal + self.config.renew_deadline;
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewal = Instant::now(),
                Ok(Ok(false)) => return "another instance holds it".into(),
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.config.lease(), %error, "could not renew the leader Lease");
                }
                Err(_) => {}
            }
            if Instant::now() >= last_renewal + self.config.renew_deadline {
                return format!(
                    "could not renew it within the renew deadline ({:?})",
                    self.config.renew_deadline
                );
            }
        }
    }

    /// Hands the Lease back if this instance holds it, so that another can take over at once.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let name = &self.config.lease_name;
        let result = async {
            let mut lease = self.api.get(name).await?;
            let spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            lease.spec = Some(released(&spec, Timestamp::now()));
            self.api
                .replace(name, &PostParams::default(), &lease)
                .await?;
            Ok::<_, kube::Error>(())
        }
        .await;
        match &result {
            Ok(()) => tracing::info!(lease = %self.config.lease(), "released the leader Lease"),
            Err(error) => {
                tracing::warn!(lease = %self.config.lease(), %error, "could not release the leader Lease")
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(100))),
            renew_time: Some(MicroTime(at(110))),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    #[test]
    fn creates_a_missing_lease() {
        let Step::Create(spec) = next_step(None, "me", false, DURATION, at(200)) else {
            panic!("a create")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn waits_for_a_fresh_holder_and_takes_over_a_stale_one() {
        let other = held_by("other", 3);
        assert_eq!(
            next_step(Some(&other), "me", true, DURATION, at(200)),
            Step::HeldBy("other".into())
        );
        let Step::Write(spec) = next_step(Some(&other), "me", false, DURATION, at(200)) else {
            panic!("a takeover")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(200))));
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_transitions() {
        let mine = held_by("me", 3);
        let Step::Write(spec) = next_step(Some(&mine), "me", true, DURATION, at(200)) else {
            panic!("a renewal")
        };
        assert_eq!(spec.acquire_time, Some(MicroTime(at(100))));
        assert_eq!(spec.renew_time, Some(MicroTime(at(200))));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn a_released_lease_is_free_at_once() {
        let released = released(&held_by("me", 3), at(200));
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, Some(3));
        let Step::Write(spec) = next_step(Some(&released), "next", true, DURATION, at(201)) else {
            panic!("free for the taking")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("next"));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn validates_timings() {
        let config = LeaderElectionConfig::default();
        assert_eq!(config.validate(), Ok(()));
        let bad = LeaderElectionConfig {
            renew_deadline: Duration::from_secs(20),
            ..config.clone()
        };
        assert!(bad.validate().is_err());
        let off = LeaderElectionConfig {
            enabled: false,
            identity: String::new(),
            ..config
        };
        assert_eq!(off.validate(), Ok(()));
    }
}
