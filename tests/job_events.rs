//! Push events: MediaConvert job state changes that an EventBridge rule delivers to an SQS
//! queue update status without polling, late or repeated events change nothing, and a job
//! whose events never arrive is still read by the status sync.

mod support;

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sqs::types::QueueAttributeName;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::*;

/// Operator flags that leave the batched sync idle for the length of a test, so every
/// status change comes from an event.
const NO_POLLING: [&str; 6] = [
    "--poll-interval-seconds",
    "600",
    "--max-poll-interval-seconds",
    "600",
    "--events-staleness-seconds",
    "600",
];

/// Staleness window of the tests that keep the batched sync running: short, so that the
/// fallback reads a silent job within seconds, and longer than the gap between the events
/// of a job that publishes them.
const STALENESS: [&str; 2] = ["--events-staleness-seconds", "5"];

/// An SQS queue fed by an EventBridge rule with the job events of one namespace.
struct EventQueue {
    url: String,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
}

impl EventQueue {
    async fn create(env: &Env, namespace: &str) -> Self {
        let aws = env.aws().await;
        let url = aws
            .create_event_queue(namespace, namespace)
            .await
            .expect("failed to create the event queue and rule");
        let config = env.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let events = aws_sdk_eventbridge::Client::new(&config);
        Self { url, sqs, events }
    }

    /// Publishes a job state change as MediaConvert would, with `detail` merged into the
    /// fields every such event has.
    async fn publish(&self, namespace: &str, name: &str, job: &Value, detail: Value) {
        let mut full = json!({
            "queue": job["queue"],
            "jobId": job["id"],
            "userMetadata": {
                "mediaconvert.operators.dev/namespace": namespace,
                "mediaconvert.operators.dev/name": name,
            },
        });
        for (key, value) in detail.as_object().expect("detail object") {
            full[key] = value.clone();
        }
        let entry = PutEventsRequestEntry::builder()
            .source("aws.mediaconvert")
            .detail_type("MediaConvert Job State Change")
            .detail(full.to_string())
            .build();
        let output = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .expect("PutEvents failed");
        assert_eq!(output.failed_entry_count, 0, "{output:?}");
    }

    /// Waits until the queue has no message, visible or in flight: the operator has
    /// applied and deleted every event.
    async fn wait_drained(&self) {
        wait_until("the event queue to drain", || async {
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .expect("GetQueueAttributes failed")
                .attributes
                .unwrap_or_default();
            attributes.values().all(|count| count == "0")
        })
        .await;
    }
}

/// Starts an operator that reads the events of a fresh namespace, with `flags` added to
/// the test settings, whose poll interval is one second.
async fn start(prefix: &str, timeline: Value, flags: &[&str]) -> (Setup, EventQueue) {
    let (env, namespace, seeded) = prepare(prefix, timeline).await;
    let queue = EventQueue::create(&env, &namespace.name).await;
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["--events-queue-url", &queue.url]);
    let operator = Operator::start_with(&namespace.name, &args);
    let setup = Setup {
        env,
        namespace,
        operator,
        seeded,
    };
    (setup, queue)
}

/// Reads of job state by the operator of `namespace`: `ListJobs` pages and `GetJob` calls.
async fn reads(setup: &Setup) -> (u64, u64) {
    let proxy = setup.env.proxy();
    let name = &setup.namespace.name;
    let list_pages = proxy.call_count(name, "mediaconvert:ListJobs").await;
    let get_jobs = proxy.call_count(name, "mediaconvert:GetJob").await;
    (list_pages, get_jobs)
}

#[tokio::test]
async fn events_carry_jobs_to_complete_without_reads() {
    const JOBS: usize = 3;
    // Each job progresses for 8 s with a STATUS_UPDATE every second, so no job goes
    // 5 s without news while the sync checks every second which jobs did.
    let mut steps = timeline(8_000, complete());
    steps["publishEvents"] = json!(true);
    steps["statusUpdateEveryMs"] = json!(1_000);
    let (setup, queue) = start("events", steps, &STALENESS).await;
    let api = setup.namespace.jobs();
    for index in 0..JOBS {
        create(
            &api,
            &job_yaml(&format!("episode-{index}"), "{type: S3}", BASE_SETTINGS),
        )
        .await;
    }
    for index in 0..JOBS {
        let done = wait_for(
            &api,
            &format!("episode-{index}"),
            "Complete",
            phase_is("Complete"),
        )
        .await;
        let status = done.status.expect("status");
        assert_eq!(status.job_percent_complete, Some(100));
        assert!(
            !status.outputs.is_empty(),
            "no outputs recorded: {status:?}"
        );
        assert!(status.finished_at.is_some(), "no finish time: {status:?}");
    }
    queue.wait_drained().await;

    let (list_pages, get_jobs) = reads(&setup).await;
    let proxy = setup.env.proxy();
    let name = &setup.namespace.name;
    // An event can reach a resource before its CreateJob response is recorded; the
    // operator then looks its job up once with ListJobs. Status itself needs no read.
    assert_eq!(get_jobs, 0, "status came from GetJob, not events");
    assert!(
        list_pages <= JOBS as u64,
        "{list_pages} ListJobs calls for {JOBS} jobs: status came from the sync"
    );
    assert!(proxy.call_count(name, "sqs:DeleteMessageBatch").await > 0);
    assert_eq!(proxy.call_count(name, "sqs:DeleteMessage").await, 0);
}

