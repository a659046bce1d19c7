//! Fault rules: injected errors, delays and withheld responses per operation.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::classify::Operation;

/// One rule of `PUT /__proxy/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultRule {
    /// `service:Operation`, `service:*` or `*`.
    pub operation: String,
    /// Pairs that the request body's `userMetadata` must contain, such as a test's
    /// namespace, so that tests running side by side fault only their own jobs. Empty
    /// matches every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    /// Access key ID the request must be signed with. fakecloud treats every key that
    /// starts with `test` as the account root, so a test can run its client with a key of
    /// its own and limit a rule to that client's requests of any operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// HTTP status of the injected error. Without it, and without
    /// `withhold_response`, the rule only delays the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Error code sent in `x-amzn-ErrorType`, with a default by status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How many matching requests the rule fires on, or `None` for every one.
    #[serde(default)]
    pub times: Option<u32>,
    /// Fires only on matching requests beyond this many in the last second, like a
    /// service quota that throttles a burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above_per_second: Option<u32>,
    /// Chance from 0 to 1 that the rule fires on a matching request, 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Milliseconds to wait before acting.
    #[serde(default)]
    pub delay_ms: u64,
    /// Milliseconds to hold the response after the request was forwarded, so its side
    /// effect has happened while the client still waits. Ignored when the rule rejects
    /// the request without forwarding it.
    #[serde(default)]
    pub response_delay_ms: u64,
    /// Forwards the request, so its side effect happens, then returns an
    /// error in place of the upstream response.
    #[serde(default)]
    pub withhold_response: bool,
}

/// Body of `PUT /__proxy/faults`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    pub rules: Vec<FaultRule>,
}

/// A rule together with how often it may still fire.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRule {
    #[serde(flatten)]
    pub rule: FaultRule,
    /// Remaining firings, or `None` for unlimited.
    pub remaining: Option<u32>,
    pub fired: u64,
    /// Arrival times of the matching requests of the last second, for `above_per_second`.
    #[serde(skip)]
    recent: VecDeque<Instant>,
}

impl ActiveRule {
    fn new(rule: FaultRule) -> Self {
        Self {
            remaining: rule.times,
            rule,
            fired: 0,
            recent: VecDeque::new(),
        }
    }

    /// Records a matching request at `now` and reports whether it exceeds the rule's
    /// rate. Rules without a rate always pass.
    fn over_rate(&mut self, now: Instant) -> bool {
        let Some(limit) = self.rule.above_per_second else {
            return true;
        };
        while self
            .recent
            .front()
            .is_some_and(|arrival| now.duration_since(*arrival) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        self.recent.len() > limit as usize
    }
}

/// The error an injected fault returns.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectedError {
    pub status: StatusCode,
    pub error_type: String,
    pub message: String,
}

/// Handling of a request that a rule fired on.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Forward as usual after the delay.
    Forward,
    /// Return the error without forwarding.
    Reject(InjectedError),
    /// Forward, then return the error in place of the upstream response.
    Withhold(InjectedError),
}

/// A fired rule's delays and action.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub delay: Duration,
    pub action: FaultAction,
    /// Wait between the upstream response and the reply to the client.
    pub response_delay: Duration,
}

/// Request details that a rule can match besides the operation.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    /// The `userMetadata` object of the request body, empty when there is none.
    pub user_metadata: Map<String, Value>,
    /// Access key ID of the request's SigV4 credential.
    pub access_key_id: Option<String>,
}

/// The configured rules, tried in order for every proxied request.
#[derive(Debug, Clone, Default)]
pub struct FaultSet {
    rules: Vec<ActiveRule>,
}

impl FaultSet {
    /// Replaces all rules after validating them. On error the old rules stay.
    pub fn replace(&mut self, config: FaultConfig) -> Result<(), String> {
        for (index, rule) in config.rules.iter().enumerate() {
            validate(rule).map_err(|message| format!("rules[{index}]: {message}"))?;
        }
        self.rules = config.rules.into_iter().map(ActiveRule::new).collect();
        Ok(())
    }

    /// Appends one rule after the existing ones.
    pub fn add(&mut self, rule: FaultRule) -> Result<(), String> {
        validate(&rule)?;
        self.rules.push(ActiveRule::new(rule));
        Ok(())
    }

    pub fn rules(&self) -> &[ActiveRule] {
        &self.rules
    }

    /// Fires the first rule that matches `operation`, has firings left and
    /// passes its probability draw, and counts the firing. `draw` returns true
    /// with the given probability, so tests can pass a fixed draw.
    #[cfg(test)]
    pub fn fire(&mut self, operation: &Operation, draw: impl FnMut(f64) -> bool) -> Option<Fault> {
        self.fire_for(operation, &RequestFacts::default(), draw)
    }

    /// Like [`FaultSet::fire`], for a request with the given body metadata and signer.
    pub fn fire_for(
        &mut self,
        operation: &Operation,
        facts: &RequestFacts,
        draw: impl FnMut(f64) -> bool,
    ) -> Option<Fault> {
        self.fire_at(operation, facts, draw, Instant::now())
    }

