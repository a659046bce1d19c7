//! State shared by all connections: call counts, created jobs, timelines,
//! client request tokens, fault rules, the local job store and job events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::classify::Operation;
use crate::events::{EventJob, Outbox};
use crate::faults::FaultSet;
use crate::jobs::{ScriptedJob, SettingsJson};
use crate::local::LocalJob;
use crate::timeline::TimelineConfig;
use crate::upstream::BufferedResponse;

/// A job created on a CreateJob sent through the proxy, by fakecloud or by
/// the local job store, as `GET /__proxy/jobs` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedJob {
    pub id: String,
    pub client_request_token: Option<String>,
    pub user_metadata: Value,
    /// The `settings` member of the CreateJob request, as the client sent it.
    pub settings: SettingsJson,
    /// Creation time in RFC 3339.
    pub created_at: String,
    /// Unix milliseconds at which the proxy recorded the CreateJob.
    pub created_ms: u64,
}

/// The first CreateJob response for a client request token.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub job_id: String,
    pub created: Instant,
    /// The upstream response, or `None` for a job of the local store, whose
    /// response is built from the store on each replay.
    pub response: Option<BufferedResponse>,
}

/// Everything the control API can read or reset.
#[derive(Debug, Default)]
pub struct State {
    /// Requests received per `service:Operation`, including those rejected
    /// by a fault or served from the token window.
    pub calls: BTreeMap<String, u64>,
    /// The same counts split by the access key ID the request was signed with.
    pub calls_by_access_key: BTreeMap<String, BTreeMap<String, u64>>,
    /// Jobs created upstream, oldest first.
    pub created_jobs: Vec<CreatedJob>,
    pub timelines: TimelineConfig,
    /// Jobs that got a timeline at creation, by job id.
    pub scripted_jobs: HashMap<String, ScriptedJob>,
    pub tokens: HashMap<String, TokenEntry>,
    pub faults: FaultSet,
    /// Jobs of the local store by id. Ids start with the 13-digit creation
    /// time in Unix milliseconds, so key order is creation order, then id.
    pub local_jobs: BTreeMap<String, LocalJob>,
    /// Jobs that publish state change events and have not yet published
    /// their terminal event, by job id.
    pub event_jobs: HashMap<String, EventJob>,
    pub outbox: Outbox,
}

impl State {
    pub fn count(&mut self, operation: &Operation, access_key_id: Option<&str>) {
        *self.calls.entry(operation.to_string()).or_default() += 1;
        if let Some(access_key_id) = access_key_id {
            let calls = self
                .calls_by_access_key
                .entry(access_key_id.to_string())
                .or_default();
            *calls.entry(operation.to_string()).or_default() += 1;
        }
    }

    /// Scripts job `id` and, when `events` is given, tracks it for the event
    /// publisher.
    pub fn script(&mut self, id: &str, scripted: ScriptedJob, events: Option<EventJob>) {
        self.scripted_jobs.insert(id.to_string(), scripted);
        if let Some(events) = events {
            self.event_jobs.insert(id.to_string(), events);
        }
    }

    /// Returns the entry for `token` when its job was created less than
    /// `window` ago.
    pub fn recent_token(&self, token: &str, window: Duration) -> Option<&TokenEntry> {
        self.tokens
            .get(token)
            .filter(|entry| entry.created.elapsed() < window)
    }
}

/// [`State`] behind a lock, plus the lock that serializes CreateJob calls
/// with a client request token.
#[derive(Debug, Default)]
pub struct Shared {
    state: Mutex<State>,
    /// Held from the token lookup until the token is stored, so two
    /// concurrent requests with one token create one job.
    pub create_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Locks the state. Callers must not hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
