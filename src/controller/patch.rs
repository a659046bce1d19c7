//! Status writes and Events.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, MANAGER, Result};
use crate::api::{ConditionType, MediaConvertJob, MediaConvertJobStatus};

/// Writes `status` by server-side apply, unless it equals the object's status.
///
/// With `precondition`, the write carries the object's `resourceVersion`, so it fails with
/// a conflict when the object changed since it was read. Submission relies on that: the
/// token is recorded only on the exact version that was read fresh and validated.
pub async fn write_status(
    api: &Api<MediaConvertJob>,
    job: &MediaConvertJob,
    status: &MediaConvertJobStatus,
    precondition: bool,
) -> Result<bool> {
    if job.status.as_ref() == Some(status) {
        return Ok(false);
    }
    // A full status that fits again ends an earlier trimming.
    let mut full = status.clone();
    let trimmed_type = ConditionType::StatusTrimmed.to_string();
    full.conditions
        .retain(|condition| condition.type_ != trimmed_type);
    match apply_status(api, job, &full, precondition).await {
        Err(error) if is_too_large(&error) => {
            // Retrying the same patch would fail the same way, forever. A status without
            // outputs and checks keeps what the operator needs to follow the job.
            tracing::warn!(%error, "Status too large for the API server; writing a trimmed status");
            let trimmed = super::status::trimmed(status, job.metadata.generation);
            apply_status(api, job, &trimmed, precondition).await
        }
        result => result,
    }
    .map_err(|source| Error::WriteStatus {
        name: job.name_any(),
        source,
    })?;
    Ok(true)
}

/// Reports whether the API server rejected a write because the object would be too large.
/// It returns 413 for a request body over its own limit. etcd's rejection reaches the
/// client as a 500 in kube-apiserver 1.36, and only its message names the cause.
fn is_too_large(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            status.code == 413 || status.message.contains("request is too large")
        }
        _ => false,
    }
}

async fn apply_status(
    api: &Api<MediaConvertJob>,
    job: &MediaConvertJob,
    status: &MediaConvertJobStatus,
    precondition: bool,
) -> Result<(), kube::Error> {
    let mut metadata = json!({"name": job.name_any()});
    if precondition {
        metadata["resourceVersion"] = json!(job.resource_version());
    }
    let body = json!({
        "apiVersion": MediaConvertJob::api_version(&()),
        "kind": MediaConvertJob::kind(&()),
        "metadata": metadata,
        "status": status,
    });
    api.patch_status(
        &job.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Current time as a Kubernetes timestamp.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())
}

/// Publishes an Event on `job`. A failure is logged and otherwise ignored, because an
/// Event is a notice and must not block reconciling.
pub async fn publish(
    context: &Context,
    job: &MediaConvertJob,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(super::status::bounded(&note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = context.recorder.publish(&event, &job.object_ref(&())).await {
        match context.event_failed() {
            Some(suppressed) => {
                tracing::warn!(%error, reason, suppressed, "Failed to publish Event; further failures within a minute are logged at debug level")
            }
            None => tracing::debug!(%error, reason, "Failed to publish Event"),
        }
    }
}
