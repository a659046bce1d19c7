//! AWS Elemental MediaConvert: creating, reading and canceling jobs.
//!
//! The SDK's typed `JobSettings` has no serde support and drops members it does not know,
//! so job settings travel as JSON. [`SettingsBody`] writes the prepared settings into the
//! serialized `CreateJob` body before the request is signed, which keeps the SDK's
//! credentials, signing, retries and endpoint resolution. [`CaptureBody`] keeps the raw
//! `GetJob` response, because the typed output drops members such as `outputFilePaths`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_mediaconvert::types::JobSettings;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;

use super::limits::{RateLimits, Service};
use super::{AwsError, ErrorClass};

/// A job to create, with settings already normalized to the REST spelling.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRequest {
    pub region: String,
    pub role: String,
    pub queue: Option<String>,
    pub job_template: Option<String>,
    pub priority: Option<i32>,
    pub user_metadata: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub client_request_token: String,
    pub settings: Value,
}

/// State of a MediaConvert job, read from the service's JSON.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobSnapshot {
    pub id: String,
    pub arn: Option<String>,
    /// SUBMITTED, PROGRESSING, COMPLETE, CANCELED or ERROR.
    pub status: String,
    pub queue: Option<String>,
    pub percent_complete: Option<i32>,
    pub current_phase: Option<String>,
    pub error_code: Option<i32>,
    pub error_message: Option<String>,
    /// Epoch seconds from the job's `timing`.
    pub submit_time: Option<i64>,
    pub start_time: Option<i64>,
    pub finish_time: Option<i64>,
    /// `outputFilePaths` of every output detail, in order.
    pub output_paths: Vec<String>,
    pub user_metadata: BTreeMap<String, String>,
    /// Epoch seconds of the job's `createdAt`.
    pub created_at: Option<i64>,
}

impl JobSnapshot {
    /// Reads a job object of MediaConvert's REST API (`{"id": ..., "status": ...}`).
    pub fn from_json(job: &Value) -> Self {
        let text = |key: &str| job.get(key).and_then(Value::as_str).map(str::to_string);
        let number = |value: Option<&Value>| value.and_then(Value::as_f64).map(|n| n as i64);
        let timing = job.get("timing");
        let output_paths = job
            .get("outputGroupDetails")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|group| group.get("outputDetails")?.as_array())
            .flatten()
            .filter_map(|detail| detail.get("outputFilePaths")?.as_array())
            .flatten()
            .filter_map(|path| path.as_str().map(str::to_string))
            .collect();
        let user_metadata = job
            .get("userMetadata")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
            .collect();
        Self {
            id: text("id").unwrap_or_default(),
            arn: text("arn"),
            status: text("status").unwrap_or_default(),
            queue: text("queue"),
            percent_complete: number(job.get("jobPercentComplete")).map(|n| n as i32),
            current_phase: text("currentPhase"),
            error_code: number(job.get("errorCode")).map(|n| n as i32),
            error_message: text("errorMessage"),
            submit_time: number(timing.and_then(|t| t.get("submitTime"))),
            start_time: number(timing.and_then(|t| t.get("startTime"))),
            finish_time: number(timing.and_then(|t| t.get("finishTime"))),
            output_paths,
            user_metadata,
            created_at: number(job.get("createdAt")),
        }
    }
}

/// Most `ListJobs` pages read when looking for a job by its resource UID.
const MAX_LIST_PAGES: usize = 25;

/// Jobs per `ListJobs` page, the most MediaConvert allows.
pub const LIST_PAGE_SIZE: i32 = 20;

/// Result of asking MediaConvert to cancel a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// MediaConvert accepted the cancellation.
    Canceled,
    /// The job had already finished, so there was nothing to cancel.
    AlreadyFinished,
    /// MediaConvert has no job with this id.
    NotFound,
}

#[async_trait::async_trait]
pub trait MediaConvert: Send + Sync {
    /// Creates a job; MediaConvert returns the existing job for a token it saw recently.
    async fn create_job(&self, request: &JobRequest) -> Result<JobSnapshot, AwsError>;

    /// Reads a job, or returns `None` when MediaConvert has no job with this id.
    async fn get_job(&self, region: &str, id: &str) -> Result<Option<JobSnapshot>, AwsError>;

    /// Cancels a queued or running job.
    async fn cancel_job(&self, region: &str, id: &str) -> Result<CancelOutcome, AwsError>;

    /// Reads one page of `ListJobs`, newest first, optionally only the jobs of `queue` (a
    /// name or ARN) in `status`.
    async fn list_jobs(
        &self,
        region: &str,
        queue: Option<&str>,
        status: Option<&str>,
        next_token: Option<String>,
    ) -> Result<JobPage, AwsError>;

