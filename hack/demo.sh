#!/usr/bin/env bash
# Runs the demo: starts the local environment, installs the CRD, creates the AWS state the
# examples need in the emulator, runs the operator and applies examples/, then shows
# `kubectl get mcj` until every job has finished. Jobs progress over about 20 seconds,
# scripted by the emulator proxy, because the emulator itself completes jobs at once.
#
# Usage: hack/demo.sh [--keep]   (--keep leaves the environment running afterwards)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

keep=false
[[ "${1:-}" == "--keep" ]] && keep=true

log "building the tools and the workspace (a first run compiles for a long time; later runs reuse the cache)"
hack/install-tools.sh &
tools_pid=$!
cargo build --workspace --bins --locked
wait "$tools_pid"

env_file="$MCO_ENV_DIR/env"
hack/env-up.sh --replace "$env_file"
operator_pid=""
stop() {
    [[ -n "$operator_pid" ]] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null
    if $keep; then
        log "environment left running, operator stopped; source $env_file, then start the operator with target/debug/mediaconvert-operator run; stop everything with hack/env-down.sh"
    else
        # Purged, so the next demo starts from empty etcd and emulator state.
        hack/env-down.sh --purge
    fi
}
trap stop EXIT
# shellcheck source=/dev/null
source "$env_file"

log "installing the CRD"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s crd/mediaconvertjobs.mediaconvert.operators.dev >/dev/null

log "creating buckets, a KMS key with alias/example-media and MediaConvertRole in the emulator"
target/debug/aws-fixtures --endpoint "$MCO_FAKECLOUD_URL"

# Every job queues for 2 s, transcodes for 20 s with a rising percentage, then completes.
curl -fsS -X PUT "$MCO_PROXY_URL/__proxy/timelines" -H 'content-type: application/json' -d '{
  "default": {"steps": [
    {"atMs": 0, "status": "SUBMITTED"},
    {"atMs": 2000, "status": "PROGRESSING", "percent": 0, "currentPhase": "PROBING"},
    {"atMs": 4000, "status": "PROGRESSING", "percent": 5, "currentPhase": "TRANSCODING"},
    {"atMs": 20000, "status": "PROGRESSING", "percent": 100, "currentPhase": "UPLOADING"},
    {"atMs": 22000, "status": "COMPLETE"}
  ]},
  "rules": []
}' >/dev/null

operator_log="$MCO_ENV_DIR/logs/operator.log"
log "starting the operator (log: $operator_log)"
target/debug/mediaconvert-operator run --poll-interval-seconds 2 --metrics-address 127.0.0.1:0 >"$operator_log" 2>&1 &
operator_pid=$!

# Examples left by an earlier --keep run are removed first, so every job runs anew.
kubectl delete -f examples/ --ignore-not-found --wait=true >/dev/null
kubectl apply -f examples/
deadline=$((SECONDS + 180))
while true; do
    echo
    kubectl get mcj
    pending="$(kubectl get mcj -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' |
        grep -cvE '^(Complete|Error|Canceled|Invalid)$' || true)"
    [[ "$pending" -eq 0 ]] && break
    ((SECONDS < deadline)) || die "jobs did not finish within 3 minutes; see $operator_log"
    sleep 3
done

echo
log "encryption the operator sent to MediaConvert, per output group:"
curl -fsS "$MCO_PROXY_URL/__proxy/jobs" | python3 -c "$(cat <<'PY'
import json, sys

for job in json.load(sys.stdin):
    name = job.get("userMetadata", {}).get("mediaconvert.operators.dev/name", "?")
    for group in job.get("settings", {}).get("outputGroups", []):
        group_settings = group.get("outputGroupSettings", {})
        inner = next((v for v in group_settings.values() if isinstance(v, dict) and "destination" in v), {})
        s3 = inner.get("destinationSettings", {}).get("s3Settings", {})
        encryption = s3.get("encryption", "none: bucket default encryption applies")
        print(f"  {name:24} {group.get('name', '?'):12} {json.dumps(encryption)}")
PY
)"
