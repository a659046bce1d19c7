//! Prometheus metrics, served on `/metrics` by [`crate::server`].
//!
//! Labels take only bounded values (outcomes, error categories, phases, AWS operation
//! names), never an object name or an error's text, so the number of series stays fixed
//! however many jobs come and go.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::MediaConvertJob;
use crate::controller::sync::StatusSync;

/// Prefix of every metric name.
const PREFIX: &str = "mediaconvert_operator";

/// Upper bounds, in seconds, of the reconcile duration buckets. A reconcile makes a few
/// API server and AWS calls, so most take tens of milliseconds; slow AWS responses and SDK
/// retries reach seconds.
const RECONCILE_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds, in seconds, of the AWS call duration buckets.
const AWS_CALL_BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsCallLabels {
    service: String,
    operation: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsOperationLabels {
    service: String,
    operation: String,
}

/// The operator's metrics and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    reconcile_errors: Family<CategoryLabels, Counter>,
    reconcile_duration: Histogram,
    resources: Family<PhaseLabels, Gauge>,
    validation_failures: Family<ReasonLabels, Counter>,
    leader: Gauge,
    synced_jobs: Gauge,
    job_events: Family<ResultLabels, Counter>,
    /// Status sync whose followed jobs are counted on each scrape.
    sync: Mutex<Option<Arc<StatusSync>>>,
    /// Reflector stores of the watched namespaces, counted by phase on each scrape.
    stores: Mutex<Vec<Store<MediaConvertJob>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let reconcile_errors = Family::<CategoryLabels, Counter>::default();
        let reconcile_duration = Histogram::new(RECONCILE_BUCKETS);
        let resources = Family::<PhaseLabels, Gauge>::default();
        let validation_failures = Family::<ReasonLabels, Counter>::default();
        let leader = Gauge::default();
        let synced_jobs = Gauge::default();
        let job_events = Family::<ResultLabels, Counter>::default();
        let aws = aws_calls();

        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "reconciles",
            "Reconciles by outcome (success or error)",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error category",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile",
            reconcile_duration.clone(),
        );
        registry.register(
            "resources",
            "MediaConvertJob resources in the watch cache by status phase",
            resources.clone(),
        );
        registry.register(
            "validation_failures",
            "Validations that rejected a job, by condition reason",
            validation_failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this process holds the leader election lease or runs without one",
            leader.clone(),
        );
        registry.register(
            "status_sync_jobs",
            "Submitted jobs the status sync follows",
            synced_jobs.clone(),
        );
        registry.register(
            "job_events",
            "MediaConvert job events read from SQS, by result: applied, stale, unowned, not_state, expired or returned",
            job_events.clone(),
        );
        registry.register(
            "aws_requests",
            "AWS request attempts by service, operation and outcome",
            aws.requests.clone(),
        );
        registry.register(
            "aws_request_duration_seconds",
            "Duration of one AWS request attempt",
            aws.duration.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            resources,
            validation_failures,
            leader,
            synced_jobs,
            job_events,
            sync: Mutex::default(),
            stores: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Starts timing a reconcile. The returned guard records the duration when dropped,
    /// so early returns are counted too.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            started: Instant::now(),
        }
    }

    /// Counts a finished reconcile; `error_category` is `None` on success.
    pub fn reconcile_finished(&self, error_category: Option<&'static str>) {
        let outcome = if error_category.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(category) = error_category {
            self.reconcile_errors
                .get_or_create(&CategoryLabels { category })
                .inc();
        }
    }

    /// Counts a validation that rejected a job, by its condition reason.
    pub fn validation_failed(&self, reason: &str) {
        let labels = ReasonLabels {
            reason: reason.to_string(),
        };
        self.validation_failures.get_or_create(&labels).inc();
    }

    /// Records whether this process currently leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Adds a namespace's watch cache to the phase counts.
    pub fn watch_store(&self, store: Store<MediaConvertJob>) {
        lock(&self.stores).push(store);
    }

    /// Counts the jobs of `sync` on each scrape.
    pub fn watch_sync(&self, sync: Arc<StatusSync>) {
        *lock(&self.sync) = Some(sync);
    }

    /// Counts a job event read from SQS by what became of it.
    pub fn job_event(&self, result: &'static str) {
        self.job_events
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Encodes every metric in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.count_phases();
        if let Some(sync) = lock(&self.sync).as_ref() {
            self.synced_jobs.set(sync.tracked() as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Sets the resource gauges from the watch caches. Phases with no resources left
    /// disappear, and a resource with no status yet counts as `Pending`.
    fn count_phases(&self) {
        let stores = lock(&self.stores);
        self.resources.clear();
        for job in stores.iter().flat_map(Store::state) {
            let phase = job
                .status
                .as_ref()
                .and_then(|status| status.phase)
                .map_or_else(|| "Pending".to_string(), |phase| phase.to_string());
            self.resources.get_or_create(&PhaseLabels { phase }).inc();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records the duration of a reconcile when dropped.
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// Counters of AWS request attempts, shared by every SDK client of the process.
struct AwsCalls {
    requests: Family<AwsCallLabels, Counter>,
    duration: HistogramFamily<AwsOperationLabels>,
}

/// Returns the process-wide AWS call metrics. They are global so that each client
/// constructor in [`crate::aws`] can attach [`AwsCallMetrics`] without the registry being
/// passed through every constructor.
fn aws_calls() -> &'static AwsCalls {
    static CALLS: OnceLock<AwsCalls> = OnceLock::new();
    CALLS.get_or_init(|| AwsCalls {
        requests: Family::default(),
        duration: Family::new_with_constructor(|| Histogram::new(AWS_CALL_BUCKETS)),
    })
}

/// SDK interceptor that counts and times every request attempt, retries included, by
/// service, operation and outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct AwsCallMetrics;

/// Start time of the current attempt, kept in the request's config bag.
#[derive(Clone, Debug)]
struct AttemptStarted(Instant);

impl Storable for AttemptStarted {
    type Storer = StoreReplace<Self>;
}

impl Intercept for AwsCallMetrics {
    fn name(&self) -> &'static str {
        "AwsCallMetrics"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(AttemptStarted(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|metadata| (metadata.service().to_string(), metadata.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let elapsed = cfg
            .load::<AttemptStarted>()
            .map_or(Duration::ZERO, |started| started.0.elapsed());
        let outcome = attempt_outcome(context.response());
        let calls = aws_calls();
        let operation_labels = AwsOperationLabels {
            service: service.clone(),
            operation: operation.clone(),
        };
        calls
            .duration
            .get_or_create(&operation_labels)
            .observe(elapsed.as_secs_f64());
        let labels = AwsCallLabels {
            service,
            operation,
            outcome,
        };
        calls.requests.get_or_create(&labels).inc();
        Ok(())
    }
}

/// Classifies an attempt from its HTTP response: `success`, `throttled`, `client_error`,
/// `server_error`, or `transport_error` when no response arrived.
fn attempt_outcome(
    response: Option<&aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> &'static str {
    let Some(response) = response else {
        return "transport_error";
    };
    // KMS and other JSON protocols report throttling with status 400 and name the error in
    // this header, so the status code alone would count it as a client error.
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .unwrap_or_default();
    let status = response.status().as_u16();
    if status == 429 || error_type.contains("Throttl") || error_type.contains("TooManyRequests") {
        return "throttled";
    }
    match status {
        200..=399 => "success",
        400..=499 => "client_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_lists_reconciles_by_outcome() {
        let metrics = Metrics::default();
        metrics.reconcile_finished(None);
        metrics.reconcile_finished(Some("StatusWriteFailed"));
        metrics.validation_failed("KmsKeyNotFound");
        drop(metrics.reconcile_started());
        let text = metrics.encode().expect("encoding failed");
        let expected = [
            "mediaconvert_operator_reconciles_total{outcome=\"success\"} 1",
            "mediaconvert_operator_reconciles_total{outcome=\"error\"} 1",
            "mediaconvert_operator_reconcile_errors_total{category=\"StatusWriteFailed\"} 1",
            "mediaconvert_operator_validation_failures_total{reason=\"KmsKeyNotFound\"} 1",
            "mediaconvert_operator_reconcile_duration_seconds_count 1",
        ];
        for line in expected {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}
