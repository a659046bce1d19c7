//! Fault rules and call counts through the proxy, against a real fakecloud.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use common::{Stack, job_id};

#[tokio::test]
async fn throttling_fault_twice_then_success() {
    let stack = Stack::start("throttle", &[]);
    stack
        .set_faults(json!({"rules": [{
            "operation": "mediaconvert:CreateJob", "status": 429,
            "errorType": "TooManyRequestsException", "message": "Slow down", "times": 2,
        }]}))
        .await;

    for attempt in 1..=2 {
        let reply = stack.create_job(json!({}), None).await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "attempt {attempt}"
        );
        assert_eq!(
            reply.headers["x-amzn-errortype"],
            "TooManyRequestsException"
        );
        assert_eq!(reply.body, json!({"message": "Slow down"}));
    }
    let third = stack.create_job(json!({}), None).await;
    assert_eq!(third.status, StatusCode::CREATED, "{:?}", third.body);

    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls["mediaconvert:CreateJob"], 3);
    let faults = stack.control(Method::GET, "faults", None).await.body;
    assert_eq!(faults["rules"][0]["remaining"], 0);
    assert_eq!(faults["rules"][0]["fired"], 2);
}

#[tokio::test]
async fn withheld_response_still_creates_job() {
    let stack = Stack::start("withhold", &[]);
    stack
        .set_faults(json!({"rules": [{
            "operation": "mediaconvert:CreateJob", "withholdResponse": true, "times": 1,
        }]}))
        .await;

    let lost = stack.create_job(json!({}), Some("retry-token")).await;
    assert_eq!(lost.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        lost.headers["x-amzn-errortype"],
        "InternalServerErrorException"
    );
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    let created = jobs[0]["id"]
        .as_str()
        .expect("created job has an id")
        .to_string();

    let retried = stack.create_job(json!({}), Some("retry-token")).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.body);
    assert_eq!(job_id(&retried.body["job"]), created);
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
}

#[tokio::test]
async fn delay_fault_slows_request() {
    let stack = Stack::start("delay", &[]);
    stack
        .set_faults(json!({"rules": [{"operation": "mediaconvert:ListJobs", "delayMs": 400}]}))
        .await;
    let started = Instant::now();
    stack.list_jobs("").await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[tokio::test]
async fn calls_counted_by_operation() {
    let stack = Stack::start("calls", &[]);
    let id = stack.create_job_id(json!({}), None).await;
    stack.get_job(&id).await;
    stack.get_job(&id).await;
    stack.list_jobs("?order=ASCENDING").await;

    let kms = reqwest::Client::new()
        .post(format!("{}/", stack.proxy_url))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("x-amz-target", "TrentService.ListKeys")
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .expect("KMS request through the proxy failed");
    assert_eq!(kms.status(), StatusCode::OK);

    let calls = stack.control(Method::GET, "calls", None).await.body;
    let expected = json!({
        "mediaconvert:CreateJob": 1,
        "mediaconvert:GetJob": 2,
        "mediaconvert:ListJobs": 1,
        "kms:ListKeys": 1,
    });
    assert_eq!(calls, expected);

    let reset = stack.control(Method::DELETE, "calls", None).await;
    assert_eq!(reset.status, StatusCode::OK);
    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls, json!({}));
}

#[tokio::test]
async fn reset_clears_proxy_state() {
    let stack = Stack::start("reset", &[]);
    stack
        .set_timelines(json!({"default": {"steps": [{"atMs": 0, "status": "SUBMITTED"}]}}))
        .await;
    stack
        .set_faults(json!({"rules": [{"operation": "kms:*", "status": 500}]}))
        .await;
    stack.create_job_id(json!({}), Some("reset-token")).await;

    let reset = stack.control(Method::POST, "reset", None).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(
        stack.control(Method::GET, "calls", None).await.body,
        json!({})
    );
    assert_eq!(
        stack.control(Method::GET, "jobs", None).await.body,
        json!([])
    );
    let timelines = stack.control(Method::GET, "timelines", None).await.body;
    assert_eq!(timelines, json!({"default": null, "rules": []}));
    let faults = stack.control(Method::GET, "faults", None).await.body;
    assert_eq!(faults, json!({"rules": []}));

    // The token is forgotten too, so the same token creates another job.
    stack.create_job_id(json!({}), Some("reset-token")).await;
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
}

#[tokio::test]
async fn invalid_control_bodies_are_rejected() {
    let stack = Stack::start("invalid-control", &[]);
    let bad_timeline = json!({"default": {"steps": [{"atMs": 0, "status": "ERROR"}]}});
    let reply = stack
        .control(Method::PUT, "timelines", Some(bad_timeline))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = reply.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("requires errorCode"), "{message}");

    let bad_fault = json!({"rules": [{"operation": "*", "status": 200}]});
    let reply = stack.control(Method::PUT, "faults", Some(bad_fault)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let unknown = stack.control(Method::GET, "nothing", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let wrong_method = stack.control(Method::POST, "calls", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);

    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls, json!({}), "control requests are not counted");
}

#[tokio::test]
async fn access_key_scopes_rules_and_counts() {
    let stack = Stack::start("access-key", &[]);
    stack
        .set_faults(json!({"rules": [{
            "operation": "mediaconvert:*", "status": 503, "accessKeyId": "test-faulty",
        }]}))
        .await;

    let faulty = stack
        .mediaconvert_as("test-faulty", Method::GET, "/2017-08-29/jobs", None)
        .await;
    assert_eq!(faulty.status, StatusCode::SERVICE_UNAVAILABLE);
    let healthy = stack
        .mediaconvert_as("test-healthy", Method::GET, "/2017-08-29/jobs", None)
        .await;
    assert_eq!(healthy.status, StatusCode::OK, "{:?}", healthy.body);
    stack.create_job_id(json!({}), None).await;

    let faulty_calls = stack
        .control(Method::GET, "calls?accessKeyId=test-faulty", None)
        .await
        .body;
    assert_eq!(faulty_calls, json!({"mediaconvert:ListJobs": 1}));
    let healthy_calls = stack
        .control(Method::GET, "calls?accessKeyId=test-healthy", None)
        .await
        .body;
    assert_eq!(healthy_calls, json!({"mediaconvert:ListJobs": 1}));
    let unknown = stack
        .control(Method::GET, "calls?accessKeyId=test-nobody", None)
        .await
        .body;
    assert_eq!(unknown, json!({}));
    let all = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(
        all,
        json!({"mediaconvert:ListJobs": 2, "mediaconvert:CreateJob": 1})
    );
}

#[tokio::test]
async fn response_delay_holds_reply_after_side_effect() {
    let stack = Stack::start("response-delay", &[]);
    stack
        .set_faults(json!({"rules": [{
            "operation": "mediaconvert:CreateJob", "responseDelayMs": 1500, "times": 1,
        }]}))
        .await;

    let started = Instant::now();
    let create = stack.create_job(json!({}), Some("held"));
    let watch = async {
        // The job exists upstream while the client still waits for its response.
        loop {
            let jobs = stack.control(Method::GET, "jobs", None).await.body;
            if jobs.as_array().is_some_and(|jobs| !jobs.is_empty()) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (reply, seen_after) = tokio::join!(create, watch);
    let replied_after = started.elapsed();
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert!(
        replied_after >= Duration::from_millis(1500),
        "{replied_after:?}"
    );
    assert!(
        seen_after < replied_after - Duration::from_millis(500),
        "job seen after {seen_after:?}, reply after {replied_after:?}"
    );
}
