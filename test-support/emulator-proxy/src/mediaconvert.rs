//! MediaConvert job operations: scripted timelines on CreateJob, GetJob,
//! ListJobs and CancelJob, the client request token window, and endpoints
//! that point back at the proxy.

use std::cmp::Ordering;
use std::time::Instant;

use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::classify::Protocol;
use crate::events::EventJob;
use crate::jobs::{self, ScriptedJob, SettingsJson, apply_state, now_ms};
use crate::list_query::ListQuery;
use crate::local;
use crate::proxy::{App, BufferedRequest, bad_gateway, forward};
use crate::reply::{self, Body};
use crate::state::{CreatedJob, State, TokenEntry};
use crate::upstream;

/// Upper bound on upstream pages read for one ListJobs, so a nextToken that
/// never ends cannot loop forever.
const MAX_UPSTREAM_PAGES: usize = 500;

/// Handles CreateJob: returns the first response for a client request token
/// seen within the window, otherwise creates the job upstream, records it and
/// assigns its timeline.
pub async fn create_job(app: &App, request: &BufferedRequest) -> Response<Body> {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let token = body.get("clientRequestToken").and_then(Value::as_str);
    let _create_guard = match token {
        Some(_) => Some(app.shared.create_lock.lock().await),
        None => None,
    };

    if let Some(response) = token.and_then(|token| replay_recent(app, token)) {
        return response;
    }

    let response = match app.send_unchanged(request).await {
        Ok(response) => response,
        Err(error) => return bad_gateway(app, request, &error),
    };
    let Some(mut created) = response.success_json() else {
        return response.into_response();
    };
    let Some(job) = created.get_mut("job").and_then(Value::as_object_mut) else {
        return response.into_response();
    };
    let Some(job_id) = job.get("id").and_then(Value::as_str).map(str::to_string) else {
        return response.into_response();
    };

    let mut state = app.shared.lock();
    let new_job = NewJob {
        id: &job_id,
        token,
        user_metadata: body.get("userMetadata").and_then(Value::as_object),
        settings: SettingsJson::new(body.get("settings").unwrap_or(&Value::Null)),
    };
    let scripted = record_job(&mut state, job, new_job, app.publish_all_events);
    let response = response.with_json(&created);
    if let Some(token) = token {
        let entry = TokenEntry {
            job_id: job_id.clone(),
            created: Instant::now(),
            response: Some(response.clone()),
        };
        state.tokens.insert(token.to_string(), entry);
    }
    tracing::info!(%job_id, scripted, "Job created");
    response.into_response()
}

/// A CreateJob request's members that the proxy records.
pub struct NewJob<'a> {
    pub id: &'a str,
    pub token: Option<&'a str>,
    pub user_metadata: Option<&'a Map<String, Value>>,
    pub settings: SettingsJson,
}

impl NewJob<'_> {
    /// Builds the `GET /__proxy/jobs` record of the job, created at `created_ms`.
    pub fn record(&self, created_ms: u64) -> CreatedJob {
        let user_metadata = self.user_metadata.cloned().unwrap_or_default();
        CreatedJob {
            id: self.id.to_string(),
            client_request_token: self.token.map(str::to_string),
            user_metadata: Value::Object(user_metadata),
            settings: self.settings.clone(),
            created_at: rfc3339(created_ms),
            created_ms,
        }
    }
}

/// Records a job fakecloud created and, when a timeline matches its user
/// metadata, scripts it and rewrites `job` to its first state. A scripted job
/// publishes events when its timeline sets `publishEvents` or when
/// `publish_all_events` is true. Returns whether the job is scripted.
fn record_job(
    state: &mut State,
    job: &mut Map<String, Value>,
    new_job: NewJob<'_>,
    publish_all_events: bool,
) -> bool {
    state.created_jobs.push(new_job.record(now_ms()));
    let created_ms = jobs::created_ms(job).unwrap_or_else(now_ms);
    let empty = Map::new();
    let user_metadata = new_job.user_metadata.unwrap_or(&empty);
    let Some(timeline) = state.timelines.select(user_metadata).cloned() else {
        return false;
    };

    let events = (timeline.publish_events || publish_all_events).then(|| {
        let arn = job.get("arn").and_then(Value::as_str).unwrap_or_default();
        let queue = job.get("queue").and_then(Value::as_str).unwrap_or_default();
        // Job ARNs read arn:aws:mediaconvert:REGION:ACCOUNT:jobs/ID.
        let arn_parts: Vec<&str> = arn.split(':').collect();
        let region = arn_parts.get(3).copied().unwrap_or(local::DEFAULT_REGION);
        let account = arn_parts.get(4).copied().unwrap_or(local::ACCOUNT_ID);
        EventJob::new(
            arn.to_string(),
            queue.to_string(),
            account.to_string(),
            region.to_string(),
            user_metadata.clone(),
            new_job.settings.clone(),
        )
    });
    let scripted = ScriptedJob {
        timeline,
        created_ms,
        canceled_ms: None,
    };
    apply_state(job, &scripted.state_at(now_ms()), created_ms);
    state.script(new_job.id, scripted, events);
    true
}

