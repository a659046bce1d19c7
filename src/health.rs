//! Liveness and readiness state, reported on `/healthz` and `/readyz` by
//! [`crate::server`].

use std::sync::{Arc, Mutex};

/// Readiness inputs: the watch of each namespace and, with leader election, the
/// lease.
///
/// A process that leads is ready when it can renew the lease and every watch has listed
/// its namespace. A standby is ready when it can read the lease, so that a rolling update
/// of a two-replica Deployment does not wait for a standby to lead.
#[derive(Debug)]
pub struct Health {
    leader_election: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The last lease read or write failure, or `None` after a success.
    lease_error: Option<String>,
    /// Whether a lease attempt has succeeded yet.
    lease_seen: bool,
    leading: bool,
    /// Per watched namespace: whether its watch has listed and last succeeded.
    watches: Vec<bool>,
}

/// Handle of one namespace's watch for reporting its state.
#[derive(Debug)]
pub struct WatchHealth {
    health: Arc<Health>,
    index: usize,
}

impl Health {
    pub fn new(leader_election: bool) -> Self {
        Self {
            leader_election,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the result of the latest attempt to read, take or renew the lease.
    pub fn record_lease(&self, result: Result<(), String>) {
        let mut state = self.state();
        state.lease_seen |= result.is_ok();
        state.lease_error = result.err();
    }

    /// Records whether this process holds the lease.
    pub fn set_leading(&self, leading: bool) {
        self.state().leading = leading;
    }

    /// Adds a namespace watch, not ready until it reports a successful list.
    pub fn register_watch(self: &Arc<Self>) -> WatchHealth {
        let mut state = self.state();
        state.watches.push(false);
        WatchHealth {
            health: self.clone(),
            index: state.watches.len() - 1,
        }
    }

    /// Returns `Ok` when the process is ready, or the reasons it is not.
    pub fn readiness(&self) -> Result<(), String> {
        let state = self.state();
        let mut problems = Vec::new();
        if self.leader_election {
            match (&state.lease_error, state.lease_seen) {
                (Some(error), _) => problems.push(format!("leader election lease: {error}")),
                (None, false) => problems.push("leader election lease not read yet".into()),
                (None, true) => {}
            }
        }
        let needs_watch = !self.leader_election || state.leading;
        if needs_watch {
            if state.watches.is_empty() {
                problems.push("watch not started".into());
            }
            let failing = state.watches.iter().filter(|ready| !**ready).count();
            if failing > 0 {
                problems.push(format!(
                    "{failing} of {} namespace watches not listed or failing",
                    state.watches.len()
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl WatchHealth {
    /// Records the outcome of the latest watch event.
    pub fn record(&self, ready: bool) {
        if let Some(slot) = self.health.state().watches.get_mut(self.index) {
            *slot = ready;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_without_leader_election_waits_for_watch() {
        let health = Arc::new(Health::new(false));
        assert!(health.readiness().is_err());
        let watch = health.register_watch();
        assert!(health.readiness().is_err());
        watch.record(true);
        assert_eq!(health.readiness(), Ok(()));
        watch.record(false);
        assert!(health.readiness().is_err());
    }

    #[test]
    fn standby_is_ready_when_lease_is_readable() {
        let health = Health::new(true);
        assert!(health.readiness().is_err());
        health.record_lease(Ok(()));
        assert_eq!(health.readiness(), Ok(()));
        health.record_lease(Err("leases is forbidden".into()));
        let reason = health
            .readiness()
            .expect_err("forbidden lease must not be ready");
        assert!(reason.contains("leases is forbidden"), "{reason}");
    }

    #[test]
    fn leader_needs_lease_and_watch() {
        let health = Arc::new(Health::new(true));
        health.record_lease(Ok(()));
        health.set_leading(true);
        assert!(health.readiness().is_err());
        health.register_watch().record(true);
        assert_eq!(health.readiness(), Ok(()));
    }
}
