//! Job state change events published to EventBridge. The delivery tests route
//! the events through a real fakecloud rule into an SQS queue.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::{Stack, job_id};

/// An SQS queue that an EventBridge rule on the default bus fills with every
/// MediaConvert job state change, and the events received from it so far.
struct EventQueue {
    url: String,
    received: Vec<Value>,
}

impl EventQueue {
    /// Creates the queue and the rule, both named `name`.
    async fn create(stack: &Stack, name: &str) -> Self {
        let created = stack
            .aws_json("sqs", "AmazonSQS.CreateQueue", json!({"QueueName": name}))
            .await;
        let url = created["QueueUrl"]
            .as_str()
            .expect("CreateQueue returns QueueUrl");
        let attributes = stack
            .aws_json(
                "sqs",
                "AmazonSQS.GetQueueAttributes",
                json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
            )
            .await;
        let arn = attributes["Attributes"]["QueueArn"]
            .as_str()
            .expect("GetQueueAttributes returns QueueArn");

        let pattern = json!({
            "source": ["aws.mediaconvert"],
            "detail-type": ["MediaConvert Job State Change"],
        });
        let rule = json!({"Name": name, "EventPattern": pattern.to_string(), "State": "ENABLED"});
        stack.aws_json("events", "AWSEvents.PutRule", rule).await;
        let targets = json!({"Rule": name, "Targets": [{"Id": "queue", "Arn": arn}]});
        let put = stack
            .aws_json("events", "AWSEvents.PutTargets", targets)
            .await;
        assert_eq!(put["FailedEntryCount"], 0, "{put}");
        Self {
            url: url.to_string(),
            received: Vec::new(),
        }
    }

    /// Receives events until one for `job` has a status in `last`, and
    /// returns every event of that job in the order received.
    async fn events_until(&mut self, stack: &Stack, job: &str, last: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events: Vec<Value> = self
                .received
                .iter()
                .filter(|event| event["detail"]["jobId"] == job)
                .cloned()
                .collect();
            let done = statuses(&events).iter().any(|status| last.contains(status));
            if done {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no {last:?} event for {job}; received: {:#?}",
                self.received
            );
            self.receive(stack).await;
        }
    }

    /// Moves the messages in the queue, up to ten, into `received`.
    async fn receive(&mut self, stack: &Stack) {
        let request =
            json!({"QueueUrl": self.url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1});
        let received = stack
            .aws_json("sqs", "AmazonSQS.ReceiveMessage", request)
            .await;
        let messages = received["Messages"].as_array().cloned().unwrap_or_default();
        for message in messages {
            let body = message["Body"].as_str().expect("message has a Body");
            let event: Value = serde_json::from_str(body).expect("message body is JSON");
            self.received.push(event);
            let handle = &message["ReceiptHandle"];
            let delete = json!({"QueueUrl": self.url, "ReceiptHandle": handle});
            stack
                .aws_json("sqs", "AmazonSQS.DeleteMessage", delete)
                .await;
        }
    }
}

