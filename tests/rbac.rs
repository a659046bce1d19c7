//! The chart's RBAC as granted to the operator's ServiceAccount, and how the operator
//! behaves when an administrator removes the Lease, Event or status permissions: it
//! reports the problem, never loops hot on 403 and never submits a job whose submission
//! token it could not record.

mod support;

use std::time::Duration;

use k8s_openapi::api::rbac::v1::PolicyRule;
use support::chart::{self, FAST_VALUES};
use support::scrape;
use support::*;

const RELEASE: &str = "op";

/// Installs the chart in namespaced mode, with leader election, into a fresh namespace.
async fn install(prefix: &str) -> (Env, TestNamespace) {
    let (env, namespace, _) = prepare(prefix, timeline(500, complete())).await;
    let watch = format!("watchNamespaces={{{}}}", namespace.name);
    let mut sets = vec![watch.as_str(), "leaderElection.enabled=true"];
    sets.extend(FAST_VALUES);
    chart::install(RELEASE, &namespace.name, &sets);
    (env, namespace)
}

fn remove_rules(rules: &mut Vec<PolicyRule>, resource: &str) {
    rules.retain(|rule| !rule.resources.iter().flatten().any(|r| r == resource));
}

#[tokio::test]
async fn service_account_has_exact_verbs() {
    let (_env, namespace) = install("rbac-verbs").await;
    let verbs = chart::allowed_verbs(&namespace.name, &chart::fullname(RELEASE));
    let expected: [(&str, &[&str]); 6] = [
        // delete is for ttlSecondsAfterFinished.
        (
            "mediaconvertjobs.mediaconvert.operators.dev",
            &["delete", "get", "list", "patch", "update", "watch"],
        ),
        (
            "mediaconvertjobs.mediaconvert.operators.dev/status",
            &["get", "patch", "update"],
        ),
        (
            "mediaconvertjobs.mediaconvert.operators.dev/finalizers",
            &["update"],
        ),
        ("events", &["create", "patch"]),
        ("events.events.k8s.io", &["create", "patch"]),
        ("leases.coordination.k8s.io", &["create", "get", "update"]),
    ];
    for (resource, allowed) in expected {
        let actual = verbs
            .get(resource)
            .unwrap_or_else(|| panic!("no rule for {resource} in {verbs:?}"));
        assert_eq!(actual, allowed, "verbs on {resource}");
    }
    // Every identity may also review its own access and read discovery URLs.
    let ours: Vec<&String> = verbs
        .keys()
        .filter(|resource| !resource.contains("selfsubject") && !resource.starts_with('['))
        .collect();
    assert_eq!(ours.len(), expected.len(), "unexpected grants: {verbs:?}");
    assert!(!verbs.contains_key("secrets"), "{verbs:?}");
}

#[tokio::test]
async fn without_lease_access_not_ready() {
    let (env, namespace) = install("rbac-lease").await;
    let ns = namespace.name.as_str();
    let role = format!("{}-leader-election", chart::fullname(RELEASE));
    chart::edit_role(&env.client, ns, &role, |rules| rules.clear()).await;
    let operator = chart::start_as_service_account(&env.client, ns, RELEASE, "op-0").await;
    let api = namespace.jobs();
    create(&api, &job_yaml("waiting", "{type: S3}", BASE_SETTINGS)).await;

    let url = operator.metrics_url().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (status, body) = scrape::probe(&url, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("forbidden"), "{body}");
    // Retries double from one second up to 30, so 12 seconds hold a handful of attempts.
    let attempts = operator.log_lines_with("Failed to read or take the leader election lease");
    assert!(
        (2..=6).contains(&attempts),
        "{attempts} lease attempts logged"
    );
    let samples = scrape::metrics(&url).await;
    assert_eq!(
        samples.sum("mediaconvert_operator_reconciles_total", &[]),
        0.0
    );
    let job = api.get("waiting").await.expect("job vanished");
    assert!(
        job.status.is_none(),
        "a non-leader reconciled: {:?}",
        job.status
    );
    assert!(env.proxy().jobs_in(ns).await.is_empty());
}

#[tokio::test]
async fn without_event_access_jobs_complete() {
    let (env, namespace) = install("rbac-events").await;
    let ns = namespace.name.as_str();
    chart::edit_role(&env.client, ns, &chart::fullname(RELEASE), |rules| {
        remove_rules(rules, "events")
    })
    .await;
    let operator = chart::start_as_service_account(&env.client, ns, RELEASE, "op-0").await;
    let api = namespace.jobs();
    for name in ["first", "second"] {
        create(&api, &job_yaml(name, "{type: S3}", BASE_SETTINGS)).await;
    }
    for name in ["first", "second"] {
        wait_for(&api, name, "Complete", phase_is("Complete")).await;
    }
    assert_eq!(env.proxy().jobs_in(ns).await.len(), 2);

    // Each job publishes several Events, all denied; one warning a minute reports them.
    let log = operator.log_text();
    let warnings = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("Failed to publish Event"))
        .count();
    let denied = operator.log_lines_with("Failed to publish Event");
    assert_eq!(warnings, 1, "{log}");
    assert!(denied >= 4, "{denied} denied Events logged");
}

#[tokio::test]
async fn without_status_access_nothing_submitted() {
    let (env, namespace) = install("rbac-status").await;
    let ns = namespace.name.as_str();
    chart::edit_role(&env.client, ns, &chart::fullname(RELEASE), |rules| {
        remove_rules(rules, "mediaconvertjobs/status")
    })
    .await;
    let operator = chart::start_as_service_account(&env.client, ns, RELEASE, "op-0").await;
    let api = namespace.jobs();
    create(&api, &job_yaml("blocked", "{type: S3}", BASE_SETTINGS)).await;

    let url = operator.metrics_url().await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        env.proxy().jobs_in(ns).await.is_empty(),
        "a job was submitted"
    );
    let samples = scrape::metrics(&url).await;
    let errors = samples.value("mediaconvert_operator_reconciles_total{outcome=\"error\"}");
    let category = "mediaconvert_operator_reconcile_errors_total{category=\"StatusWriteFailed\"}";
    // Backoff of 1, 2, 4, 5, 5 seconds fits about 6 attempts in 15 seconds.
    assert!((2.0..=8.0).contains(&errors), "{errors} failed reconciles");
    assert_eq!(samples.value(category), errors);
    let aws_calls = samples.sum("mediaconvert_operator_aws_requests_total", &[]);
    assert!(
        aws_calls <= 3.0 * errors,
        "{aws_calls} AWS calls for {errors} reconciles"
    );
    let create_job = samples.sum(
        "mediaconvert_operator_aws_requests_total",
        &["operation=\"CreateJob\""],
    );
    assert_eq!(create_job, 0.0);
}
