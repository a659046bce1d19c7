//! Local job store: with `--local-jobs` the proxy handles MediaConvert's
//! CreateJob, GetJob, ListJobs, SearchJobs, CancelJob and DescribeEndpoints
//! itself from memory and never forwards them, because fakecloud slows down
//! at thousands of jobs.
//!
//! Every local job has a timeline. A job whose user metadata matches no
//! timeline rule and no default gets one that completes at creation.

use std::ops::Bound;

use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::classify::{Protocol, signing_region};
use crate::events::EventJob;
use crate::jobs::{ScriptedJob, SettingsJson, apply_state, now_ms};
use crate::list_query::ListQuery;
use crate::mediaconvert::{self, NewJob};
use crate::proxy::{App, BufferedRequest};
use crate::reply::{self, Body};
use crate::state::{State, TokenEntry};
use crate::timeline::{JobStatus, Step, Timeline};

/// Account of every local job: the default `--account-id` of fakecloud 0.51,
/// so ARNs match the ones fakecloud builds.
pub const ACCOUNT_ID: &str = "123456789012";

/// Region of a job whose CreateJob request carries no SigV4 credential scope.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Optional CreateJob members that the job echoes as sent, the same ones
/// fakecloud 0.51 echoes.
const ECHOED_MEMBERS: &[&str] = &[
    "accelerationSettings",
    "billingTagsSource",
    "clientRequestToken",
    "hopDestinations",
    "jobTemplate",
    "simulateReservedQueue",
    "statusUpdateInterval",
];

/// A job of the local store. Its state comes from its [`ScriptedJob`].
#[derive(Debug, Clone)]
pub struct LocalJob {
    /// Creation time in Unix milliseconds.
    pub created_ms: u64,
    pub region: String,
    /// Queue ARN.
    pub queue: String,
    pub role: String,
    pub priority: i64,
    pub settings: SettingsJson,
    pub user_metadata: Map<String, Value>,
    /// Members of [`ECHOED_MEMBERS`] that the request carried.
    pub echoed: Map<String, Value>,
}

impl LocalJob {
    /// Builds the MediaConvert `Job` object of job `id` as it is at `now_ms`.
    fn to_json(&self, id: &str, scripted: &ScriptedJob, now_ms: u64) -> Value {
        let mut job = self.echoed.clone();
        job.insert("id".to_string(), json!(id));
        job.insert("arn".to_string(), json!(job_arn(&self.region, id)));
        job.insert("role".to_string(), json!(self.role));
        job.insert("settings".to_string(), self.settings.to_value());
        job.insert("queue".to_string(), json!(self.queue));
        job.insert("priority".to_string(), json!(self.priority));
        job.insert("retryCount".to_string(), json!(0));
        job.insert("accelerationStatus".to_string(), json!("NOT_APPLICABLE"));
        let created_at = self.created_ms as f64 / 1000.0;
        job.insert("createdAt".to_string(), json!(created_at));
        let user_metadata = Value::Object(self.user_metadata.clone());
        job.insert("userMetadata".to_string(), user_metadata);
        apply_state(&mut job, &scripted.state_at(now_ms), self.created_ms);
        Value::Object(job)
    }
}

fn job_arn(region: &str, id: &str) -> String {
    format!("arn:aws:mediaconvert:{region}:{ACCOUNT_ID}:jobs/{id}")
}

/// Returns `queue` as an ARN: an ARN stays as it is, a name becomes the ARN
/// of that queue, and no queue becomes the `Default` queue.
fn queue_arn(region: &str, queue: Option<&str>) -> String {
    match queue {
        Some(arn) if arn.starts_with("arn:") => arn.to_string(),
        Some(name) => format!("arn:aws:mediaconvert:{region}:{ACCOUNT_ID}:queues/{name}"),
        None => queue_arn(region, Some("Default")),
    }
}

/// Reports whether a job in queue `job_queue` (an ARN) matches the `queue`
/// filter of a list, which may be a queue name or ARN.
fn queue_matches(job_queue: &str, queue: &str) -> bool {
    job_queue == queue || job_queue.rsplit('/').next() == Some(queue)
}

/// Builds a 400 BadRequestException.
pub fn bad_request(message: &str) -> Response<Body> {
    let status = StatusCode::BAD_REQUEST;
    reply::aws_error(Protocol::RestJson, status, "BadRequestException", message)
}

fn not_found(id: &str) -> Response<Body> {
    let message = format!("The job '{id}' was not found.");
    let status = StatusCode::NOT_FOUND;
    reply::aws_error(Protocol::RestJson, status, "NotFoundException", &message)
}

