//! The committed CRD matches the Rust types, and the real API server accepts it.

mod support;

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/mediaconvert.operators.dev_mediaconvertjobs.yaml"
);

#[test]
fn committed_crd_is_current() {
    let committed = std::fs::read_to_string(CRD_PATH).expect("crds/ file is missing");
    let generated = mediaconvert_operator::crd_yaml();
    assert!(
        committed == generated,
        "{CRD_PATH} is stale; regenerate it with `make crds`"
    );
}

#[tokio::test]
async fn api_server_accepts_crd() {
    let env = support::Env::get().await;
    support::install_crd(&env.client).await;
}

#[tokio::test]
async fn kubectl_explain_shows_field_docs() {
    let env = support::Env::get().await;
    support::install_crd(&env.client).await;
    let kubectl = format!(
        "{}/kubectl",
        std::env::var("MCO_KUBE_BIN_DIR").expect("MCO_KUBE_BIN_DIR is not set")
    );
    let output = std::process::Command::new(kubectl)
        .args(["explain", "mediaconvertjob.spec.encryption.kmsKeyArn"])
        .output()
        .expect("failed to run kubectl");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl explain failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("AWS managed key"), "{text}");
}