fn statuses(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["detail"]["status"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn scripted_job_events_reach_queue() {
    let stack = Stack::start("events", &[]);
    let mut queue = EventQueue::create(&stack, "job-events").await;
    stack
        .set_timelines(json!({"rules": [{
            "userMetadata": {"scenario": "events"},
            "timeline": {"publishEvents": true, "steps": [
                {"atMs": 0, "status": "SUBMITTED"},
                {"atMs": 300, "status": "PROGRESSING", "percent": 0, "currentPhase": "TRANSCODING"},
                {"atMs": 1800, "status": "PROGRESSING", "percent": 100, "currentPhase": "TRANSCODING"},
                {"atMs": 2000, "status": "COMPLETE"},
            ]},
        }]}))
        .await;
    let created = stack.create_job(json!({"scenario": "events"}), None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let job = &created.body["job"];
    let id = job_id(job);

    let events = queue.events_until(&stack, &id, &["COMPLETE"]).await;
    let statuses = statuses(&events);
    assert_eq!(statuses.first(), Some(&"SUBMITTED"), "{statuses:?}");
    assert_eq!(statuses.get(1), Some(&"PROGRESSING"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"COMPLETE"), "{statuses:?}");
    let updates: Vec<&Value> = events
        .iter()
        .filter(|event| event["detail"]["status"] == "STATUS_UPDATE")
        .collect();
    assert!(!updates.is_empty(), "{statuses:?}");
    assert_eq!(updates.len() + 3, events.len(), "{statuses:?}");

    for event in &events {
        assert_eq!(event["source"], "aws.mediaconvert");
        assert_eq!(event["detail-type"], "MediaConvert Job State Change");
        assert_eq!(event["resources"], json!([job["arn"]]));
        let detail = &event["detail"];
        assert_eq!(detail["jobId"], id.as_str());
        assert_eq!(detail["accountId"], "123456789012");
        assert_eq!(detail["queue"], job["queue"]);
        assert_eq!(detail["userMetadata"], json!({"scenario": "events"}));
        assert!(detail["timestamp"].is_u64(), "{detail}");
    }
    let created_ms = (job["createdAt"].as_f64().unwrap() * 1000.0).round() as u64;
    let progressing = &events[1]["detail"];
    assert_eq!(progressing["timestamp"].as_u64(), Some(created_ms + 300));

    let progress = &updates[0]["detail"]["jobProgress"];
    let percent = progress["jobPercentComplete"]
        .as_u64()
        .expect("update has a percent");
    assert!((1..=100).contains(&percent), "{progress}");
    assert_eq!(progress["currentPhase"], "TRANSCODING");
    assert!(progress["phaseProgress"].is_object(), "{progress}");

    let complete = &events.last().unwrap()["detail"];
    assert_eq!(complete["timestamp"].as_u64(), Some(created_ms + 2000));
    let paths = &complete["outputGroupDetails"][0]["outputDetails"][0]["outputFilePaths"];
    assert_eq!(
        paths,
        &json!(["s3://media-out/renditions/lecture_1080p.mp4"])
    );

    let counts = stack.control(Method::GET, "events", None).await.body;
    assert_eq!(
        counts["published"].as_u64(),
        Some(events.len() as u64),
        "{counts}"
    );
    assert_eq!(counts["pending"], 0, "{counts}");
    assert_eq!(counts["publishingJobs"], 0, "{counts}");
}

#[tokio::test]
async fn local_jobs_publish_error_and_cancel() {
    let stack = Stack::start("events-local", &["--local-jobs", "--publish-job-events"]);
    let mut queue = EventQueue::create(&stack, "local-job-events").await;
    stack
        .set_timelines(json!({"rules": [
            {"userMetadata": {"scenario": "fail"},
             "timeline": {"steps": [
                {"atMs": 200, "status": "ERROR", "errorCode": 1401, "errorMessage": "Access denied"},
             ]}},
            {"userMetadata": {"scenario": "slow"},
             "timeline": {"steps": [
                {"atMs": 0, "status": "PROGRESSING", "percent": 1, "currentPhase": "PROBING"},
                {"atMs": 600000, "status": "COMPLETE"},
             ]}},
        ]}))
        .await;
    let failing = stack.create_job_id(json!({"scenario": "fail"}), None).await;
    let slow = stack.create_job_id(json!({"scenario": "slow"}), None).await;
    let instant = stack.create_job_id(json!({}), None).await;

    let events = queue.events_until(&stack, &failing, &["ERROR"]).await;
    assert_eq!(statuses(&events), ["SUBMITTED", "ERROR"]);
    let error = &events[1]["detail"];
    assert_eq!(error["errorCode"], 1401);
    assert_eq!(error["errorMessage"], "Access denied");

    let events = queue.events_until(&stack, &instant, &["COMPLETE"]).await;
    assert_eq!(statuses(&events), ["SUBMITTED", "COMPLETE"]);

    // Wait for the PROGRESSING event so the cancel follows it.
    queue.events_until(&stack, &slow, &["PROGRESSING"]).await;
    let path = format!("/2017-08-29/jobs/{slow}");
    let cancel = stack.mediaconvert(Method::DELETE, &path, None).await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{:?}", cancel.body);
    let events = queue.events_until(&stack, &slow, &["CANCELED"]).await;
    assert_eq!(statuses(&events).last(), Some(&"CANCELED"));

    let calls = stack.control(Method::GET, "calls", None).await.body;
    assert!(calls.get("events:PutEvents").is_none(), "{calls}");
}

#[tokio::test]
async fn failed_publish_stays_pending() {
    let stack = Stack::start_without_upstream(
        "events-unreachable",
        &["--local-jobs", "--publish-job-events"],
    );
    stack.create_job_id(json!({}), None).await;

    let deadline = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let counts = stack.control(Method::GET, "events", None).await.body;
        if counts["failedCalls"].as_u64().unwrap_or(0) >= 2 {
            break counts;
        }
        assert!(Instant::now() < deadline, "no failed PutEvents: {counts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(counts["published"], 0, "{counts}");
    assert_eq!(counts["pending"], 2, "{counts}");
    let error = counts["lastError"].as_str().expect("lastError is set");
    assert!(error.contains("failed to send request upstream"), "{error}");
}
