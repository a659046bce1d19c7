#!/usr/bin/env bash
# Runs one benchmark of benches/ against a freshly started local environment, which is
# stopped and purged afterwards. Usage: hack/bench.sh BENCH [ARGS...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

bench="${1:?usage: hack/bench.sh BENCH [ARGS...]}"
shift
hack/install-tools.sh
# The figures are call counts, which do not depend on optimisation, so the benchmark
# builds with the dev profile and reuses the test build.
cargo build --profile dev --locked --quiet --bench "$bench"

env_file="$MCO_ENV_DIR/bench-env"
hack/env-up.sh --replace "$env_file"
trap 'hack/env-down.sh --purge' EXIT
# shellcheck source=/dev/null
source "$env_file"
cargo bench --profile dev --locked --quiet --bench "$bench" -- "$@"
