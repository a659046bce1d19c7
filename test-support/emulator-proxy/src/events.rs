//! MediaConvert job state change events: which changes a scripted job has
//! gone through since the last check, and the EventBridge `PutEvents`
//! entries that describe them.
//!
//! The detail follows the "MediaConvert Job State Change" events of the
//! MediaConvert user guide (pages `ev_status_progressing`,
//! `ev_status_status_update` and `mediaconvert_event_list`).

use std::collections::VecDeque;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::jobs::{ScriptedJob, SettingsJson};
use crate::outputs::output_group_details;
use crate::timeline::{JobState, JobStatus};

/// `Source` of every published entry, as MediaConvert sends it.
pub const SOURCE: &str = "aws.mediaconvert";

/// `DetailType` of every published entry.
pub const DETAIL_TYPE: &str = "MediaConvert Job State Change";

/// Job phases in the order MediaConvert goes through them.
const PHASES: &[&str] = &["PROBING", "TRANSCODING", "UPLOADING"];

/// A job that publishes its state changes, with what its events carry and
/// how far its changes have been published.
#[derive(Debug, Clone)]
pub struct EventJob {
    pub arn: String,
    pub queue: String,
    pub account: String,
    pub region: String,
    pub user_metadata: Map<String, Value>,
    pub settings: SettingsJson,
    /// Status of the last event, `None` before the SUBMITTED event.
    last_status: Option<JobStatus>,
    /// `jobPercentComplete` of the last PROGRESSING or STATUS_UPDATE event.
    last_percent: Option<u8>,
    /// Unix milliseconds of the last PROGRESSING or STATUS_UPDATE event.
    last_progress_ms: Option<u64>,
    /// Unix milliseconds up to which changes have been turned into events.
    checked_ms: u64,
}

/// One state change: the `status` of the event detail, when it happened in
/// Unix milliseconds, and the job state at that time.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub status: &'static str,
    pub at_ms: u64,
    pub state: JobState,
}

impl EventJob {
    pub fn new(
        arn: String,
        queue: String,
        account: String,
        region: String,
        user_metadata: Map<String, Value>,
        settings: SettingsJson,
    ) -> Self {
        Self {
            arn,
            queue,
            account,
            region,
            user_metadata,
            settings,
            last_status: None,
            last_percent: None,
            last_progress_ms: None,
            checked_ms: 0,
        }
    }

    /// Returns the changes of `job` up to `now_ms` that have no event yet, in
    /// order, and marks them published. Every job starts with SUBMITTED at its
    /// creation. A status change gives one event at the time it happened. A
    /// new `jobPercentComplete` while PROGRESSING gives one STATUS_UPDATE at
    /// `now_ms`, however often the percent changed since the last call, but
    /// none sooner than the timeline's `statusUpdateEveryMs` after the last
    /// PROGRESSING or STATUS_UPDATE event.
    pub fn take_changes(&mut self, job: &ScriptedJob, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        // NOTE: MediaConvert itself sends no SUBMITTED event, as its user guide's
        // event list states. The proxy sends one so that tests see every status.
        if self.last_status.is_none() {
            let state = job.state_at(job.created_ms);
            let submitted = Change {
                status: JobStatus::Submitted.as_str(),
                at_ms: job.created_ms,
                state: JobState {
                    status: JobStatus::Submitted,
                    ..state
                },
            };
            changes.push(submitted);
            self.last_status = Some(JobStatus::Submitted);
            self.checked_ms = job.created_ms.saturating_sub(1);
        }

        for at_ms in change_times(job, self.checked_ms, now_ms) {
            let state = job.state_at(at_ms);
            if Some(state.status) == self.last_status {
                continue;
            }
            self.last_status = Some(state.status);
            self.last_percent = state.percent;
            if state.status == JobStatus::Progressing {
                self.last_progress_ms = Some(at_ms);
            }
            changes.push(Change {
                status: state.status.as_str(),
                at_ms,
                state,
            });
        }
        self.checked_ms = self.checked_ms.max(now_ms);

        let state = job.state_at(now_ms);
        let progressing = state.status == JobStatus::Progressing;
        let every_ms = job.timeline.status_update_every_ms.unwrap_or(0);
        let due = self
            .last_progress_ms
            .is_none_or(|last| now_ms >= last.saturating_add(every_ms));
        if progressing && due && state.percent.is_some() && state.percent != self.last_percent {
            self.last_percent = state.percent;
            self.last_progress_ms = Some(now_ms);
            changes.push(Change {
                status: "STATUS_UPDATE",
                at_ms: now_ms,
                state,
            });
        }
        changes
    }

