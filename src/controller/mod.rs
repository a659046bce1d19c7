//! The `MediaConvertJob` controller: validate, submit once, follow, clean up.

pub mod adopt;
mod changes;
mod cleanup;
mod follow;
mod patch;
pub mod status;
mod submit;
pub mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::{
    Action, Config as ControllerConfig, Controller, Error as ControllerError,
};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::{Predicate, PredicateConfig, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use thiserror::Error;

use crate::api::{JobPhase, MediaConvertJob, MediaConvertJobSpec, MediaConvertJobStatus};
use crate::aws::{AwsError, ErrorClass, MediaConvert};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::validate::Checker;
pub use follow::StatusSyncMode;
use sync::{StatusSync, SyncIntervals};

/// Finalizer that lets the operator cancel a running job before its resource goes away.
pub const FINALIZER: &str = "mediaconvert.operators.dev/cancel-job";

/// Field manager of the operator's status writes.
pub const MANAGER: &str = "mediaconvert-operator";

#[derive(Debug, Error)]
pub enum Error {
    #[error("failed to write status of {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to delete {name} after its TTL: {source}")]
    Delete {
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to read {name} before submission: {source}")]
    ReadFresh {
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error("failed to call MediaConvert for {name}: {source}")]
    MediaConvert {
        name: String,
        #[source]
        source: AwsError,
    },

    #[error("failed to validate {name}: {source}")]
    Validate {
        name: String,
        #[source]
        source: AwsError,
    },

    #[error("finalizer of {name} failed: {source}")]
    Finalizer {
        name: String,
        #[source]
        source: Box<finalizer::Error<Error>>,
    },
}

impl Error {
    /// Short PascalCase category, used as Event reason and in logs.
    pub fn category(&self) -> &'static str {
        match self.inner() {
            Error::WriteStatus { .. } => "StatusWriteFailed",
            Error::ReadFresh { .. } => "ReadFailed",
            Error::Delete { .. } => "DeleteFailed",
            Error::MediaConvert { .. } => "MediaConvertCallFailed",
            Error::Validate { .. } => "ValidationCallFailed",
            Error::Finalizer { .. } => "FinalizerFailed",
        }
    }

    /// Returns the error of the apply or cleanup step inside a finalizer error.
    fn inner(&self) -> &Error {
        match self {
            Error::Finalizer { source, .. } => match source.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => {
                    inner.inner()
                }
                _ => self,
            },
            _ => self,
        }
    }

    /// Reports whether a status write lost a race with another change of the object,
    /// which the next pass resolves by reading the object afresh.
    fn is_conflict(&self) -> bool {
        matches!(
            self.inner(),
            Error::WriteStatus { source: kube::Error::Api(status), .. } if status.is_conflict()
        )
    }

    fn is_throttled(&self) -> bool {
        matches!(
            self.inner(),
            Error::MediaConvert { source, .. } | Error::Validate { source, .. }
                if source.class == ErrorClass::Throttled
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tunables of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Source of the state of submitted jobs.
    pub status_sync: StatusSyncMode,
    /// How often a queued or running job is read from MediaConvert; with the batched sync,
    /// the interval while jobs change.
    pub poll_interval: Duration,
    /// Maximum interval of the batched sync, reached while no job changes.
    pub max_poll_interval: Duration,
    /// Set when job events arrive from a queue. The batched sync then reads only jobs with
    /// no event or read for this long.
    pub events_staleness: Option<Duration>,
    /// First retry delay after a failure; it doubles per consecutive failure.
    pub retry_base: Duration,
    /// Maximum retry delay.
    pub retry_max: Duration,
    /// Reconciles that may run at once.
    pub concurrency: u16,
}

/// State shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub mediaconvert: Arc<dyn MediaConvert>,
    pub sync: Arc<StatusSync>,
    pub checker: Checker,
    pub recorder: EventRecorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Consecutive failures per object UID, for growing backoff that resets on success.
    failures: Mutex<HashMap<String, u32>>,
    /// When an Event failure was last logged at warn level, and how many were logged at
    /// debug level since, so that a denied Event permission does not flood the log.
    event_failures: Mutex<(Option<Instant>, u64)>,
    /// Resources being reconciled, by the controller or for a changed job.
    locks: changes::ObjectLocks,
}

impl Context {
    pub fn new(
        client: Client,
        mediaconvert: Arc<dyn MediaConvert>,
        checker: Checker,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let intervals = SyncIntervals {
            min: settings.poll_interval,
            max: settings.max_poll_interval.max(settings.poll_interval),
            staleness: settings.events_staleness,
        };
        Self {
            recorder: EventRecorder::new(client.clone(), reporter),
            client,
            sync: Arc::new(StatusSync::new(mediaconvert.clone(), intervals)),
            mediaconvert,
            checker,
            settings,
            metrics: Arc::default(),
            health: Arc::new(Health::new(false)),
            failures: Mutex::default(),
            event_failures: Mutex::default(),
            locks: changes::ObjectLocks::default(),
        }
    }

    /// Replaces the metrics and health state, which the HTTP server also reads.
    pub fn with_telemetry(self, metrics: Arc<Metrics>, health: Arc<Health>) -> Self {
        metrics.watch_sync(self.sync.clone());
        Self {
            metrics,
            health,
            ..self
        }
    }

    /// Counts an Event that could not be published. Returns the number of failures since
    /// the last one logged at warn level when this one should be logged at warn level too,
    /// which happens at most once per [`EVENT_FAILURE_LOG_INTERVAL`].
    fn event_failed(&self) -> Option<u64> {
        let mut state = self
            .event_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (last_warned, suppressed) = &mut *state;
        if last_warned.is_some_and(|at| at.elapsed() < EVENT_FAILURE_LOG_INTERVAL) {
            *suppressed += 1;
            return None;
        }
        *last_warned = Some(Instant::now());
        Some(std::mem::take(suppressed))
    }

    /// Delay before the next retry of `uid`, growing with each consecutive failure.
    fn next_backoff(&self, uid: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(uid.to_string()).or_default();
        *count = count.saturating_add(1);
        let factor = 2u32.saturating_pow(count.saturating_sub(1).min(16));
        let delay = self
            .settings
            .retry_base
            .saturating_mul(factor)
            .min(self.settings.retry_max);
        jitter(delay)
    }

    fn reset_backoff(&self, uid: &str) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(uid);
    }
}