fn rfc3339(unix_ms: u64) -> String {
    let millis = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_millisecond(millis) {
        Ok(timestamp) => timestamp.to_string(),
        Err(_) => String::new(),
    }
}

/// Returns the first response for `token` when its job was created within
/// the token window.
pub fn replay_recent(app: &App, token: &str) -> Option<Response<Body>> {
    let state = app.shared.lock();
    let entry = state.recent_token(token, app.token_window)?;
    tracing::info!(job_id = %entry.job_id, token, "Returned first job for repeated token");
    Some(replay(&state, entry))
}

/// Returns the stored first response for a token, showing a scripted job's
/// current state.
fn replay(state: &State, entry: &TokenEntry) -> Response<Body> {
    let Some(stored) = entry.response.clone() else {
        return local::created_response(state, &entry.job_id);
    };
    let Some(scripted) = state.scripted_jobs.get(&entry.job_id) else {
        return stored.into_response();
    };
    let Some(mut body) = stored.success_json() else {
        return stored.into_response();
    };
    if let Some(job) = body.get_mut("job").and_then(Value::as_object_mut) {
        apply_state(job, &scripted.state_at(now_ms()), scripted.created_ms);
    }
    stored.with_json(&body).into_response()
}

/// Handles GetJob: forwards, then shows a scripted job's current state.
pub async fn get_job(app: &App, request: &BufferedRequest) -> Response<Body> {
    let response = match app.send_unchanged(request).await {
        Ok(response) => response,
        Err(error) => return bad_gateway(app, request, &error),
    };
    let Some(mut body) = response.success_json() else {
        return response.into_response();
    };
    let Some(job) = body.get_mut("job").and_then(Value::as_object_mut) else {
        return response.into_response();
    };
    if !rewrite_if_scripted(&app.shared.lock(), job) {
        return response.into_response();
    }
    response.with_json(&body).into_response()
}

/// Rewrites `job` when it is scripted and returns whether it was.
fn rewrite_if_scripted(state: &State, job: &mut Map<String, Value>) -> bool {
    let id = job.get("id").and_then(Value::as_str).unwrap_or_default();
    let Some(scripted) = state.scripted_jobs.get(id) else {
        return false;
    };
    apply_state(job, &scripted.state_at(now_ms()), scripted.created_ms);
    true
}

/// Handles CancelJob: scripted jobs are canceled by the proxy, and other
/// jobs are forwarded.
pub async fn cancel_job(app: &App, request: &BufferedRequest) -> Response<Body> {
    let path = request.parts.uri.path();
    let job_id = path.rsplit('/').next().unwrap_or_default();
    let canceled = cancel_scripted(&mut app.shared.lock(), job_id);
    match canceled {
        Some(response) => response,
        None => forward(app, request).await,
    }
}

/// Cancels a scripted job at now when it is not terminal, or returns 409
/// ConflictException when it is. Returns `None` when the job is not scripted.
pub fn cancel_scripted(state: &mut State, job_id: &str) -> Option<Response<Body>> {
    let scripted = state.scripted_jobs.get_mut(job_id)?;
    let now = now_ms();
    let status = scripted.state_at(now).status;
    if status.is_terminal() {
        let message = format!(
            "The job '{job_id}' is in a terminal state ({}) and cannot be canceled.",
            status.as_str()
        );
        let conflict = StatusCode::CONFLICT;
        let response =
            reply::aws_error(Protocol::RestJson, conflict, "ConflictException", &message);
        return Some(response);
    }

    scripted.canceled_ms = Some(now);
    tracing::info!(%job_id, "Job canceled");
    Some(reply::json(StatusCode::ACCEPTED, &json!({})))
}

/// Handles DescribeEndpoints: forwards, then replaces each endpoint URL with
/// the proxy's, because fakecloud advertises its own address.
pub async fn describe_endpoints(app: &App, request: &BufferedRequest) -> Response<Body> {
    let response = match app.send_unchanged(request).await {
        Ok(response) => response,
        Err(error) => return bad_gateway(app, request, &error),
    };
    let Some(mut body) = response.success_json() else {
        return response.into_response();
    };
    let url = proxy_url(app, request);
    if let Some(endpoints) = body.get_mut("endpoints").and_then(Value::as_array_mut) {
        for endpoint in endpoints.iter_mut().filter_map(Value::as_object_mut) {
            endpoint.insert("url".to_string(), json!(url));
        }
    }
    response.with_json(&body).into_response()
}

