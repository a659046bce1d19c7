//! Push events: MediaConvert "Job State Change" events that an EventBridge rule delivers
//! to an SQS queue. Each event updates its resource at once; its message is deleted only
//! after the status shows it. The batched sync still reads every job that has had no news
//! for a while, so a read makes up for a lost event. An event that arrives late or out of
//! order never moves a job backwards.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Map, Value, json};

use crate::aws::JobSnapshot;
use crate::controller::sync::{Outcome, StatusSync};
use crate::metrics::Metrics;

/// Source and detail type of MediaConvert's job events.
pub const EVENT_SOURCE: &str = "aws.mediaconvert";
pub const EVENT_DETAIL_TYPE: &str = "MediaConvert Job State Change";

/// Event statuses that report a job state.
const JOB_STATES: [&str; 6] = [
    "SUBMITTED",
    "PROGRESSING",
    "STATUS_UPDATE",
    "COMPLETE",
    "ERROR",
    "CANCELED",
];

/// Maximum wait for the status write of one event before its message is left to return.
/// It stays below SQS's default visibility timeout of 30 seconds.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// Deliveries after which a message whose status write never confirms is deleted anyway;
/// its resource may be gone, and the batched sync covers the rest.
const MAX_RECEIVES: u32 = 3;

/// Seconds one receive call waits for messages to arrive.
const WAIT_SECONDS: i32 = 20;

/// Received batches whose status writes may be awaited at once. Each waits for reconciles,
/// which a burst of new resources can hold up for seconds, so one batch at a time caps
/// the reader at a few messages per second while events pile up in the queue.
const MAX_BATCHES: usize = 16;

/// Reads job events from one SQS queue.
pub struct JobEvents {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    sync: Arc<StatusSync>,
    metrics: Arc<Metrics>,
}

impl JobEvents {
    pub fn new(
        config: &aws_config::SdkConfig,
        region: &str,
        queue_url: String,
        sync: Arc<StatusSync>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let config = aws_sdk_sqs::config::Builder::from(config)
            .region(aws_sdk_sqs::config::Region::new(region.to_string()))
            .interceptor(crate::metrics::AwsCallMetrics)
            .build();
        Self {
            client: aws_sdk_sqs::Client::from_conf(config),
            queue_url,
            sync,
            metrics,
        }
    }

