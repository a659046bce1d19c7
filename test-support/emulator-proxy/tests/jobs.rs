//! MediaConvert job behaviour through the proxy, against a real fakecloud.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Stack, job_id};

fn status(job: &Value) -> &str {
    job["status"]
        .as_str()
        .unwrap_or_else(|| panic!("job has no status: {job}"))
}

#[tokio::test]
async fn progressing_job_rises_then_completes() {
    let stack = Stack::start("progressing", &[]);
    stack
        .set_timelines(json!({"default": {"steps": [
            {"atMs": 0, "status": "SUBMITTED"},
            {"atMs": 300, "status": "PROGRESSING", "percent": 0, "currentPhase": "PROBING"},
            {"atMs": 3300, "status": "PROGRESSING", "percent": 100, "currentPhase": "TRANSCODING"},
            {"atMs": 3600, "status": "COMPLETE"},
        ]}}))
        .await;

    let created = stack.create_job(json!({}), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(status(&created.body["job"]), "SUBMITTED");
    let id = job_id(&created.body["job"]);

    let mut percents = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let complete = loop {
        assert!(
            Instant::now() < deadline,
            "job did not complete; percents seen: {percents:?}"
        );
        let job = stack.get_job(&id).await;
        match status(&job) {
            "SUBMITTED" => {}
            "PROGRESSING" => {
                let percent = job["jobPercentComplete"].as_u64();
                percents.push(percent.expect("PROGRESSING job has jobPercentComplete"));
                assert!(job["timing"]["startTime"].is_number(), "{job}");
                assert!(job["timing"].get("finishTime").is_none(), "{job}");
            }
            "COMPLETE" => break job,
            other => panic!("unexpected status {other}: {job}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut sorted = percents.clone();
    sorted.sort_unstable();
    assert_eq!(percents, sorted, "percent never falls");
    let distinct = {
        let mut distinct = sorted.clone();
        distinct.dedup();
        distinct.len()
    };
    assert!(
        distinct >= 3,
        "percent rose through several values: {percents:?}"
    );
    assert!(
        percents.iter().any(|p| (1..100).contains(p)),
        "{percents:?}"
    );

    assert_eq!(complete["jobPercentComplete"], 100);
    let details = &complete["outputGroupDetails"][0]["outputDetails"];
    assert_eq!(
        details[0]["outputFilePaths"],
        json!(["s3://media-out/renditions/lecture_1080p.mp4"])
    );
    assert_eq!(
        details[1]["outputFilePaths"],
        json!(["s3://media-out/renditions/lecture_mezzanine.mov"])
    );
    let timing = &complete["timing"];
    let submit = timing["submitTime"]
        .as_f64()
        .expect("submitTime is a number");
    let start = timing["startTime"].as_f64().expect("startTime is a number");
    let finish = timing["finishTime"]
        .as_f64()
        .expect("finishTime is a number");
    assert!((start - submit - 0.3).abs() < 0.01, "{timing}");
    assert!((finish - submit - 3.6).abs() < 0.01, "{timing}");
}

#[tokio::test]
async fn error_timeline_reports_code_and_message() {
    let stack = Stack::start("error", &[]);
    stack
        .set_timelines(json!({"rules": [{
            "userMetadata": {"scenario": "fail"},
            "timeline": {"steps": [
                {"atMs": 0, "status": "ERROR", "errorCode": 1401, "errorMessage": "Access denied to s3://media-in"},
            ]},
        }]}))
        .await;

    let failing = stack
        .create_job_id(json!({"scenario": "fail", "owner": "a"}), None)
        .await;
    let unscripted = stack
        .create_job_id(json!({"scenario": "other"}), None)
        .await;

    let job = stack.get_job(&failing).await;
    assert_eq!(status(&job), "ERROR");
    assert_eq!(job["errorCode"], 1401);
    assert_eq!(job["errorMessage"], "Access denied to s3://media-in");
    assert!(job.get("jobPercentComplete").is_none(), "{job}");
    assert!(job.get("outputGroupDetails").is_none(), "{job}");

    // fakecloud itself settles every job to COMPLETE on the first read.
    let plain = stack.get_job(&unscripted).await;
    assert_eq!(status(&plain), "COMPLETE");
    assert!(plain.get("errorCode").is_none(), "{plain}");

    let errors = stack.list_jobs("?status=ERROR").await;
    let ids: Vec<String> = errors["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(job_id)
        .collect();
    assert_eq!(ids, vec![failing.clone()]);
    let completed = stack.list_jobs("?status=COMPLETE").await;
    let ids: Vec<String> = completed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(job_id)
        .collect();
    assert_eq!(ids, vec![unscripted]);
}

#[tokio::test]
async fn cancel_then_second_cancel_conflicts() {
    let stack = Stack::start("cancel", &[]);
    stack
        .set_timelines(json!({"default": {"steps": [
            {"atMs": 0, "status": "PROGRESSING", "percent": 10, "currentPhase": "TRANSCODING"},
            {"atMs": 600000, "status": "COMPLETE"},
        ]}}))
        .await;
    let id = stack.create_job_id(json!({}), None).await;
    let path = format!("/2017-08-29/jobs/{id}");

    let first = stack.mediaconvert(Method::DELETE, &path, None).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    assert_eq!(first.body, json!({}));

    let job = stack.get_job(&id).await;
    assert_eq!(status(&job), "CANCELED");
    assert!(job["timing"]["finishTime"].is_number(), "{job}");
    assert!(job.get("jobPercentComplete").is_none(), "{job}");

    let second = stack.mediaconvert(Method::DELETE, &path, None).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.headers["x-amzn-errortype"], "ConflictException");
    let message = second.body["message"]
        .as_str()
        .expect("conflict has a message");
    assert!(message.contains(&id), "{message}");

    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls["mediaconvert:CancelJob"], 2);
}

#[tokio::test]
async fn cancel_of_completed_job_conflicts() {
    let stack = Stack::start("cancel-complete", &[]);
    stack
        .set_timelines(json!({"default": {"steps": [{"atMs": 0, "status": "COMPLETE"}]}}))
        .await;
    let id = stack.create_job_id(json!({}), None).await;
    let path = format!("/2017-08-29/jobs/{id}");
    let reply = stack.mediaconvert(Method::DELETE, &path, None).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{:?}", reply.body);
    assert_eq!(status(&stack.get_job(&id).await), "COMPLETE");
}

#[tokio::test]
async fn repeated_token_returns_first_job() {
    let stack = Stack::start("token", &[]);
    let first = stack
        .create_job_id(json!({"attempt": "1"}), Some("token-a"))
        .await;
    let second = stack
        .create_job_id(json!({"attempt": "2"}), Some("token-a"))
        .await;
    assert_eq!(first, second);
    let other = stack.create_job_id(json!({}), Some("token-b")).await;
    assert_ne!(first, other);

    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    let jobs = jobs.as_array().expect("jobs is a list");
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[0]["id"], first.as_str());
    assert_eq!(jobs[0]["clientRequestToken"], "token-a");
    assert_eq!(jobs[0]["userMetadata"], json!({"attempt": "1"}));
    let created_at = jobs[0]["createdAt"]
        .as_str()
        .expect("createdAt is a string");
    assert!(created_at.ends_with('Z'), "{created_at}");
    assert!(created_at.contains('T'), "{created_at}");

    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls["mediaconvert:CreateJob"], 3);
}

#[tokio::test]
async fn token_after_window_creates_new_job() {
    let stack = Stack::start("token-window", &["--token-window-secs", "1"]);
    let first = stack.create_job_id(json!({}), Some("token-c")).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = stack.create_job_id(json!({}), Some("token-c")).await;
    assert_ne!(first, second);
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(2), "{jobs}");
}

