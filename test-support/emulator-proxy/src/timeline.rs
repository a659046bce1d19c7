//! Scripted MediaConvert job timelines: which status a job shows how long
//! after its creation, and which timeline a new job gets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// MediaConvert job status, spelled as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Submitted,
    Progressing,
    Complete,
    Canceled,
    Error,
}

impl JobStatus {
    /// Reports whether the job can no longer change status.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Canceled | Self::Error)
    }

    /// Returns the API spelling, such as `PROGRESSING`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::Progressing => "PROGRESSING",
            Self::Complete => "COMPLETE",
            Self::Canceled => "CANCELED",
            Self::Error => "ERROR",
        }
    }
}

/// One point of a timeline: from `at_ms` after creation the job shows `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    pub at_ms: u64,
    pub status: JobStatus,
    /// `jobPercentComplete`, allowed only on PROGRESSING steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<String>,
    /// MediaConvert error code, such as 1401, required on ERROR steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// Sequence of steps with non-decreasing `at_ms`, ending at most at one terminal step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeline {
    pub steps: Vec<Step>,
    /// When true, jobs with this timeline publish a job state change event to
    /// EventBridge on each status change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_events: bool,
    /// Minimum milliseconds between two STATUS_UPDATE events of a job, counted from
    /// its PROGRESSING event. MediaConvert sends about one a minute. When unset, every
    /// tick in which `jobPercentComplete` changed sends one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update_every_ms: Option<u64>,
}

/// Scripted job state at one instant, with times in milliseconds after creation.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub status: JobStatus,
    /// `jobPercentComplete`: set while PROGRESSING when the step gives one, 100 on COMPLETE.
    pub percent: Option<u8>,
    pub current_phase: Option<String>,
    /// `errorCode` and `errorMessage`, set only on ERROR.
    pub error: Option<(i64, String)>,
    /// When the job first showed PROGRESSING, which becomes `timing.startTime`.
    pub started_ms: Option<u64>,
    /// When the job reached a terminal status, which becomes `timing.finishTime`.
    pub finished_ms: Option<u64>,
}

impl Timeline {
    /// Checks the rules that [`Timeline::state_at`] relies on and returns a
    /// message naming the first offending step.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty() {
            return Err("timeline has no steps".to_string());
        }
        for (index, pair) in self.steps.windows(2).enumerate() {
            if pair[1].at_ms < pair[0].at_ms {
                return Err(format!(
                    "step {}: atMs is less than the step before",
                    index + 1
                ));
            }
            if pair[0].status.is_terminal() {
                return Err(format!("step {}: follows a terminal status", index + 1));
            }
        }
        self.steps.iter().enumerate().try_for_each(|(index, step)| {
            validate_step(step).map_err(|message| format!("step {index}: {message}"))
        })
    }

    /// Evaluates the job state at `elapsed_ms` after creation: the last step
    /// with `at_ms <= elapsed_ms`, or SUBMITTED before the first step.
    pub fn state_at(&self, elapsed_ms: u64) -> JobState {
        let reached = self.steps.partition_point(|step| step.at_ms <= elapsed_ms);
        let Some(index) = reached.checked_sub(1) else {
            return JobState::submitted();
        };
        let step = &self.steps[index];

        let started_ms = self.steps[..reached]
            .iter()
            .find(|step| step.status == JobStatus::Progressing)
            .map(|step| step.at_ms);
        let finished_ms = step.status.is_terminal().then_some(step.at_ms);
        let percent = match step.status {
            JobStatus::Progressing => self.interpolate_percent(index, elapsed_ms),
            JobStatus::Complete => Some(100),
            _ => None,
        };
        let error = match step.status {
            JobStatus::Error => Some((
                step.error_code.unwrap_or_default(),
                step.error_message.clone().unwrap_or_default(),
            )),
            _ => None,
        };

        JobState {
            status: step.status,
            percent,
            current_phase: step.current_phase.clone(),
            error,
            // A job that completes without a PROGRESSING step started when it finished.
            started_ms: started_ms.or(finished_ms.filter(|_| step.status == JobStatus::Complete)),
            finished_ms,
        }
    }

    /// Returns when the job reaches its terminal step, in milliseconds after
    /// creation, or `None` when the timeline ends without one.
    pub fn terminal_at_ms(&self) -> Option<u64> {
        let last = self.steps.last()?;
        last.status.is_terminal().then_some(last.at_ms)
    }

    /// Interpolates `percent` linearly towards the next step when both steps
    /// are PROGRESSING with a percent, rounding down to an integer.
    fn interpolate_percent(&self, index: usize, elapsed_ms: u64) -> Option<u8> {
        let step = &self.steps[index];
        let from = step.percent?;
        let Some(next) = self.steps.get(index + 1) else {
            return Some(from);
        };
        let (Some(to), JobStatus::Progressing) = (next.percent, next.status) else {
            return Some(from);
        };
        let span = next.at_ms - step.at_ms;
        if span == 0 {
            return Some(from);
        }
        let done = (elapsed_ms - step.at_ms) as i64;
        let delta = i64::from(to) - i64::from(from);
        let percent = i64::from(from) + (delta * done).div_euclid(span as i64);
        Some(percent.clamp(0, 100) as u8)
    }
}

