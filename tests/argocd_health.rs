//! The Argo CD health check in docs/, run by Lua 5.1 (the dialect of Argo CD's
//! gopher-lua) against statuses the operator writes.

use mlua::{Lua, LuaSerdeExt, Table};
use serde_json::{Value, json};

const SCRIPT: &str = include_str!("../docs/argocd-health.lua");

/// Runs the health check on `object` and returns its status and message.
fn health(object: Value) -> (String, String) {
    let lua = Lua::new();
    let value = lua
        .to_value(&object)
        .expect("object does not convert to Lua");
    lua.globals().set("obj", value).expect("failed to set obj");
    let result: Table = lua
        .load(SCRIPT)
        .eval()
        .expect("the health check failed to run");
    let status = result.get("status").expect("no status in the result");
    let message = result.get("message").expect("no message in the result");
    (status, message)
}

fn job(generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "mediaconvert.operators.dev/v1alpha1",
        "kind": "MediaConvertJob",
        "metadata": {"name": "trailer", "namespace": "media", "generation": generation},
        "spec": {},
        "status": status,
    })
}

fn failed(reason: &str, message: &str) -> Value {
    json!([
        {"type": "Ready", "status": "False", "reason": reason, "message": message},
        {"type": "Failed", "status": "True", "reason": reason, "message": message},
    ])
}

#[test]
fn new_job_is_progressing() {
    let mut object = job(1, json!({}));
    object.as_object_mut().expect("object").remove("status");
    assert_eq!(health(object).0, "Progressing");
    assert_eq!(health(job(1, json!({}))).0, "Progressing");
}

#[test]
fn running_job_shows_percent() {
    let status = json!({"observedGeneration": 1, "phase": "Progressing", "jobPercentComplete": 42});
    let (health_status, message) = health(job(1, status));
    assert_eq!(health_status, "Progressing");
    assert_eq!(message, "Progressing (42%)");
}

#[test]
fn complete_job_is_healthy() {
    let status =
        json!({"observedGeneration": 1, "phase": "Complete", "jobId": "1700000000000-abc123"});
    let (health_status, message) = health(job(1, status));
    assert_eq!(health_status, "Healthy");
    assert!(message.contains("1700000000000-abc123"), "{message}");
}

#[test]
fn failed_phases_are_degraded_with_reason() {
    let cases = [
        (
            "Invalid",
            "KmsKeyDisabled",
            "key arn:aws:kms:us-east-1:111122223333:key/k is disabled",
        ),
        (
            "Error",
            "JobError",
            "MediaConvert job failed: 1401 access denied",
        ),
        (
            "Canceled",
            "DeadlineExceeded",
            "ran longer than activeDeadlineSeconds",
        ),
    ];
    for (phase, reason, message) in cases {
        let status = json!({
            "observedGeneration": 1,
            "phase": phase,
            "conditions": failed(reason, message),
        });
        let (health_status, text) = health(job(1, status));
        assert_eq!(health_status, "Degraded", "{phase}");
        assert_eq!(text, format!("{reason}: {message}"), "{phase}");
    }
}

#[test]
fn error_without_conditions_uses_error_message() {
    let status = json!({"observedGeneration": 1, "phase": "Error", "errorMessage": "boom"});
    assert_eq!(
        health(job(1, status)),
        ("Degraded".into(), "Error: boom".into())
    );
}

#[test]
fn stale_status_is_progressing() {
    let status = json!({"observedGeneration": 1, "phase": "Invalid", "conditions": failed("SpecInvalid", "bad role")});
    let (health_status, message) = health(job(2, status));
    assert_eq!(health_status, "Progressing");
    assert!(message.contains("generation 2"), "{message}");
}
