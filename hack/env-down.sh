#!/usr/bin/env bash
# Stops the local test environment that hack/env-up.sh started, in reverse
# start order: SIGTERM, then SIGKILL after MCO_ENV_STOP_TIMEOUT seconds. Only
# processes recorded in MCO_ENV_DIR/run with a matching start time are
# signalled, so a reused pid never hits another program. Logs stay.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/env-lib.sh"

usage() {
    cat <<EOF
Usage: hack/env-down.sh [--purge]

Stops etcd, kube-apiserver, fakecloud and emulator-proxy started by
hack/env-up.sh in $MCO_ENV_DIR.

  --purge     also delete everything else in MCO_ENV_DIR except the logs:
              etcd and fakecloud data, certificates, the admin token, the
              kubeconfig and the default env file
  -h, --help  print this help

Environment:
  MCO_ENV_DIR           state, logs and pid files (now $MCO_ENV_DIR)
  MCO_ENV_STOP_TIMEOUT  seconds to wait after SIGTERM before SIGKILL (default 15)
EOF
}

# Deletes everything in MCO_ENV_DIR but the logs and the lock file.
purge_environment() {
    log "deleting the environment's data in $MCO_ENV_DIR"
    find "$MCO_ENV_DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name lock -exec rm -rf {} +
}

main() {
    local purge=false
    while (($# > 0)); do
        case $1 in
        --purge) purge=true ;;
        -h | --help) usage && exit 0 ;;
        *) usage >&2 && die "unknown argument '$1'" ;;
        esac
        shift
    done

    if [[ ! -d $MCO_ENV_DIR ]]; then
        log "no environment in $MCO_ENV_DIR"
        return
    fi
    acquire_env_lock
    stop_environment || die "some components are still running; see the messages above"
    if [[ $purge == true ]]; then
        purge_environment
    fi
    log "environment in $MCO_ENV_DIR stopped"
}

main "$@"