    /// Like [`FaultSet::fire_for`], for a request that arrived at `now`.
    pub fn fire_at(
        &mut self,
        operation: &Operation,
        facts: &RequestFacts,
        mut draw: impl FnMut(f64) -> bool,
        now: Instant,
    ) -> Option<Fault> {
        let operation = operation.to_string();
        let active = self.rules.iter_mut().find_map(|active| {
            let applies = matches_operation(&active.rule.operation, &operation)
                && matches_metadata(&active.rule.user_metadata, &facts.user_metadata)
                && active
                    .rule
                    .access_key_id
                    .as_ref()
                    .is_none_or(|expected| facts.access_key_id.as_ref() == Some(expected))
                && active.remaining != Some(0)
                && active.over_rate(now)
                && active.rule.probability.is_none_or(&mut draw);
            applies.then_some(active)
        })?;
        if let Some(remaining) = &mut active.remaining {
            *remaining -= 1;
        }
        active.fired += 1;
        Some(fault_of(&active.rule, &operation))
    }
}

fn validate(rule: &FaultRule) -> Result<(), String> {
    if rule.operation.is_empty() {
        return Err("operation is empty; use service:Operation, service:* or *".to_string());
    }
    if let Some(status) = rule.status
        && !(400..=599).contains(&status)
    {
        return Err(format!(
            "status {status} is not an error status (400 to 599)"
        ));
    }
    if let Some(probability) = rule.probability
        && !(0.0..=1.0).contains(&probability)
    {
        return Err(format!("probability {probability} is outside 0 to 1"));
    }
    Ok(())
}

fn matches_metadata(expected: &BTreeMap<String, String>, actual: &Map<String, Value>) -> bool {
    expected
        .iter()
        .all(|(key, value)| actual.get(key).and_then(Value::as_str) == Some(value.as_str()))
}

fn matches_operation(pattern: &str, operation: &str) -> bool {
    if pattern == "*" || pattern == operation {
        return true;
    }
    match pattern.strip_suffix(":*") {
        Some(service) => operation.split_once(':').is_some_and(|(s, _)| s == service),
        None => false,
    }
}

fn fault_of(rule: &FaultRule, operation: &str) -> Fault {
    let delay = Duration::from_millis(rule.delay_ms);
    let response_delay = Duration::from_millis(rule.response_delay_ms);
    let action = if rule.withhold_response {
        let status = rule.status.unwrap_or(500);
        FaultAction::Withhold(injected_error(rule, status, operation))
    } else if let Some(status) = rule.status {
        FaultAction::Reject(injected_error(rule, status, operation))
    } else {
        FaultAction::Forward
    };
    Fault {
        delay,
        action,
        response_delay,
    }
}

fn injected_error(rule: &FaultRule, status: u16, operation: &str) -> InjectedError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error_type = match &rule.error_type {
        Some(error_type) => error_type.clone(),
        None => default_error_type(status).to_string(),
    };
    let message = match &rule.message {
        Some(message) => message.clone(),
        None => format!("fault injected by emulator-proxy into {operation}"),
    };
    InjectedError {
        status,
        error_type,
        message,
    }
}

