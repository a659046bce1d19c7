//! Forwarding of buffered requests to the upstream emulator.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_LENGTH, HeaderName};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::reply::Body;

/// Hop-by-hop headers: they describe one connection, so a proxy drops them.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Error from [`Upstream::send`].
#[derive(Debug)]
pub enum Error {
    /// The built request was invalid, for example a bad path.
    Request(hyper::http::Error),
    /// Connecting, sending or receiving failed.
    Send(hyper_util::client::legacy::Error),
    /// Reading the response body failed.
    Body(hyper::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request(error) => write!(f, "failed to build upstream request: {error}"),
            Self::Send(error) => write!(f, "failed to send request upstream: {error}"),
            Self::Body(error) => write!(f, "failed to read upstream response body: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// The emulator the proxy forwards to, reached over plain HTTP.
pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    base: Uri,
}

/// A complete upstream response with its body read into memory.
#[derive(Debug, Clone)]
pub struct BufferedResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Upstream {
    /// Creates a client for `base`, such as `http://127.0.0.1:4566`.
    pub fn new(base: Uri) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { client, base }
    }

    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// Sends the request described by `parts` and `body` to `path_and_query`
    /// upstream, with the same method and headers, less hop-by-hop headers.
    /// The Host header is kept as the client sent it, because a SigV4
    /// signature covers it.
    pub async fn send(
        &self,
        parts: &Parts,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<BufferedResponse, Error> {
        let mut request = Request::builder()
            .method(parts.method.clone())
            .uri(self.url(path_and_query))
            .body(Full::new(body))
            .map_err(Error::Request)?;
        copy_end_to_end(&parts.headers, request.headers_mut());
        self.execute(request).await
    }

    /// Sends a request of the proxy's own, a POST of `body` to `/` with
    /// `headers`, as awsJson services such as EventBridge expect.
    pub async fn post_root(
        &self,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<BufferedResponse, Error> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url("/"))
            .body(Full::new(body))
            .map_err(Error::Request)?;
        *request.headers_mut() = headers;
        self.execute(request).await
    }

    fn url(&self, path_and_query: &str) -> String {
        let base = self.base.to_string();
        format!("{}{path_and_query}", base.trim_end_matches('/'))
    }

    async fn execute(&self, request: Request<Full<Bytes>>) -> Result<BufferedResponse, Error> {
        let response = self.client.request(request).await.map_err(Error::Send)?;
        let (response_parts, response_body) = response.into_parts();
        let body = response_body
            .collect()
            .await
            .map_err(Error::Body)?
            .to_bytes();
        Ok(BufferedResponse {
            status: response_parts.status,
            headers: response_parts.headers,
            body,
        })
    }
}

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !is_hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

impl BufferedResponse {
    /// Converts into a response unchanged, less hop-by-hop headers.
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        copy_end_to_end(&self.headers, response.headers_mut());
        response
    }

    /// Replaces the body with `value` as JSON. The server recomputes
    /// Content-Length for the new body.
    pub fn with_json(mut self, value: &Value) -> Self {
        self.body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        self.headers.remove(CONTENT_LENGTH);
        self
    }

    /// Parses the body as JSON when the status is a success.
    pub fn success_json(&self) -> Option<Value> {
        if !self.status.is_success() {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }
}
