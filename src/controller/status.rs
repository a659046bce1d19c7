//! Pure status computations: conditions per phase, and mapping MediaConvert job state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{ConditionReason, ConditionType, JobPhase, MediaConvertJobStatus};
use crate::aws::JobSnapshot;

/// Maximum message length kept in status and Events, in bytes, so a verbose AWS error cannot
/// push the object towards etcd's size limit.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// Longest `outputs` list kept in status; the rest is summarized by a count entry.
pub const MAX_OUTPUTS: usize = 100;

/// Bytes of output paths kept in status. S3 keys may be 1 KiB long, so the entry count
/// alone would let a large job's status grow to 100 KiB.
pub const MAX_OUTPUTS_BYTES: usize = 16 * 1024;

/// Truncates `message` to [`MAX_MESSAGE_BYTES`] on a character boundary, with a marker.
pub fn bounded(message: &str) -> String {
    truncated(message, MAX_MESSAGE_BYTES)
}

/// Truncates `message` to `max_bytes` on a character boundary, ending it with a marker.
fn truncated(message: &str, max_bytes: usize) -> String {
    if message.len() <= max_bytes {
        return message.to_string();
    }
    let mut end = max_bytes - 16;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} [truncated]", &message[..end])
}

/// Maximum length of a condition message in a trimmed status, in bytes.
const TRIMMED_MESSAGE_BYTES: usize = 256;

/// Returns the part of `status` that must survive when the API server refuses the whole
/// as too large: phase, submission token, job identity and times, and conditions with
/// short messages. Outputs and check results are left out, and a `StatusTrimmed`
/// condition records that.
pub fn trimmed(status: &MediaConvertJobStatus, generation: Option<i64>) -> MediaConvertJobStatus {
    let mut trimmed = MediaConvertJobStatus {
        outputs: Vec::new(),
        validation: None,
        error_message: status
            .error_message
            .as_deref()
            .map(|message| truncated(message, TRIMMED_MESSAGE_BYTES)),
        ..status.clone()
    };
    for condition in &mut trimmed.conditions {
        condition.message = truncated(&condition.message, TRIMMED_MESSAGE_BYTES);
    }
    set_condition(
        &mut trimmed.conditions,
        ConditionType::StatusTrimmed,
        true,
        ConditionReason::StatusTooLarge,
        "the API server refused the full status as too large, so outputs, check results and long messages are left out; the object's spec leaves too little room, see the operator log and Events",
        generation,
    );
    trimmed
}

/// Sets a condition, keeping `lastTransitionTime` when its status did not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: ConditionType,
    status: bool,
    reason: ConditionReason,
    message: &str,
    generation: Option<i64>,
) {
    let status_text = if status { "True" } else { "False" };
    put_condition(conditions, kind, status_text, reason, message, generation);
}

/// Sets a condition to `Unknown`, for an outcome that could not be decided yet.
pub fn set_condition_unknown(
    conditions: &mut Vec<Condition>,
    kind: ConditionType,
    reason: ConditionReason,
    message: &str,
    generation: Option<i64>,
) {
    put_condition(conditions, kind, "Unknown", reason, message, generation);
}

