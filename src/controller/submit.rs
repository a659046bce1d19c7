//! Validation and exactly-once submission of a new job.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::patch::{now, publish, write_status};
use super::status::{
    apply_snapshot, bounded, set_condition, set_condition_unknown, set_outcome_conditions,
};
use super::{Context, Error, Result};
use crate::api::{
    ConditionReason, ConditionType, JobPhase, MediaConvertJob, MediaConvertJobStatus,
    ValidationPolicy, ValidationStatus,
};
use crate::aws::{ErrorClass, JobRequest};
use crate::validate::offline::RESERVED_METADATA_PREFIX;
use crate::validate::{Finding, Freshness, ValidatedJob, Verdict};

/// Reasons whose fix is a spec edit; the others are retried, because IAM, KMS or S3 may
/// change without the resource changing.
const SPEC_REASONS: [ConditionReason; 8] = [
    ConditionReason::SpecInvalid,
    ConditionReason::EncryptionContextInvalid,
    ConditionReason::SettingsInvalid,
    ConditionReason::EncryptionConflict,
    ConditionReason::CreateJobRejected,
    ConditionReason::KmsKeyNotSymmetric,
    ConditionReason::AwsManagedKeyCrossAccount,
    ConditionReason::KeyRegionMismatch,
];

/// Reports whether the resource is Invalid for its current spec for a reason only an edit
/// can fix.
pub fn is_settled_invalid(job: &MediaConvertJob) -> bool {
    let Some(status) = &job.status else {
        return false;
    };
    let failed_reason = status
        .conditions
        .iter()
        .find(|condition| condition.type_ == ConditionType::Failed.to_string())
        .map(|condition| condition.reason.as_str());
    status.phase == Some(JobPhase::Invalid)
        && status.observed_generation == job.metadata.generation
        && SPEC_REASONS
            .iter()
            .any(|reason| failed_reason == Some(reason.to_string().as_str()))
}

/// Runs the checks and submits the job when they allow it.
pub async fn validate_and_submit(
    job: &MediaConvertJob,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let outcome = match context.checker.run(&job.spec, freshness(job)).await {
        Ok(outcome) => outcome,
        Err(source) => {
            record_unavailable(job, api, context, &source).await?;
            return Err(Error::Validate {
                name: job.name_any(),
                source,
            });
        }
    };
    let generation = job.metadata.generation;
    let mut status = job.status_or_default();
    status.observed_generation = generation;
    status.validation = Some(Box::new(ValidationStatus {
        checked_at: Some(now()),
        checks: outcome.checks,
    }));

    match outcome.verdict {
        Verdict::Reject { finding, retry } => {
            reject(job, api, context, status, finding, retry).await
        }
        Verdict::Submit(validated) => {
            let (reason, message) = validated_reason(job.spec.validation, &validated.warnings);
            set_condition(
                &mut status.conditions,
                ConditionType::Validated,
                true,
                reason,
                &message,
                generation,
            );
            for advice in &validated.advisories {
                let reason = advice.reason.to_string();
                publish(context, job, true, &reason, advice.message.clone()).await;
            }
            for warning in &validated.warnings {
                publish(
                    context,
                    job,
                    true,
                    &warning.reason.to_string(),
                    warning.message.clone(),
                )
                .await;
            }
            submit(job, api, context, status, &validated).await
        }
    }
}

/// Oldest cached AWS response the checks may use. After a failed or undecided run only
/// responses fetched since then count, so a fix in IAM or KMS shows on the next retry.
fn freshness(job: &MediaConvertJob) -> Freshness {
    let Some(status) = &job.status else {
        return Freshness::Cached;
    };
    let validated = status
        .conditions
        .iter()
        .find(|condition| condition.type_ == ConditionType::Validated.to_string());
    let checked_at = status
        .validation
        .as_ref()
        .and_then(|validation| validation.checked_at.as_ref());
    match (validated, checked_at) {
        (Some(condition), Some(time)) if condition.status != "True" => {
            // Status times have whole seconds, so responses from the same second are stale.
            let after = std::time::SystemTime::from(time.0) + std::time::Duration::from_secs(1);
            Freshness::FetchedAfter(after)
        }
        _ => Freshness::Cached,
    }
}

/// Shows in the resource that the checks could not reach AWS and are retried, with one
/// Event per run of failures rather than one per retry.
async fn record_unavailable(
    job: &MediaConvertJob,
    api: &Api<MediaConvertJob>,
    context: &Context,
    error: &crate::aws::AwsError,
) -> Result<()> {
    let reason = ConditionReason::AwsUnavailable;
    let previous_reason = job
        .status
        .as_ref()
        .and_then(|status| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == ConditionType::Validated.to_string())
        })
        .map(|condition| condition.reason.clone());
    let message = format!("{error}; the operator retries with backoff");
    let mut status = job.status_or_default();
    status.observed_generation = job.metadata.generation;
    status.phase = Some(JobPhase::Validating);
    status.error_message = Some(bounded(&message));
    let generation = job.metadata.generation;
    set_condition_unknown(
        &mut status.conditions,
        ConditionType::Validated,
        reason,
        &message,
        generation,
    );
    write_status(api, job, &status, false).await?;
    if previous_reason.as_deref() != Some(reason.to_string().as_str()) {
        publish(context, job, true, &reason.to_string(), message).await;
    }
    Ok(())
}