    /// Reports whether the terminal event has been taken, after which the
    /// job has nothing more to publish.
    pub fn is_finished(&self) -> bool {
        self.last_status.is_some_and(JobStatus::is_terminal)
    }

    /// Builds the `PutEvents` entry for `change` of job `job_id`.
    pub fn entry(&self, job_id: &str, change: &Change) -> Value {
        let detail = self.detail(job_id, change);
        json!({
            "Source": SOURCE,
            "DetailType": DETAIL_TYPE,
            "Detail": detail.to_string(),
            "Resources": [self.arn],
            "Time": change.at_ms as f64 / 1000.0,
            "EventBusName": "default",
        })
    }

    fn detail(&self, job_id: &str, change: &Change) -> Value {
        let mut detail = Map::new();
        detail.insert("timestamp".to_string(), json!(change.at_ms));
        detail.insert("accountId".to_string(), json!(self.account));
        detail.insert("queue".to_string(), json!(self.queue));
        detail.insert("jobId".to_string(), json!(job_id));
        detail.insert("status".to_string(), json!(change.status));
        let user_metadata = Value::Object(self.user_metadata.clone());
        detail.insert("userMetadata".to_string(), user_metadata);

        let state = &change.state;
        match change.status {
            "STATUS_UPDATE" => {
                detail.insert("jobProgress".to_string(), job_progress(state));
            }
            "COMPLETE" => {
                let details = output_group_details(&self.settings.to_value());
                detail.insert("outputGroupDetails".to_string(), json!(details));
            }
            "ERROR" => {
                let (code, message) = state.error.clone().unwrap_or_default();
                detail.insert("errorCode".to_string(), json!(code));
                detail.insert("errorMessage".to_string(), json!(message));
            }
            _ => {}
        }
        Value::Object(detail)
    }
}

/// Returns the times after `after_ms` and up to `now_ms` at which `job` may
/// change status: its creation, each step and its cancellation, in order.
fn change_times(job: &ScriptedJob, after_ms: u64, now_ms: u64) -> Vec<u64> {
    let steps = job.timeline.steps.iter();
    let mut times: Vec<u64> = steps.map(|step| job.created_ms + step.at_ms).collect();
    times.push(job.created_ms);
    times.extend(job.canceled_ms);
    times.retain(|&at_ms| after_ms < at_ms && at_ms <= now_ms);
    times.sort_unstable();
    times.dedup();
    times
}

/// Builds `jobProgress`: the job percent, the current phase, and one
/// `phaseProgress` entry per phase up to the current one, earlier phases
/// COMPLETE at 100 and the current one PROGRESSING.
fn job_progress(state: &JobState) -> Value {
    let mut phase_progress = Map::new();
    if let Some(current) = state.current_phase.as_deref() {
        let position = PHASES.iter().position(|phase| *phase == current);
        for phase in &PHASES[..position.unwrap_or(0)] {
            let done = json!({"status": "COMPLETE", "percentComplete": 100});
            phase_progress.insert(phase.to_string(), done);
        }
        let mut progress = Map::new();
        progress.insert("status".to_string(), json!("PROGRESSING"));
        if let Some(percent) = state.percent {
            progress.insert("percentComplete".to_string(), json!(percent));
        }
        phase_progress.insert(current.to_string(), Value::Object(progress));
    }

    let mut job_progress = Map::new();
    if let Some(percent) = state.percent {
        job_progress.insert("jobPercentComplete".to_string(), json!(percent));
    }
    if let Some(phase) = &state.current_phase {
        job_progress.insert("currentPhase".to_string(), json!(phase));
    }
    job_progress.insert("phaseProgress".to_string(), Value::Object(phase_progress));
    Value::Object(job_progress)
}