/// Publishes Kubernetes Events through kube's [`Recorder`], which merges repeats of an
/// Event into a series. The recorder keeps every Event of the last six minutes for that,
/// and scans them all on each publish, which with thousands of resources costs tens of
/// MiB and much CPU. So a fresh recorder takes over after [`EVENTS_PER_RECORDER`] Events;
/// a repeat that spans the switch starts a new Event instead of extending the series.
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    current: Mutex<(Recorder, usize)>,
}

/// Events one recorder publishes before a fresh one takes over. Each slot of its cache
/// table stores a 1,000-byte Event and its key, so 200 Events (256 slots) take an
/// estimated 0.4 MiB.
const EVENTS_PER_RECORDER: usize = 200;

impl EventRecorder {
    fn new(client: Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        Self {
            client,
            reporter,
            current: Mutex::new((recorder, 0)),
        }
    }

    pub async fn publish(
        &self,
        event: &kube::runtime::events::Event,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(), kube::Error> {
        let recorder = {
            let mut current = self
                .current
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if current.1 >= EVENTS_PER_RECORDER {
                *current = (Recorder::new(self.client.clone(), self.reporter.clone()), 0);
            }
            current.1 += 1;
            current.0.clone()
        };
        recorder.publish(event, reference).await
    }
}

/// Shortest time between two warnings about Events that could not be published.
const EVENT_FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Adds up to 10 % of random delay so that many objects failing together do not retry
/// in lockstep.
fn jitter(delay: Duration) -> Duration {
    let spread = delay.as_millis() as u64 / 10;
    if spread == 0 {
        return delay;
    }
    let random = uuid::Uuid::new_v4().as_u128() as u64 % spread;
    delay + Duration::from_millis(random)
}

/// Runs the controller until the process receives a shutdown signal. An empty
/// `namespaces` watches every namespace. Otherwise each listed namespace gets a watch and
/// a controller of its own, because one watch cannot span a chosen set of namespaces.
pub async fn run(context: Arc<Context>, namespaces: Vec<String>) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let watches = scopes.into_iter().map(|namespace| {
        let jobs = match &namespace {
            Some(namespace) => Api::namespaced(context.client.clone(), namespace),
            None => Api::all(context.client.clone()),
        };
        let changed_jobs = context.sync.subscribe(namespace);
        watch(jobs, changed_jobs, context.clone())
    });
    futures::future::join_all(watches).await;
}