#[tokio::test]
async fn list_jobs_newest_first_by_default() {
    let stack = Stack::start("list-order", &[]);
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(stack.create_job_id(json!({}), None).await);
        // Distinct createdAt values, which have millisecond precision, fix the order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ids = |body: &Value| -> Vec<String> {
        body["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(job_id)
            .collect()
    };

    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&stack.list_jobs("").await), newest_first);
    assert_eq!(ids(&stack.list_jobs("?order=ASCENDING").await), created);

    let page = stack.list_jobs("?maxResults=2").await;
    assert_eq!(ids(&page), newest_first[..2]);
    let token = page["nextToken"]
        .as_str()
        .expect("first page has nextToken");
    let rest = stack
        .list_jobs(&format!("?maxResults=2&nextToken={token}"))
        .await;
    assert_eq!(ids(&rest), newest_first[2..]);
    assert!(rest.get("nextToken").is_none(), "{rest}");

    let invalid = stack
        .mediaconvert(Method::GET, "/2017-08-29/jobs?order=UP", None)
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.headers["x-amzn-errortype"], "BadRequestException");
}

#[tokio::test]
async fn describe_endpoints_points_at_proxy() {
    let stack = Stack::start("endpoints", &[]);
    let reply = stack
        .mediaconvert(Method::POST, "/2017-08-29/endpoints", Some(json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["endpoints"][0]["url"], stack.proxy_url.as_str());
}

#[tokio::test]
async fn other_operations_pass_through() {
    let stack = Stack::start("passthrough", &[]);
    let queues = stack
        .mediaconvert(Method::GET, "/2017-08-29/queues", None)
        .await;
    assert_eq!(queues.status, StatusCode::OK, "{:?}", queues.body);
    let names: Vec<&str> = queues.body["queues"]
        .as_array()
        .expect("queues is a list")
        .iter()
        .filter_map(|queue| queue["name"].as_str())
        .collect();
    assert!(names.contains(&"Default"), "{names:?}");

    let missing = stack
        .mediaconvert(Method::GET, "/2017-08-29/jobs/1767225600000-none00", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:?}", missing.body);
}
