//! Following a submitted job until MediaConvert reports a terminal state.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::ResourceExt;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;

use kube::runtime::reflector::ObjectRef;

use super::patch::{publish, write_status};
use super::status::{apply_snapshot, set_outcome_conditions};
use super::sync::{self, QueueKey, TrackedJob};
use super::{Context, Error, Result};
use crate::api::{ConditionReason, JobPhase, MediaConvertJob, MediaConvertJobStatus};
use crate::aws::CancelOutcome;

/// Reads job `job_id` of resource `job` with `GetJob`; `None` when MediaConvert does not
/// know it.
pub async fn read_job(
    job: &MediaConvertJob,
    region: &str,
    job_id: &str,
    context: &Context,
) -> Result<Option<crate::aws::JobSnapshot>> {
    context
        .mediaconvert
        .get_job(region, job_id)
        .await
        .map_err(|source| Error::MediaConvert {
            name: job.name_any(),
            source,
        })
}

/// Source of the state of submitted jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusSyncMode {
    /// One loop per region and queue reads all in-flight jobs from `ListJobs` pages.
    #[default]
    Batched,
    /// Every resource reads its own job with `GetJob` each poll interval.
    Poll,
}

/// Mirrors the latest known state of the job into status.
pub async fn follow(
    job: &MediaConvertJob,
    job_id: &str,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let old = job.status_or_default();
    if old.phase.is_some_and(JobPhase::is_terminal) {
        context.sync.forget(job_id);
        return expire(job, &old, api, context).await;
    }
    let region = old.region_or(context.checker.region_of(&job.spec));
    let (snapshot, seq) = match context.settings.status_sync {
        StatusSyncMode::Poll => (read_job(job, &region, job_id, context).await?, None),
        StatusSyncMode::Batched => {
            context
                .sync
                .track(job_id, queue_key(job, &region), tracked(job));
            let Some(observation) = context.sync.observation(job_id) else {
                // The sync reads the job in its next round and wakes this resource.
                return Ok(Action::requeue(next_check(job, &old, context)));
            };
            if observation
                .snapshot
                .as_ref()
                .is_some_and(|snapshot| sync::rank(&snapshot.status) < rank_of(old.phase))
            {
                context.sync.mark_written(job_id, observation.seq);
                return Ok(Action::requeue(next_check(job, &old, context)));
            }
            (observation.snapshot, Some(observation.seq))
        }
    };

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
    if let Some(seq) = seq {
        tracing::debug!(job_id, seq, "Status shows the job's latest known state");
        context.sync.mark_written(job_id, seq);
    }
    context.reset_backoff(&job.uid().unwrap_or_default());

    let phase = status.phase.unwrap_or(JobPhase::Submitted);
    let overdue = overdue_seconds(job, &status).filter(|_| !phase.is_terminal());
    if let Some(overdue) = overdue {
        context.sync.forget(job_id);
        return cancel_overdue(job, status, job_id, &region, overdue, api, context).await;
    }
    if old.phase != Some(phase) {
        announce(job, &status, phase, context).await;
    }
    if phase.is_terminal() {
        context.sync.forget(job_id);
        return expire(job, &status, api, context).await;
    }
    if context.settings.status_sync == StatusSyncMode::Batched {
        let mut tracked = tracked(job);
        tracked.status = snapshot.map(|snapshot| snapshot.status).unwrap_or_default();
        context.sync.track(job_id, queue_key(job, &region), tracked);
    }
    Ok(Action::requeue(next_check(job, &status, context)))
}

/// Hands a job that was just submitted to the batched sync.
pub fn start_following(
    job: &MediaConvertJob,
    status: &MediaConvertJobStatus,
    job_id: &str,
    context: &Context,
) {
    if context.settings.status_sync != StatusSyncMode::Batched {
        return;
    }
    let region = status.region_or(context.checker.region_of(&job.spec));
    let mut submitted = job.clone();
    submitted.status = Some(status.clone());
    context
        .sync
        .track(job_id, queue_key(&submitted, &region), tracked(&submitted));
}

/// Delay until the resource is reconciled again without news of its job: the poll
/// interval when polling, otherwise the sync's longest interval, as a safety net for a
/// missed wake-up. An `activeDeadlineSeconds` that runs out sooner shortens it.
fn next_check(
    job: &MediaConvertJob,
    status: &MediaConvertJobStatus,
    context: &Context,
) -> Duration {
    let settings = &context.settings;
    let regular = match settings.status_sync {
        StatusSyncMode::Poll => settings.poll_interval,
        StatusSyncMode::Batched => settings.max_poll_interval,
    };
    let until_deadline = deadline(job, status).map(|at| seconds_until(at).max(0) as u64);
    until_deadline.map_or(regular, |seconds| {
        regular.min(Duration::from_secs(seconds + 1))
    })
}

