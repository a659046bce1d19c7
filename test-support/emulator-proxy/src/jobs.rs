//! Scripted jobs and the rewriting of MediaConvert `Job` objects to show
//! their scripted state.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::outputs::output_group_details;
use crate::timeline::{JobState, JobStatus, Timeline};

/// A job created through the proxy while a timeline applied to it.
#[derive(Debug, Clone)]
pub struct ScriptedJob {
    pub timeline: Timeline,
    /// Creation time in Unix milliseconds, taken from the job's `createdAt`.
    pub created_ms: u64,
    /// When CancelJob canceled the job, in Unix milliseconds.
    pub canceled_ms: Option<u64>,
}

impl ScriptedJob {
    /// Evaluates the job state at `now_ms` (Unix milliseconds).
    pub fn state_at(&self, now_ms: u64) -> JobState {
        let elapsed_ms = now_ms.saturating_sub(self.created_ms);
        match self.canceled_ms {
            Some(canceled_ms) if canceled_ms <= now_ms => {
                let canceled_elapsed = canceled_ms.saturating_sub(self.created_ms);
                let state = self.timeline.state_at(canceled_elapsed);
                state.canceled_at(canceled_elapsed)
            }
            _ => self.timeline.state_at(elapsed_ms),
        }
    }

    /// Returns when the job reached or will reach its terminal status, in Unix
    /// milliseconds: the cancel time, else the timeline's terminal step, else
    /// `None` while the timeline has no terminal step.
    pub fn finished_ms(&self) -> Option<u64> {
        let terminal_ms = self
            .timeline
            .terminal_at_ms()
            .map(|at_ms| self.created_ms + at_ms);
        match (self.canceled_ms, terminal_ms) {
            (Some(canceled_ms), Some(terminal_ms)) => Some(canceled_ms.min(terminal_ms)),
            (Some(canceled_ms), None) => Some(canceled_ms),
            (None, terminal_ms) => terminal_ms,
        }
    }
}

/// Job settings kept as compact JSON text, shared by every record of the job.
/// Text takes a fraction of the memory of a parsed [`Value`] tree, and jobs
/// are read far less often than they are stored.
#[derive(Debug, Clone)]
pub struct SettingsJson(Arc<RawValue>);

impl SettingsJson {
    /// Stores `settings` as compact JSON.
    pub fn new(settings: &Value) -> Self {
        let raw =
            serde_json::value::to_raw_value(settings).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Self(Arc::from(raw))
    }

    /// Parses the settings back into a [`Value`].
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl Serialize for SettingsJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Returns the current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// Reads a job's `createdAt`, which fakecloud sends as epoch seconds with a
/// fraction, as Unix milliseconds.
pub fn created_ms(job: &Map<String, Value>) -> Option<u64> {
    let seconds = job.get("createdAt")?.as_f64()?;
    Some((seconds * 1000.0).round() as u64)
}

/// Rewrites `job` to show `state` for a job created at `created_ms`.
///
/// Sets `status`, `jobPercentComplete`, `currentPhase`, `errorCode`,
/// `errorMessage` and `timing`, removing each field that does not apply to
/// the status. On COMPLETE it fills `outputGroupDetails` with the output file
/// paths computed from the job's settings, and it removes the field otherwise.
///
/// NOTE: `outputFilePaths`, `playlistFilePaths` and `type` mirror the job state
/// change event. GetJob's API shape lacks them, so AWS SDKs drop them on parse.
pub fn apply_state(job: &mut Map<String, Value>, state: &JobState, created_ms: u64) {
    job.insert("status".to_string(), json!(state.status.as_str()));
    set_or_remove(job, "jobPercentComplete", state.percent.map(|p| json!(p)));
    let phase = state.current_phase.as_ref().map(|phase| json!(phase));
    set_or_remove(job, "currentPhase", phase);
    let (code, message) = match &state.error {
        Some((code, message)) => (Some(json!(code)), Some(json!(message))),
        None => (None, None),
    };
    set_or_remove(job, "errorCode", code);
    set_or_remove(job, "errorMessage", message);
    job.insert("timing".to_string(), timing(state, created_ms));

    if state.status == JobStatus::Complete {
        let settings = job.get("settings").cloned().unwrap_or(Value::Null);
        let details = job.entry("outputGroupDetails").or_insert_with(|| json!([]));
        merge_output_details(details, output_group_details(&settings));
    } else {
        job.remove("outputGroupDetails");
    }
}

fn set_or_remove(job: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(value) => job.insert(key.to_string(), value),
        None => job.remove(key),
    };
}

