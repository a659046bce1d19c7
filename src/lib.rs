//! `mediaconvert-operator`: runs AWS Elemental MediaConvert jobs from `MediaConvertJob`
//! resources, with outputs encrypted at rest in S3.

#![forbid(unsafe_code)]

pub mod api;
pub mod aws;
pub mod controller;
pub mod settings;
pub mod telemetry;
pub mod validate;

/// Renders the CustomResourceDefinition as YAML.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = api::MediaConvertJob::crd();
    serde_yaml::to_string(&crd).unwrap_or_default()
}