/// Returns the proxy's URL as the client addressed it, from the Host header.
pub fn proxy_url(app: &App, request: &BufferedRequest) -> String {
    let host = request.parts.headers.get("host");
    match host.and_then(|host| host.to_str().ok()) {
        Some(host) => format!("http://{host}"),
        None => format!("http://{}", app.listen),
    }
}

/// Handles ListJobs and SearchJobs: reads every upstream page, shows scripted
/// states, then applies the status filter, order and paging itself. So the
/// filter matches scripted statuses and the order defaults to newest first.
pub async fn list_jobs(app: &App, request: &BufferedRequest) -> Response<Body> {
    let parsed = ListQuery::parse(request.parts.uri.query());
    let (query, offset) = match parsed.and_then(|query| Ok((query.offset()?, query))) {
        Ok((offset, query)) => (query, offset),
        Err(message) => return local::bad_request(&message),
    };

    let (mut jobs, last_response) = match read_all_pages(app, request, &query).await {
        Ok(Pages::Complete(jobs, last)) => (jobs, last),
        Ok(Pages::Failed(response)) => return response,
        Err(error) => return bad_gateway(app, request, &error),
    };

    {
        let state = app.shared.lock();
        for job in jobs.iter_mut().filter_map(Value::as_object_mut) {
            rewrite_if_scripted(&state, job);
        }
    }
    if let Some(status) = &query.status {
        jobs.retain(|job| job.get("status").and_then(Value::as_str) == Some(status.as_str()));
    }
    jobs.sort_by(compare_created);
    if query.descending {
        jobs.reverse();
    }

    let end = (offset + query.max_results).min(jobs.len());
    let page: Vec<Value> = jobs.get(offset..end).unwrap_or_default().to_vec();
    let mut body = json!({ "jobs": page });
    if end < jobs.len() {
        body["nextToken"] = json!(end.to_string());
    }
    last_response.with_json(&body).into_response()
}

/// Upstream pages of a list operation.
enum Pages {
    /// All jobs of every page, plus the last page's response for its headers.
    Complete(Vec<Value>, upstream::BufferedResponse),
    /// Response to return because a page failed or the page limit was reached.
    Failed(Response<Body>),
}

async fn read_all_pages(
    app: &App,
    request: &BufferedRequest,
    query: &ListQuery,
) -> Result<Pages, upstream::Error> {
    let path = request.parts.uri.path();
    let mut jobs = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_UPSTREAM_PAGES {
        let path_and_query = query.upstream_path(path, token.as_deref());
        let response = app
            .upstream
            .send(&request.parts, &path_and_query, Bytes::new())
            .await?;
        let Some(page) = response.success_json() else {
            return Ok(Pages::Failed(response.into_response()));
        };
        if let Some(page_jobs) = page.get("jobs").and_then(Value::as_array) {
            jobs.extend(page_jobs.iter().cloned());
        }
        token = page
            .get("nextToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        if token.is_none() {
            return Ok(Pages::Complete(jobs, response));
        }
    }

    tracing::error!(
        pages = MAX_UPSTREAM_PAGES,
        "Upstream job list exceeded the page limit"
    );
    let message = format!("upstream returned more than {MAX_UPSTREAM_PAGES} pages of jobs");
    let status = StatusCode::INTERNAL_SERVER_ERROR;
    let error_type = "InternalServerErrorException";
    let response = reply::aws_error(Protocol::RestJson, status, error_type, &message);
    Ok(Pages::Failed(response))
}

/// Orders jobs by `createdAt`, then by id, oldest first.
fn compare_created(a: &Value, b: &Value) -> Ordering {
    let created = |job: &Value| job.get("createdAt").and_then(Value::as_f64).unwrap_or(0.0);
    let id = |job: &Value| {
        job.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    created(a)
        .total_cmp(&created(b))
        .then_with(|| id(a).cmp(&id(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_order_by_creation_then_id() {
        let mut jobs = [
            json!({"id": "b", "createdAt": 2.0}),
            json!({"id": "c", "createdAt": 1.0}),
            json!({"id": "a", "createdAt": 2.0}),
        ];
        jobs.sort_by(compare_created);
        let ids: Vec<&str> = jobs.iter().map(|job| job["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
    }

    #[test]
    fn rfc3339_formats_milliseconds() {
        assert_eq!(rfc3339(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }
}
