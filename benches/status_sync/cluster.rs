//! The benchmark's side of the API server: its namespace and resources, a watch that
//! records when each resource shows `Complete`, and the API server's own request counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use mediaconvert_operator::api::{JobPhase, MediaConvertJob};
use serde_json::json;

use crate::now_ms;
use crate::proxy::FINISH_SLOT_KEY;
use crate::run::FINISH_SLOTS;

/// Creates sent to the API server at once.
const CREATE_CONCURRENCY: usize = 16;

/// A resource the benchmark created.
pub struct Created {
    pub uid: String,
    /// Epoch milliseconds just before the create request was sent.
    pub sent_ms: i64,
}

pub async fn create_namespace(client: &Client, name: &str) {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|error| panic!("failed to create namespace {name}: {error}"));
}

/// Deletes the namespace. Without a namespace controller it stays `Terminating`, empty
/// once [`delete_resources`] has run.
pub async fn delete_namespace(client: &Client, name: &str) {
    let api = Api::<Namespace>::all(client.clone());
    if let Err(error) = api.delete(name, &DeleteParams::default()).await {
        eprintln!("warning: failed to delete namespace {name}: {error}");
    }
}

/// Creates `count` resources named `job-00000` onwards, `CREATE_CONCURRENCY` at a time,
/// and returns each by name with its UID and send time.
pub async fn create_resources(
    api: &Api<MediaConvertJob>,
    count: usize,
    role_arn: &str,
    key_arn: &str,
) -> HashMap<String, Created> {
    let results = futures::stream::iter(0..count)
        .map(|index| {
            let slot = index % FINISH_SLOTS;
            let job = resource(&format!("job-{index:05}"), slot, role_arn, key_arn);
            async move {
                let sent_ms = now_ms();
                let created = api.create(&PostParams::default(), &job).await;
                (job.name_any(), sent_ms, created)
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    results
        .into_iter()
        .map(|(name, sent_ms, created)| {
            let created =
                created.unwrap_or_else(|error| panic!("failed to create {name}: {error}"));
            let uid = created.uid().expect("a created resource has a UID");
            (name, Created { uid, sent_ms })
        })
        .collect()
}

/// Builds a job with small settings: one MP4 output of a shared input, encrypted with the
/// shared key, as many episodes of one series would be. `slot` picks its timeline.
fn resource(name: &str, slot: usize, role_arn: &str, key_arn: &str) -> MediaConvertJob {
    serde_json::from_value(json!({
        "apiVersion": "mediaconvert.operators.dev/v1alpha1",
        "kind": "MediaConvertJob",
        "metadata": {"name": name},
        "spec": {
            "role": role_arn,
            "userMetadata": {FINISH_SLOT_KEY: slot.to_string()},
            "encryption": {"type": "KMS", "kmsKeyArn": key_arn},
            "settings": {
                "Inputs": [{"FileInput": "s3://example-media-in/trailer.mp4"}],
                "OutputGroups": [{
                    "Name": "File Group",
                    "OutputGroupSettings": {"Type": "FILE_GROUP_SETTINGS", "FileGroupSettings": {
                        "Destination": "s3://example-media-out/bench-sync/"
                    }},
                    "Outputs": [{"ContainerSettings": {"Container": "MP4"}}]
                }]
            }
        }
    }))
    .expect("the benchmark's resource is a valid MediaConvertJob")
}

/// Epoch milliseconds at which the watch first showed each resource `Complete`, by name.
pub type CompleteTimes = Arc<Mutex<HashMap<String, i64>>>;

/// Watches the resources of `api` and records when each first shows phase `Complete`.
/// The task runs until aborted, and the watcher retries failed watches with its backoff.
pub fn watch_complete(api: Api<MediaConvertJob>) -> (CompleteTimes, tokio::task::JoinHandle<()>) {
    let times = CompleteTimes::default();
    let recorded = times.clone();
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(job)) => {
                    let phase = job.status.as_ref().and_then(|status| status.phase);
                    if phase == Some(JobPhase::Complete) {
                        let mut times = recorded.lock().expect("complete times lock");
                        times.entry(job.name_any()).or_insert_with(now_ms);
                    }
                }
                Ok(None) => break,
                Err(error) => eprintln!("warning: watch of the resources failed: {error}"),
            }
        }
    });
    (times, task)
}

/// Counts the resources of `api` by phase, for the message of a run that timed out.
pub async fn phases(api: &Api<MediaConvertJob>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let Ok(list) = api.list(&ListParams::default()).await else {
        return counts;
    };
    for job in list {
        let phase = job.status.and_then(|status| status.phase);
        let phase = phase.map_or_else(|| "none".to_string(), |phase| phase.to_string());
        *counts.entry(phase).or_default() += 1;
    }
    counts
}

/// Deletes every resource of `api` and waits until the running operator has released
/// their finalizers, so that the API server contains none of them in the next run.
pub async fn delete_resources(api: &Api<MediaConvertJob>, timeout: Duration) {
    // At 10,000 resources the client gave up on this request while the API server went
    // on deleting, so a failure only warns and the wait below still runs.
    if let Err(error) = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
    {
        eprintln!("warning: the request to delete the run's resources failed: {error}");
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let left = api.list(&ListParams::default().limit(1)).await;
        if left.is_ok_and(|list| list.items.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("warning: resources still present {timeout:?} after their deletion");
}

/// Writes the API server counted, by `resource/subresource VERB`, for the operator's
/// kinds: MediaConvertJobs and Events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Writes(pub BTreeMap<String, u64>);

/// Verbs of `apiserver_request_total` that change an object. `APPLY` is a server-side
/// apply patch.
const WRITE_VERBS: [&str; 5] = ["POST", "PUT", "PATCH", "APPLY", "DELETE"];

impl Writes {
    /// Reads `apiserver_request_total` from the API server's `/metrics`.
    pub async fn read(client: &Client) -> Self {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("a GET of /metrics is a valid request");
        let text = client
            .request_text(request)
            .await
            .unwrap_or_else(|error| panic!("failed to read the API server's /metrics: {error}"));
        Self::parse(&text)
    }

    fn parse(text: &str) -> Self {
        let mut writes = BTreeMap::new();
        for line in text.lines() {
            let Some(labels) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = labels.rsplit_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
                let end = labels[start..].find('"')? + start;
                Some(&labels[start..end])
            };
            let (Some(resource), Some(verb)) = (label("resource"), label("verb")) else {
                continue;
            };
            if !matches!(resource, "mediaconvertjobs" | "events") || !WRITE_VERBS.contains(&verb) {
                continue;
            }
            let subresource = label("subresource").unwrap_or_default();
            let key = match subresource {
                "" => format!("{resource} {verb}"),
                _ => format!("{resource}/{subresource} {verb}"),
            };
            let count = value.trim().parse::<f64>().unwrap_or_default() as u64;
            *writes.entry(key).or_default() += count;
        }
        Self(writes)
    }

    /// Returns the writes counted since `before`.
    pub fn since(&self, before: &Writes) -> Writes {
        let delta = self
            .0
            .iter()
            .map(|(key, count)| {
                let earlier = before.0.get(key).copied().unwrap_or_default();
                (key.clone(), count.saturating_sub(earlier))
            })
            .filter(|(_, count)| *count > 0)
            .collect();
        Writes(delta)
    }
}
