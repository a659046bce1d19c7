//! The local job store (`--local-jobs`). These tests start the proxy with an
//! upstream where nothing listens, so every response comes from the proxy.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use common::{Stack, job_id, job_request};

const QUEUE_ARN_PREFIX: &str = "arn:aws:mediaconvert:us-east-1:123456789012:queues/";

fn local_stack(name: &str) -> Stack {
    Stack::start_without_upstream(name, &["--local-jobs"])
}

fn ids(body: &Value) -> Vec<String> {
    body["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs list: {body}"))
        .iter()
        .map(job_id)
        .collect()
}

/// Sends CreateJob with `queue` and returns the job id.
async fn create_in_queue(stack: &Stack, user_metadata: Value, queue: &str) -> String {
    let mut body = job_request(user_metadata);
    body["queue"] = json!(queue);
    let reply = stack
        .mediaconvert(Method::POST, "/2017-08-29/jobs", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    job_id(&reply.body["job"])
}

#[tokio::test]
async fn local_create_and_get_job() {
    let stack = local_stack("local-create");
    let created = stack.create_job(json!({"owner": "a"}), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let job = &created.body["job"];
    let id = job_id(job);
    let (millis, suffix) = id.split_once('-').expect("id has a dash");
    assert_eq!(millis.len(), 13, "{id}");
    assert!(millis.bytes().all(|b| b.is_ascii_digit()), "{id}");
    assert_eq!(suffix.len(), 6, "{id}");
    assert!(
        suffix
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "{id}"
    );
    let arn = format!("arn:aws:mediaconvert:us-east-1:123456789012:jobs/{id}");
    assert_eq!(job["arn"], arn.as_str());
    assert_eq!(job["queue"], format!("{QUEUE_ARN_PREFIX}Default").as_str());
    assert_eq!(
        job["role"],
        "arn:aws:iam::123456789012:role/MediaConvertRole"
    );
    assert_eq!(job["userMetadata"], json!({"owner": "a"}));
    let created_at = job["createdAt"].as_f64().expect("createdAt is a number");
    let id_seconds = millis.parse::<f64>().unwrap() / 1000.0;
    assert!((created_at - id_seconds).abs() < 0.001, "{created_at} {id}");
    assert_eq!(
        job["settings"]["inputs"][0]["fileInput"],
        "s3://media-in/uploads/lecture.mov"
    );

    // A job that matches no timeline completes at once, as in fakecloud.
    assert_eq!(job["status"], "COMPLETE");
    assert_eq!(job["jobPercentComplete"], 100);
    let fetched = stack.get_job(&id).await;
    assert_eq!(fetched["status"], "COMPLETE");
    let details = &fetched["outputGroupDetails"][0]["outputDetails"];
    assert_eq!(
        details[0]["outputFilePaths"],
        json!(["s3://media-out/renditions/lecture_1080p.mp4"])
    );
    assert!(fetched["timing"]["finishTime"].is_number(), "{fetched}");

    let missing = stack
        .mediaconvert(Method::GET, "/2017-08-29/jobs/1767225600000-none00", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{:?}", missing.body);
    assert_eq!(missing.headers["x-amzn-errortype"], "NotFoundException");

    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls["mediaconvert:CreateJob"], 1);
    assert_eq!(calls["mediaconvert:GetJob"], 2);
}

#[tokio::test]
async fn local_create_validates_request() {
    let stack = local_stack("local-validate");
    for field in ["role", "settings"] {
        let mut body = job_request(json!({}));
        body.as_object_mut().unwrap().remove(field);
        let reply = stack
            .mediaconvert(Method::POST, "/2017-08-29/jobs", Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(reply.headers["x-amzn-errortype"], "BadRequestException");
        let message = reply.body["message"].as_str().expect("error has a message");
        assert!(message.contains(&format!("'{field}'")), "{message}");
    }
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs, json!([]));
}

#[tokio::test]
async fn local_queue_name_becomes_arn() {
    let stack = local_stack("local-queue");
    let id = create_in_queue(&stack, json!({}), "Fast").await;
    let job = stack.get_job(&id).await;
    assert_eq!(job["queue"], format!("{QUEUE_ARN_PREFIX}Fast").as_str());
}

#[tokio::test]
async fn local_list_filters_orders_and_pages() {
    let stack = local_stack("local-list");
    stack
        .set_timelines(json!({"rules": [{
            "userMetadata": {"case": "fail"},
            "timeline": {"steps": [{"atMs": 0, "status": "ERROR", "errorCode": 1010}]},
        }]}))
        .await;
    let mut created = Vec::new();
    for index in 0..25 {
        let id = match index % 5 {
            0 => create_in_queue(&stack, json!({}), "Fast").await,
            1 => stack.create_job_id(json!({"case": "fail"}), None).await,
            _ => stack.create_job_id(json!({}), None).await,
        };
        created.push(id);
        // Jobs of one millisecond sort by their random id suffix, so distinct
        // milliseconds keep the creation order.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let first = stack.list_jobs("").await;
    assert_eq!(ids(&first), newest_first[..20]);
    let token = first["nextToken"]
        .as_str()
        .expect("first page has nextToken");
    let rest = stack.list_jobs(&format!("?nextToken={token}")).await;
    assert_eq!(ids(&rest), newest_first[20..]);
    assert!(rest.get("nextToken").is_none(), "{rest}");

    let mut ascending = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let query = match &token {
            Some(token) => format!("?order=ASCENDING&maxResults=7&nextToken={token}"),
            None => "?order=ASCENDING&maxResults=7".to_string(),
        };
        let page = stack.list_jobs(&query).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 7, "{page}");
        ascending.extend(page_ids);
        token = page["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(ascending, created);

    let every_fifth = |offset: usize| -> Vec<String> {
        let matching = created.iter().enumerate().filter(|(i, _)| i % 5 == offset);
        matching.rev().map(|(_, id)| id.clone()).collect()
    };
    assert_eq!(ids(&stack.list_jobs("?status=ERROR").await), every_fifth(1));
    assert_eq!(ids(&stack.list_jobs("?queue=Fast").await), every_fifth(0));
    let queue_arn = format!("{QUEUE_ARN_PREFIX}Fast")
        .replace(':', "%3A")
        .replace('/', "%2F");
    let by_arn = stack.list_jobs(&format!("?queue={queue_arn}")).await;
    assert_eq!(ids(&by_arn), every_fifth(0));
    let complete_default = stack.list_jobs("?status=COMPLETE&queue=Default").await;
    assert_eq!(ids(&complete_default).len(), 15);

    for query in [
        "?maxResults=0",
        "?maxResults=21",
        "?nextToken=abc",
        "?status=DONE",
    ] {
        let path = format!("/2017-08-29/jobs{query}");
        let reply = stack.mediaconvert(Method::GET, &path, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.headers["x-amzn-errortype"], "BadRequestException");
    }
}

#[tokio::test]
async fn local_cancel_then_conflict() {
    let stack = local_stack("local-cancel");
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
    let job = stack.get_job(&id).await;
    assert_eq!(job["status"], "CANCELED");
    assert!(job["timing"]["finishTime"].is_number(), "{job}");

    let second = stack.mediaconvert(Method::DELETE, &path, None).await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(second.headers["x-amzn-errortype"], "ConflictException");

    let unknown = stack
        .mediaconvert(
            Method::DELETE,
            "/2017-08-29/jobs/1767225600000-none00",
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers["x-amzn-errortype"], "NotFoundException");

    let canceled = stack.list_jobs("?status=CANCELED").await;
    assert_eq!(ids(&canceled), vec![id]);
}

#[tokio::test]
async fn local_repeated_token_returns_first_job() {
    let stack = local_stack("local-token");
    stack
        .set_timelines(json!({"default": {"steps": [
            {"atMs": 0, "status": "SUBMITTED"},
            {"atMs": 300, "status": "PROGRESSING", "percent": 5},
        ]}}))
        .await;
    let first = stack
        .create_job(json!({"attempt": "1"}), Some("token-a"))
        .await;
    assert_eq!(first.body["job"]["status"], "SUBMITTED");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = stack
        .create_job(json!({"attempt": "2"}), Some("token-a"))
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{:?}", second.body);
    assert_eq!(job_id(&second.body["job"]), job_id(&first.body["job"]));
    assert_eq!(second.body["job"]["status"], "PROGRESSING");
    assert_eq!(second.body["job"]["userMetadata"], json!({"attempt": "1"}));

    let other = stack.create_job_id(json!({}), Some("token-b")).await;
    assert_ne!(other, job_id(&first.body["job"]));
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(2), "{jobs}");
    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls["mediaconvert:CreateJob"], 3);
}

#[tokio::test]
async fn local_token_after_window_creates_job() {
    let stack = Stack::start_without_upstream(
        "local-token-window",
        &["--local-jobs", "--token-window-secs", "1"],
    );
    let first = stack.create_job_id(json!({}), Some("token-c")).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = stack.create_job_id(json!({}), Some("token-c")).await;
    assert_ne!(first, second);
}

#[tokio::test]
async fn local_faults_apply_before_store() {
    let stack = local_stack("local-faults");
    stack
        .set_faults(json!({"rules": [
            {"operation": "mediaconvert:CreateJob", "status": 429, "times": 1},
            {"operation": "mediaconvert:CreateJob", "withholdResponse": true, "times": 1},
            {"operation": "mediaconvert:GetJob", "status": 503, "times": 1},
        ]}))
        .await;

    let throttled = stack.create_job(json!({}), Some("retry")).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs, json!([]), "a rejected request creates nothing");

    let withheld = stack.create_job(json!({}), Some("retry")).await;
    assert_eq!(withheld.status, StatusCode::INTERNAL_SERVER_ERROR);
    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    let stored = jobs[0]["id"].as_str().unwrap().to_string();

    let retried = stack.create_job(json!({}), Some("retry")).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.body);
    assert_eq!(job_id(&retried.body["job"]), stored);

    let path = format!("/2017-08-29/jobs/{stored}");
    let unavailable = stack.mediaconvert(Method::GET, &path, None).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stack.get_job(&stored).await["id"], stored.as_str());

    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert_eq!(calls["mediaconvert:CreateJob"], 3);
    assert_eq!(calls["mediaconvert:GetJob"], 2);
}

