# Task runner: CI and developers call the same targets.
.PHONY: demo test lint crds image-check tools env-up env-down bench-validation bench-sync

# Start the local API server and AWS emulator, run the operator and apply examples/.
demo:
	bash hack/demo.sh

# Run every test against a freshly started local environment.
test:
	bash hack/test.sh

# Formatting and lints, with warnings as errors.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# Regenerate the CRD YAML from the Rust types, in crds/ and in the Helm chart.
crds:
	cargo run --quiet --locked -- crd > crds/mediaconvert.operators.dev_mediaconvertjobs.yaml
	cp crds/mediaconvert.operators.dev_mediaconvertjobs.yaml charts/mediaconvert-operator/crds/

# Lint the Dockerfile and run its build stage without Docker.
image-check:
	bash hack/check-image.sh

# Build and cache etcd, kube-apiserver, kubectl, helm, hadolint and the fakecloud emulator.
tools:
	bash hack/install-tools.sh

# Start the local environment and write its variables to target/local-env/env.
env-up:
	bash hack/env-up.sh

# Stop the local environment.
env-down:
	bash hack/env-down.sh

# Count the AWS calls the checks spend on 1,000 jobs sharing a role and key.
bench-validation:
	bash hack/bench.sh validation_calls 1000

# Compare the batched status sync, alone and behind job events from an SQS queue, with
# per-job GetJob polling on 100, 1,000 and 10,000 running jobs (BENCH_SIZES="100 1000" for
# fewer).
bench-sync:
	bash hack/bench-sync.sh
