//! Status writes and Events.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::{Context, Error, MANAGER, Result};
use crate::api::{MediaConvertJob, MediaConvertJobStatus};

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
    .await
    .map_err(|source| Error::WriteStatus {
        name: job.name_any(),
        source,
    })?;
    Ok(true)
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