fn validate_step(step: &Step) -> Result<(), String> {
    if step.percent.is_some_and(|percent| percent > 100) {
        return Err("percent is greater than 100".to_string());
    }
    if step.percent.is_some() && step.status != JobStatus::Progressing {
        return Err("percent is allowed only on PROGRESSING".to_string());
    }
    let has_error = step.error_code.is_some() || step.error_message.is_some();
    if has_error && step.status != JobStatus::Error {
        return Err("errorCode and errorMessage are allowed only on ERROR".to_string());
    }
    if step.status == JobStatus::Error && step.error_code.is_none() {
        return Err("ERROR requires errorCode".to_string());
    }
    Ok(())
}

impl JobState {
    fn submitted() -> Self {
        Self {
            status: JobStatus::Submitted,
            percent: None,
            current_phase: None,
            error: None,
            started_ms: None,
            finished_ms: None,
        }
    }

    /// Turns this state into CANCELED, finished at `at_ms` after creation.
    pub fn canceled_at(self, at_ms: u64) -> Self {
        Self {
            status: JobStatus::Canceled,
            percent: None,
            current_phase: None,
            error: None,
            started_ms: self.started_ms,
            finished_ms: Some(at_ms),
        }
    }
}

/// A timeline for jobs whose `userMetadata` contains every pair of `user_metadata`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineRule {
    #[serde(default)]
    pub user_metadata: BTreeMap<String, String>,
    pub timeline: Timeline,
}

/// Body of `PUT /__proxy/timelines`: rules tried in order, then the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineConfig {
    #[serde(default)]
    pub default: Option<Timeline>,
    #[serde(default)]
    pub rules: Vec<TimelineRule>,
}