#[tokio::test]
async fn late_and_repeated_events_leave_status_correct() {
    // The job progresses for ten minutes in the emulator; only the events below move it.
    let (setup, queue) = start("late-events", timeline(600_000, complete()), &NO_POLLING).await;
    let api = setup.namespace.jobs();
    let namespace = setup.namespace.name.clone();
    create(&api, &job_yaml("trailer", "{type: S3}", BASE_SETTINGS)).await;
    let submitted = wait_for(&api, "trailer", "submitted", |job| {
        job.status
            .as_ref()
            .is_some_and(|status| status.job_id.is_some())
    })
    .await;
    let status = submitted.status.expect("status");
    let mediaconvert_job = json!({"id": status.job_id, "queue": status.queue});
    let at = mediaconvert_operator::controller::sync::now_ms();
    let progress = |percent: i64, offset_ms: i64| {
        json!({"status": "STATUS_UPDATE", "timestamp": at + offset_ms,
               "jobProgress": {"jobPercentComplete": percent, "currentPhase": "TRANSCODING"}})
    };

    // Progress arrives newest first, then again.
    for detail in [
        progress(60, 2_000),
        progress(30, 1_000),
        progress(60, 2_000),
    ] {
        queue
            .publish(&namespace, "trailer", &mediaconvert_job, detail)
            .await;
    }
    queue.wait_drained().await;
    let job = wait_for(&api, "trailer", "at 60 %", |job| {
        job.status
            .as_ref()
            .and_then(|status| status.job_percent_complete)
            == Some(60)
    })
    .await;
    assert_eq!(
        job.status
            .and_then(|status| status.phase)
            .map(|phase| phase.to_string())
            .as_deref(),
        Some("Progressing")
    );

    // Completion, then a late progress event and the completion again.
    let complete = json!({"status": "COMPLETE", "timestamp": at + 5_000,
        "outputGroupDetails": [{"outputDetails": [{"outputFilePaths": ["s3://example-media-out/trailer.mp4"]}]}]});
    for detail in [complete.clone(), progress(90, 3_000), complete] {
        queue
            .publish(&namespace, "trailer", &mediaconvert_job, detail)
            .await;
    }
    queue.wait_drained().await;
    let done = wait_for(&api, "trailer", "Complete", phase_is("Complete")).await;
    // The status stays complete after the late events are applied.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let job = api.get("trailer").await.expect("get failed");
    assert_eq!(job.status, done.status, "a late event changed the status");
    let status = job.status.expect("status");
    assert_eq!(status.outputs, ["s3://example-media-out/trailer.mp4"]);
    assert_eq!(status.job_percent_complete, Some(100));

    let events: kube::Api<Event> = kube::Api::namespaced(setup.env.client.clone(), &namespace);
    let completions = events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|event| event.reason.as_deref() == Some("Complete"))
        .map(|event| event.count.unwrap_or(1))
        .sum::<i32>();
    assert_eq!(
        completions, 1,
        "the completion was announced {completions} times"
    );

    // Whatever order SQS delivered them in, each of the six events was applied or found
    // stale, and at least the duplicate and the late progress were stale.
    let samples = support::scrape::metrics(&setup.operator.metrics_url().await).await;
    let counted = |result: &str| {
        let label = format!("result=\"{result}\"");
        samples.sum("mediaconvert_operator_job_events_total", &[label.as_str()])
    };
    let (applied, stale) = (counted("applied"), counted("stale"));
    assert_eq!(applied + stale, 6.0, "{samples:?}");
    assert!(applied >= 2.0, "{samples:?}");
    assert!(stale >= 2.0, "{samples:?}");
}

#[tokio::test]
async fn job_without_events_completes_through_sync() {
    // The jobs publish no events, as when the rule or the queue is misconfigured, but the
    // operator still reads the queue.
    let (setup, queue) = start("silent-events", timeline(2_000, complete()), &STALENESS).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("silent", "{type: S3}", BASE_SETTINGS)).await;
    let done = wait_for(&api, "silent", "Complete", phase_is("Complete")).await;
    let status = done.status.expect("status");
    assert_eq!(status.job_percent_complete, Some(100));
    assert!(
        !status.outputs.is_empty(),
        "no outputs recorded: {status:?}"
    );

    let (list_pages, get_jobs) = reads(&setup).await;
    assert!(
        list_pages + get_jobs > 0,
        "the job completed without a read or an event"
    );
    let proxy = setup.env.proxy();
    let name = &setup.namespace.name;
    for operation in ["sqs:DeleteMessageBatch", "sqs:DeleteMessage"] {
        assert_eq!(proxy.call_count(name, operation).await, 0, "{operation}");
    }
    queue.wait_drained().await;
}
