//! One run: a fresh namespace and operator process, N resources whose jobs follow
//! scripted timelines, and the raw figures collected once every resource is `Complete`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::{Api, Client};
use mediaconvert_operator::api::MediaConvertJob;

use crate::cluster::{self, Created, Writes};
use crate::operator::{Launch, Operator, Usage};
use crate::proxy::{Proxy, ProxyJob, UID_KEY};

/// Seconds each job stays SUBMITTED before it progresses.
const QUEUED: Duration = Duration::from_secs(3);

/// Number of timelines, whose progress lengths differ by a tenth of the poll interval.
/// A job is read at a fixed phase after its creation, by its own requeue when polling
/// and by rounds that start with the first job when batched. With a single timeline all
/// jobs would finish at the same phase, and the time from finish to `Complete` would
/// show that phase instead of its spread over an interval.
pub const FINISH_SLOTS: usize = 10;

/// Settings and clients shared by every run.
pub struct Bench {
    pub client: Client,
    pub proxy: Proxy,
    pub operator_binary: PathBuf,
    pub log_dir: PathBuf,
    pub role_arn: String,
    pub key_arn: String,
    pub poll_interval: Duration,
    pub progress: Duration,
    /// Minimum time between two STATUS_UPDATE events of a job in mode `events`.
    pub status_update: Duration,
    pub concurrency: u16,
    pub base_timeout: Duration,
    /// Clients of the emulator, for the event queue and rule of mode `events`.
    pub aws: aws_fixtures::Aws,
}

/// Raw figures of one run.
pub struct RunResult {
    pub size: usize,
    pub mode: String,
    /// AWS calls of the run's operator by `service:Operation`.
    pub calls: BTreeMap<String, u64>,
    /// API server writes by the operator to MediaConvertJobs and Events.
    pub writes: Writes,
    pub created: HashMap<String, Created>,
    pub complete_ms: HashMap<String, i64>,
    pub jobs: Vec<ProxyJob>,
    pub usage: Usage,
}