/// Builds `timing` in epoch seconds, the format MediaConvert and fakecloud use.
fn timing(state: &JobState, created_ms: u64) -> Value {
    let seconds = |offset_ms: u64| json!((created_ms + offset_ms) as f64 / 1000.0);
    let mut timing = Map::new();
    timing.insert("submitTime".to_string(), seconds(0));
    if let Some(started_ms) = state.started_ms {
        timing.insert("startTime".to_string(), seconds(started_ms));
    }
    if let Some(finished_ms) = state.finished_ms {
        timing.insert("finishTime".to_string(), seconds(finished_ms));
    }
    Value::Object(timing)
}

/// Merges computed group details into the upstream ones, entry by entry, so
/// fields fakecloud already sent are kept and missing entries are created.
fn merge_output_details(existing: &mut Value, computed: Vec<Value>) {
    if !existing.is_array() {
        *existing = json!([]);
    }
    let Value::Array(groups) = existing else {
        return;
    };
    for (index, computed_group) in computed.into_iter().enumerate() {
        if groups.len() <= index {
            groups.push(json!({}));
        }
        merge_object(&mut groups[index], computed_group);
    }
}

/// Copies the fields of `source` into `target`, merging `outputDetails` by index.
fn merge_object(target: &mut Value, source: Value) {
    let (Some(target), Value::Object(source)) = (target.as_object_mut(), source) else {
        return;
    };
    for (key, value) in source {
        if key != "outputDetails" {
            target.insert(key, value);
            continue;
        }
        let details = target.entry("outputDetails").or_insert_with(|| json!([]));
        let Value::Array(computed) = value else {
            continue;
        };
        let Some(details) = details.as_array_mut() else {
            continue;
        };
        for (index, computed_detail) in computed.into_iter().enumerate() {
            if details.len() <= index {
                details.push(json!({}));
            }
            merge_object(&mut details[index], computed_detail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scripted(steps: Value, created_ms: u64) -> ScriptedJob {
        ScriptedJob {
            timeline: serde_json::from_value(json!({ "steps": steps })).unwrap(),
            created_ms,
            canceled_ms: None,
        }
    }

    #[test]
    fn finished_ms_from_terminal_step_or_cancel() {
        let steps = json!([
            {"atMs": 0, "status": "PROGRESSING", "percent": 0},
            {"atMs": 1000, "status": "COMPLETE"},
        ]);
        let mut job = scripted(steps, 10_000);
        assert_eq!(job.finished_ms(), Some(11_000));
        job.canceled_ms = Some(10_400);
        assert_eq!(job.finished_ms(), Some(10_400));

        let open = scripted(json!([{"atMs": 0, "status": "PROGRESSING"}]), 10_000);
        assert_eq!(open.finished_ms(), None);
    }

    #[test]
    fn settings_json_round_trips() {
        let settings = json!({"inputs": [{"fileInput": "s3://b/in.mov"}]});
        let stored = SettingsJson::new(&settings);
        assert_eq!(stored.to_value(), settings);
        assert_eq!(serde_json::to_value(&stored).unwrap(), settings);
    }

    fn fakecloud_complete_job() -> Map<String, Value> {
        let job = json!({
            "id": "1767225600000-abc123",
            "status": "COMPLETE",
            "currentPhase": "UPLOADING",
            "jobPercentComplete": 100,
            "createdAt": 1767225600.0,
            "settings": {
                "inputs": [{"fileInput": "s3://media/in/talk.mov"}],
                "outputGroups": [{
                    "outputGroupSettings": {"fileGroupSettings": {"destination": "s3://media/out/"}},
                    "outputs": [{"nameModifier": "_720p", "containerSettings": {"container": "MP4"}}],
                }],
            },
            "outputGroupDetails": [{"outputDetails": []}],
            "timing": {"submitTime": 1767225600.0, "startTime": 1767225600.0, "finishTime": 1767225601.0},
        });
        job.as_object().unwrap().clone()
    }

    #[test]
    fn progressing_job_drops_completion_fields() {
        let job = scripted(
            json!([
                {"atMs": 0, "status": "SUBMITTED"},
                {"atMs": 1000, "status": "PROGRESSING", "percent": 0, "currentPhase": "TRANSCODING"},
                {"atMs": 3000, "status": "PROGRESSING", "percent": 100},
            ]),
            1_767_225_600_000,
        );
        let mut value = fakecloud_complete_job();
        apply_state(&mut value, &job.state_at(1_767_225_602_000), job.created_ms);

        assert_eq!(value["status"], "PROGRESSING");
        assert_eq!(value["jobPercentComplete"], 50);
        assert_eq!(value["currentPhase"], "TRANSCODING");
        assert!(value.get("outputGroupDetails").is_none());
        assert!(value.get("errorCode").is_none());
        let expected_timing = json!({"submitTime": 1767225600.0, "startTime": 1767225601.0});
        assert_eq!(value["timing"], expected_timing);
    }

    #[test]
    fn complete_job_gets_output_file_paths() {
        let job = scripted(
            json!([{"atMs": 500, "status": "COMPLETE"}]),
            1_767_225_600_000,
        );
        let mut value = fakecloud_complete_job();
        apply_state(&mut value, &job.state_at(1_767_225_600_500), job.created_ms);

        assert_eq!(value["status"], "COMPLETE");
        assert_eq!(value["jobPercentComplete"], 100);
        assert!(value.get("currentPhase").is_none());
        let paths = &value["outputGroupDetails"][0]["outputDetails"][0]["outputFilePaths"];
        assert_eq!(paths, &json!(["s3://media/out/talk_720p.mp4"]));
        assert_eq!(value["outputGroupDetails"][0]["type"], "FILE_GROUP");
        assert_eq!(value["timing"]["finishTime"], json!(1767225600.5));
    }

    #[test]
    fn complete_job_without_group_details_gets_them() {
        let job = scripted(
            json!([{"atMs": 0, "status": "COMPLETE"}]),
            1_767_225_600_000,
        );
        let mut value = fakecloud_complete_job();
        value.remove("outputGroupDetails");
        apply_state(&mut value, &job.state_at(1_767_225_600_000), job.created_ms);
        let details = value["outputGroupDetails"].as_array().unwrap();
        assert_eq!(details.len(), 1);
        assert_eq!(details[0]["outputDetails"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn error_job_shows_code_and_message() {
        let job = scripted(
            json!([{"atMs": 0, "status": "ERROR", "errorCode": 1401, "errorMessage": "denied"}]),
            1_767_225_600_000,
        );
        let mut value = fakecloud_complete_job();
        apply_state(&mut value, &job.state_at(1_767_225_600_000), job.created_ms);
        assert_eq!(value["status"], "ERROR");
        assert_eq!(value["errorCode"], 1401);
        assert_eq!(value["errorMessage"], "denied");
        assert!(value.get("jobPercentComplete").is_none());
        assert!(value.get("outputGroupDetails").is_none());
    }

    #[test]
    fn canceled_job_stays_canceled() {
        let mut job = scripted(
            json!([
                {"atMs": 0, "status": "PROGRESSING", "percent": 0},
                {"atMs": 1000, "status": "COMPLETE"},
            ]),
            10_000,
        );
        job.canceled_ms = Some(10_400);
        assert_eq!(job.state_at(10_300).status, JobStatus::Progressing);
        let later = job.state_at(20_000);
        assert_eq!(later.status, JobStatus::Canceled);
        assert_eq!(later.finished_ms, Some(400));
        assert_eq!(later.started_ms, Some(0));
    }

    #[test]
    fn created_ms_reads_epoch_seconds() {
        let created = |value: Value| created_ms(value.as_object().unwrap());
        assert_eq!(
            created(json!({"createdAt": 1767225600.123})),
            Some(1_767_225_600_123)
        );
        assert_eq!(created(json!({"createdAt": "2026-01-01T00:00:00Z"})), None);
    }
}