/// A `PutEvents` entry waiting to be sent, with the region of its job.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    pub region: String,
    pub entry: Value,
}

/// Entries waiting for `PutEvents`, oldest first, and the publication counts
/// that `GET /__proxy/events` shows.
#[derive(Debug, Default)]
pub struct Outbox {
    pub pending: VecDeque<PendingEntry>,
    pub published: u64,
    pub failed_calls: u64,
    pub last_error: Option<String>,
}

/// Outcome of one `PutEvents` call: the positions of the rejected entries
/// with their error, or an error for the whole call.
pub type CallResult = Result<Vec<(usize, String)>, String>;

impl Outbox {
    /// Removes a sent batch of `count` entries from the front of the outbox,
    /// puts the rejected ones back in their order and updates the counts.
    /// Returns the error of the call or of its first rejected entry.
    pub fn settle(&mut self, count: usize, result: CallResult) -> Option<String> {
        // A reset during the call may have emptied the outbox.
        let count = count.min(self.pending.len());
        let sent: Vec<PendingEntry> = self.pending.drain(..count).collect();
        let (rejected, error) = match result {
            Ok(rejected) if rejected.is_empty() => {
                self.published += count as u64;
                self.last_error = None;
                return None;
            }
            Ok(rejected) => {
                let error = rejected[0].1.clone();
                let positions = rejected.into_iter().map(|(position, _)| position);
                (positions.collect(), error)
            }
            Err(error) => ((0..count).collect::<Vec<usize>>(), error),
        };

        let returned: Vec<&PendingEntry> = rejected
            .iter()
            .filter_map(|&position| sent.get(position))
            .collect();
        self.published += (count - returned.len()) as u64;
        self.failed_calls += 1;
        for entry in returned.into_iter().rev() {
            self.pending.push_front(entry.clone());
        }
        self.last_error = Some(error.clone());
        Some(error)
    }
}

