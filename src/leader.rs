//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one of several
//! replicas reconciles.
//!
//! The algorithm is the one of client-go's `leaderelection` package. A candidate takes
//! the lease when it is free or when its holder has not renewed it for
//! `leaseDurationSeconds`. That time is counted on the candidate's own clock from the
//! moment it saw the last renewal, so clock skew between nodes does not matter. Every write is an update
//! with the read `resourceVersion`, so two candidates cannot both win. The leader renews
//! every retry period and gives up when no renewal succeeded for the renew deadline,
//! which is shorter than the lease duration, so it stops before anyone else may start.
//!
//! The operator needs only `get`, `create` and `update` on the Lease.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

use crate::health::Health;
use crate::metrics::Metrics;

/// Maximum wait between attempts after the lease could not be read or written.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);

/// Command-line options of leader election.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderElectionArgs {
    /// Run only while holding a Lease, so that several replicas can run and one reconciles.
    #[arg(long, env = "MCO_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease.
    #[arg(
        long,
        env = "MCO_LEADER_ELECTION_LEASE_NAME",
        default_value = "mediaconvert-operator"
    )]
    pub leader_election_lease_name: String,

    /// Namespace of the Lease; the namespace of the service account or kubeconfig context
    /// when unset.
    #[arg(long, env = "MCO_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Seconds a standby waits after the last renewal it saw before it takes the lease.
    #[arg(
        long,
        env = "MCO_LEADER_ELECTION_LEASE_DURATION_SECONDS",
        default_value_t = 15
    )]
    pub leader_election_lease_duration_seconds: u64,

    /// Seconds the leader keeps trying to renew before it stops; less than the lease
    /// duration.
    #[arg(
        long,
        env = "MCO_LEADER_ELECTION_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    pub leader_election_renew_deadline_seconds: u64,

    /// Seconds between attempts to take or renew the lease.
    #[arg(
        long,
        env = "MCO_LEADER_ELECTION_RETRY_PERIOD_SECONDS",
        default_value_t = 2
    )]
    pub leader_election_retry_period_seconds: u64,
}

/// Settings of one election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Holder identity of this process, unique among the candidates.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Builds the settings from the command line, with `default_namespace` for an unset
    /// namespace. Fails when the durations do not nest.
    pub fn from_args(args: &LeaderElectionArgs, default_namespace: &str) -> anyhow::Result<Self> {
        let config = Self {
            name: args.leader_election_lease_name.clone(),
            namespace: args
                .leader_election_namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_string()),
            identity: identity(),
            lease_duration: Duration::from_secs(args.leader_election_lease_duration_seconds),
            renew_deadline: Duration::from_secs(args.leader_election_renew_deadline_seconds),
            retry_period: Duration::from_secs(args.leader_election_retry_period_seconds),
        };
        if config.retry_period.is_zero() || config.retry_period >= config.renew_deadline {
            anyhow::bail!(
                "invalid --leader-election-retry-period-seconds {}: it must be at least 1 and less than --leader-election-renew-deadline-seconds ({})",
                args.leader_election_retry_period_seconds,
                args.leader_election_renew_deadline_seconds
            );
        }
        if config.renew_deadline >= config.lease_duration {
            anyhow::bail!(
                "invalid --leader-election-renew-deadline-seconds {}: it must be less than --leader-election-lease-duration-seconds ({}), so a leader stops before a standby may start",
                args.leader_election_renew_deadline_seconds,
                args.leader_election_lease_duration_seconds
            );
        }
        Ok(config)
    }
}

/// Returns `POD_NAME` (set by the chart from the downward API) or the host name, with a
/// random suffix so that a restarted process never mistakes its predecessor's lease for
/// its own.
fn identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "mediaconvert-operator".into());
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{base}_{suffix}")
}

/// Reason the leader stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum LostLeadership {
    #[error(
        "lease {namespace}/{name} was not renewed within {deadline:?}; stopping so that another replica can take over"
    )]
    RenewDeadline {
        namespace: String,
        name: String,
        deadline: Duration,
    },

    #[error("lease {namespace}/{name} is now held by {holder}; stopping")]
    TakenOver {
        namespace: String,
        name: String,
        holder: String,
    },
}

/// The last lease record this candidate saw, and when it saw it.
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    lease_duration: Duration,
    at: Instant,
}