/// Returns the job id at the end of a `/2017-08-29/jobs/{id}` path.
fn path_job_id(request: &BufferedRequest) -> &str {
    let path = request.parts.uri.path();
    path.rsplit('/').next().unwrap_or_default()
}

fn render(state: &State, id: &str, now_ms: u64) -> Option<Value> {
    let job = state.local_jobs.get(id)?;
    let scripted = state.scripted_jobs.get(id)?;
    Some(job.to_json(id, scripted, now_ms))
}

/// Builds the 201 CreateJob response for local job `id` as it is now.
pub fn created_response(state: &State, id: &str) -> Response<Body> {
    match render(state, id, now_ms()) {
        Some(job) => reply::json(StatusCode::CREATED, &json!({ "job": job })),
        None => not_found(id),
    }
}

/// Checks the members MediaConvert requires of a CreateJob request and
/// returns the message of a BadRequestException naming the first invalid one.
fn validate_create(body: &Map<String, Value>) -> Result<(), String> {
    for field in ["role", "settings"] {
        match body.get(field) {
            None | Some(Value::Null) => {
                return Err(format!(
                    "The request failed because it is missing the required parameter '{field}'."
                ));
            }
            Some(Value::String(text)) if text.is_empty() => {
                return Err(format!("'{field}' must not be empty."));
            }
            Some(_) => {}
        }
    }
    if !body["role"].is_string() {
        return Err("'role' must be a string.".to_string());
    }
    if !body["settings"].is_object() {
        return Err("'settings' must be an object.".to_string());
    }
    if let Some(queue) = body.get("queue").filter(|queue| !queue.is_null())
        && queue.as_str().is_none_or(str::is_empty)
    {
        return Err("'queue' must be a queue name or ARN.".to_string());
    }
    let priority = body.get("priority").filter(|priority| !priority.is_null());
    if let Some(priority) = priority
        && priority
            .as_i64()
            .is_none_or(|value| !(-50..=50).contains(&value))
    {
        return Err(format!(
            "'priority' must be an integer from -50 to 50, got {priority}."
        ));
    }
    Ok(())
}

/// Returns a job id of AWS's form `{epoch millis}-{6 base-36 chars}` that no
/// local job has.
fn unique_job_id(state: &State, now_ms: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    loop {
        let suffix: String = (0..6)
            .map(|_| char::from(DIGITS[rand::random_range(0..DIGITS.len())]))
            .collect();
        let id = format!("{now_ms}-{suffix}");
        if !state.local_jobs.contains_key(&id) {
            return id;
        }
    }
}

/// Returns the timeline of a job that matches no rule: COMPLETE at creation,
/// as fakecloud settles an unscripted job.
fn complete_at_once() -> Timeline {
    let step = Step {
        at_ms: 0,
        status: JobStatus::Complete,
        percent: None,
        current_phase: None,
        error_code: None,
        error_message: None,
    };
    Timeline {
        steps: vec![step],
        publish_events: false,
        status_update_every_ms: None,
    }
}

/// Handles CreateJob: validates the request, returns the first job for a
/// client request token seen within the window, and otherwise stores a new
/// job with its timeline.
pub async fn create_job(app: &App, request: &BufferedRequest) -> Response<Body> {
    let body = match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return bad_request("The request body must be a JSON object."),
        Err(error) => return bad_request(&format!("The request body is malformed: {error}")),
    };
    if let Err(message) = validate_create(&body) {
        return bad_request(&message);
    }
    let token = body.get("clientRequestToken").and_then(Value::as_str);
    let _create_guard = match token {
        Some(_) => Some(app.shared.create_lock.lock().await),
        None => None,
    };
    if let Some(response) = token.and_then(|token| mediaconvert::replay_recent(app, token)) {
        return response;
    }

    let region = signing_region(&request.view()).unwrap_or_else(|| DEFAULT_REGION.to_string());
    let mut state = app.shared.lock();
    let id = store_job(&mut state, &body, region, app.publish_all_events);
    if let Some(token) = token {
        let entry = TokenEntry {
            job_id: id.clone(),
            created: std::time::Instant::now(),
            response: None,
        };
        state.tokens.insert(token.to_string(), entry);
    }
    tracing::info!(job_id = %id, "Job created in the local store");
    created_response(&state, &id)
}

