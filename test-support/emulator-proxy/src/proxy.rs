//! Request handling: control routes, call counting, faults, and forwarding
//! with MediaConvert-specific handling.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};

use crate::classify::{Operation, Protocol, RequestView, access_key_id, classify};
use crate::control;
use crate::faults::{FaultAction, InjectedError, RequestFacts};
use crate::local;
use crate::mediaconvert;
use crate::reply::{self, Body};
use crate::state::Shared;
use crate::upstream::{self, Upstream};

/// Path prefix of the control API. Requests under it are never forwarded.
pub const CONTROL_PREFIX: &str = "/__proxy/";

/// The proxy's configuration and state, shared by all connections.
pub struct App {
    pub shared: Shared,
    pub upstream: Upstream,
    /// How long a repeated CreateJob `clientRequestToken` returns the first job.
    pub token_window: Duration,
    /// Address the proxy listens on, advertised by DescribeEndpoints.
    pub listen: SocketAddr,
    /// Serves MediaConvert job operations from the local job store instead of
    /// forwarding them.
    pub local_jobs: bool,
    /// Publishes state change events for every scripted job, not only for
    /// those whose timeline sets `publishEvents`.
    pub publish_all_events: bool,
}

/// A request whose body has been read.
pub struct BufferedRequest {
    pub parts: Parts,
    pub body: Bytes,
}

impl BufferedRequest {
    pub fn path_and_query(&self) -> &str {
        self.parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
    }

    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.parts.method,
            path: self.parts.uri.path(),
            query: self.parts.uri.query(),
            headers: &self.parts.headers,
            body: &self.body,
        }
    }
}

/// Handles one request, turning every failure into an HTTP error response.
pub async fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::warn!(%error, "Failed to read request body");
            let message = format!("failed to read request body: {error}");
            return Ok(reply::control_error(StatusCode::BAD_REQUEST, message));
        }
    };
    let request = BufferedRequest { parts, body };

    if request.parts.uri.path().starts_with(CONTROL_PREFIX) {
        return Ok(control::handle(app, &request));
    }
    Ok(proxy(app, request).await)
}

/// Returns the `userMetadata` object of a JSON request body, or an empty map.
fn body_user_metadata(body: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match parsed.and_then(|mut value| value.get_mut("userMetadata").map(serde_json::Value::take)) {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

/// Counts the request, applies the first fault rule that fires, then routes it.
async fn proxy(app: &App, request: BufferedRequest) -> Response<Body> {
    let view = request.view();
    let operation = classify(&view);
    let protocol = view.protocol();
    let facts = RequestFacts {
        user_metadata: body_user_metadata(&request.body),
        access_key_id: access_key_id(&view),
    };
    let fault = {
        let mut state = app.shared.lock();
        state.count(&operation, facts.access_key_id.as_deref());
        state.faults.fire_for(&operation, &facts, rand::random_bool)
    };
    tracing::debug!(%operation, method = %request.parts.method, path = request.parts.uri.path(),
        "Request received");

    let Some(fault) = fault else {
        return route(app, &operation, &request).await;
    };
    tokio::time::sleep(fault.delay).await;
    let delay_ms = fault.delay.as_millis();
    let response_delay_ms = fault.response_delay.as_millis();
    match fault.action {
        FaultAction::Forward => {
            tracing::info!(%operation, delay_ms, response_delay_ms, "Fault delayed request");
            let response = route(app, &operation, &request).await;
            tokio::time::sleep(fault.response_delay).await;
            response
        }
        FaultAction::Reject(error) => {
            tracing::info!(%operation, delay_ms, status = %error.status,
                error_type = error.error_type, "Fault rejected request");
            injected(protocol, &error)
        }
        FaultAction::Withhold(error) => {
            let withheld = route(app, &operation, &request).await;
            tracing::info!(%operation, delay_ms, response_delay_ms,
                upstream_status = %withheld.status(), status = %error.status,
                "Fault withheld upstream response");
            tokio::time::sleep(fault.response_delay).await;
            injected(protocol, &error)
        }
    }
}

fn injected(protocol: Protocol, error: &InjectedError) -> Response<Body> {
    reply::aws_error(protocol, error.status, &error.error_type, &error.message)
}

/// Sends MediaConvert job operations to their handlers and forwards the rest.
async fn route(app: &App, operation: &Operation, request: &BufferedRequest) -> Response<Body> {
    if operation.service == "mediaconvert" && app.local_jobs {
        match operation.name.as_str() {
            "CreateJob" => return local::create_job(app, request).await,
            "GetJob" => return local::get_job(app, request),
            "ListJobs" | "SearchJobs" => return local::list_jobs(app, request),
            "CancelJob" => return local::cancel_job(app, request),
            "DescribeEndpoints" => return local::describe_endpoints(app, request),
            _ => {}
        }
    }
    if operation.service == "mediaconvert" {
        match operation.name.as_str() {
            "CreateJob" => return mediaconvert::create_job(app, request).await,
            "GetJob" => return mediaconvert::get_job(app, request).await,
            "ListJobs" | "SearchJobs" => return mediaconvert::list_jobs(app, request).await,
            "CancelJob" => return mediaconvert::cancel_job(app, request).await,
            "DescribeEndpoints" => return mediaconvert::describe_endpoints(app, request).await,
            _ => {}
        }
    }
    forward(app, request).await
}

impl App {
    /// Sends the request upstream unchanged and returns the buffered response.
    pub async fn send_unchanged(
        &self,
        request: &BufferedRequest,
    ) -> Result<upstream::BufferedResponse, upstream::Error> {
        let path_and_query = request.path_and_query();
        let body = request.body.clone();
        self.upstream
            .send(&request.parts, path_and_query, body)
            .await
    }
}

/// Forwards the request unchanged and returns the upstream response.
pub async fn forward(app: &App, request: &BufferedRequest) -> Response<Body> {
    match app.send_unchanged(request).await {
        Ok(response) => response.into_response(),
        Err(error) => bad_gateway(app, request, &error),
    }
}

/// Builds the response for a request that could not reach upstream.
pub fn bad_gateway(
    app: &App,
    request: &BufferedRequest,
    error: &upstream::Error,
) -> Response<Body> {
    let upstream = app.upstream.base();
    tracing::error!(%error, %upstream, path = request.parts.uri.path(), "Upstream request failed");
    let message = format!("{error} (upstream {upstream})");
    let protocol = request.view().protocol();
    reply::aws_error(protocol, StatusCode::BAD_GATEWAY, "BadGateway", &message)
}
