//! State shared by all connections: call counts, created jobs, timelines,
//! client request tokens and fault rules.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::classify::Operation;
use crate::faults::FaultSet;
use crate::jobs::ScriptedJob;
use crate::timeline::TimelineConfig;
use crate::upstream::BufferedResponse;

/// A job that fakecloud created on a CreateJob sent through the proxy, as
/// `GET /__proxy/jobs` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedJob {
    pub id: String,
    pub client_request_token: Option<String>,
    pub user_metadata: Value,
    /// The `settings` member of the CreateJob request, as the client sent it.
    pub settings: Value,
    /// Creation time in RFC 3339.
    pub created_at: String,
    /// Scripted status at the time of the listing; absent for unscripted jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The first CreateJob response for a client request token.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub job_id: String,
    pub created: Instant,
    pub response: BufferedResponse,
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