/// Region and queue whose sync loop follows the job.
fn queue_key(job: &MediaConvertJob, region: &str) -> QueueKey {
    let status = job.status.as_ref();
    let queue = status
        .and_then(|status| status.queue.clone())
        .or_else(|| job.spec.queue.clone())
        .unwrap_or_else(|| sync::DEFAULT_QUEUE.to_string());
    QueueKey {
        region: region.to_string(),
        queue,
    }
}

fn tracked(job: &MediaConvertJob) -> TrackedJob {
    let status = job.status_or_default();
    let mediaconvert_status = match status.phase {
        Some(JobPhase::Progressing) => "PROGRESSING",
        _ => "SUBMITTED",
    };
    TrackedJob {
        object: ObjectRef::from_obj(job),
        created_at: status.submitted_at.map(|at| at.0.as_second()),
        status: mediaconvert_status.to_string(),
    }
}

/// Rank of a phase in the order of [`sync::rank`].
fn rank_of(phase: Option<JobPhase>) -> u8 {
    match phase {
        Some(JobPhase::Progressing) => 1,
        Some(phase) if phase.is_terminal() => 2,
        _ => 0,
    }
}

fn seconds_until(at: i64) -> i64 {
    at - Timestamp::now().as_second()
}

/// Epoch second at which `activeDeadlineSeconds` runs out, counted from submission.
fn deadline(job: &MediaConvertJob, status: &MediaConvertJobStatus) -> Option<i64> {
    let limit = job.spec.active_deadline_seconds?;
    let submitted = status.submitted_at.as_ref()?.0.as_second();
    Some(submitted.saturating_add(limit))
}

/// Seconds past the deadline, when it has passed.
fn overdue_seconds(job: &MediaConvertJob, status: &MediaConvertJobStatus) -> Option<i64> {
    let overdue = -seconds_until(deadline(job, status)?);
    (overdue >= 0).then_some(overdue)
}

/// Cancels a job that ran past `activeDeadlineSeconds` and fails the resource.
async fn cancel_overdue(
    job: &MediaConvertJob,
    mut status: MediaConvertJobStatus,
    job_id: &str,
    region: &str,
    overdue: i64,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let outcome = context
        .mediaconvert
        .cancel_job(region, job_id)
        .await
        .map_err(|source| Error::MediaConvert {
            name: job.name_any(),
            source,
        })?;
    if outcome == CancelOutcome::AlreadyFinished {
        // It finished just in time, and the next read records how.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let limit = job.spec.active_deadline_seconds.unwrap_or_default();
    let message = format!(
        "MediaConvert job {job_id} ran longer than activeDeadlineSeconds ({limit} s, exceeded by {overdue} s) and was canceled"
    );
    status.phase = Some(JobPhase::Canceled);
    status.error_message = Some(message.clone());
    status.finished_at = Some(super::patch::now());

    let reason = ConditionReason::DeadlineExceeded;
    set_outcome_conditions(
        &mut status,
        JobPhase::Canceled,
        reason,
        &message,
        job.metadata.generation,
    );
    write_status(api, job, &status, false).await?;
    tracing::info!(job_id, "Canceled job past its deadline");
    publish(context, job, true, &reason.to_string(), message).await;
    expire(job, &status, api, context).await
}

/// Deletes a finished resource once `ttlSecondsAfterFinished` has passed, or requeues
/// for that moment.
async fn expire(
    job: &MediaConvertJob,
    status: &MediaConvertJobStatus,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let (Some(ttl), Some(finished)) = (
        job.spec.ttl_seconds_after_finished,
        status.finished_at.as_ref(),
    ) else {
        return Ok(Action::await_change());
    };
    let remaining = seconds_until(finished.0.as_second().saturating_add(ttl));
    if remaining > 0 {
        return Ok(Action::requeue(Duration::from_secs(remaining as u64)));
    }
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    api.delete(&job.name_any(), &DeleteParams::default())
        .await
        .map_err(|source| Error::Delete {
            name: job.name_any(),
            source,
        })?;
    tracing::info!(ttl, "Deleted finished resource after its TTL");
    publish(
        context,
        job,
        false,
        "Expired",
        format!("Deleted {ttl} s after the job finished, as ttlSecondsAfterFinished asks"),
    )
    .await;
    Ok(Action::await_change())
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
                "MediaConvert job {job_id} completed, writing {} output files",
                status.outputs.len()
            ),
        ),
        _ => (false, format!("MediaConvert job {job_id} is {phase}")),
    };
    tracing::info!(job_id, %phase, "Job changed phase");
    publish(context, job, warning, &phase.to_string(), note).await;
}