impl Bench {
    /// Runs `size` resources under an operator in `mode` and collects the figures, leaving
    /// the operator running for [`Leftovers::delete`]. Panics when the resources are not
    /// all `Complete` within the timeout.
    pub async fn run(&self, size: usize, mode: &str) -> (RunResult, Leftovers) {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let namespace = format!("sync-{mode}-{size}-{suffix}");
        let access_key_id = format!("test-{namespace}");
        let api: Api<MediaConvertJob> = Api::namespaced(self.client.clone(), &namespace);
        println!("\n{size} resources, {mode}: namespace {namespace}");

        // The previous run's jobs would lengthen every ListJobs of this one.
        self.proxy.reset().await;
        let status_update = (mode == "events").then_some(self.status_update);
        for slot in 0..FINISH_SLOTS {
            let extra = self.poll_interval * slot as u32 / FINISH_SLOTS as u32;
            let timeline = crate::proxy::timeline(QUEUED, self.progress + extra, status_update);
            self.proxy.script_slot(&namespace, slot, timeline).await;
        }
        let event_queue = match status_update {
            Some(_) => Some(self.create_event_queue(&namespace).await),
            None => None,
        };
        cluster::create_namespace(&self.client, &namespace).await;
        let mut operator =
            self.start_operator(&namespace, mode, &access_key_id, event_queue.as_deref());
        operator.wait_ready(Duration::from_secs(60)).await;
        let (complete_times, watch) = cluster::watch_complete(api.clone());
        let writes_before = Writes::read(&self.client).await;

        let started = Instant::now();
        let created = cluster::create_resources(&api, size, &self.role_arn, &self.key_arn).await;
        println!(
            "  created {size} resources in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        self.wait_complete(&api, &mut operator, &complete_times, size)
            .await;
        println!(
            "  all Complete {:.1} s after the first create",
            started.elapsed().as_secs_f64()
        );

        let writes = settled_writes(&self.client).await.since(&writes_before);
        let usage = operator.usage();
        let calls = self.proxy.calls(&access_key_id).await;
        let jobs = self.proxy.jobs_in(&namespace).await;
        watch.abort();
        let complete_ms = complete_times.lock().expect("complete times lock").clone();

        let result = RunResult {
            size,
            mode: mode.to_string(),
            calls,
            writes,
            created,
            complete_ms,
            jobs,
            usage,
        };
        let leftovers = Leftovers {
            client: self.client.clone(),
            api,
            namespace,
            operator,
            event_queue,
        };
        (result, leftovers)
    }

    /// Creates an SQS queue and an EventBridge rule, both named `namespace`, that carry the
    /// job events of `namespace`, and returns the queue URL.
    async fn create_event_queue(&self, namespace: &str) -> String {
        let url = self
            .aws
            .create_event_queue(namespace, namespace)
            .await
            .unwrap_or_else(|error| panic!("failed to create the event queue: {error:#}"));
        println!("  job events go to {url}");
        url
    }

    fn start_operator(
        &self,
        namespace: &str,
        mode: &str,
        access_key_id: &str,
        events_queue_url: Option<&str>,
    ) -> Operator {
        let log = self.log_dir.join(format!("{namespace}.log"));
        // Mode `events` is the batched sync behind an event queue.
        let status_sync = if mode == "poll" { "poll" } else { "batched" };
        Operator::start(&Launch {
            binary: &self.operator_binary,
            namespace,
            status_sync,
            events_queue_url,
            poll_interval: self.poll_interval,
            concurrency: self.concurrency,
            proxy_url: self.proxy.url(),
            access_key_id,
            log,
        })
    }

    /// Waits until the watch has seen every resource `Complete`. The timeout is the base
    /// timeout plus 100 ms per resource.
    async fn wait_complete(
        &self,
        api: &Api<MediaConvertJob>,
        operator: &mut Operator,
        complete_times: &cluster::CompleteTimes,
        size: usize,
    ) {
        let timeout = self.base_timeout + Duration::from_millis(100) * size as u32;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_report = Instant::now();
        loop {
            let complete = complete_times.lock().expect("complete times lock").len();
            if complete >= size {
                return;
            }
            operator.assert_running();
            if tokio::time::Instant::now() >= deadline {
                let phases = cluster::phases(api).await;
                panic!(
                    "timed out after {timeout:?}: {complete} of {size} resources Complete, \
                     phases {phases:?}; see {}",
                    operator.log.display()
                );
            }
            if last_report.elapsed() >= Duration::from_secs(30) {
                println!("  {complete} of {size} Complete");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The namespace, resources and operator of a finished run.
pub struct Leftovers {
    client: Client,
    api: Api<MediaConvertJob>,
    namespace: String,
    operator: Operator,
    /// URL of the run's event queue, whose queue and rule are named after the namespace.
    event_queue: Option<String>,
}

impl Leftovers {
    /// Deletes the resources while the operator still runs, so that it releases their
    /// finalizers, then stops the operator and deletes the namespace and the event queue.
    pub async fn delete(self, aws: &aws_fixtures::Aws) {
        cluster::delete_resources(&self.api, Duration::from_secs(600)).await;
        drop(self.operator);
        cluster::delete_namespace(&self.client, &self.namespace).await;
        if let Some(url) = &self.event_queue {
            let deleted = aws.delete_event_queue(&self.namespace, url).await;
            deleted.unwrap_or_else(|error| panic!("failed to delete the event queue: {error:#}"));
        }
    }
}

/// Reads the API server's write counts once they have stopped moving for two seconds,
/// so that the Events the operator sends after the last status write are counted.
/// Gives up waiting after 20 seconds.
async fn settled_writes(client: &Client) -> Writes {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Writes::read(client).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = Writes::read(client).await;
        if now == last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// Checks that every created resource has exactly one job, by the UID the operator puts
/// in the job's user metadata, and that no job names another UID.
pub fn one_job_per_resource(result: &RunResult) -> Result<(), String> {
    let mut jobs_by_uid: HashMap<&str, usize> = HashMap::new();
    for job in &result.jobs {
        let uid = job.user_metadata.get(UID_KEY).map_or("", String::as_str);
        *jobs_by_uid.entry(uid).or_default() += 1;
    }
    let mut problems = Vec::new();
    for (name, created) in &result.created {
        match jobs_by_uid.remove(created.uid.as_str()) {
            Some(1) => {}
            Some(count) => problems.push(format!("{name} has {count} jobs")),
            None => problems.push(format!("{name} has no job")),
        }
    }
    for (uid, count) in jobs_by_uid {
        problems.push(format!(
            "{count} jobs name UID {uid:?}, which no resource has"
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    let listed = problems.len().min(10);
    Err(format!(
        "{} problems, first {listed}: {}",
        problems.len(),
        problems[..listed].join("; ")
    ))
}
