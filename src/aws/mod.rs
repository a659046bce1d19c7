//! Thin clients for the AWS services the operator calls, each behind a small trait so the
//! controller can be exercised against the emulator or a fake.

pub mod iam;
pub mod kms;
pub mod limits;
pub mod mediaconvert;
pub mod s3;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub use iam::{Iam, IamClient, RoleDescription, SimulatedAction, SimulatedDecision, Simulation};
pub use kms::{KeyDescription, Kms, KmsClient};
pub use mediaconvert::{
    CancelOutcome, JobPage, JobRequest, JobSnapshot, MediaConvert, MediaConvertClient,
};
pub use s3::{ObjectEncryption, S3, S3Client};

/// Class of a failed AWS call, decided once from the service error code and the HTTP
/// status so callers never match on message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request rate exceeded a quota; retry with backoff.
    Throttled,
    /// The caller lacks a permission; retrying will not help until IAM changes.
    AccessDenied,
    /// The named resource does not exist.
    NotFound,
    /// The request itself is invalid; only a spec change can fix it.
    Invalid,
    /// The resource is in a state that conflicts with the request.
    Conflict,
    /// A network failure, timeout or 5xx response. Retry.
    Transient,
}

/// A failed AWS call with its class, service error code and message.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{operation} failed ({class:?}{code_suffix}): {message}", code_suffix = code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
pub struct AwsError {
    pub operation: &'static str,
    pub class: ErrorClass,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    /// An error of the operator itself while handling AWS responses. It is retried like a
    /// transient failure.
    pub fn internal(message: &str) -> Self {
        Self {
            operation: "HandleAnswer",
            class: ErrorClass::Transient,
            code: None,
            message: message.to_string(),
        }
    }

    /// Classifies an SDK error from `operation`.
    pub fn from_sdk<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error
            .raw_response()
            .map(|response| response.status().as_u16());
        let code = error.code().map(str::to_string);
        let message = error.message().map(str::to_string).unwrap_or_else(|| {
            aws_smithy_types::error::display::DisplayErrorContext(&error).to_string()
        });
        let class = classify(code.as_deref(), status, &error);
        Self {
            operation,
            class,
            code,
            message,
        }
    }
}

fn classify<E, R>(code: Option<&str>, status: Option<u16>, error: &SdkError<E, R>) -> ErrorClass {
    if matches!(
        error,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) {
        return ErrorClass::Transient;
    }
    match code.unwrap_or_default() {
        "TooManyRequestsException"
        | "ThrottlingException"
        | "Throttling"
        | "SlowDown"
        | "RequestLimitExceeded"
        | "LimitExceededException" => return ErrorClass::Throttled,
        "AccessDeniedException"
        | "AccessDenied"
        | "ForbiddenException"
        | "UnrecognizedClientException" => return ErrorClass::AccessDenied,
        "NotFoundException"
        | "NoSuchBucket"
        | "NoSuchEntity"
        | "NoSuchKey"
        | "NotFound"
        | "NoSuchBucketPolicy"
        | "ServerSideEncryptionConfigurationNotFoundError" => {
            return ErrorClass::NotFound;
        }
        "ConflictException" => return ErrorClass::Conflict,
        "BadRequestException" | "ValidationException" | "InvalidArnException" => {
            return ErrorClass::Invalid;
        }
        _ => {}
    }
    match status {
        Some(429) => ErrorClass::Throttled,
        Some(403) => ErrorClass::AccessDenied,
        Some(404) => ErrorClass::NotFound,
        Some(409) => ErrorClass::Conflict,
        Some(400..=499) => ErrorClass::Invalid,
        _ => ErrorClass::Transient,
    }
}
