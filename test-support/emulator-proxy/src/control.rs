//! Control API under `/__proxy/`: call counts, created jobs, timelines,
//! faults and reset. The crate documentation lists the routes.

use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::faults::{FaultConfig, FaultRule};
use crate::jobs::now_ms;
use crate::proxy::{App, BufferedRequest, CONTROL_PREFIX};
use crate::reply::{self, Body, control_error};
use crate::state::{CreatedJob, State};
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
        ("jobs", "GET") => reply::json(StatusCode::OK, &jobs_view(&state)),
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
            "calls" | "jobs" | "timelines" | "timelines/rules" | "faults" | "faults/rules"
            | "reset",
            _,
        ) => {
            let message = format!("method {method} is not allowed on {CONTROL_PREFIX}{route}");
            control_error(StatusCode::METHOD_NOT_ALLOWED, message)
        }
        _ => {
            let message = format!(
                "unknown control route {method} {CONTROL_PREFIX}{route}. \
                 Routes are calls, jobs, timelines, faults and reset."
            );
            control_error(StatusCode::NOT_FOUND, message)
        }
    };
    if method != Method::GET {
        tracing::info!(%method, route, status = %response.status(), "Control request");
    }
    response
}

/// Lists the call counts, of all requests or, with `?accessKeyId=KEY`, of the requests
/// signed with that key.
fn calls_view(state: &State, request: &BufferedRequest) -> Response<Body> {
    let query = request.parts.uri.query().unwrap_or_default();
    let access_key_id = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "accessKeyId")
        .map(|(_, value)| value.into_owned());
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

/// Lists created jobs, each with its scripted status at now.
fn jobs_view(state: &State) -> Vec<CreatedJob> {
    let now = now_ms();
    let mut jobs = state.created_jobs.clone();
    for job in &mut jobs {
        job.status = state
            .scripted_jobs
            .get(&job.id)
            .map(|scripted| scripted.state_at(now).status.as_str().to_string());
    }
    jobs
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