/// Body of `GET /__proxy/events`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxView<'a> {
    /// Entries that EventBridge accepted.
    pub published: u64,
    /// Entries waiting for the next attempt.
    pub pending: usize,
    /// `PutEvents` calls that failed in whole or in part.
    pub failed_calls: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<&'a str>,
    /// Jobs that have not yet published their terminal event.
    pub publishing_jobs: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED_MS: u64 = 1_767_225_600_000;

    fn scripted(steps: Value) -> ScriptedJob {
        ScriptedJob {
            timeline: serde_json::from_value(json!({ "steps": steps })).unwrap(),
            created_ms: CREATED_MS,
            canceled_ms: None,
        }
    }

    fn event_job() -> EventJob {
        EventJob::new(
            "arn:aws:mediaconvert:us-east-1:123456789012:jobs/j".to_string(),
            "arn:aws:mediaconvert:us-east-1:123456789012:queues/Default".to_string(),
            "123456789012".to_string(),
            "us-east-1".to_string(),
            json!({"case": "a"}).as_object().unwrap().clone(),
            SettingsJson::new(&json!({
                "inputs": [{"fileInput": "s3://in/clip.mov"}],
                "outputGroups": [{
                    "outputGroupSettings": {"fileGroupSettings": {"destination": "s3://out/"}},
                    "outputs": [{"nameModifier": "_hd", "containerSettings": {"container": "MP4"}}],
                }],
            })),
        )
    }

    fn statuses(changes: &[Change]) -> Vec<(&'static str, u64)> {
        changes
            .iter()
            .map(|change| (change.status, change.at_ms - CREATED_MS))
            .collect()
    }

    fn progress_job() -> ScriptedJob {
        scripted(json!([
            {"atMs": 0, "status": "SUBMITTED"},
            {"atMs": 100, "status": "PROGRESSING", "percent": 0, "currentPhase": "PROBING"},
            {"atMs": 1100, "status": "PROGRESSING", "percent": 100, "currentPhase": "TRANSCODING"},
            {"atMs": 1200, "status": "COMPLETE"},
        ]))
    }

    #[test]
    fn changes_follow_timeline_with_status_updates() {
        let job = progress_job();
        let mut events = event_job();
        let at = |ms: u64| CREATED_MS + ms;

        assert_eq!(
            statuses(&events.take_changes(&job, at(50))),
            [("SUBMITTED", 0)]
        );
        assert_eq!(
            statuses(&events.take_changes(&job, at(100))),
            [("PROGRESSING", 100)]
        );
        assert_eq!(
            statuses(&events.take_changes(&job, at(600))),
            [("STATUS_UPDATE", 600)]
        );
        assert!(events.take_changes(&job, at(600)).is_empty());
        assert!(!events.is_finished());
        assert_eq!(
            statuses(&events.take_changes(&job, at(5000))),
            [("COMPLETE", 1200)]
        );
        assert!(events.is_finished());
    }

    #[test]
    fn status_updates_wait_for_cadence() {
        let mut job = progress_job();
        job.timeline.status_update_every_ms = Some(400);
        let mut events = event_job();
        let at = |ms: u64| CREATED_MS + ms;

        let first = events.take_changes(&job, at(100));
        assert_eq!(statuses(&first), [("SUBMITTED", 0), ("PROGRESSING", 100)]);
        // The percent rises every 10 ms, but updates come 400 ms apart.
        assert!(events.take_changes(&job, at(300)).is_empty());
        assert!(events.take_changes(&job, at(499)).is_empty());
        assert_eq!(
            statuses(&events.take_changes(&job, at(500))),
            [("STATUS_UPDATE", 500)]
        );
        assert!(events.take_changes(&job, at(700)).is_empty());
        assert_eq!(
            statuses(&events.take_changes(&job, at(950))),
            [("STATUS_UPDATE", 950)]
        );
    }

    #[test]
    fn status_change_is_not_held_back_by_cadence() {
        let mut job = progress_job();
        job.timeline.status_update_every_ms = Some(60_000);
        let mut events = event_job();
        events.take_changes(&job, CREATED_MS + 150);
        let changes = events.take_changes(&job, CREATED_MS + 1300);
        assert_eq!(statuses(&changes), [("COMPLETE", 1200)]);
        assert!(events.is_finished());
    }

    #[test]
    fn late_check_sends_every_status_in_order() {
        let job = progress_job();
        let mut events = event_job();
        let changes = events.take_changes(&job, CREATED_MS + 5000);
        let expected = [("SUBMITTED", 0), ("PROGRESSING", 100), ("COMPLETE", 1200)];
        assert_eq!(statuses(&changes), expected);
    }

    #[test]
    fn cancel_sends_canceled_at_cancel_time() {
        let mut job = progress_job();
        let mut events = event_job();
        events.take_changes(&job, CREATED_MS + 300);
        job.canceled_ms = Some(CREATED_MS + 400);
        let changes = events.take_changes(&job, CREATED_MS + 450);
        assert_eq!(statuses(&changes), [("CANCELED", 400)]);
        assert!(events.is_finished());
    }

    #[test]
    fn entry_carries_detail_fields() {
        let job = progress_job();
        let mut events = event_job();
        let changes = events.take_changes(&job, CREATED_MS + 600);
        let update = changes.last().unwrap();
        let entry = events.entry("j", update);
        assert_eq!(entry["Source"], "aws.mediaconvert");
        assert_eq!(entry["DetailType"], "MediaConvert Job State Change");
        assert_eq!(entry["Resources"], json!([events.arn]));
        assert_eq!(entry["Time"], json!((CREATED_MS + 600) as f64 / 1000.0));
        let detail: Value = serde_json::from_str(entry["Detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail["status"], "STATUS_UPDATE");
        assert_eq!(detail["timestamp"], CREATED_MS + 600);
        assert_eq!(detail["accountId"], "123456789012");
        assert_eq!(detail["jobId"], "j");
        assert_eq!(detail["userMetadata"], json!({"case": "a"}));
        let progress = &detail["jobProgress"];
        assert_eq!(progress["jobPercentComplete"], 50);
        assert_eq!(progress["currentPhase"], "PROBING");
        assert_eq!(
            progress["phaseProgress"]["PROBING"]["status"],
            "PROGRESSING"
        );

        let complete = Change {
            status: "COMPLETE",
            at_ms: CREATED_MS + 1200,
            state: job.state_at(CREATED_MS + 1200),
        };
        let entry = events.entry("j", &complete);
        let detail: Value = serde_json::from_str(entry["Detail"].as_str().unwrap()).unwrap();
        let paths = &detail["outputGroupDetails"][0]["outputDetails"][0]["outputFilePaths"];
        assert_eq!(paths, &json!(["s3://out/clip_hd.mp4"]));
    }

    #[test]
    fn error_detail_has_code_and_message() {
        let job = scripted(json!([
            {"atMs": 10, "status": "ERROR", "errorCode": 1401, "errorMessage": "denied"},
        ]));
        let mut events = event_job();
        let changes = events.take_changes(&job, CREATED_MS + 20);
        assert_eq!(statuses(&changes), [("SUBMITTED", 0), ("ERROR", 10)]);
        let entry = events.entry("j", &changes[1]);
        let detail: Value = serde_json::from_str(entry["Detail"].as_str().unwrap()).unwrap();
        assert_eq!(detail["errorCode"], 1401);
        assert_eq!(detail["errorMessage"], "denied");
    }

    #[test]
    fn later_phase_marks_earlier_ones_complete() {
        let job = progress_job();
        let progress = job_progress(&job.state_at(CREATED_MS + 1150));
        assert_eq!(progress["currentPhase"], "TRANSCODING");
        assert_eq!(
            progress["phaseProgress"]["PROBING"],
            json!({"status": "COMPLETE", "percentComplete": 100})
        );
        assert_eq!(
            progress["phaseProgress"]["TRANSCODING"]["status"],
            "PROGRESSING"
        );
    }

    fn pending(names: &[&str]) -> VecDeque<PendingEntry> {
        let entry = |name: &&str| PendingEntry {
            region: "us-east-1".to_string(),
            entry: json!(name),
        };
        names.iter().map(entry).collect()
    }

    fn names(outbox: &Outbox) -> Vec<&str> {
        let pending = outbox.pending.iter();
        pending
            .map(|pending| pending.entry.as_str().unwrap())
            .collect()
    }

    #[test]
    fn settle_keeps_rejected_entries_in_order() {
        let mut outbox = Outbox {
            pending: pending(&["a", "b", "c", "d"]),
            ..Outbox::default()
        };
        let rejected = vec![(0, "first".to_string()), (2, "second".to_string())];
        let error = outbox.settle(3, Ok(rejected));
        assert_eq!(error.as_deref(), Some("first"));
        assert_eq!(names(&outbox), ["a", "c", "d"]);
        assert_eq!(outbox.published, 1);
        assert_eq!(outbox.failed_calls, 1);
        assert_eq!(outbox.last_error.as_deref(), Some("first"));

        assert_eq!(outbox.settle(3, Ok(Vec::new())), None);
        assert!(outbox.pending.is_empty());
        assert_eq!(outbox.published, 4);
        assert_eq!(outbox.last_error, None);
    }

    #[test]
    fn settle_keeps_whole_failed_call() {
        let mut outbox = Outbox {
            pending: pending(&["a", "b"]),
            ..Outbox::default()
        };
        let error = outbox.settle(2, Err("connection refused".to_string()));
        assert_eq!(error.as_deref(), Some("connection refused"));
        assert_eq!(names(&outbox), ["a", "b"]);
        assert_eq!(outbox.published, 0);
        assert_eq!(outbox.failed_calls, 1);
    }
}
