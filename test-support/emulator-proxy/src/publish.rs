//! Background task that sends the state changes of jobs that publish events
//! to the upstream EventBridge with `PutEvents`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;

use crate::events::{CallResult, PendingEntry};
use crate::jobs::now_ms;
use crate::proxy::App;
use crate::state::Shared;

/// Time between two checks for state changes.
pub const TICK: Duration = Duration::from_millis(200);

/// Maximum entries of one `PutEvents` call in the EventBridge API.
const MAX_ENTRIES_PER_CALL: usize = 10;

/// Access key ID of the proxy's own requests.
///
/// NOTE: the signature is not computed. fakecloud 0.51 skips SigV4
/// verification, even with `--verify-sigv4`, for every access key ID that
/// starts with `test` (`is_root_bypass` in fakecloud-core), and this one does.
const ACCESS_KEY_ID: &str = "test-emulator-proxy";

/// Collects state changes and sends them, once per [`TICK`], until the
/// runtime shuts down.
pub async fn run(app: Arc<App>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        collect_changes(&app.shared);
        send_pending(&app).await;
    }
}

/// Appends the new state changes of every publishing job to the outbox and
/// stops tracking the jobs that have taken their terminal event.
fn collect_changes(shared: &Shared) {
    let mut guard = shared.lock();
    let state = &mut *guard;
    if state.event_jobs.is_empty() {
        return;
    }
    let now = now_ms();
    let mut finished = Vec::new();
    for (id, events) in &mut state.event_jobs {
        let Some(job) = state.scripted_jobs.get(id) else {
            finished.push(id.clone());
            continue;
        };
        for change in events.take_changes(job, now) {
            tracing::debug!(job_id = %id, status = change.status, "Job event queued");
            let entry = PendingEntry {
                region: events.region.clone(),
                entry: events.entry(id, &change),
            };
            state.outbox.pending.push_back(entry);
        }
        if events.is_finished() {
            finished.push(id.clone());
        }
    }
    for id in finished {
        state.event_jobs.remove(&id);
    }
}

/// Sends the outbox in calls of up to [`MAX_ENTRIES_PER_CALL`] entries of
/// one region, oldest first. A failed call stops the round, and its failed
/// entries stay at the front of the outbox for the next tick.
async fn send_pending(app: &App) {
    loop {
        let batch = next_batch(&app.shared);
        if batch.is_empty() {
            return;
        }
        let result = put_events(app, &batch).await;

        let mut state = app.shared.lock();
        let outbox = &mut state.outbox;
        let previous_error = outbox.last_error.clone();
        let Some(error) = outbox.settle(batch.len(), result) else {
            continue;
        };
        // Log a failure once until the error changes, since it repeats every tick.
        if previous_error.as_ref() != Some(&error) {
            tracing::error!(%error, pending = outbox.pending.len(), upstream = %app.upstream.base(),
                "Failed to publish job events; retrying every tick");
        }
        return;
    }
}

/// Copies the oldest pending entries that share the region of the first one,
/// at most [`MAX_ENTRIES_PER_CALL`].
fn next_batch(shared: &Shared) -> Vec<PendingEntry> {
    let state = shared.lock();
    let pending = &state.outbox.pending;
    let Some(first) = pending.front() else {
        return Vec::new();
    };
    pending
        .iter()
        .take(MAX_ENTRIES_PER_CALL)
        .take_while(|entry| entry.region == first.region)
        .cloned()
        .collect()
}

/// Sends one `PutEvents` call. Returns the positions of the entries that
/// EventBridge rejected with their error, or an error for the whole call.
async fn put_events(app: &App, batch: &[PendingEntry]) -> CallResult {
    let entries: Vec<&Value> = batch.iter().map(|pending| &pending.entry).collect();
    let body = json!({ "Entries": entries }).to_string();
    let headers = put_events_headers(&batch[0].region)?;
    let response = app
        .upstream
        .post_root(headers, Bytes::from(body))
        .await
        .map_err(|error| error.to_string())?;
    if !response.status.is_success() {
        let text = String::from_utf8_lossy(&response.body);
        return Err(format!("PutEvents returned {}: {text}", response.status));
    }

    let parsed: Value = serde_json::from_slice(&response.body)
        .map_err(|error| format!("PutEvents returned invalid JSON: {error}"))?;
    let results = parsed["Entries"].as_array().map_or(&[][..], Vec::as_slice);
    let failed = results
        .iter()
        .enumerate()
        .filter_map(|(index, result)| {
            let code = result.get("ErrorCode")?.as_str()?;
            let message = result["ErrorMessage"].as_str().unwrap_or_default();
            Some((
                index,
                format!("PutEvents rejected an entry: {code}: {message}"),
            ))
        })
        .collect();
    Ok(failed)
}

/// Builds the awsJson headers of `PutEvents` with a SigV4-shaped
/// Authorization header for `region`.
fn put_events_headers(region: &str) -> Result<HeaderMap, String> {
    let now = jiff::Timestamp::now();
    let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{date}/{region}/events/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
        "0".repeat(64)
    );
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|error| format!("invalid header value {text:?}: {error}"))
    };
    let mut headers = HeaderMap::new();
    let content_type = HeaderValue::from_static("application/x-amz-json-1.1");
    headers.insert(CONTENT_TYPE, content_type);
    let target = HeaderValue::from_static("AWSEvents.PutEvents");
    headers.insert("x-amz-target", target);
    headers.insert("x-amz-date", value(&amz_date)?);
    headers.insert("authorization", value(&authorization)?);
    Ok(headers)
}