fn validated_reason(policy: ValidationPolicy, warnings: &[Finding]) -> (ConditionReason, String) {
    match (policy, warnings.is_empty()) {
        (ValidationPolicy::Skip, _) => (
            ConditionReason::ChecksSkipped,
            "checks that call AWS were skipped".into(),
        ),
        (_, true) => (ConditionReason::ChecksPassed, "all checks passed".into()),
        (_, false) => {
            let names: Vec<String> = warnings.iter().map(|w| w.check.to_string()).collect();
            (
                ConditionReason::ChecksFailedWarn,
                format!("submitted despite failed checks {names:?}, as validation is Warn"),
            )
        }
    }
}

/// Records a rejection. A rejection whose fix lies in AWS is retried with backoff.
async fn reject(
    job: &MediaConvertJob,
    api: &Api<MediaConvertJob>,
    context: &Context,
    mut status: MediaConvertJobStatus,
    finding: Finding,
    retry: bool,
) -> Result<Action> {
    let generation = job.metadata.generation;
    let previous_reason = condition_reason(job, ConditionType::Validated);
    context
        .metrics
        .validation_failed(&finding.reason.to_string());
    let mut finding = finding;
    if retry && !SPEC_REASONS.contains(&finding.reason) {
        finding.message.push_str(
            " (the operator checks again automatically, so no edit is needed once this is fixed)",
        );
    }
    status.phase = Some(JobPhase::Invalid);
    status.error_message = Some(bounded(&finding.message));
    set_condition(
        &mut status.conditions,
        ConditionType::Validated,
        false,
        finding.reason,
        &finding.message,
        generation,
    );
    set_condition(
        &mut status.conditions,
        ConditionType::Submitted,
        false,
        finding.reason,
        "not submitted",
        generation,
    );
    set_outcome_conditions(
        &mut status,
        JobPhase::Invalid,
        finding.reason,
        &finding.message,
        generation,
    );
    write_status(api, job, &status, false).await?;

    // One Event per distinct outcome, not one per retry.
    if previous_reason.as_deref() != Some(finding.reason.to_string().as_str()) {
        tracing::warn!(check = %finding.check, reason = %finding.reason, message = %finding.message, "Job failed validation");
        publish(
            context,
            job,
            true,
            &finding.reason.to_string(),
            finding.message.clone(),
        )
        .await;
    }
    if retry {
        Ok(Action::requeue(
            context.next_backoff(&job.uid().unwrap_or_default()),
        ))
    } else {
        Ok(Action::await_change())
    }
}

fn condition_reason(job: &MediaConvertJob, kind: ConditionType) -> Option<String> {
    let status = job.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == kind.to_string() && condition.status == "False")
        .map(|condition| condition.reason.clone())
}

/// Records a submission token, then calls `CreateJob` with it.
///
/// The token is written on a freshly read object with a `resourceVersion` precondition, so
/// two reconciles working from stale copies cannot both pass this point.
async fn submit(
    job: &MediaConvertJob,
    api: &Api<MediaConvertJob>,
    context: &Context,
    mut status: MediaConvertJobStatus,
    validated: &ValidatedJob,
) -> Result<Action> {
    let token = uuid::Uuid::new_v4().to_string();
    status.submission_token = Some(token);
    status.phase = Some(JobPhase::Submitting);
    status.error_message = None;
    status.encryption = Some(Box::new(validated.encryption.clone()));
    status.region = Some(validated.region.clone());
    let generation = job.metadata.generation;
    set_condition(
        &mut status.conditions,
        ConditionType::Submitted,
        false,
        ConditionReason::Submitting,
        "calling CreateJob",
        generation,
    );
    set_outcome_conditions(
        &mut status,
        JobPhase::Submitting,
        ConditionReason::JobNotFinished,
        "",
        generation,
    );
    write_status(api, job, &status, true).await?;
    // The backoff of failed validations must not delay the resume of this submission
    // past MediaConvert's token window.
    context.reset_backoff(&job.uid().unwrap_or_default());

    create(job, api, context, status, validated).await
}

/// Finishes an interrupted submission. A job that carries the resource's UID is adopted.
/// Otherwise `CreateJob` is repeated with the recorded token, so MediaConvert returns a job
/// it created moments ago instead of creating a second one.
pub async fn resume(
    job: &MediaConvertJob,
    api: &Api<MediaConvertJob>,
    context: &Context,
) -> Result<Action> {
    let mut status = job.status_or_default();
    if let Some(existing) = find_own_job(job, context).await? {
        tracing::info!(job_id = %existing.id, "Found the job of an interrupted submission");
        apply_snapshot(&mut status, &existing, job.metadata.generation);
        write_status(api, job, &status, false).await?;
        let note = format!(
            "Found MediaConvert job {} of an interrupted submission",
            existing.id
        );
        publish(context, job, false, "Submitted", note).await;
        return Ok(Action::requeue(context.settings.poll_interval));
    }

    let resolved_key = status
        .encryption
        .as_ref()
        .and_then(|e| e.kms_key_arn.clone());
    match context.checker.rebuild(&job.spec, resolved_key.as_deref()) {
        Ok(validated) => create(job, api, context, status, &validated).await,
        // The spec passed these checks before the token was written. A failure now means
        // the operator's own rules changed, so it is treated as a rejection.
        Err(finding) => reject(job, api, context, status, finding, false).await,
    }
}

