//! `mediaconvert-operator`: runs AWS Elemental MediaConvert jobs from `MediaConvertJob`
//! resources, with outputs encrypted at rest in S3.

#![forbid(unsafe_code)]

pub mod api;
pub mod aws;
pub mod controller;
pub mod settings;
pub mod telemetry;
pub mod validate;

/// Selects ring as the process-wide TLS crypto provider. Both ring and aws-lc-rs are linked
/// in, and rustls refuses to guess between them. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Renders the CustomResourceDefinition as YAML.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = api::MediaConvertJob::crd();
    serde_yaml::to_string(&crd).unwrap_or_default()
}
