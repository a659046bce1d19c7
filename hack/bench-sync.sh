#!/usr/bin/env bash
# Runs the status sync benchmark (benches/status_sync). It builds the operator in release
# mode and starts a local environment of its own. In front of that environment's fakecloud
# it starts a second emulator proxy that serves MediaConvert jobs from memory
# (--local-jobs), because fakecloud slows down at thousands of jobs. Afterwards everything
# is stopped and the environment's data purged, but the logs stay in MCO_ENV_DIR/logs.
#
# Usage: hack/bench-sync.sh
# Environment:
#   BENCH_SIZES  numbers of resources, one run per size and mode (default "100 1000 10000")
#   BENCH_ARGS   further options, such as "--modes poll" or "--poll-interval-seconds 10";
#                `cargo bench --bench status_sync -- --help` lists them
#   MCO_ENV_DIR  state and logs of the environment (default target/bench-sync), kept apart
#                from the environment of `make env-up`, which this script would replace
set -euo pipefail
export MCO_ENV_DIR="${MCO_ENV_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/bench-sync}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

read -r -a sizes <<<"${BENCH_SIZES:-100 1000 10000}"
read -r -a extra_args <<<"${BENCH_ARGS:-}"

hack/install-tools.sh
log "building the operator and the emulator proxy in release mode"
cargo build --release --locked --quiet -p mediaconvert-operator --bin mediaconvert-operator
cargo build --release --locked --quiet -p emulator-proxy
# The benchmark itself only drives and counts, so it builds with the dev profile.
cargo build --profile dev --locked --quiet --bench status_sync
target_dir="$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

env_file="$MCO_ENV_DIR/bench-sync-env"
hack/env-up.sh --replace "$env_file"
proxy_pid=""
stop() {
    if [[ -n $proxy_pid ]]; then
        kill "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
    fi
    hack/env-down.sh --purge
}
trap stop EXIT
# shellcheck source=/dev/null
source "$env_file"

log "starting an emulator proxy with --local-jobs in front of $MCO_FAKECLOUD_URL"
proxy_out="$MCO_ENV_DIR/logs/bench-proxy.out"
# Emptied before the start, because the redirection below truncates it only once the
# child runs, and the loop that reads the address may see an earlier run's first.
: >"$proxy_out"
"$target_dir/release/emulator-proxy" --listen 127.0.0.1:0 --upstream "$MCO_FAKECLOUD_URL" \
    --local-jobs >"$proxy_out" 2>"$MCO_ENV_DIR/logs/bench-proxy.log" &
proxy_pid=$!
proxy_address=""
for _ in $(seq 1 100); do
    proxy_address="$(sed -n 's/^listening on //p' "$proxy_out")"
    [[ -n $proxy_address ]] && break
    kill -0 "$proxy_pid" 2>/dev/null ||
        die "the emulator proxy exited; see $MCO_ENV_DIR/logs/bench-proxy.log"
    sleep 0.1
done
[[ -n $proxy_address ]] || die "the emulator proxy did not start listening within 10 s"

log "installing the CRD"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s \
    crd/mediaconvertjobs.mediaconvert.operators.dev >/dev/null

export MCO_BENCH_PROXY_URL="http://$proxy_address"
export MCO_BENCH_OPERATOR="$target_dir/release/mediaconvert-operator"
export MCO_BENCH_LOG_DIR="$MCO_ENV_DIR/logs/operators"
log "running on $(nproc) cores with $(free -g | awk '/^Mem:/ {print $2}') GiB of memory"
cargo bench --profile dev --locked --quiet --bench status_sync -- "${sizes[@]}" "${extra_args[@]}"