#[tokio::test]
async fn local_describe_endpoints_points_at_proxy() {
    let stack = local_stack("local-endpoints");
    let reply = stack
        .mediaconvert(Method::POST, "/2017-08-29/endpoints", Some(json!({})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["endpoints"][0]["url"], stack.proxy_url.as_str());
}

#[tokio::test]
async fn jobs_view_reports_finish_times() {
    let stack = local_stack("local-finished");
    stack
        .set_timelines(json!({"rules": [
            {"userMetadata": {"case": "done"},
             "timeline": {"steps": [
                {"atMs": 0, "status": "PROGRESSING", "percent": 0},
                {"atMs": 500, "status": "COMPLETE"},
             ]}},
            {"userMetadata": {"case": "open"},
             "timeline": {"steps": [{"atMs": 0, "status": "PROGRESSING", "percent": 0}]}},
        ]}))
        .await;
    let done = stack.create_job_id(json!({"case": "done"}), None).await;
    let open = stack.create_job_id(json!({"case": "open"}), None).await;
    let instant = stack.create_job_id(json!({}), None).await;
    let canceled = stack.create_job_id(json!({"case": "open"}), None).await;
    let path = format!("/2017-08-29/jobs/{canceled}");
    let cancel = stack.mediaconvert(Method::DELETE, &path, None).await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED);

    let jobs = stack.control(Method::GET, "jobs", None).await.body;
    let entry = |id: &str| -> Value {
        let jobs = jobs.as_array().expect("jobs is a list");
        let found = jobs.iter().find(|job| job["id"] == id);
        found
            .unwrap_or_else(|| panic!("{id} missing: {jobs:?}"))
            .clone()
    };
    let created_ms = |job: &Value| job["createdMs"].as_u64().expect("createdMs is a number");

    let done = entry(&done);
    assert_eq!(done["finishedMs"].as_u64(), Some(created_ms(&done) + 500));
    assert_eq!(done["status"], "PROGRESSING");
    assert!(done["settings"].is_object(), "{done}");
    let open = entry(&open);
    assert!(open.get("finishedMs").is_none(), "{open}");
    let instant = entry(&instant);
    assert_eq!(instant["finishedMs"].as_u64(), Some(created_ms(&instant)));
    let canceled = entry(&canceled);
    let canceled_at = canceled["finishedMs"]
        .as_u64()
        .expect("canceled job has finishedMs");
    assert!(canceled_at >= created_ms(&canceled), "{canceled}");
    assert_eq!(canceled["status"], "CANCELED");

    let summary = stack
        .control(Method::GET, "jobs?summary=true", None)
        .await
        .body;
    let summary = summary.as_array().expect("summary is a list");
    assert_eq!(summary.len(), 4);
    for job in summary {
        assert!(job.get("settings").is_none(), "{job}");
        assert!(job["createdMs"].is_u64(), "{job}");
        assert!(job["userMetadata"].is_object(), "{job}");
    }
}

