//! `mediaconvert-operator`: runs AWS Elemental MediaConvert jobs from `MediaConvertJob`
//! resources, with outputs encrypted at rest in S3.

#![forbid(unsafe_code)]

pub mod api;
pub mod aws;
pub mod controller;
pub mod events;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod validate;

/// Selects ring as the process-wide TLS crypto provider. Both ring and aws-lc-rs are linked
/// in, and rustls refuses to guess between them. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the CustomResourceDefinition, with each description's lines joined into
/// paragraphs, because `kubectl explain` shows the line breaks of the doc comments as they
/// are.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let generated = api::MediaConvertJob::crd();
    let mut value = serde_json::to_value(&generated).unwrap_or_default();
    join_description_lines(&mut value);
    serde_json::from_value(value).unwrap_or(generated)
}

fn join_description_lines(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(text) if key == "description" => {
                        let paragraphs: Vec<String> = text
                            .split("\n\n")
                            .map(|paragraph| paragraph.replace('\n', " "))
                            .collect();
                        *text = paragraphs.join("\n\n");
                    }
                    _ => join_description_lines(child),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(join_description_lines),
        _ => {}
    }
}

/// Renders the CustomResourceDefinition as YAML.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).unwrap_or_default()
}
