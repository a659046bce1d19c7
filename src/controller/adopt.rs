//! Adoption: a resource annotated with an existing MediaConvert job id follows that job
//! instead of submitting one, so running work can move under the operator.

use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::patch::{publish, write_status};
use super::status::{apply_snapshot, set_condition, set_outcome_conditions};
use super::{Context, Result};
use crate::api::{ConditionReason, ConditionType, JobPhase, MediaConvertJob};

/// Annotation naming the MediaConvert job a new resource adopts.
pub const ADOPT_ANNOTATION: &str = "mediaconvert.operators.dev/adopt-job-id";

/// Returns the job id named by the adoption annotation, if any.
pub fn requested_job_id(job: &MediaConvertJob) -> Option<&str> {
    job.meta()
        .annotations
        .as_ref()?
        .get(ADOPT_ANNOTATION)
        .map(|id| id.trim())
        .filter(|id| !id.is_empty())
}

/// Reads the job with `GetJob` and records it as this resource's job. `CreateJob` is
/// never called for an adopting resource, and its settings are not checked, because the
/// job already runs with them.
pub async fn adopt(
    job: &MediaConvertJob,
    job_id: &str,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let region = context.checker.region_of(&job.spec);
    let snapshot = super::follow::read_job(job, &region, job_id, context).await?;
    let generation = job.metadata.generation;
    let mut status = job.status_or_default();
    status.observed_generation = generation;
    status.region = Some(region.clone());

    let Some(snapshot) = snapshot else {
        let message = format!(
            "annotation {ADOPT_ANNOTATION} names job {job_id}, which MediaConvert does not know in {region}; correct the job id or spec.region"
        );
        status.phase = Some(JobPhase::Invalid);
        status.error_message = Some(message.clone());
        let reason = ConditionReason::AdoptedJobNotFound;
        set_outcome_conditions(&mut status, JobPhase::Invalid, reason, &message, generation);
        write_status(api, job, &status, false).await?;
        publish(context, job, true, &reason.to_string(), message).await;
        return Ok(Action::await_change());
    };

    // The token marks the spec as submitted, which freezes it, and it is written together
    // with the job id, so a restart never mistakes the adoption for a lost CreateJob.
    status.submission_token = Some(format!("adopted:{job_id}"));
    apply_snapshot(&mut status, &snapshot, generation);
    let note = format!(
        "Adopted MediaConvert job {job_id} in {region}; its settings and encryption were not checked by the operator"
    );
    set_condition(
        &mut status.conditions,
        ConditionType::Validated,
        true,
        ConditionReason::JobAdopted,
        &note,
        generation,
    );
    write_status(api, job, &status, false).await?;
    tracing::info!(%job_id, %region, "Adopted job");
    publish(
        context,
        job,
        false,
        &ConditionReason::JobAdopted.to_string(),
        note,
    )
    .await;
    Ok(Action::requeue(context.settings.poll_interval))
}