    /// Receives and applies events until the future is dropped, with up to
    /// [`MAX_BATCHES`] received batches in progress. A failed receive is retried with a
    /// growing delay of up to a minute.
    pub async fn run(self) {
        tracing::info!(queue_url = %self.queue_url, "Reading MediaConvert job events");
        let reader = Arc::new(self);
        // Dropping the set aborts its tasks, so they stop with the reader.
        let mut batches = tokio::task::JoinSet::new();
        let mut delay = Duration::from_secs(1);
        loop {
            while batches.try_join_next().is_some() {}
            if batches.len() >= MAX_BATCHES {
                batches.join_next().await;
            }
            let received = reader
                .client
                .receive_message()
                .queue_url(&reader.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(WAIT_SECONDS)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await;
            match received {
                Ok(output) => {
                    delay = Duration::from_secs(1);
                    let messages = output.messages.unwrap_or_default();
                    if messages.is_empty() {
                        continue;
                    }
                    let reader = reader.clone();
                    batches.spawn(async move {
                        let handled = messages.iter().map(|message| reader.handle(message));
                        let done = futures::future::join_all(handled).await;
                        let receipts = messages
                            .iter()
                            .zip(done)
                            .filter(|(_, done)| *done)
                            .filter_map(|(message, _)| message.receipt_handle());
                        reader.delete(receipts).await;
                    });
                }
                Err(error) => {
                    let error = aws_sdk_sqs::error::DisplayErrorContext(error);
                    tracing::warn!(error = %error, delay_s = delay.as_secs(), "Failed to receive job events; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Applies one message. Returns `true` when the message can be deleted.
    async fn handle(&self, message: &Message) -> bool {
        let body = message.body().unwrap_or_default();
        let Some(event) = JobEvent::parse(body) else {
            tracing::debug!(
                message_id = message.message_id(),
                "Deleting a message that carries no MediaConvert job state"
            );
            self.metrics.job_event("not_state");
            return true;
        };
        let known = self.sync.observation(&event.job_id);
        let base = known.and_then(|known| known.snapshot);
        let snapshot = event.snapshot(base.as_ref());
        match self
            .sync
            .observe(&event.job_id, Some(snapshot), event.timestamp_ms)
        {
            Outcome::Stored(seq) => {
                tracing::debug!(job_id = %event.job_id, status = %event.status, seq, "Applying a job event");
                if self.sync.written(&event.job_id, seq, WRITE_TIMEOUT).await {
                    self.metrics.job_event("applied");
                    true
                } else if receive_count(message) >= MAX_RECEIVES {
                    self.metrics.job_event("expired");
                    tracing::warn!(job_id = %event.job_id, status = %event.status, "Status of a job event was not written after repeated deliveries; deleting it and leaving the job to the status sync");
                    true
                } else {
                    self.metrics.job_event("returned");
                    tracing::debug!(job_id = %event.job_id, "Status of a job event not written yet; the message returns to the queue");
                    false
                }
            }
            Outcome::Stale => {
                tracing::debug!(job_id = %event.job_id, status = %event.status, "Ignoring a job event older than the known state");
                self.metrics.job_event("stale");
                true
            }
            Outcome::Unknown => {
                tracing::debug!(job_id = %event.job_id, "Ignoring an event of a job no resource owns");
                self.metrics.job_event("unowned");
                true
            }
        }
    }

    /// Deletes the messages of one received batch with one `DeleteMessageBatch` call.
    /// A receive returns at most ten messages, the maximum of one batch.
    async fn delete<'a>(&self, receipts: impl Iterator<Item = &'a str>) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .enumerate()
            .filter_map(|(index, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        let deleted = self
            .client
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        // A message that is not deleted returns and is applied again, which changes nothing.
        match deleted {
            Ok(output) => {
                for failed in output.failed() {
                    tracing::warn!(
                        queue_url = %self.queue_url,
                        code = failed.code(),
                        message = failed.message(),
                        "Failed to delete a job event; it returns to the queue"
                    );
                }
            }
            Err(error) => {
                let error = aws_sdk_sqs::error::DisplayErrorContext(error);
                tracing::warn!(queue_url = %self.queue_url, error = %error, "Failed to delete job events; they return to the queue");
            }
        }
    }
}

fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|attributes| attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// One "MediaConvert Job State Change" event.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEvent {
    pub job_id: String,
    /// SUBMITTED, PROGRESSING, STATUS_UPDATE, COMPLETE, ERROR or CANCELED.
    pub status: String,
    /// Epoch milliseconds of the change, from the event's `detail.timestamp`.
    pub timestamp_ms: i64,
    detail: Map<String, Value>,
}

impl JobEvent {
    /// Reads an EventBridge event as SQS delivers it. Returns `None` for anything else,
    /// including job events that report no state, such as warnings.
    pub fn parse(body: &str) -> Option<Self> {
        let event: Value = serde_json::from_str(body).ok()?;
        if event.get("source")?.as_str()? != EVENT_SOURCE
            || event.get("detail-type")?.as_str()? != EVENT_DETAIL_TYPE
        {
            return None;
        }
        let detail = event.get("detail")?.as_object()?.clone();
        let job_id = detail.get("jobId")?.as_str()?.to_string();
        let status = detail.get("status")?.as_str()?.to_string();
        // Other statuses, such as INPUT_INFORMATION or NEW_WARNING, carry no job state.
        if !JOB_STATES.contains(&status.as_str()) {
            return None;
        }
        let timestamp_ms = detail
            .get("timestamp")
            .and_then(Value::as_f64)
            .map(|ms| ms as i64)
            .or_else(|| {
                let time = event.get("time")?.as_str()?;
                Some(
                    time.parse::<k8s_openapi::jiff::Timestamp>()
                        .ok()?
                        .as_millisecond(),
                )
            })?;
        Some(Self {
            job_id,
            status,
            timestamp_ms,
            detail,
        })
    }

    /// State of the job after this event: `base`, the last known state, updated with the
    /// event's fields.
    pub fn snapshot(&self, base: Option<&JobSnapshot>) -> JobSnapshot {
        let detail = &self.detail;
        let status = match self.status.as_str() {
            "STATUS_UPDATE" => "PROGRESSING",
            other => other,
        };
        let progress = detail.get("jobProgress");
        let mut job = json!({
            "id": self.job_id,
            "status": status,
            "queue": detail.get("queue"),
            "userMetadata": detail.get("userMetadata"),
            "jobPercentComplete": progress.and_then(|progress| progress.get("jobPercentComplete")),
            "currentPhase": progress.and_then(|progress| progress.get("currentPhase")),
            "errorCode": detail.get("errorCode"),
            "errorMessage": detail.get("errorMessage"),
            "outputGroupDetails": detail.get("outputGroupDetails"),
            "timing": detail.get("timing"),
        });
        if let Some(object) = job.as_object_mut() {
            object.retain(|_, value| !value.is_null());
        }
        let event = JobSnapshot::from_json(&job);
        let base = base.cloned().unwrap_or_default();
        let seconds = self.timestamp_ms / 1000;
        let terminal = matches!(status, "COMPLETE" | "ERROR" | "CANCELED");
        let running = status == "PROGRESSING" || terminal;
        JobSnapshot {
            id: event.id,
            arn: base.arn,
            status: event.status,
            queue: event.queue.or(base.queue),
            percent_complete: event.percent_complete.or(if status == "PROGRESSING" {
                base.percent_complete
            } else {
                None
            }),
            current_phase: event
                .current_phase
                .or(if terminal { None } else { base.current_phase }),
            error_code: event.error_code,
            error_message: event.error_message,
            submit_time: event.submit_time.or(base.submit_time),
            start_time: event
                .start_time
                .or(base.start_time)
                .or(running.then_some(seconds)),
            finish_time: event.finish_time.or(terminal.then_some(seconds)),
            output_paths: event.output_paths,
            user_metadata: if event.user_metadata.is_empty() {
                base.user_metadata
            } else {
                event.user_metadata
            },
            created_at: base.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(detail: Value) -> String {
        json!({
            "version": "0",
            "id": "0b7b1d62-6c3a-4d44-9a8e-4a0b7a6b7e11",
            "detail-type": EVENT_DETAIL_TYPE,
            "source": EVENT_SOURCE,
            "account": "111122223333",
            "time": "2026-12-04T10:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:mediaconvert:us-east-1:111122223333:jobs/1700000000000-abc123"],
            "detail": detail,
        })
        .to_string()
    }

    #[test]
    fn status_update_becomes_progress() {
        let event = JobEvent::parse(&body(json!({
            "timestamp": 1_764_842_400_123_i64,
            "jobId": "1700000000000-abc123",
            "status": "STATUS_UPDATE",
            "jobProgress": {"jobPercentComplete": 42, "currentPhase": "TRANSCODING"}
        })))
        .expect("event");
        assert_eq!(event.timestamp_ms, 1_764_842_400_123);
        let base = JobSnapshot {
            id: "1700000000000-abc123".into(),
            arn: Some(
                "arn:aws:mediaconvert:us-east-1:111122223333:jobs/1700000000000-abc123".into(),
            ),
            status: "SUBMITTED".into(),
            submit_time: Some(1_764_842_390),
            ..JobSnapshot::default()
        };
        let snapshot = event.snapshot(Some(&base));
        assert_eq!(snapshot.status, "PROGRESSING");
        assert_eq!(snapshot.percent_complete, Some(42));
        assert_eq!(snapshot.current_phase.as_deref(), Some("TRANSCODING"));
        assert_eq!(snapshot.arn, base.arn);
        assert_eq!(snapshot.submit_time, Some(1_764_842_390));
        assert_eq!(snapshot.start_time, Some(1_764_842_400));
        assert_eq!(snapshot.finish_time, None);
    }

    #[test]
    fn completion_carries_outputs_and_finish_time() {
        let event = JobEvent::parse(&body(json!({
            "timestamp": 1_764_842_460_000_i64,
            "jobId": "1700000000000-abc123",
            "status": "COMPLETE",
            "outputGroupDetails": [{"outputDetails": [{"outputFilePaths": ["s3://example-media-out/episode-1.mp4"]}]}]
        })))
        .expect("event");
        let snapshot = event.snapshot(None);
        assert_eq!(snapshot.status, "COMPLETE");
        assert_eq!(
            snapshot.output_paths,
            ["s3://example-media-out/episode-1.mp4"]
        );
        assert_eq!(snapshot.finish_time, Some(1_764_842_460));
    }

    #[test]
    fn error_carries_code_and_message() {
        let event = JobEvent::parse(&body(json!({
            "timestamp": 1_764_842_460_000_i64,
            "jobId": "1700000000000-abc123",
            "status": "ERROR",
            "errorCode": 1401,
            "errorMessage": "Access denied writing s3://example-media-out/episode-1.mp4"
        })))
        .expect("event");
        let snapshot = event.snapshot(None);
        assert_eq!(snapshot.error_code, Some(1401));
        assert!(snapshot.error_message.unwrap().contains("Access denied"));
    }

    #[test]
    fn other_events_are_not_job_events() {
        let other = json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}});
        assert_eq!(JobEvent::parse(&other.to_string()), None);
        assert_eq!(JobEvent::parse("not json"), None);
        let no_job = body(json!({"timestamp": 1, "status": "COMPLETE"}));
        assert_eq!(JobEvent::parse(&no_job), None);
        let warning = body(json!({"timestamp": 1, "jobId": "1700000000000-abc123",
                                  "status": "NEW_WARNING", "warningCode": 230005}));
        assert_eq!(JobEvent::parse(&warning), None);
    }
}