/// Runs one controller over the resources that `jobs` lists. `changed_jobs` names the
/// resources whose MediaConvert job the status sync saw change, which are reconciled
/// beside the controller's queue (see [`changes`]).
async fn watch(
    jobs: Api<MediaConvertJob>,
    changed_jobs: impl futures::Stream<Item = reflector::ObjectRef<MediaConvertJob>> + Send + 'static,
    context: Arc<Context>,
) {
    let config = ControllerConfig::default().concurrency(context.settings.concurrency);
    let watch_health = context.health.register_watch();
    // Only spec edits (generation) and finalizer changes start a reconcile. The operator's
    // own status writes do not, so a status patch never feeds back into another pass.
    // The status sync wakes a resource when its job changed; requeues are the safety net.
    // The cache keeps only what reconciles read from it (see `trim_for_cache`), so thousands of
    // resources stay small. Submission reads the object afresh.
    let (reader, writer) = reflector::store();
    context.metrics.watch_store(reader.clone());
    let updates = watcher(jobs, watcher::Config::default().any_semantic())
        .inspect(move |event| match event {
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Ok(_) => watch_health.record(true),
            Err(_) => watch_health.record(false),
        })
        .default_backoff()
        .modify(trim_for_cache)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            PredicateConfig::default(),
        );
    let (retry, retries) = futures::channel::mpsc::unbounded();
    let changed = changes::apply_changes(changed_jobs, reader.clone(), retry, context.clone());
    let controller = Controller::for_stream(updates, reader)
        .reconcile_on(retries)
        .with_config(config)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(object = %object, "Reconciled"),
                // The watcher lists again and resumes by itself, also after a 410 Gone for
                // an expired resource version. Until then the operator sees no changes.
                Err(ControllerError::QueueError(error)) => {
                    tracing::warn!(%error, "Watch of MediaConvertJobs failed; resuming with backoff")
                }
                Err(error) => tracing::debug!(%error, "Reconcile failed"),
            }
        });
    // The changes end with the controller, which stops on a shutdown signal.
    tokio::select! {
        () = controller => {}
        () = changed => {}
    }
}

/// Drops from a cached resource what no reconcile reads there. Submission and adoption
/// read the object afresh. The status stays whole, because each status write applies all of it.
fn trim_for_cache(job: &mut MediaConvertJob) {
    // Set to None rather than cleared, because a cleared list or map keeps its allocation.
    job.metadata.managed_fields = None;
    job.metadata.labels = None;
    job.metadata.annotations = None;
    let spec = std::mem::take(&mut job.spec);
    job.spec = MediaConvertJobSpec {
        region: spec.region,
        queue: spec.queue,
        deletion_policy: spec.deletion_policy,
        active_deadline_seconds: spec.active_deadline_seconds,
        ttl_seconds_after_finished: spec.ttl_seconds_after_finished,
        ..MediaConvertJobSpec::default()
    };
    if let Some(status) = job.status.as_mut() {
        strip_finished(status);
    }
}

/// Removes the fields that later reconciles do not read from a finished resource's cached
/// status. Those reconciles only release the finalizer or apply `ttlSecondsAfterFinished`.
fn strip_finished(status: &mut MediaConvertJobStatus) {
    if !status.phase.is_some_and(JobPhase::is_terminal) {
        return;
    }
    status.conditions = Vec::new();
    status.validation = None;
    status.encryption = None;
    status.outputs = Vec::new();
    status.error_message = None;
    status.current_phase = None;
    status.job_arn = None;
}

/// Reconciles one resource: the finalizer wraps the apply and cleanup steps.
#[tracing::instrument(skip_all, fields(namespace = job.namespace(), name = %job.name_any()))]
async fn reconcile(job: Arc<MediaConvertJob>, context: Arc<Context>) -> Result<Action> {
    let _lock = context
        .locks
        .lock(reflector::ObjectRef::from_obj(&*job))
        .await;
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<MediaConvertJob> = Api::namespaced(context.client.clone(), &namespace);
    let name = job.name_any();
    let _timer = context.metrics.reconcile_started();

    let result = finalizer::finalizer(&api, FINALIZER, job, |event| async {
        match event {
            FinalizerEvent::Apply(job) => apply(&job, &api, &context).await,
            FinalizerEvent::Cleanup(job) => cleanup::cleanup(&job, &context).await,
        }
    })
    .await
    .map_err(|source| Error::Finalizer {
        name,
        source: Box::new(source),
    });
    let error_category = result.as_ref().err().map(Error::category);
    context.metrics.reconcile_finished(error_category);
    result
}

/// Follows a submitted job, or validates and submits a new one.
async fn apply(
    job: &MediaConvertJob,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let status = job.status_or_default();

    // A submitted job is only followed, because its spec can no longer change.
    if let Some(job_id) = status.job_id.as_deref() {
        return follow::follow(job, job_id, api, context).await;
    }

    // Submission decisions are made on a fresh read, because the watch cache may not yet
    // show a token or job id that an earlier pass wrote. The token write below is
    // conditional on this exact version, so the spec that is validated is the one sent.
    let fresh = api
        .get(&job.name_any())
        .await
        .map_err(|source| Error::ReadFresh {
            name: job.name_any(),
            source,
        })?;
    let fresh_status = fresh.status_or_default();
    if fresh_status.job_id.is_some() {
        return Ok(Action::requeue(context.settings.poll_interval));
    }

    // An adopting resource follows an existing job and never submits one.
    if fresh_status.submission_token.is_none()
        && let Some(job_id) = adopt::requested_job_id(&fresh)
    {
        return adopt::adopt(&fresh, job_id, api, context).await;
    }

    // A recorded token without a job id means a submission may have reached MediaConvert:
    // find that job, or repeat the call with the same token, instead of validating again.
    if fresh_status.submission_token.is_some() {
        return submit::resume(&fresh, api, context).await;
    }

    // An invalid spec waits for an edit, unless the fix is expected in AWS.
    if submit::is_settled_invalid(&fresh) {
        return Ok(Action::await_change());
    }

    submit::validate_and_submit(&fresh, api, context).await
}