/// A candidate in the election for one Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Waits until this process holds the lease. Failed attempts are logged, one line
    /// each, and retried with a delay that doubles up to 30 seconds.
    pub async fn acquire(&mut self, health: &Health) {
        let mut error_delay = self.config.retry_period;
        let mut last_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(None) => {
                    health.record_lease(Ok(()));
                    tracing::info!(lease = %self.config.name, namespace = %self.config.namespace, identity = %self.config.identity, "Acquired the leader election lease");
                    return;
                }
                Ok(Some(holder)) => {
                    health.record_lease(Ok(()));
                    error_delay = self.config.retry_period;
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.config.name, %holder, "Waiting for the leader election lease held by another process");
                        last_holder = Some(holder);
                    }
                    tokio::time::sleep(self.config.retry_period).await;
                }
                Err(error) => {
                    health.record_lease(Err(error.to_string()));
                    tracing::warn!(lease = %self.config.name, namespace = %self.config.namespace, %error, retry_in_s = error_delay.as_secs(), "Failed to read or take the leader election lease; check that the service account may get, create and update leases in this namespace");
                    tokio::time::sleep(error_delay).await;
                    error_delay = (error_delay * 2).min(MAX_ERROR_BACKOFF);
                }
            }
        }
    }

    /// Renews the lease every retry period, and returns when leadership is lost.
    pub async fn hold(&mut self, health: &Health) -> LostLeadership {
        let mut renewed_at = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = renewed_at + self.config.renew_deadline;
            let attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(None)) => {
                    health.record_lease(Ok(()));
                    renewed_at = Instant::now();
                }
                Ok(Ok(Some(holder))) => {
                    return LostLeadership::TakenOver {
                        namespace: self.config.namespace.clone(),
                        name: self.config.name.clone(),
                        holder,
                    };
                }
                Ok(Err(error)) => {
                    health.record_lease(Err(error.to_string()));
                    tracing::warn!(lease = %self.config.name, %error, "Failed to renew the leader election lease; retrying until the renew deadline");
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return LostLeadership::RenewDeadline {
                    namespace: self.config.namespace.clone(),
                    name: self.config.name.clone(),
                    deadline: self.config.renew_deadline,
                };
            }
        }
    }

    /// Gives the lease up on shutdown, so that a standby takes over at once instead of
    /// after the lease duration. Failures are logged, because the lease expires anyway.
    pub async fn release(&mut self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
                return Ok(());
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease)
                .await
                .map(drop)
        }
        .await;
        match result {
            Ok(()) => {
                tracing::info!(lease = %self.config.name, "Released the leader election lease")
            }
            Err(error) => {
                tracing::warn!(lease = %self.config.name, %error, "Failed to release the leader election lease; it expires on its own")
            }
        }
    }

    /// Takes or renews the lease. Returns `None` when this process holds it afterwards,
    /// or the identity of the other holder whose lease has not expired.
    async fn try_acquire_or_renew(&mut self) -> Result<Option<String>, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = self.new_lease(now);
            self.api.create(&PostParams::default(), &lease).await?;
            self.observe(lease.spec.as_ref());
            return Ok(None);
        };
        self.observe(lease.spec.as_ref());
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.config.identity.as_str());
        if let Some(holder) = holder.filter(|_| !ours && !self.observed_expired()) {
            return Ok(Some(holder));
        }

        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.lease_duration_seconds());
        spec.renew_time = Some(MicroTime(now));
        let written = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        self.observe(written.spec.as_ref());
        Ok(None)
    }

    fn new_lease(&self, now: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.lease_duration_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Remembers the record and the local time it was first seen. A record that did not
    /// change keeps its first sighting, which is what expiry is counted from.
    fn observe(&mut self, spec: Option<&LeaseSpec>) {
        let holder = spec.and_then(|s| s.holder_identity.clone());
        let renew_time = spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
        let unchanged = self
            .observed
            .as_ref()
            .is_some_and(|seen| seen.holder == holder && seen.renew_time == renew_time);
        if unchanged {
            return;
        }
        let lease_duration = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        self.observed = Some(Observed {
            holder,
            renew_time,
            lease_duration,
            at: Instant::now(),
        });
    }

    fn observed_expired(&self) -> bool {
        self.observed
            .as_ref()
            .is_none_or(|seen| seen.at + seen.lease_duration <= Instant::now())
    }
}

/// Runs `work` while this process leads. Waits for the lease first; returns an error
/// when leadership is lost, and releases the lease when `work` finishes (on a shutdown
/// signal). A process that lost the lease must exit, so that no reconcile of it overlaps
/// with the new leader's.
pub async fn lead<F>(
    mut elector: Elector,
    health: &Health,
    metrics: &Metrics,
    work: F,
) -> Result<(), LostLeadership>
where
    F: Future<Output = ()>,
{
    metrics.set_leader(false);
    tokio::select! {
        () = elector.acquire(health) => {}
        () = shutdown_signal() => return Ok(()),
    }
    health.set_leading(true);
    metrics.set_leader(true);

    tokio::select! {
        () = work => {
            elector.release().await;
            Ok(())
        }
        lost = elector.hold(health) => {
            health.set_leading(false);
            metrics.set_leader(false);
            Err(lost)
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(lease: u64, renew: u64, retry: u64) -> LeaderElectionArgs {
        LeaderElectionArgs {
            leader_election: true,
            leader_election_lease_name: "mediaconvert-operator".into(),
            leader_election_namespace: None,
            leader_election_lease_duration_seconds: lease,
            leader_election_renew_deadline_seconds: renew,
            leader_election_retry_period_seconds: retry,
        }
    }

    #[test]
    fn config_defaults_namespace() {
        let config = LeaseConfig::from_args(&args(15, 10, 2), "operators").expect("valid");
        assert_eq!(config.namespace, "operators");
        assert_eq!(config.lease_duration, Duration::from_secs(15));
    }

    #[test]
    fn config_rejects_renew_deadline_past_lease() {
        let error = LeaseConfig::from_args(&args(10, 10, 2), "operators")
            .expect_err("renew deadline equal to the lease must fail");
        assert!(
            error.to_string().contains("renew-deadline-seconds 10"),
            "{error}"
        );
    }

    #[test]
    fn config_rejects_zero_retry_period() {
        let error = LeaseConfig::from_args(&args(15, 10, 0), "operators")
            .expect_err("a zero retry period must fail");
        assert!(
            error.to_string().contains("retry-period-seconds 0"),
            "{error}"
        );
    }
}