/// Stores a new job from a validated CreateJob body and returns its id.
fn store_job(
    state: &mut State,
    body: &Map<String, Value>,
    region: String,
    publish_all_events: bool,
) -> String {
    let now = now_ms();
    let id = unique_job_id(state, now);
    let user_metadata = body.get("userMetadata").and_then(Value::as_object);
    let new_job = NewJob {
        id: &id,
        token: body.get("clientRequestToken").and_then(Value::as_str),
        user_metadata,
        settings: SettingsJson::new(&body["settings"]),
    };
    state.created_jobs.push(new_job.record(now));

    let echoed = ECHOED_MEMBERS
        .iter()
        .filter_map(|&key| Some((key.to_string(), body.get(key)?.clone())))
        .collect();
    let job = LocalJob {
        created_ms: now,
        queue: queue_arn(&region, body.get("queue").and_then(Value::as_str)),
        region,
        role: body["role"].as_str().unwrap_or_default().to_string(),
        priority: body.get("priority").and_then(Value::as_i64).unwrap_or(0),
        settings: new_job.settings.clone(),
        user_metadata: user_metadata.cloned().unwrap_or_default(),
        echoed,
    };

    let selected = state.timelines.select(&job.user_metadata).cloned();
    let timeline = selected.unwrap_or_else(complete_at_once);
    let events = (timeline.publish_events || publish_all_events).then(|| {
        EventJob::new(
            job_arn(&job.region, &id),
            job.queue.clone(),
            ACCOUNT_ID.to_string(),
            job.region.clone(),
            job.user_metadata.clone(),
            job.settings.clone(),
        )
    });
    let scripted = ScriptedJob {
        timeline,
        created_ms: now,
        canceled_ms: None,
    };
    state.script(&id, scripted, events);
    state.local_jobs.insert(id.clone(), job);
    id
}

/// Handles GetJob: the job as it is now, or 404 NotFoundException.
pub fn get_job(app: &App, request: &BufferedRequest) -> Response<Body> {
    let id = path_job_id(request);
    let state = app.shared.lock();
    match render(&state, id, now_ms()) {
        Some(job) => reply::json(StatusCode::OK, &json!({ "job": job })),
        None => not_found(id),
    }
}

/// Handles CancelJob: cancels a job that is not terminal, returns 409
/// ConflictException for a terminal one and 404 NotFoundException for an
/// unknown id.
pub fn cancel_job(app: &App, request: &BufferedRequest) -> Response<Body> {
    let id = path_job_id(request);
    let mut state = app.shared.lock();
    if !state.local_jobs.contains_key(id) {
        return not_found(id);
    }
    mediaconvert::cancel_scripted(&mut state, id).unwrap_or_else(|| not_found(id))
}

/// Handles DescribeEndpoints with the proxy's own URL.
pub fn describe_endpoints(app: &App, request: &BufferedRequest) -> Response<Body> {
    let url = mediaconvert::proxy_url(app, request);
    reply::json(StatusCode::OK, &json!({ "endpoints": [{ "url": url }] }))
}

/// Reports whether `token` has the form of a job id, which local lists use as
/// `nextToken`: the last job of the previous page.
fn is_job_id(token: &str) -> bool {
    let Some((millis, suffix)) = token.split_once('-') else {
        return false;
    };
    let digits = !millis.is_empty() && millis.bytes().all(|byte| byte.is_ascii_digit());
    let base36 = |byte: u8| byte.is_ascii_digit() || byte.is_ascii_lowercase();
    digits && !suffix.is_empty() && suffix.bytes().all(base36)
}

/// Handles ListJobs and SearchJobs: filters by `queue`, `status` and, for
/// SearchJobs, `inputFile`, in `order` (newest first by default), one page of
/// `maxResults` after the job that `nextToken` names.
pub fn list_jobs(app: &App, request: &BufferedRequest) -> Response<Body> {
    let query = match ListQuery::parse(request.parts.uri.query()) {
        Ok(query) => query,
        Err(message) => return bad_request(&message),
    };
    let after = query.next_token.as_deref();
    if let Some(token) = after.filter(|token| !is_job_id(token)) {
        let message = format!("nextToken '{token}' is invalid; pass a token from a previous page.");
        return bad_request(&message);
    }
    let queue = query.upstream_param("queue");
    let input_file = query.upstream_param("inputFile");

    let state = app.shared.lock();
    let now = now_ms();
    let matches = |id: &str, job: &LocalJob| {
        let status = query.status.as_deref();
        queue.is_none_or(|queue| queue_matches(&job.queue, queue))
            && status.is_none_or(|status| current_status(&state, id, now) == Some(status))
            && input_file.is_none_or(|file| reads_input(&job.settings, file))
    };
    let (page, more) = page_ids(&state, &query, after, matches);

    let jobs: Vec<Value> = page
        .iter()
        .filter_map(|id| render(&state, id, now))
        .collect();
    let mut body = json!({ "jobs": jobs });
    if more && let Some(last) = page.last() {
        body["nextToken"] = json!(last);
    }
    reply::json(StatusCode::OK, &body)
}