impl TimelineConfig {
    /// Validates every timeline and returns a message naming the first invalid one.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(timeline) = &self.default {
            timeline
                .validate()
                .map_err(|message| format!("default: {message}"))?;
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let result = rule.timeline.validate();
            result.map_err(|message| format!("rules[{index}]: {message}"))?;
        }
        Ok(())
    }

    /// Selects the timeline of the first rule whose pairs all appear in
    /// `user_metadata`, else the default. `None` leaves the job unscripted.
    pub fn select(&self, user_metadata: &Map<String, Value>) -> Option<&Timeline> {
        let matches = |rule: &&TimelineRule| {
            rule.user_metadata.iter().all(|(key, expected)| {
                user_metadata.get(key).and_then(Value::as_str) == Some(expected.as_str())
            })
        };
        match self.rules.iter().find(matches) {
            Some(rule) => Some(&rule.timeline),
            None => self.default.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn timeline(value: Value) -> Timeline {
        serde_json::from_value(value).unwrap()
    }

    fn progress_timeline() -> Timeline {
        timeline(json!({"steps": [
            {"atMs": 0, "status": "SUBMITTED"},
            {"atMs": 1000, "status": "PROGRESSING", "percent": 0, "currentPhase": "PROBING"},
            {"atMs": 5000, "status": "PROGRESSING", "percent": 100, "currentPhase": "TRANSCODING"},
            {"atMs": 6000, "status": "COMPLETE"},
        ]}))
    }

    #[test]
    fn state_follows_last_reached_step() {
        let timeline = progress_timeline();
        let statuses = [
            (0, JobStatus::Submitted),
            (999, JobStatus::Submitted),
            (1000, JobStatus::Progressing),
            (5999, JobStatus::Progressing),
            (6000, JobStatus::Complete),
            (60_000, JobStatus::Complete),
        ];
        for (elapsed, expected) in statuses {
            assert_eq!(
                timeline.state_at(elapsed).status,
                expected,
                "at {elapsed} ms"
            );
        }
    }

    #[test]
    fn percent_interpolates_between_progressing_steps() {
        let timeline = progress_timeline();
        let cases = [
            (500, None),
            (1000, Some(0)),
            (2000, Some(25)),
            (2039, Some(25)),
            (2040, Some(26)),
            (4999, Some(99)),
            (5000, Some(100)),
            (5500, Some(100)),
            (6000, Some(100)),
        ];
        for (elapsed, expected) in cases {
            assert_eq!(
                timeline.state_at(elapsed).percent,
                expected,
                "at {elapsed} ms"
            );
        }
    }

    #[test]
    fn phase_comes_from_current_step() {
        let timeline = progress_timeline();
        assert_eq!(timeline.state_at(0).current_phase, None);
        assert_eq!(
            timeline.state_at(3000).current_phase.as_deref(),
            Some("PROBING")
        );
        let transcoding = timeline.state_at(5000).current_phase;
        assert_eq!(transcoding.as_deref(), Some("TRANSCODING"));
    }

    #[test]
    fn timing_marks_start_and_finish() {
        let timeline = progress_timeline();
        let submitted = timeline.state_at(10);
        assert_eq!(submitted.started_ms, None);
        assert_eq!(submitted.finished_ms, None);
        let progressing = timeline.state_at(3000);
        assert_eq!(progressing.started_ms, Some(1000));
        assert_eq!(progressing.finished_ms, None);
        let complete = timeline.state_at(7000);
        assert_eq!(complete.started_ms, Some(1000));
        assert_eq!(complete.finished_ms, Some(6000));
    }

    #[test]
    fn error_step_carries_code_and_message() {
        let timeline = timeline(json!({"steps": [
            {"atMs": 0, "status": "PROGRESSING", "percent": 10},
            {"atMs": 100, "status": "ERROR", "errorCode": 1401, "errorMessage": "denied"},
        ]}));
        let error = timeline.state_at(100);
        assert_eq!(error.status, JobStatus::Error);
        assert_eq!(error.error, Some((1401, "denied".to_string())));
        assert_eq!(error.percent, None);
        assert_eq!(error.finished_ms, Some(100));
        assert_eq!(timeline.state_at(50).error, None);
        assert_eq!(timeline.state_at(50).percent, Some(10));
    }

    #[test]
    fn state_before_first_step_is_submitted() {
        let timeline = timeline(json!({"steps": [
            {"atMs": 200, "status": "PROGRESSING"},
        ]}));
        assert_eq!(timeline.state_at(199).status, JobStatus::Submitted);
        assert_eq!(timeline.state_at(200).percent, None);
    }

    #[test]
    fn complete_without_progressing_sets_start() {
        let timeline = timeline(json!({"steps": [{"atMs": 300, "status": "COMPLETE"}]}));
        let state = timeline.state_at(300);
        assert_eq!(state.started_ms, Some(300));
        assert_eq!(state.percent, Some(100));
    }

    #[test]
    fn cancel_keeps_start_and_sets_finish() {
        let state = progress_timeline().state_at(2000).canceled_at(2000);
        assert_eq!(state.status, JobStatus::Canceled);
        assert_eq!(state.percent, None);
        assert_eq!(state.current_phase, None);
        assert_eq!(state.started_ms, Some(1000));
        assert_eq!(state.finished_ms, Some(2000));
    }

    #[test]
    fn status_update_cadence_is_optional() {
        assert_eq!(progress_timeline().status_update_every_ms, None);
        let paced = timeline(json!({
            "publishEvents": true,
            "statusUpdateEveryMs": 20000,
            "steps": [{"atMs": 0, "status": "COMPLETE"}],
        }));
        assert_eq!(paced.status_update_every_ms, Some(20_000));
        assert!(paced.publish_events);
    }

    #[test]
    fn validate_rejects_bad_timelines() {
        let cases = [
            (json!({"steps": []}), "no steps"),
            (
                json!({"steps": [{"atMs": 5, "status": "SUBMITTED"}, {"atMs": 1, "status": "COMPLETE"}]}),
                "step 1: atMs",
            ),
            (
                json!({"steps": [{"atMs": 0, "status": "COMPLETE"}, {"atMs": 1, "status": "ERROR", "errorCode": 1}]}),
                "step 1: follows a terminal",
            ),
            (
                json!({"steps": [{"atMs": 0, "status": "PROGRESSING", "percent": 101}]}),
                "step 0: percent is greater",
            ),
            (
                json!({"steps": [{"atMs": 0, "status": "SUBMITTED", "percent": 1}]}),
                "step 0: percent is allowed only",
            ),
            (
                json!({"steps": [{"atMs": 0, "status": "ERROR"}]}),
                "requires errorCode",
            ),
            (
                json!({"steps": [{"atMs": 0, "status": "COMPLETE", "errorCode": 1}]}),
                "allowed only on ERROR",
            ),
        ];
        for (value, expected) in cases {
            let error = timeline(value.clone()).validate().unwrap_err();
            assert!(error.contains(expected), "{value}: {error}");
        }
        assert_eq!(progress_timeline().validate(), Ok(()));
    }

    #[test]
    fn select_takes_first_matching_rule() {
        let config: TimelineConfig = serde_json::from_value(json!({
            "default": {"steps": [{"atMs": 0, "status": "COMPLETE"}]},
            "rules": [
                {"userMetadata": {"case": "fail", "tier": "gold"},
                 "timeline": {"steps": [{"atMs": 0, "status": "ERROR", "errorCode": 1}]}},
                {"userMetadata": {"case": "fail"},
                 "timeline": {"steps": [{"atMs": 0, "status": "CANCELED"}]}},
            ],
        }))
        .unwrap();
        let metadata = |value: Value| value.as_object().unwrap().clone();
        let first_status = |value: Value| {
            let timeline = config.select(&metadata(value)).unwrap();
            timeline.steps[0].status
        };

        let both = json!({"case": "fail", "tier": "gold", "extra": "x"});
        assert_eq!(first_status(both), JobStatus::Error);
        assert_eq!(first_status(json!({"case": "fail"})), JobStatus::Canceled);
        assert_eq!(first_status(json!({"case": "other"})), JobStatus::Complete);
        assert_eq!(first_status(json!({})), JobStatus::Complete);
    }

    #[test]
    fn select_without_default_leaves_job_unscripted() {
        let config: TimelineConfig = serde_json::from_value(json!({
            "rules": [{"userMetadata": {"case": "slow"},
                       "timeline": {"steps": [{"atMs": 0, "status": "SUBMITTED"}]}}],
        }))
        .unwrap();
        let other = json!({"case": "fast"});
        assert!(config.select(other.as_object().unwrap()).is_none());
        assert!(TimelineConfig::default().select(&Map::new()).is_none());
    }
}
