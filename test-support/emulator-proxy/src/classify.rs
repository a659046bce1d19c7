//! Classification of an AWS request as `service:Operation`.
//!
//! The service comes from the SigV4 credential scope, either in the
//! `Authorization` header or in a presigned URL's `X-Amz-Credential`. The
//! operation depends on the service's protocol: REST routes for MediaConvert
//! and S3, `X-Amz-Target` for awsJson services, and `Action=` for the query
//! protocol.

use std::fmt;

use hyper::{HeaderMap, Method};

/// Service name used when a request carries no SigV4 credential scope.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// Operation name used when a request matches no known route.
pub const OTHER_OPERATION: &str = "Other";

/// An AWS operation, written `service:Operation` (for example `kms:DescribeKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Signing name from the credential scope, such as `mediaconvert` or `s3`.
    pub service: String,
    /// Operation name as the service's API reference spells it.
    pub name: String,
}

impl Operation {
    fn new(service: &str, name: &str) -> Self {
        Self {
            service: service.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.name)
    }
}

/// Wire protocol of an AWS service, which decides how errors are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// REST with JSON bodies (MediaConvert and most newer services).
    RestJson,
    /// awsJson: `POST /` with an `X-Amz-Target` header (KMS, SQS, EventBridge).
    AwsJson,
    /// Query protocol: form-encoded `Action=` requests with XML responses (IAM, STS).
    Query,
    /// REST with XML bodies (S3).
    RestXml,
}

/// Request fields that classification reads.
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl RequestView<'_> {
    /// Returns the protocol the request was sent with.
    pub fn protocol(&self) -> Protocol {
        if self.headers.contains_key("x-amz-target") {
            Protocol::AwsJson
        } else if self.action().is_some() {
            Protocol::Query
        } else if signing_service(self).as_deref() == Some("s3") {
            Protocol::RestXml
        } else {
            Protocol::RestJson
        }
    }

    /// Returns the query protocol's `Action`, from the query string or a form body.
    fn action(&self) -> Option<String> {
        if let Some(action) = self.query_value("Action") {
            return Some(action);
        }
        let content_type = header_str(self.headers, "content-type").unwrap_or_default();
        if content_type.starts_with("application/x-www-form-urlencoded") {
            return form_value(self.body, "Action");
        }
        None
    }

    fn query_value(&self, key: &str) -> Option<String> {
        form_value(self.query?.as_bytes(), key)
    }

    fn has_query_key(&self, key: &str) -> bool {
        self.query_value(key).is_some()
    }
}

/// Classifies a request as `service:Operation`.
pub fn classify(request: &RequestView<'_>) -> Operation {
    let service = signing_service(request).unwrap_or_else(|| UNKNOWN_SERVICE.to_string());

    let name = if let Some(target) = header_str(request.headers, "x-amz-target") {
        let operation = target.rsplit_once('.').map_or(target, |(_, op)| op);
        Some(operation.to_string())
    } else if let Some(action) = request.action() {
        Some(action)
    } else if service == "mediaconvert" {
        mediaconvert_operation(request.method, request.path).map(str::to_string)
    } else if service == "s3" {
        s3_operation(request).map(str::to_string)
    } else {
        None
    };

    Operation::new(&service, name.as_deref().unwrap_or(OTHER_OPERATION))
}

/// Returns the SigV4 credential, `AKID/DATE/REGION/SERVICE/aws4_request`, from the
/// `Authorization` header or a presigned URL's `X-Amz-Credential`.
fn credential(request: &RequestView<'_>) -> Option<String> {
    match header_str(request.headers, "authorization") {
        Some(authorization) => {
            let start = authorization.find("Credential=")? + "Credential=".len();
            let rest = &authorization[start..];
            Some(rest.split([',', ' ']).next()?.to_string())
        }
        None => request.query_value("X-Amz-Credential"),
    }
}

/// Extracts the service from the credential scope.
fn signing_service(request: &RequestView<'_>) -> Option<String> {
    let credential = credential(request)?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [.., service, "aws4_request"] if !service.is_empty() => Some(service.to_string()),
        _ => None,
    }
}