/// Requeues a failed reconcile with a per-object growing delay. A conflict is no failure:
/// the object changed since it was read, so it is read again after the base delay.
fn error_policy(job: Arc<MediaConvertJob>, error: &Error, context: Arc<Context>) -> Action {
    if error.is_conflict() {
        tracing::info!(%error, "Resource changed since it was read; retrying on a fresh read");
        return Action::requeue(context.settings.retry_base);
    }
    let delay = context.next_backoff(&job.uid().unwrap_or_default());
    if error.is_throttled() {
        tracing::info!(%error, delay_ms = delay.as_millis() as u64, "AWS throttled the request; retrying");
    } else {
        tracing::warn!(%error, category = error.category(), delay_ms = delay.as_millis() as u64, "Reconcile failed; retrying");
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: JobPhase) -> MediaConvertJobStatus {
        MediaConvertJobStatus {
            phase: Some(phase),
            job_id: Some("1700000000000-abc123".into()),
            error_message: Some("Access denied".into()),
            outputs: vec!["s3://example-media-out/trailer/trailer.mp4".into()],
            ..Default::default()
        }
    }

    #[test]
    fn finished_status_keeps_job_id() {
        let mut finished = status(JobPhase::Complete);
        strip_finished(&mut finished);
        assert_eq!(finished.phase, Some(JobPhase::Complete));
        assert_eq!(finished.job_id.as_deref(), Some("1700000000000-abc123"));
        assert!(finished.outputs.is_empty());
        assert_eq!(finished.error_message, None);
    }

    #[test]
    fn cache_keeps_fields_reconciles_read() {
        let mut job: MediaConvertJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "mediaconvert.operators.dev/v1alpha1",
            "kind": "MediaConvertJob",
            "metadata": {
                "name": "trailer",
                "namespace": "media",
                "uid": "6f1c2a9e-0b7d-4d2e-9c1a-3e5f7a9b1c2d",
                "resourceVersion": "42",
                "generation": 2,
                "finalizers": [FINALIZER],
                "labels": {"app.kubernetes.io/instance": "season-2"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {
                "region": "eu-west-1",
                "role": "arn:aws:iam::111122223333:role/MediaConvertRole",
                "queue": "Premium",
                "userMetadata": {"episode": "s02e01"},
                "tags": {"team": "media"},
                "encryption": {"type": "KMS", "kmsKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
                "settings": {"Inputs": [{"FileInput": "s3://example-media-in/trailer.mov"}]},
                "deletionPolicy": "Orphan",
                "activeDeadlineSeconds": 3600,
                "ttlSecondsAfterFinished": 600
            },
            "status": status(JobPhase::Progressing)
        }))
        .unwrap();

        trim_for_cache(&mut job);

        assert_eq!(job.metadata.managed_fields, None);
        assert_eq!(job.metadata.labels, None);
        assert_eq!(job.metadata.annotations, None);
        assert_eq!(job.finalizers(), [FINALIZER]);
        assert_eq!(job.metadata.generation, Some(2));
        assert_eq!(job.resource_version().as_deref(), Some("42"));

        assert_eq!(job.spec.region.as_deref(), Some("eu-west-1"));
        assert_eq!(job.spec.queue.as_deref(), Some("Premium"));
        assert_eq!(job.spec.deletion_policy, crate::api::DeletionPolicy::Orphan);
        assert_eq!(job.spec.active_deadline_seconds, Some(3600));
        assert_eq!(job.spec.ttl_seconds_after_finished, Some(600));
        assert!(job.spec.user_metadata.is_empty());
        assert!(job.spec.tags.is_empty());
        assert_eq!(job.spec.encryption.kms_key_arn, None);
        assert_eq!(job.spec.settings, serde_json::Value::Null);

        assert_eq!(job.status, Some(status(JobPhase::Progressing)));
    }

    #[test]
    fn running_status_kept_whole() {
        let mut running = status(JobPhase::Progressing);
        strip_finished(&mut running);
        assert_eq!(running, status(JobPhase::Progressing));
    }
}