    /// Finds the newest job whose user metadata has `key` set to `value`, among the jobs
    /// created at or after `since` (epoch seconds), newest first.
    async fn find_job(
        &self,
        region: &str,
        queue: Option<&str>,
        key: &str,
        value: &str,
        since: i64,
    ) -> Result<Option<JobSnapshot>, AwsError> {
        let mut next_token = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self.list_jobs(region, queue, None, next_token).await?;
            if let Some(found) = page
                .jobs
                .iter()
                .find(|job| job.user_metadata.get(key).map(String::as_str) == Some(value))
            {
                return Ok(Some(found.clone()));
            }
            if page.reaches_before(since) || page.next_token.is_none() {
                return Ok(None);
            }
            next_token = page.next_token;
        }
        // NOTE: a queue with more recent jobs than MAX_LIST_PAGES pages is not searched to
        // the end. The caller then relies on the client request token alone.
        Ok(None)
    }
}

/// One page of `ListJobs`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<JobSnapshot>,
    /// Token of the next page; `None` on the last page.
    pub next_token: Option<String>,
}

impl JobPage {
    /// Reports whether the page contains a job created before `since` (epoch seconds). In a
    /// newest-first listing, later pages then contain only older jobs.
    pub fn reaches_before(&self, since: i64) -> bool {
        self.jobs
            .iter()
            .any(|job| job.created_at.is_some_and(|at| at < since))
    }
}

/// [`MediaConvert`] over the AWS SDK, one client per region.
pub struct MediaConvertClient {
    config: aws_config::SdkConfig,
    limits: Arc<RateLimits>,
}

impl MediaConvertClient {
    pub fn new(config: aws_config::SdkConfig) -> Self {
        Self {
            config,
            limits: Arc::new(RateLimits::unlimited()),
        }
    }

    /// Makes every call wait for a token of the shared rate limits first.
    pub fn with_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = limits;
        self
    }

    fn client(&self, region: &str) -> aws_sdk_mediaconvert::Client {
        let config = aws_sdk_mediaconvert::config::Builder::from(&self.config)
            .region(aws_sdk_mediaconvert::config::Region::new(
                region.to_string(),
            ))
            .interceptor(crate::metrics::AwsCallMetrics)
            .build();
        aws_sdk_mediaconvert::Client::from_conf(config)
    }

    /// Waits for a rate-limit token, then returns the client for `region`.
    async fn limited(&self, region: &str) -> aws_sdk_mediaconvert::Client {
        self.limits.acquire(Service::MediaConvert, region).await;
        self.client(region)
    }
}

