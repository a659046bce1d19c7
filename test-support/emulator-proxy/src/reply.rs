//! Responses the proxy builds itself: control API JSON and AWS-style errors.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::classify::Protocol;

/// Body type of every response the proxy sends, since all bodies are buffered.
pub type Body = Full<Bytes>;

/// Builds a JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let content_type = HeaderValue::from_static("application/json");
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

/// Builds a control API error response with a `message` field.
pub fn control_error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &json!({ "message": message.into() }))
}

/// Builds an AWS error response in the encoding that `protocol` clients parse:
/// JSON with `x-amzn-ErrorType` for REST-JSON and awsJson (which also gets
/// `__type`), and XML for the query protocol and S3.
pub fn aws_error(
    protocol: Protocol,
    status: StatusCode,
    error_type: &str,
    message: &str,
) -> Response<Body> {
    let request_id = format!("{:032x}", rand::random::<u128>());
    let (content_type, body) = match protocol {
        Protocol::RestJson => (
            "application/json",
            json!({ "message": message }).to_string(),
        ),
        Protocol::AwsJson => (
            "application/x-amz-json-1.1",
            json!({ "__type": error_type, "message": message }).to_string(),
        ),
        Protocol::Query => (
            "text/xml",
            query_error_xml(status, error_type, message, &request_id),
        ),
        Protocol::RestXml => (
            "application/xml",
            s3_error_xml(error_type, message, &request_id),
        ),
    };

    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(error_type) {
        headers.insert("x-amzn-errortype", value.clone());
        headers.insert("x-amz-error-code", value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

fn query_error_xml(status: StatusCode, code: &str, message: &str, request_id: &str) -> String {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error>\
         <RequestId>{request_id}</RequestId></ErrorResponse>",
        escape_xml(code),
        escape_xml(message),
    )
}

fn s3_error_xml(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <RequestId>{request_id}</RequestId></Error>",
        escape_xml(code),
        escape_xml(message),
    )
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body_text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn rest_json_error_has_header_and_message() {
        let status = StatusCode::TOO_MANY_REQUESTS;
        let response = aws_error(
            Protocol::RestJson,
            status,
            "TooManyRequestsException",
            "slow",
        );
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "TooManyRequestsException"
        );
        assert_eq!(body_text(response).await, r#"{"message":"slow"}"#);
    }

    #[tokio::test]
    async fn aws_json_error_has_type_field() {
        let status = StatusCode::BAD_REQUEST;
        let response = aws_error(Protocol::AwsJson, status, "NotFoundException", "gone");
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(body["__type"], "NotFoundException");
        assert_eq!(body["message"], "gone");
    }

    #[tokio::test]
    async fn xml_errors_escape_text() {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let query = aws_error(Protocol::Query, status, "Throttling", "a < b");
        let text = body_text(query).await;
        assert!(
            text.contains("<Type>Receiver</Type><Code>Throttling</Code>"),
            "{text}"
        );
        assert!(text.contains("<Message>a &lt; b</Message>"), "{text}");

        let s3 = aws_error(Protocol::RestXml, status, "SlowDown", "x & y");
        let text = body_text(s3).await;
        assert!(
            text.contains("<Code>SlowDown</Code><Message>x &amp; y</Message>"),
            "{text}"
        );
    }
}
