//! Control API under `/__proxy/`: call counts, created jobs, timelines,
//! faults, published events and reset. The crate documentation lists the
//! routes.

use hyper::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::events::OutboxView;
use crate::faults::{FaultConfig, FaultRule};
use crate::jobs::{SettingsJson, now_ms};
use crate::proxy::{App, BufferedRequest, CONTROL_PREFIX};
use crate::reply::{self, Body, control_error};
use crate::state::State;
use crate::timeline::{TimelineConfig, TimelineRule};

/// Handles a request under [`CONTROL_PREFIX`].
pub fn handle(app: &App, request: &BufferedRequest) -> Response<Body> {
    let route = request.parts.uri.path()[CONTROL_PREFIX.len()..].trim_end_matches('/');
    let method = &request.parts.method;
    let mut state = app.shared.lock();

    let response = match (route, method.as_str()) {
        ("calls", "GET") => calls_view(&state, request),
        ("calls", "DELETE") => {
            state.calls.clear();
            state.calls_by_access_key.clear();
            reply::json(StatusCode::OK, &json!({}))
        }
        ("jobs", "GET") => jobs_view(&state, request),
        ("events", "GET") => events_view(&state),
        ("timelines", "GET") => reply::json(StatusCode::OK, &state.timelines),
        ("timelines", "PUT") => put_timelines(&mut state, request),
        ("timelines/rules", "POST") => add_timeline_rule(&mut state, request),
        ("faults", "GET") => faults_view(&state),
        ("faults", "PUT") => put_faults(&mut state, request),
        ("faults/rules", "POST") => add_fault_rule(&mut state, request),
        ("faults", "DELETE") => {
            state.faults = Default::default();
            faults_view(&state)
        }
        ("reset", "POST") => {
            *state = State::default();
            reply::json(StatusCode::OK, &json!({}))
        }
        (
            "calls" | "jobs" | "events" | "timelines" | "timelines/rules" | "faults"
            | "faults/rules" | "reset",
            _,
        ) => {
            let message = format!("method {method} is not allowed on {CONTROL_PREFIX}{route}");
            control_error(StatusCode::METHOD_NOT_ALLOWED, message)
        }
        _ => {
            let message = format!(
                "unknown control route {method} {CONTROL_PREFIX}{route}. \
                 Routes are calls, jobs, events, timelines, faults and reset."
            );
            control_error(StatusCode::NOT_FOUND, message)
        }
    };
    if method != Method::GET {
        tracing::info!(%method, route, status = %response.status(), "Control request");
    }
    response
}

/// Returns the value of query parameter `key` of a control request.
fn query_param(request: &BufferedRequest, key: &str) -> Option<String> {
    let query = request.parts.uri.query().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

/// Lists the call counts, of all requests or, with `?accessKeyId=KEY`, of the requests
/// signed with that key.
fn calls_view(state: &State, request: &BufferedRequest) -> Response<Body> {
    let access_key_id = query_param(request, "accessKeyId");
    match access_key_id {
        Some(key) => {
            let empty = Default::default();
            let calls = state.calls_by_access_key.get(&key).unwrap_or(&empty);
            reply::json(StatusCode::OK, calls)
        }
        None => reply::json(StatusCode::OK, &state.calls),
    }
}

fn put_timelines(state: &mut State, request: &BufferedRequest) -> Response<Body> {
    let config = serde_json::from_slice::<TimelineConfig>(&request.body);
    let checked = config
        .map_err(|error| error.to_string())
        .and_then(|config| {
            config.validate()?;
            Ok(config)
        });
    match checked {
        Ok(config) => {
            state.timelines = config;
            reply::json(StatusCode::OK, &state.timelines)
        }
        Err(message) => control_error(
            StatusCode::BAD_REQUEST,
            format!("invalid timelines: {message}"),
        ),
    }
}

/// One entry of `GET /__proxy/jobs`, borrowed from the state.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobEntry<'a> {
    id: &'a str,
    client_request_token: Option<&'a str>,
    user_metadata: &'a Value,
    /// Absent with `?summary=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<&'a SettingsJson>,
    created_at: &'a str,
    created_ms: u64,
    /// Scripted status now, absent for unscripted jobs.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    /// When the job reached or will reach its terminal status; absent while
    /// unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_ms: Option<u64>,
}

/// Lists created jobs, oldest first, each with its scripted status at now and
/// its finishing time. `?summary=true` leaves out the settings.
fn jobs_view(state: &State, request: &BufferedRequest) -> Response<Body> {
    let summary = query_param(request, "summary").as_deref() == Some("true");
    let now = now_ms();
    let entries: Vec<JobEntry<'_>> = state
        .created_jobs
        .iter()
        .map(|job| {
            let scripted = state.scripted_jobs.get(&job.id);
            JobEntry {
                id: &job.id,
                client_request_token: job.client_request_token.as_deref(),
                user_metadata: &job.user_metadata,
                settings: (!summary).then_some(&job.settings),
                created_at: &job.created_at,
                created_ms: job.created_ms,
                status: scripted.map(|scripted| scripted.state_at(now).status.as_str()),
                finished_ms: scripted.and_then(|scripted| scripted.finished_ms()),
            }
        })
        .collect();
    reply::json(StatusCode::OK, &entries)
}

/// Shows how many job state change events were published and are pending.
fn events_view(state: &State) -> Response<Body> {
    let outbox = &state.outbox;
    let view = OutboxView {
        published: outbox.published,
        pending: outbox.pending.len(),
        failed_calls: outbox.failed_calls,
        last_error: outbox.last_error.as_deref(),
        publishing_jobs: state.event_jobs.len(),
    };
    reply::json(StatusCode::OK, &view)
}

/// Appends one rule, so that tests running side by side can each script their own jobs
/// without replacing each other's rules.
fn add_timeline_rule(state: &mut State, request: &BufferedRequest) -> Response<Body> {
    let rule = serde_json::from_slice::<TimelineRule>(&request.body);
    let checked = rule.map_err(|error| error.to_string()).and_then(|rule| {
        rule.timeline.validate()?;
        Ok(rule)
    });
    match checked {
        Ok(rule) => {
            state.timelines.rules.push(rule);
            reply::json(StatusCode::OK, &state.timelines)
        }
        Err(message) => control_error(
            StatusCode::BAD_REQUEST,
            format!("invalid timeline rule: {message}"),
        ),
    }
}

fn put_faults(state: &mut State, request: &BufferedRequest) -> Response<Body> {
    let config = serde_json::from_slice::<FaultConfig>(&request.body);
    let replaced = config
        .map_err(|error| error.to_string())
        .and_then(|config| state.faults.replace(config));
    match replaced {
        Ok(()) => faults_view(state),
        Err(message) => control_error(
            StatusCode::BAD_REQUEST,
            format!("invalid faults: {message}"),
        ),
    }
}

/// Appends one fault rule, so tests running side by side keep each other's rules.
fn add_fault_rule(state: &mut State, request: &BufferedRequest) -> Response<Body> {
    let rule = serde_json::from_slice::<FaultRule>(&request.body);
    let added = rule
        .map_err(|error| error.to_string())
        .and_then(|rule| state.faults.add(rule));
    match added {
        Ok(()) => faults_view(state),
        Err(message) => control_error(
            StatusCode::BAD_REQUEST,
            format!("invalid fault rule: {message}"),
        ),
    }
}

fn faults_view(state: &State) -> Response<Body> {
    reply::json(StatusCode::OK, &json!({ "rules": state.faults.rules() }))
}