#[async_trait::async_trait]
impl MediaConvert for MediaConvertClient {
    async fn create_job(&self, request: &JobRequest) -> Result<JobSnapshot, AwsError> {
        let captured = CaptureBody::default();
        let builder = self
            .limited(&request.region)
            .await
            .create_job()
            .role(&request.role)
            .set_queue(request.queue.clone())
            .set_job_template(request.job_template.clone())
            .set_priority(request.priority)
            .set_user_metadata(Some(request.user_metadata.clone().into_iter().collect()))
            .set_tags(
                (!request.tags.is_empty()).then(|| request.tags.clone().into_iter().collect()),
            )
            .client_request_token(&request.client_request_token)
            // Placeholder, replaced by the JSON settings before signing.
            .settings(JobSettings::builder().build());
        builder
            .customize()
            .interceptor(SettingsBody::new(request.settings.clone()))
            .interceptor(captured.clone())
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("CreateJob", error))?;
        Ok(captured.job("CreateJob")?)
    }

    async fn get_job(&self, region: &str, id: &str) -> Result<Option<JobSnapshot>, AwsError> {
        let captured = CaptureBody::default();
        let result = self
            .limited(region)
            .await
            .get_job()
            .id(id)
            .customize()
            .interceptor(captured.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(captured.job("GetJob")?)),
            Err(error) => {
                let error = AwsError::from_sdk("GetJob", error);
                if error.class == ErrorClass::NotFound {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn list_jobs(
        &self,
        region: &str,
        queue: Option<&str>,
        status: Option<&str>,
        next_token: Option<String>,
    ) -> Result<JobPage, AwsError> {
        let captured = CaptureBody::default();
        self.limited(region)
            .await
            .list_jobs()
            .order(aws_sdk_mediaconvert::types::Order::Descending)
            .max_results(LIST_PAGE_SIZE)
            .set_queue(queue.map(str::to_string))
            .set_status(status.map(aws_sdk_mediaconvert::types::JobStatus::from))
            .set_next_token(next_token)
            .customize()
            .interceptor(captured.clone())
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("ListJobs", error))?;
        let page = captured.json().unwrap_or_default();
        let jobs = page
            .get("jobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(JobSnapshot::from_json)
            .collect();
        let next_token = page
            .get("nextToken")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(JobPage { jobs, next_token })
    }

    async fn cancel_job(&self, region: &str, id: &str) -> Result<CancelOutcome, AwsError> {
        let result = self.limited(region).await.cancel_job().id(id).send().await;
        match result {
            Ok(_) => Ok(CancelOutcome::Canceled),
            Err(error) => {
                let error = AwsError::from_sdk("CancelJob", error);
                match error.class {
                    ErrorClass::NotFound => Ok(CancelOutcome::NotFound),
                    // MediaConvert rejects a cancel of a finished job as a conflict.
                    ErrorClass::Conflict => Ok(CancelOutcome::AlreadyFinished),
                    _ => Err(error),
                }
            }
        }
    }
}

/// Interceptor that replaces the `settings` member of a serialized `CreateJob` body.
#[derive(Debug)]
struct SettingsBody {
    settings: Value,
}

impl SettingsBody {
    fn new(settings: Value) -> Self {
        Self { settings }
    }
}

impl Intercept for SettingsBody {
    fn name(&self) -> &'static str {
        "SettingsBody"
    }

    // Runs before signing, so the signature covers the body that is sent, and on every
    // retry attempt, so retries carry the same settings.
    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let bytes = request
            .body()
            .bytes()
            .ok_or("CreateJob body is a stream; cannot insert settings")?;
        let mut body: Value = serde_json::from_slice(bytes)?;
        let object = body
            .as_object_mut()
            .ok_or("CreateJob body is not a JSON object")?;
        object.insert("settings".into(), self.settings.clone());
        let encoded = serde_json::to_vec(&body)?;
        let length = encoded.len().to_string();
        *request.body_mut() = SdkBody::from(encoded);
        request.headers_mut().insert("content-length", length);
        Ok(())
    }
}

/// Interceptor that keeps the raw JSON body of a successful response.
#[derive(Clone, Debug, Default)]
struct CaptureBody {
    body: Arc<Mutex<Option<Vec<u8>>>>,
}

impl CaptureBody {
    /// Parses the captured response as JSON.
    fn json(&self) -> Option<Value> {
        let body = self.body.lock().map(|mut slot| slot.take()).ok().flatten();
        body.and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    /// Parses the captured `{"job": {...}}` response of `operation`.
    fn job(&self, operation: &'static str) -> Result<JobSnapshot, AwsError> {
        let parsed = self.json();
        match parsed.as_ref().and_then(|value| value.get("job")) {
            Some(job) => Ok(JobSnapshot::from_json(job)),
            None => Err(AwsError {
                operation,
                class: ErrorClass::Transient,
                code: None,
                message: "response has no job object".into(),
            }),
        }
    }
}

impl Intercept for CaptureBody {
    fn name(&self) -> &'static str {
        "CaptureBody"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        if !response.status().is_success() {
            return Ok(());
        }
        if let (Some(bytes), Ok(mut slot)) = (response.body().bytes(), self.body.lock()) {
            *slot = Some(bytes.to_vec());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn snapshot_reads_rest_job() {
        let job = json!({
            "id": "1700000000000-abc123",
            "arn": "arn:aws:mediaconvert:us-east-1:111122223333:jobs/1700000000000-abc123",
            "status": "ERROR",
            "jobPercentComplete": 42,
            "currentPhase": "TRANSCODING",
            "errorCode": 1401,
            "errorMessage": "Access denied writing s3://example-media-out/trailer.mp4",
            "timing": {"submitTime": 1700000000, "startTime": 1700000005.0, "finishTime": 1700000060},
            "outputGroupDetails": [{"outputDetails": [{"outputFilePaths": ["s3://example-media-out/trailer.mp4"]}]}]
        });
        let snapshot = JobSnapshot::from_json(&job);
        assert_eq!(snapshot.id, "1700000000000-abc123");
        assert_eq!(snapshot.status, "ERROR");
        assert_eq!(snapshot.percent_complete, Some(42));
        assert_eq!(snapshot.error_code, Some(1401));
        assert_eq!(snapshot.start_time, Some(1700000005));
        assert_eq!(
            snapshot.output_paths,
            ["s3://example-media-out/trailer.mp4"]
        );
    }
}
