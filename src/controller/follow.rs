//! Following a submitted job until MediaConvert reports a terminal state.

use kube::Api;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::patch::{publish, write_status};
use super::status::{apply_snapshot, set_outcome_conditions};
use super::{Context, Error, Result};
use crate::api::{ConditionReason, JobPhase, MediaConvertJob};

/// Reads the job from MediaConvert and mirrors it into status.
pub async fn follow(
    job: &MediaConvertJob,
    job_id: &str,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let old = job.status_or_default();
    if old.phase.is_some_and(JobPhase::is_terminal) {
        return Ok(Action::await_change());
    }
    let region = context.checker.region_of(&job.spec);
    let snapshot = context
        .mediaconvert
        .get_job(&region, job_id)
        .await
        .map_err(|source| Error::MediaConvert {
            name: job.name_any(),
            source,
        })?;

    let mut status = old.clone();
    status.observed_generation = job.metadata.generation;
    match &snapshot {
        Some(snapshot) => apply_snapshot(&mut status, snapshot, job.metadata.generation),
        None => {
            let message = format!(
                "MediaConvert no longer knows job {job_id} in {region}; it may have passed MediaConvert's retention period"
            );
            status.phase = Some(JobPhase::Error);
            status.error_message = Some(message.clone());
            set_outcome_conditions(
                &mut status,
                JobPhase::Error,
                ConditionReason::JobNotFound,
                &message,
                job.metadata.generation,
            );
        }
    }
    write_status(api, job, &status, false).await?;
    context.reset_backoff(&job.uid().unwrap_or_default());

    let phase = status.phase.unwrap_or(JobPhase::Submitted);
    if old.phase != Some(phase) {
        announce(job, &status, phase, context).await;
    }
    if phase.is_terminal() {
        Ok(Action::await_change())
    } else {
        Ok(Action::requeue(context.settings.poll_interval))
    }
}

/// Publishes the Event for a phase change and logs it.
async fn announce(
    job: &MediaConvertJob,
    status: &crate::api::MediaConvertJobStatus,
    phase: JobPhase,
    context: &Context,
) {
    let job_id = status.job_id.as_deref().unwrap_or_default();
    let (warning, note) = match phase {
        JobPhase::Error => (
            true,
            format!(
                "MediaConvert job {job_id} failed: {}",
                status.error_message.as_deref().unwrap_or("no message")
            ),
        ),
        JobPhase::Canceled => (true, format!("MediaConvert job {job_id} was canceled")),
        JobPhase::Complete => (
            false,
            format!(
                "MediaConvert job {job_id} completed with {} outputs",
                status.outputs.len()
            ),
        ),
        _ => (false, format!("MediaConvert job {job_id} is {phase}")),
    };
    tracing::info!(job_id, %phase, "Job changed phase");
    publish(context, job, warning, &phase.to_string(), note).await;
}