fn put_condition(
    conditions: &mut Vec<Condition>,
    kind: ConditionType,
    status_text: &str,
    reason: ConditionReason,
    message: &str,
    generation: Option<i64>,
) {
    let type_ = kind.to_string();
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match previous.map(|index| &conditions[index]) {
        Some(existing) if existing.status == status_text => existing.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let condition = Condition {
        type_,
        status: status_text.into(),
        reason: reason.to_string(),
        message: bounded(message),
        observed_generation: generation,
        last_transition_time,
    };
    match previous {
        Some(index) => conditions[index] = condition,
        None => conditions.push(condition),
    }
}

/// Sets the Complete, Failed and Ready conditions that follow from `phase`.
pub fn set_outcome_conditions(
    status: &mut MediaConvertJobStatus,
    phase: JobPhase,
    reason: ConditionReason,
    message: &str,
    generation: Option<i64>,
) {
    let conditions = &mut status.conditions;
    let complete = phase == JobPhase::Complete;
    let failed = matches!(
        phase,
        JobPhase::Invalid | JobPhase::Error | JobPhase::Canceled
    );
    // A finished job carries its outcome's reason on all three conditions. The full
    // message of a failure appears once, on Failed.
    let (reason, message) = if complete || failed {
        (reason, message)
    } else {
        (ConditionReason::JobNotFinished, "")
    };
    let pointer = if failed {
        "see the Failed condition"
    } else {
        message
    };
    set_condition(
        conditions,
        ConditionType::Complete,
        complete,
        reason,
        pointer,
        generation,
    );
    set_condition(
        conditions,
        ConditionType::Failed,
        failed,
        reason,
        message,
        generation,
    );
    set_condition(
        conditions,
        ConditionType::Ready,
        complete,
        reason,
        pointer,
        generation,
    );
}

/// Phase and reason for a MediaConvert job status string.
pub fn phase_of(snapshot: &JobSnapshot) -> (JobPhase, ConditionReason) {
    match snapshot.status.as_str() {
        "PROGRESSING" => (JobPhase::Progressing, ConditionReason::JobProgressing),
        "COMPLETE" => (JobPhase::Complete, ConditionReason::JobComplete),
        "ERROR" => (JobPhase::Error, ConditionReason::JobError),
        "CANCELED" => (JobPhase::Canceled, ConditionReason::JobCanceled),
        _ => (JobPhase::Submitted, ConditionReason::JobQueued),
    }
}

fn time_from_epoch(seconds: Option<i64>) -> Option<Time> {
    seconds
        .and_then(|seconds| Timestamp::from_second(seconds).ok())
        .map(Time)
}

/// Copies what MediaConvert reports about a job into `status`.
pub fn apply_snapshot(
    status: &mut MediaConvertJobStatus,
    snapshot: &JobSnapshot,
    generation: Option<i64>,
) {
    let (phase, reason) = phase_of(snapshot);
    status.phase = Some(phase);
    status.job_id = Some(snapshot.id.clone());
    status.job_arn = snapshot.arn.clone().or(status.job_arn.take());
    status.queue = snapshot.queue.clone().or(status.queue.take());
    status.submitted_at = time_from_epoch(snapshot.submit_time).or(status.submitted_at.take());
    status.started_at = time_from_epoch(snapshot.start_time).or(status.started_at.take());
    status.finished_at = time_from_epoch(snapshot.finish_time);
    status.job_percent_complete = match phase {
        JobPhase::Complete => Some(100),
        JobPhase::Progressing => snapshot.percent_complete.or(Some(0)),
        _ => snapshot.percent_complete.or(status.job_percent_complete),
    };
    status.current_phase = snapshot.current_phase.clone();
    status.error_code = snapshot.error_code;
    status.error_message = snapshot.error_message.as_deref().map(bounded);
    status.outputs = bounded_outputs(&snapshot.output_paths);

    let message = match phase {
        JobPhase::Error => format!(
            "MediaConvert job {} failed with error {}: {}",
            snapshot.id,
            snapshot.error_code.unwrap_or_default(),
            snapshot.error_message.as_deref().unwrap_or("no message")
        ),
        _ => format!("MediaConvert job {} is {}", snapshot.id, snapshot.status),
    };
    set_condition(
        &mut status.conditions,
        ConditionType::Submitted,
        true,
        ConditionReason::JobSubmitted,
        &format!("MediaConvert accepted job {}", snapshot.id),
        generation,
    );
    set_outcome_conditions(status, phase, reason, &message, generation);
}

/// Keeps the first paths within [`MAX_OUTPUTS`] entries and [`MAX_OUTPUTS_BYTES`], and
/// ends a shortened list with an entry that counts the paths left out.
fn bounded_outputs(paths: &[String]) -> Vec<String> {
    let total: usize = paths.iter().map(String::len).sum();
    if paths.len() <= MAX_OUTPUTS && total <= MAX_OUTPUTS_BYTES {
        return paths.to_vec();
    }
    let mut outputs = Vec::new();
    let mut bytes = 0;
    for path in paths.iter().take(MAX_OUTPUTS - 1) {
        bytes += path.len();
        if bytes > MAX_OUTPUTS_BYTES {
            break;
        }
        outputs.push(path.clone());
    }
    outputs.push(format!("... and {} more", paths.len() - outputs.len()));
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(status: &str) -> JobSnapshot {
        JobSnapshot {
            id: "1700000000000-abc123".into(),
            status: status.into(),
            ..JobSnapshot::default()
        }
    }

    fn condition<'a>(status: &'a MediaConvertJobStatus, kind: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn complete_sets_ready() {
        let mut status = MediaConvertJobStatus::default();
        apply_snapshot(&mut status, &snapshot("COMPLETE"), Some(1));
        assert_eq!(status.phase, Some(JobPhase::Complete));
        assert_eq!(status.job_percent_complete, Some(100));
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "Failed").status, "False");
        assert_eq!(condition(&status, "Complete").reason, "JobComplete");
    }

    #[test]
    fn error_sets_failed_with_message() {
        let mut job = snapshot("ERROR");
        job.error_code = Some(1401);
        job.error_message = Some("Unable to write to output file".into());
        let mut status = MediaConvertJobStatus::default();
        apply_snapshot(&mut status, &job, Some(1));
        let failed = condition(&status, "Failed");
        assert_eq!(failed.status, "True");
        assert_eq!(failed.reason, "JobError");
        assert!(failed.message.contains("1401"));
        assert_eq!(condition(&status, "Ready").status, "False");
        assert_eq!(status.error_code, Some(1401));
    }

    #[test]
    fn progressing_keeps_transition_time() {
        let mut status = MediaConvertJobStatus::default();
        let mut job = snapshot("PROGRESSING");
        job.percent_complete = Some(10);
        apply_snapshot(&mut status, &job, Some(1));
        let first = condition(&status, "Submitted").last_transition_time.clone();
        job.percent_complete = Some(20);
        apply_snapshot(&mut status, &job, Some(1));
        assert_eq!(condition(&status, "Submitted").last_transition_time, first);
        assert_eq!(status.job_percent_complete, Some(20));
    }

    #[test]
    fn long_messages_truncated() {
        let message = "é".repeat(MAX_MESSAGE_BYTES);
        let truncated = bounded(&message);
        assert!(truncated.len() <= MAX_MESSAGE_BYTES);
        assert!(truncated.ends_with("[truncated]"));
    }

    #[test]
    fn trimmed_status_keeps_job_identity() {
        let mut job = snapshot("COMPLETE");
        job.output_paths = (0..50).map(|i| format!("s3://b/{i}.mp4")).collect();
        job.error_message = Some("x".repeat(2000));
        let mut status = MediaConvertJobStatus {
            submission_token: Some("token".into()),
            ..MediaConvertJobStatus::default()
        };
        apply_snapshot(&mut status, &job, Some(3));
        let small = trimmed(&status, Some(3));
        assert_eq!(small.job_id, status.job_id);
        assert_eq!(small.phase, Some(JobPhase::Complete));
        assert_eq!(small.submission_token.as_deref(), Some("token"));
        assert!(small.outputs.is_empty());
        assert!(small.error_message.as_ref().unwrap().len() <= TRIMMED_MESSAGE_BYTES);
        let trimmed_condition = condition(&small, "StatusTrimmed");
        assert_eq!(trimmed_condition.status, "True");
        assert_eq!(trimmed_condition.reason, "StatusTooLarge");
        assert_eq!(condition(&small, "Ready").status, "True");
    }

    #[test]
    fn long_outputs_capped_by_bytes() {
        let long = "k".repeat(1000);
        let paths: Vec<String> = (0..300).map(|i| format!("s3://b/{i}{long}.mp4")).collect();
        let outputs = bounded_outputs(&paths);
        let kept = outputs.len() - 1;
        assert!(kept < 20, "{kept} paths kept");
        let bytes: usize = outputs.iter().map(String::len).sum();
        assert!(bytes <= MAX_OUTPUTS_BYTES + 32, "{bytes} bytes kept");
        assert_eq!(outputs[..kept], paths[..kept]);
        assert_eq!(outputs[kept], format!("... and {} more", 300 - kept));
    }

    #[test]
    fn outputs_capped_with_count() {
        let paths: Vec<String> = (0..300).map(|i| format!("s3://b/{i}.mp4")).collect();
        let outputs = bounded_outputs(&paths);
        assert_eq!(outputs.len(), MAX_OUTPUTS);
        assert_eq!(outputs.last().unwrap(), "... and 201 more");
    }
}
