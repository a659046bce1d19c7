//! Finalizer cleanup: cancels a job that is still running, unless `deletionPolicy` is `Orphan`.

use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::patch::publish;
use super::submit::find_own_job;
use super::{Context, Error, Result};
use crate::api::{DeletionPolicy, MediaConvertJob};
use crate::aws::CancelOutcome;

/// Runs when the resource is being deleted. The finalizer is released as soon as
/// MediaConvert accepted the cancellation; the operator does not wait for `CANCELED`.
pub async fn cleanup(job: &MediaConvertJob, context: &Context) -> Result<Action> {
    let status = job.status_or_default();
    if status.phase.is_some_and(|phase| phase.is_terminal()) {
        return Ok(Action::await_change());
    }
    let job_id = match (&status.job_id, &status.submission_token) {
        (Some(job_id), _) => job_id.clone(),
        // CreateJob may have run without its response being recorded, so look the job up.
        (None, Some(_)) => match find_own_job(job, context).await? {
            Some(found) => found.id,
            None => return Ok(Action::await_change()),
        },
        (None, None) => return Ok(Action::await_change()),
    };
    let job_id = job_id.as_str();
    context.sync.forget(job_id);
    if job.spec.deletion_policy == DeletionPolicy::Orphan {
        let note = format!("Left MediaConvert job {job_id} running, as deletionPolicy is Orphan");
        publish(context, job, false, "Orphaned", note).await;
        return Ok(Action::await_change());
    }

    let region = status.region_or(context.checker.region_of(&job.spec));
    let outcome = match context.mediaconvert.cancel_job(&region, job_id).await {
        Ok(outcome) => outcome,
        Err(source) => {
            // The resource stays until the cancel succeeds, and its Events tell the user
            // why. Repeats of the same note become one Event series.
            let note = format!(
                "Failed to cancel MediaConvert job {job_id}: {source}; the operator retries with backoff and deletes the resource once the cancel succeeds"
            );
            publish(context, job, true, "CancelFailed", note).await;
            return Err(Error::MediaConvert {
                name: job.name_any(),
                source,
            });
        }
    };
    let note = match outcome {
        CancelOutcome::Canceled => format!("Canceled MediaConvert job {job_id}"),
        CancelOutcome::AlreadyFinished => format!("MediaConvert job {job_id} had already finished"),
        CancelOutcome::NotFound => {
            format!("MediaConvert no longer knows job {job_id}; nothing to cancel")
        }
    };
    tracing::info!(job_id, ?outcome, "Released job on deletion");
    publish(context, job, false, "Canceled", note).await;
    Ok(Action::await_change())
}
