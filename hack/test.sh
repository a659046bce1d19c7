#!/usr/bin/env bash
# Runs every test: unit tests and integration tests against a local kube-apiserver, etcd,
# the fakecloud emulator and the emulator proxy, all started here and stopped at the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Tools and the workspace build at the same time; both are cached after the first run.
hack/install-tools.sh &
tools_pid=$!
cargo build --workspace --all-targets --locked --quiet
wait "$tools_pid"

env_file="$MCO_ENV_DIR/env"
# The proxy keeps the jobs: tests create hundreds, and fakecloud's ListJobs reads slow
# down with each, which the status sync would feel in every round.
hack/env-up.sh --replace --local-jobs "$env_file"
# Purged afterwards, so every run starts from empty etcd and emulator state, as CI does.
trap 'hack/env-down.sh --purge' EXIT
# shellcheck source=/dev/null
source "$env_file"

# Each integration test starts its own operator for its own namespace, so tests can run
# side by side. A few at a time keeps a 2-core machine responsive.
cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