/// Returns the region of the request's credential scope, or `None` for an
/// unsigned request.
pub fn signing_region(request: &RequestView<'_>) -> Option<String> {
    let credential = credential(request)?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [.., region, _, "aws4_request"] if !region.is_empty() => Some(region.to_string()),
        _ => None,
    }
}

/// Returns the access key ID the request was signed with, the first part of the
/// credential, or `None` for an unsigned request.
pub fn access_key_id(request: &RequestView<'_>) -> Option<String> {
    let credential = credential(request)?;
    let (access_key_id, _) = credential.split_once('/')?;
    (!access_key_id.is_empty()).then(|| access_key_id.to_string())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

fn form_value(form: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(form)
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

/// Maps a MediaConvert REST route (API version `2017-08-29`) to its operation.
fn mediaconvert_operation(method: &Method, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["2017-08-29", resource, rest @ ..] = segments.as_slice() else {
        return None;
    };
    let has_label = match rest {
        [] => false,
        [_] => true,
        _ => return None,
    };

    let operation = match (*resource, has_label, method.as_str()) {
        ("jobs", false, "POST") => "CreateJob",
        ("jobs", false, "GET") => "ListJobs",
        ("jobs", true, "GET") => "GetJob",
        ("jobs", true, "DELETE") => "CancelJob",
        ("endpoints", false, "POST") => "DescribeEndpoints",
        ("search", false, "GET") => "SearchJobs",
        ("probe", false, "POST") => "Probe",
        ("versions", false, "GET") => "ListVersions",
        ("jobsQueries", false, "POST") => "StartJobsQuery",
        ("jobsQueries", true, "GET") => "GetJobsQueryResults",
        ("queues", ..) => crud_operation(method, has_label, "Queue")?,
        ("presets", ..) => crud_operation(method, has_label, "Preset")?,
        ("jobTemplates", ..) => crud_operation(method, has_label, "JobTemplate")?,
        ("policy", false, "PUT") => "PutPolicy",
        ("policy", false, "GET") => "GetPolicy",
        ("policy", false, "DELETE") => "DeletePolicy",
        ("tags", false, "POST") => "TagResource",
        ("tags", true, "GET") => "ListTagsForResource",
        ("tags", true, "PUT") => "UntagResource",
        ("certificates", false, "POST") => "AssociateCertificate",
        ("certificates", true, "DELETE") => "DisassociateCertificate",
        ("resourceShares", false, "POST") => "CreateResourceShare",
        _ => return None,
    };
    Some(operation)
}

/// Names the create, list, get, update and delete routes of a MediaConvert
/// resource collection such as `/2017-08-29/queues`.
fn crud_operation(method: &Method, has_label: bool, resource: &str) -> Option<&'static str> {
    let name = match (resource, has_label, method.as_str()) {
        ("Queue", false, "POST") => "CreateQueue",
        ("Queue", false, "GET") => "ListQueues",
        ("Queue", true, "GET") => "GetQueue",
        ("Queue", true, "PUT") => "UpdateQueue",
        ("Queue", true, "DELETE") => "DeleteQueue",
        ("Preset", false, "POST") => "CreatePreset",
        ("Preset", false, "GET") => "ListPresets",
        ("Preset", true, "GET") => "GetPreset",
        ("Preset", true, "PUT") => "UpdatePreset",
        ("Preset", true, "DELETE") => "DeletePreset",
        ("JobTemplate", false, "POST") => "CreateJobTemplate",
        ("JobTemplate", false, "GET") => "ListJobTemplates",
        ("JobTemplate", true, "GET") => "GetJobTemplate",
        ("JobTemplate", true, "PUT") => "UpdateJobTemplate",
        ("JobTemplate", true, "DELETE") => "DeleteJobTemplate",
        _ => return None,
    };
    Some(name)
}

/// Bucket subresources: query key, then the GET, PUT and DELETE operations.
const BUCKET_SUBRESOURCES: &[(&str, &str, &str, Option<&str>)] = &[
    ("location", "GetBucketLocation", OTHER_OPERATION, None),
    (
        "encryption",
        "GetBucketEncryption",
        "PutBucketEncryption",
        Some("DeleteBucketEncryption"),
    ),
    (
        "policy",
        "GetBucketPolicy",
        "PutBucketPolicy",
        Some("DeleteBucketPolicy"),
    ),
    (
        "versioning",
        "GetBucketVersioning",
        "PutBucketVersioning",
        None,
    ),
    (
        "tagging",
        "GetBucketTagging",
        "PutBucketTagging",
        Some("DeleteBucketTagging"),
    ),
    (
        "lifecycle",
        "GetBucketLifecycleConfiguration",
        "PutBucketLifecycleConfiguration",
        Some("DeleteBucketLifecycle"),
    ),
    (
        "cors",
        "GetBucketCors",
        "PutBucketCors",
        Some("DeleteBucketCors"),
    ),
    (
        "notification",
        "GetBucketNotificationConfiguration",
        "PutBucketNotificationConfiguration",
        None,
    ),
    (
        "publicAccessBlock",
        "GetPublicAccessBlock",
        "PutPublicAccessBlock",
        Some("DeletePublicAccessBlock"),
    ),
    (
        "ownershipControls",
        "GetBucketOwnershipControls",
        "PutBucketOwnershipControls",
        Some("DeleteBucketOwnershipControls"),
    ),
    ("acl", "GetBucketAcl", "PutBucketAcl", None),
    ("uploads", "ListMultipartUploads", OTHER_OPERATION, None),
    ("versions", "ListObjectVersions", OTHER_OPERATION, None),
];

/// Maps a path-style S3 request (`/bucket` or `/bucket/key`) to its operation.
///
/// NOTE: virtual-hosted-style requests, with the bucket in the Host header, are
/// misclassified because the path's first segment is taken as the bucket.
fn s3_operation(request: &RequestView<'_>) -> Option<&'static str> {
    let path = request.path.trim_start_matches('/');
    if path.is_empty() {
        return (request.method == Method::GET).then_some("ListBuckets");
    }
    match path.split_once('/') {
        Some((_, key)) if !key.is_empty() => s3_object_operation(request),
        _ => s3_bucket_operation(request),
    }
}

fn s3_bucket_operation(request: &RequestView<'_>) -> Option<&'static str> {
    let method = request.method;
    if let Some(&(_, get, put, delete)) = BUCKET_SUBRESOURCES
        .iter()
        .find(|(key, ..)| request.has_query_key(key))
    {
        return match method.as_str() {
            "GET" => Some(get),
            "PUT" => Some(put),
            "DELETE" => delete,
            _ => None,
        };
    }
    let operation = match method.as_str() {
        "GET" if request.query_value("list-type").as_deref() == Some("2") => "ListObjectsV2",
        "GET" => "ListObjects",
        "PUT" => "CreateBucket",
        "HEAD" => "HeadBucket",
        "DELETE" => "DeleteBucket",
        "POST" if request.has_query_key("delete") => "DeleteObjects",
        _ => return None,
    };
    Some(operation)
}

fn s3_object_operation(request: &RequestView<'_>) -> Option<&'static str> {
    let is_part = request.has_query_key("partNumber") && request.has_query_key("uploadId");
    let is_copy = request.headers.contains_key("x-amz-copy-source");
    let operation = match request.method.as_str() {
        "PUT" if is_part && is_copy => "UploadPartCopy",
        "PUT" if is_part => "UploadPart",
        "PUT" if is_copy => "CopyObject",
        "PUT" if request.has_query_key("tagging") => "PutObjectTagging",
        "PUT" if request.has_query_key("acl") => "PutObjectAcl",
        "PUT" => "PutObject",
        "GET" if request.has_query_key("uploadId") => "ListParts",
        "GET" if request.has_query_key("tagging") => "GetObjectTagging",
        "GET" if request.has_query_key("acl") => "GetObjectAcl",
        "GET" if request.has_query_key("attributes") => "GetObjectAttributes",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "DELETE" if request.has_query_key("uploadId") => "AbortMultipartUpload",
        "DELETE" if request.has_query_key("tagging") => "DeleteObjectTagging",
        "DELETE" => "DeleteObject",
        "POST" if request.has_query_key("uploads") => "CreateMultipartUpload",
        "POST" if request.has_query_key("uploadId") => "CompleteMultipartUpload",
        _ => return None,
    };
    Some(operation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_header(service: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!(
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        headers.insert("authorization", value.parse().unwrap());
        headers
    }

    fn classify_rest(service: &str, method: &str, path_and_query: &str) -> String {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let method: Method = method.parse().unwrap();
        let headers = scope_header(service);
        let request = RequestView {
            method: &method,
            path,
            query,
            headers: &headers,
            body: b"",
        };
        classify(&request).to_string()
    }

    #[test]
    fn mediaconvert_routes() {
        let cases = [
            ("POST", "/2017-08-29/jobs", "CreateJob"),
            ("GET", "/2017-08-29/jobs", "ListJobs"),
            (
                "GET",
                "/2017-08-29/jobs?status=ERROR&order=ASCENDING",
                "ListJobs",
            ),
            ("GET", "/2017-08-29/jobs/1767225600000-abc123", "GetJob"),
            (
                "DELETE",
                "/2017-08-29/jobs/1767225600000-abc123",
                "CancelJob",
            ),
            ("POST", "/2017-08-29/endpoints", "DescribeEndpoints"),
            ("GET", "/2017-08-29/queues", "ListQueues"),
            ("POST", "/2017-08-29/queues", "CreateQueue"),
            ("GET", "/2017-08-29/queues/Default", "GetQueue"),
            ("PUT", "/2017-08-29/presets/p1", "UpdatePreset"),
            ("DELETE", "/2017-08-29/jobTemplates/t1", "DeleteJobTemplate"),
            ("GET", "/2017-08-29/search?inputFile=s3://b/k", "SearchJobs"),
            ("GET", "/2017-08-29/policy", "GetPolicy"),
            ("PUT", "/2017-08-29/jobs", "Other"),
            ("GET", "/2017-08-29/jobs/a/b", "Other"),
            ("GET", "/2020-01-01/jobs", "Other"),
        ];
        for (method, path, expected) in cases {
            let got = classify_rest("mediaconvert", method, path);
            assert_eq!(got, format!("mediaconvert:{expected}"), "{method} {path}");
        }
    }

    #[test]
    fn s3_routes() {
        let cases = [
            ("GET", "/", "ListBuckets"),
            ("HEAD", "/media", "HeadBucket"),
            ("PUT", "/media", "CreateBucket"),
            ("GET", "/media?location", "GetBucketLocation"),
            ("GET", "/media?location=", "GetBucketLocation"),
            ("GET", "/media?encryption", "GetBucketEncryption"),
            ("PUT", "/media?encryption", "PutBucketEncryption"),
            ("GET", "/media?list-type=2&prefix=out/", "ListObjectsV2"),
            ("GET", "/media/", "ListObjects"),
            ("DELETE", "/media", "DeleteBucket"),
            ("POST", "/media?delete", "DeleteObjects"),
            ("PUT", "/media/in/a.mp4", "PutObject"),
            ("GET", "/media/in/a.mp4", "GetObject"),
            ("HEAD", "/media/in/a.mp4", "HeadObject"),
            ("DELETE", "/media/in/a.mp4", "DeleteObject"),
            ("POST", "/media/big.mov?uploads", "CreateMultipartUpload"),
            (
                "PUT",
                "/media/big.mov?partNumber=1&uploadId=u",
                "UploadPart",
            ),
            (
                "POST",
                "/media/big.mov?uploadId=u",
                "CompleteMultipartUpload",
            ),
            ("PATCH", "/media/in/a.mp4", "Other"),
            ("POST", "/media?location", "Other"),
        ];
        for (method, path, expected) in cases {
            let got = classify_rest("s3", method, path);
            assert_eq!(got, format!("s3:{expected}"), "{method} {path}");
        }
    }

    #[test]
    fn s3_copy_header_selects_copy_object() {
        let method = Method::PUT;
        let mut headers = scope_header("s3");
        headers.insert("x-amz-copy-source", "/media/in/a.mp4".parse().unwrap());
        let request = RequestView {
            method: &method,
            path: "/media/out/a.mp4",
            query: None,
            headers: &headers,
            body: b"",
        };
        assert_eq!(classify(&request).to_string(), "s3:CopyObject");
    }

    #[test]
    fn aws_json_target_header() {
        let method = Method::POST;
        let cases = [
            ("kms", "TrentService.DescribeKey", "kms:DescribeKey"),
            ("sqs", "AmazonSQS.ReceiveMessage", "sqs:ReceiveMessage"),
            ("events", "AWSEvents.PutEvents", "events:PutEvents"),
        ];
        for (service, target, expected) in cases {
            let mut headers = scope_header(service);
            headers.insert("x-amz-target", target.parse().unwrap());
            let request = RequestView {
                method: &method,
                path: "/",
                query: None,
                headers: &headers,
                body: b"{}",
            };
            assert_eq!(classify(&request).to_string(), expected);
            assert_eq!(request.protocol(), Protocol::AwsJson);
        }
    }

    #[test]
    fn query_protocol_action_in_body_or_query() {
        let method = Method::POST;
        let mut headers = scope_header("sts");
        let form = "application/x-www-form-urlencoded; charset=utf-8";
        headers.insert("content-type", form.parse().unwrap());
        let from_body = RequestView {
            method: &method,
            path: "/",
            query: None,
            headers: &headers,
            body: b"Action=GetCallerIdentity&Version=2011-06-15",
        };
        assert_eq!(classify(&from_body).to_string(), "sts:GetCallerIdentity");
        assert_eq!(from_body.protocol(), Protocol::Query);

        let get = Method::GET;
        let iam = scope_header("iam");
        let from_query = RequestView {
            method: &get,
            path: "/",
            query: Some("Action=GetRole&RoleName=mc&Version=2010-05-08"),
            headers: &iam,
            body: b"",
        };
        assert_eq!(classify(&from_query).to_string(), "iam:GetRole");
    }

    #[test]
    fn presigned_url_credential_scope() {
        let method = Method::GET;
        let headers = HeaderMap::new();
        let request = RequestView {
            method: &method,
            path: "/media/in/a.mp4",
            query: Some(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256\
                 &X-Amz-Credential=test%2F20260101%2Fus-east-1%2Fs3%2Faws4_request",
            ),
            headers: &headers,
            body: b"",
        };
        assert_eq!(classify(&request).to_string(), "s3:GetObject");
    }

    #[test]
    fn unsigned_request_is_unknown() {
        let method = Method::GET;
        let headers = HeaderMap::new();
        let request = RequestView {
            method: &method,
            path: "/2017-08-29/jobs",
            query: None,
            headers: &headers,
            body: b"",
        };
        assert_eq!(classify(&request).to_string(), "unknown:Other");
    }

    #[test]
    fn protocol_by_service() {
        let method = Method::GET;
        let s3 = scope_header("s3");
        let mediaconvert = scope_header("mediaconvert");
        let view = |headers| RequestView {
            method: &method,
            path: "/x",
            query: None,
            headers,
            body: b"",
        };
        assert_eq!(view(&s3).protocol(), Protocol::RestXml);
        assert_eq!(view(&mediaconvert).protocol(), Protocol::RestJson);
    }

    #[test]
    fn access_key_from_header_or_presigned_url() {
        let method = Method::GET;
        let signed = scope_header("kms");
        let unsigned = HeaderMap::new();
        let view = |headers, query| RequestView {
            method: &method,
            path: "/bucket/key",
            query,
            headers,
            body: b"",
        };
        assert_eq!(access_key_id(&view(&signed, None)).as_deref(), Some("test"));
        let presigned = Some("X-Amz-Credential=test-ns%2F20260101%2Fus-east-1%2Fs3%2Faws4_request");
        assert_eq!(
            access_key_id(&view(&unsigned, presigned)).as_deref(),
            Some("test-ns")
        );
        assert_eq!(access_key_id(&view(&unsigned, None)), None);
    }

    #[test]
    fn region_from_credential_scope() {
        let method = Method::GET;
        let signed = scope_header("mediaconvert");
        let unsigned = HeaderMap::new();
        let view = |headers| RequestView {
            method: &method,
            path: "/2017-08-29/jobs",
            query: None,
            headers,
            body: b"",
        };
        assert_eq!(signing_region(&view(&signed)).as_deref(), Some("us-east-1"));
        assert_eq!(signing_region(&view(&unsigned)), None);
    }
}