/// Collects the ids of one page of matching jobs in the query's order, after
/// job `after` when given, and reports whether more matching jobs follow.
fn page_ids<'a>(
    state: &'a State,
    query: &ListQuery,
    after: Option<&str>,
    mut matches: impl FnMut(&str, &LocalJob) -> bool,
) -> (Vec<&'a str>, bool) {
    let range: (Bound<&str>, Bound<&str>) = match (after, query.descending) {
        (None, _) => (Bound::Unbounded, Bound::Unbounded),
        (Some(after), true) => (Bound::Unbounded, Bound::Excluded(after)),
        (Some(after), false) => (Bound::Excluded(after), Bound::Unbounded),
    };
    let jobs = state.local_jobs.range::<str, _>(range);
    let ordered: Box<dyn Iterator<Item = (&String, &LocalJob)>> = if query.descending {
        Box::new(jobs.rev())
    } else {
        Box::new(jobs)
    };

    let mut page = Vec::new();
    for (id, _) in ordered.filter(|(id, job)| matches(id, job)) {
        if page.len() == query.max_results {
            return (page, true);
        }
        page.push(id.as_str());
    }
    (page, false)
}

fn current_status(state: &State, id: &str, now_ms: u64) -> Option<&'static str> {
    let scripted = state.scripted_jobs.get(id)?;
    Some(scripted.state_at(now_ms).status.as_str())
}

/// Reports whether any input of the job reads `file`.
fn reads_input(settings: &SettingsJson, file: &str) -> bool {
    let settings = settings.to_value();
    let inputs = settings.get("inputs").and_then(Value::as_array);
    inputs
        .into_iter()
        .flatten()
        .any(|input| input.get("fileInput").and_then(Value::as_str) == Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn create_requires_role_and_settings() {
        let cases = [
            (json!({"settings": {}}), "parameter 'role'"),
            (json!({"role": "r"}), "parameter 'settings'"),
            (
                json!({"role": "", "settings": {}}),
                "'role' must not be empty",
            ),
            (
                json!({"role": "r", "settings": []}),
                "'settings' must be an object",
            ),
            (
                json!({"role": "r", "settings": {}, "priority": 51}),
                "'priority'",
            ),
            (json!({"role": "r", "settings": {}, "queue": ""}), "'queue'"),
        ];
        for (value, expected) in cases {
            let error = validate_create(&body(value.clone())).unwrap_err();
            assert!(error.contains(expected), "{value}: {error}");
        }
        let valid = json!({"role": "r", "settings": {}, "priority": -50, "queue": "Q"});
        assert_eq!(validate_create(&body(valid)), Ok(()));
    }

    #[test]
    fn queue_name_becomes_arn() {
        let default = "arn:aws:mediaconvert:eu-west-1:123456789012:queues/Default";
        assert_eq!(queue_arn("eu-west-1", None), default);
        let named = "arn:aws:mediaconvert:eu-west-1:123456789012:queues/Fast";
        assert_eq!(queue_arn("eu-west-1", Some("Fast")), named);
        let other = "arn:aws:mediaconvert:us-west-2:111122223333:queues/X";
        assert_eq!(queue_arn("eu-west-1", Some(other)), other);
        assert!(queue_matches(named, "Fast"));
        assert!(queue_matches(named, named));
        assert!(!queue_matches(named, "Default"));
    }

    #[test]
    fn job_ids_have_aws_form_and_sort_by_time() {
        let state = State::default();
        let id = unique_job_id(&state, 1_767_225_600_123);
        assert!(is_job_id(&id), "{id}");
        let (millis, suffix) = id.split_once('-').unwrap();
        assert_eq!(millis, "1767225600123");
        assert_eq!(suffix.len(), 6);
        let latest_of_earlier_millis = "1767225600123-zzzzzz";
        assert!(unique_job_id(&state, 1_767_225_600_124).as_str() > latest_of_earlier_millis);
        assert!(!is_job_id("12"));
        assert!(!is_job_id("abc-def"));
        assert!(!is_job_id("1767225600123-ABC"));
    }
}