#[tokio::test]
async fn local_store_holds_ten_thousand_jobs() {
    const JOBS: usize = 10_000;
    const WORKERS: usize = 8;
    let stack = local_stack("local-scale");
    let stack = Arc::new(stack);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for worker in 0..WORKERS {
        let stack = stack.clone();
        workers.spawn(async move {
            for index in (worker..JOBS).step_by(WORKERS) {
                let metadata = json!({"index": index.to_string()});
                let reply = stack.create_job(metadata, None).await;
                assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.expect("a CreateJob worker failed");
    }
    let create_time = started.elapsed();

    let page_started = Instant::now();
    let page = stack.list_jobs("?maxResults=20").await;
    let page_time = page_started.elapsed();
    assert_eq!(ids(&page).len(), 20);
    let token = page["nextToken"].as_str().expect("page has nextToken");
    let next = stack.list_jobs(&format!("?nextToken={token}")).await;
    assert_eq!(ids(&next).len(), 20);

    let status = std::fs::read_to_string(format!("/proc/{}/status", stack.proxy_pid()))
        .expect("failed to read the proxy's /proc status");
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS is in /proc status");
    eprintln!(
        "{JOBS} jobs: created in {create_time:?}, first page in {page_time:?}, \
         proxy RSS {} MiB",
        rss_kib / 1024
    );
    assert!(rss_kib < 100 * 1024, "proxy RSS {rss_kib} KiB");
}