/// Looks for a job created for this resource, by the UID in its user metadata.
pub async fn find_own_job(
    job: &MediaConvertJob,
    context: &Context,
) -> Result<Option<crate::aws::JobSnapshot>> {
    let uid = job.uid().unwrap_or_default();
    // A job cannot be older than its resource; a minute of slack covers clock skew.
    let since = job
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|time| time.0.as_second() - 60)
        .unwrap_or_default();
    let key = format!("{RESERVED_METADATA_PREFIX}uid");
    let region = job
        .status_or_default()
        .region_or(context.checker.region_of(&job.spec));
    context
        .mediaconvert
        .find_job(&region, job.spec.queue.as_deref(), &key, &uid, since)
        .await
        .map_err(|source| Error::MediaConvert {
            name: job.name_any(),
            source,
        })
}

async fn create(
    job: &MediaConvertJob,
    api: &Api<MediaConvertJob>,
    context: &Context,
    mut status: MediaConvertJobStatus,
    validated: &ValidatedJob,
) -> Result<Action> {
    let Some(token) = status.submission_token.clone() else {
        return Ok(Action::await_change());
    };
    let request = job_request(job, validated, token);
    let generation = job.metadata.generation;
    match context.mediaconvert.create_job(&request).await {
        Ok(snapshot) => {
            apply_snapshot(&mut status, &snapshot, generation);
            write_status(api, job, &status, false).await?;
            context.reset_backoff(&job.uid().unwrap_or_default());
            tracing::info!(job_id = %snapshot.id, region = %validated.region, "Submitted job");
            // Followed from now on, not from the next reconcile, which a backlog of new
            // resources may hold up.
            super::follow::start_following(job, &status, &snapshot.id, context);
            let note = format!(
                "Submitted MediaConvert job {} in {}",
                snapshot.id, validated.region
            );
            publish(context, job, false, "Submitted", note).await;
            Ok(Action::requeue(context.settings.poll_interval))
        }
        Err(error) if matches!(error.class, ErrorClass::Invalid | ErrorClass::AccessDenied) => {
            // A rejected or denied request created no job, so the token can go. A bad
            // request waits for a spec edit; a denial is retried, since the fix is in IAM.
            let denied = error.class == ErrorClass::AccessDenied;
            let message = if denied {
                format!(
                    "MediaConvert denied CreateJob: {}; allow the operator mediaconvert:CreateJob and iam:PassRole on {}",
                    error.message, job.spec.role
                )
            } else {
                format!(
                    "MediaConvert rejected CreateJob: {}; correct spec.settings, and the edited job is submitted again",
                    error.message
                )
            };
            status.submission_token = None;
            status.phase = Some(JobPhase::Invalid);
            status.error_message = Some(bounded(&error.message));
            let reason = if denied {
                ConditionReason::CreateJobDenied
            } else {
                ConditionReason::CreateJobRejected
            };
            set_condition(
                &mut status.conditions,
                ConditionType::Submitted,
                false,
                reason,
                &message,
                generation,
            );
            set_outcome_conditions(&mut status, JobPhase::Invalid, reason, &message, generation);
            write_status(api, job, &status, false).await?;
            tracing::warn!(%error, "MediaConvert rejected the job");
            publish(context, job, true, &reason.to_string(), message).await;
            if denied {
                Ok(Action::requeue(
                    context.next_backoff(&job.uid().unwrap_or_default()),
                ))
            } else {
                Ok(Action::await_change())
            }
        }
        Err(source) => Err(Error::MediaConvert {
            name: job.name_any(),
            source,
        }),
    }
}

/// Builds the `CreateJob` request. The resource's namespace, name and UID travel in user
/// metadata, so a job can be traced back to, and found again for, its resource.
fn job_request(job: &MediaConvertJob, validated: &ValidatedJob, token: String) -> JobRequest {
    let spec = &job.spec;
    let mut user_metadata: BTreeMap<String, String> = spec.user_metadata.clone();
    let identity = [
        ("namespace", job.namespace().unwrap_or_default()),
        ("name", job.name_any()),
        ("uid", job.uid().unwrap_or_default()),
    ];
    for (key, value) in identity {
        user_metadata.insert(format!("{RESERVED_METADATA_PREFIX}{key}"), value);
    }
    JobRequest {
        region: validated.region.clone(),
        role: spec.role.clone(),
        queue: spec.queue.clone(),
        job_template: spec.job_template.clone(),
        priority: spec.priority,
        user_metadata,
        tags: spec.tags.clone(),
        client_request_token: token,
        settings: validated.settings.json.clone(),
    }
}
