//! Control API of the emulator proxy that serves the benchmark's jobs from memory
//! (`--local-jobs`): timelines, call counts and the jobs it created.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

/// User metadata key in which the operator sends the resource's namespace.
pub const NAMESPACE_KEY: &str = "mediaconvert.operators.dev/namespace";
/// User metadata key in which the operator sends the resource's UID.
pub const UID_KEY: &str = "mediaconvert.operators.dev/uid";
/// User metadata key of the resource's spec that picks its timeline among the slots.
pub const FINISH_SLOT_KEY: &str = "bench-finish-slot";

pub struct Proxy {
    url: String,
    http: reqwest::Client,
}

/// One entry of `GET /__proxy/jobs?summary=true`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyJob {
    #[serde(default)]
    pub user_metadata: BTreeMap<String, String>,
    /// Epoch milliseconds at which the proxy recorded the CreateJob.
    pub created_ms: i64,
    /// Epoch milliseconds at which the scripted job reached or will reach its terminal
    /// status.
    pub finished_ms: Option<i64>,
}

impl Proxy {
    pub fn new(url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("failed to build an HTTP client");
        Self { url, http }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send(&self, request: reqwest::RequestBuilder, action: &str) -> reqwest::Response {
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("failed to {action} at {}: {error}", self.url));
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            panic!("failed to {action}: the proxy returned {status}: {body}");
        }
        response
    }

    /// Clears the proxy's jobs, call counts, timelines and tokens, so that the next run
    /// starts from an empty job store.
    pub async fn reset(&self) {
        let request = self.http.post(format!("{}/__proxy/reset", self.url));
        self.send(request, "reset the proxy").await;
    }

    /// Gives every job of `namespace` whose user metadata has `FINISH_SLOT_KEY` set to
    /// `slot` the scripted `timeline`.
    pub async fn script_slot(&self, namespace: &str, slot: usize, timeline: Value) {
        let rule = json!({
            "userMetadata": {NAMESPACE_KEY: namespace, FINISH_SLOT_KEY: slot.to_string()},
            "timeline": timeline,
        });
        let request = self
            .http
            .post(format!("{}/__proxy/timelines/rules", self.url))
            .json(&rule);
        self.send(request, "add a timeline rule").await;
    }

    /// Returns the requests signed with `access_key_id`, by `service:Operation`.
    pub async fn calls(&self, access_key_id: &str) -> BTreeMap<String, u64> {
        let request = self
            .http
            .get(format!("{}/__proxy/calls", self.url))
            .query(&[("accessKeyId", access_key_id)]);
        self.send(request, "read the call counts")
            .await
            .json()
            .await
            .expect("the proxy's call counts are not a map of numbers")
    }

    /// Returns the jobs created for resources of `namespace`, without their settings.
    pub async fn jobs_in(&self, namespace: &str) -> Vec<ProxyJob> {
        let request = self
            .http
            .get(format!("{}/__proxy/jobs", self.url))
            .query(&[("summary", "true")]);
        let jobs: Vec<ProxyJob> = self
            .send(request, "list the proxy's jobs")
            .await
            .json()
            .await
            .expect("the proxy's job list does not have the expected fields");
        jobs.into_iter()
            .filter(|job| {
                job.user_metadata.get(NAMESPACE_KEY).map(String::as_str) == Some(namespace)
            })
            .collect()
    }
}

/// Timeline of every benchmark job: queued for `queued`, then progressing with a rising
/// percentage for `progress`, then complete one second later. With `status_update` the
/// job publishes its state changes to EventBridge, and a STATUS_UPDATE at most that often.
pub fn timeline(queued: Duration, progress: Duration, status_update: Option<Duration>) -> Value {
    let start = queued.as_millis() as u64;
    let uploaded = start + progress.as_millis() as u64;
    let mut timeline = json!({"steps": [
        {"atMs": 0, "status": "SUBMITTED"},
        {"atMs": start, "status": "PROGRESSING", "percent": 0, "currentPhase": "TRANSCODING"},
        {"atMs": uploaded, "status": "PROGRESSING", "percent": 100, "currentPhase": "UPLOADING"},
        {"atMs": uploaded + 1000, "status": "COMPLETE"},
    ]});
    if let Some(every) = status_update {
        timeline["publishEvents"] = json!(true);
        timeline["statusUpdateEveryMs"] = json!(every.as_millis() as u64);
    }
    timeline
}