/// Returns the MediaConvert error code that usually goes with `status`.
fn default_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequestException",
        403 => "ForbiddenException",
        404 => "NotFoundException",
        409 => "ConflictException",
        429 => "TooManyRequestsException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerErrorException",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn operation(service: &str, name: &str) -> Operation {
        Operation {
            service: service.to_string(),
            name: name.to_string(),
        }
    }

    fn fault_set(rules: serde_json::Value) -> FaultSet {
        let mut set = FaultSet::default();
        let config = serde_json::from_value(json!({ "rules": rules })).unwrap();
        set.replace(config).unwrap();
        set
    }

    fn always(_: f64) -> bool {
        true
    }

    #[test]
    fn rule_fires_limited_times() {
        let mut set = fault_set(json!([{
            "operation": "mediaconvert:CreateJob", "status": 429, "times": 2,
        }]));
        let create = operation("mediaconvert", "CreateJob");
        for attempt in 0..2 {
            let fault = set.fire(&create, always).expect("rule should fire");
            let FaultAction::Reject(error) = fault.action else {
                panic!("attempt {attempt}: expected Reject, got {:?}", fault.action);
            };
            assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(error.error_type, "TooManyRequestsException");
        }
        assert_eq!(set.fire(&create, always), None);
        assert_eq!(set.rules()[0].remaining, Some(0));
        assert_eq!(set.rules()[0].fired, 2);
    }

    #[test]
    fn rule_matches_only_its_operation() {
        let mut set = fault_set(json!([{"operation": "mediaconvert:GetJob", "status": 500}]));
        assert!(
            set.fire(&operation("mediaconvert", "CreateJob"), always)
                .is_none()
        );
        assert!(set.fire(&operation("kms", "GetJob"), always).is_none());
        assert!(
            set.fire(&operation("mediaconvert", "GetJob"), always)
                .is_some()
        );
    }

    #[test]
    fn wildcards_match_service_or_all() {
        let mut set = fault_set(json!([
            {"operation": "kms:*", "status": 400},
            {"operation": "*", "status": 503},
        ]));
        let kms = set.fire(&operation("kms", "DescribeKey"), always).unwrap();
        let s3 = set.fire(&operation("s3", "HeadBucket"), always).unwrap();
        let status = |fault: Fault| match fault.action {
            FaultAction::Reject(error) => error.status.as_u16(),
            other => panic!("expected Reject, got {other:?}"),
        };
        assert_eq!(status(kms), 400);
        assert_eq!(status(s3), 503);
    }

    #[test]
    fn failed_draw_tries_next_rule() {
        let mut set = fault_set(json!([
            {"operation": "*", "status": 429, "probability": 0.5, "times": 1},
            {"operation": "*", "delayMs": 10},
        ]));
        let fault = set.fire(&operation("s3", "PutObject"), |_| false).unwrap();
        assert_eq!(fault.action, FaultAction::Forward);
        assert_eq!(fault.delay, Duration::from_millis(10));
        assert_eq!(set.rules()[0].remaining, Some(1));
    }

    #[test]
    fn draw_receives_rule_probability() {
        let mut set = fault_set(json!([{"operation": "*", "status": 429, "probability": 0.25}]));
        let mut seen = None;
        set.fire(&operation("s3", "PutObject"), |p| {
            seen = Some(p);
            true
        });
        assert_eq!(seen, Some(0.25));
    }

    #[test]
    fn withhold_defaults_to_internal_error() {
        let mut set = fault_set(json!([{"operation": "*", "withholdResponse": true}]));
        let fault = set
            .fire(&operation("mediaconvert", "CreateJob"), always)
            .unwrap();
        let FaultAction::Withhold(error) = fault.action else {
            panic!("expected Withhold, got {:?}", fault.action);
        };
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error.error_type, "InternalServerErrorException");
    }

    #[test]
    fn explicit_error_type_and_message_are_kept() {
        let mut set = fault_set(json!([{
            "operation": "*", "status": 403, "errorType": "AccessDeniedException", "message": "no",
        }]));
        let fault = set.fire(&operation("kms", "Encrypt"), always).unwrap();
        let expected = InjectedError {
            status: StatusCode::FORBIDDEN,
            error_type: "AccessDeniedException".to_string(),
            message: "no".to_string(),
        };
        assert_eq!(fault.action, FaultAction::Reject(expected));
    }

    #[test]
    fn invalid_rules_are_rejected() {
        let cases = [
            (
                json!({"operation": "*", "status": 200}),
                "not an error status",
            ),
            (
                json!({"operation": "*", "probability": 1.5}),
                "outside 0 to 1",
            ),
            (json!({"operation": ""}), "operation is empty"),
        ];
        for (rule, expected) in cases {
            let mut set = fault_set(json!([{"operation": "*", "status": 500}]));
            let config = serde_json::from_value(json!({ "rules": [rule] })).unwrap();
            let error = set.replace(config).unwrap_err();
            assert!(error.contains(expected), "{rule}: {error}");
            assert_eq!(
                set.rules().len(),
                1,
                "old rules stay after a rejected replace"
            );
        }
    }

    #[test]
    fn access_key_limits_rule_to_its_signer() {
        let mut set = fault_set(json!([{
            "operation": "mediaconvert:GetJob", "status": 404, "accessKeyId": "test-a",
        }]));
        let get = operation("mediaconvert", "GetJob");
        let signed_by = |key: Option<&str>| RequestFacts {
            access_key_id: key.map(str::to_string),
            ..RequestFacts::default()
        };
        assert!(
            set.fire_for(&get, &signed_by(Some("test-b")), always)
                .is_none()
        );
        assert!(set.fire_for(&get, &signed_by(None), always).is_none());
        assert!(
            set.fire_for(&get, &signed_by(Some("test-a")), always)
                .is_some()
        );
    }

    #[test]
    fn rate_rule_fires_only_above_its_rate() {
        let mut set = fault_set(json!([{
            "operation": "mediaconvert:CreateJob", "status": 429, "abovePerSecond": 2,
        }]));
        let create = operation("mediaconvert", "CreateJob");
        let facts = RequestFacts::default();
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        assert!(set.fire_at(&create, &facts, always, at(0)).is_none());
        assert!(set.fire_at(&create, &facts, always, at(100)).is_none());
        assert!(set.fire_at(&create, &facts, always, at(200)).is_some());
        // A second after the first two, the window holds only the third and this one.
        assert!(set.fire_at(&create, &facts, always, at(1150)).is_none());
        assert_eq!(set.rules()[0].fired, 1);
    }

    #[test]
    fn response_delay_kept_for_forwarded_requests() {
        let mut set = fault_set(json!([{"operation": "*", "responseDelayMs": 250}]));
        let fault = set
            .fire(&operation("mediaconvert", "CreateJob"), always)
            .unwrap();
        assert_eq!(fault.action, FaultAction::Forward);
        assert_eq!(fault.delay, Duration::ZERO);
        assert_eq!(fault.response_delay, Duration::from_millis(250));
    }
}
