#!/usr/bin/env bash
# Checks the Dockerfile without a Docker engine. It lints the Dockerfile with
# hadolint and runs the build stage's steps: each COPY copies from the
# repository into a scratch directory that stands for the image's file system,
# and each RUN runs there. Then it checks that the runtime stage copies a
# binary that runs, has no RUN step (so it needs no shell) and sets a numeric
# non-root USER.
#
# Usage: hack/check-image.sh [SCRATCH_DIR]   (default: a temporary directory)
# Passing a SCRATCH_DIR keeps the release build for the next run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

[[ -x $HADOLINT_BIN ]] || die "$HADOLINT_BIN not found; install it with hack/install-tools.sh hadolint"
"$HADOLINT_BIN" Dockerfile
log "hadolint found no problems in the Dockerfile"

if [[ -n ${1:-} ]]; then
    root="$(realpath -m "$1")"
    mkdir -p "$root"
else
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
fi

# Copies the sources of a COPY instruction into the scratch file system, with
# Docker's rule that a destination ending in / is a directory.
copy_into() {
    local workdir=$1
    shift
    local -a paths=("$@")
    local destination=${paths[-1]}
    unset 'paths[-1]'
    [[ $destination == /* ]] || destination="$workdir/$destination"
    if [[ $destination == */ || ${#paths[@]} -gt 1 ]]; then
        mkdir -p "$root$destination"
    else
        mkdir -p "$(dirname "$root$destination")"
    fi
    local source
    for source in "${paths[@]}"; do
        cp -a "$source" "$root$destination"
    done
}

stage=0 workdir=/ runtime_copy="" runtime_user="" runtime_runs=0
while read -r instruction arguments; do
    case "$instruction" in
    FROM) stage=$((stage + 1)) ;;
    WORKDIR) [[ $stage -eq 1 ]] && workdir=$arguments && mkdir -p "$root$workdir" ;;
    COPY)
        if [[ $stage -eq 1 ]]; then
            # shellcheck disable=SC2086 # The arguments are paths without spaces.
            copy_into "$workdir" $arguments
        else
            runtime_copy=$arguments
        fi
        ;;
    RUN)
        if [[ $stage -eq 1 ]]; then
            log "RUN $arguments"
            (cd "$root$workdir" && bash -c "$arguments")
        else
            runtime_runs=$((runtime_runs + 1))
        fi
        ;;
    USER) [[ $stage -eq 2 ]] && runtime_user=$arguments ;;
    esac
done < <(grep -E '^[A-Z]+ ' Dockerfile)

((stage == 2)) || die "expected a build stage and a runtime stage, found $stage stages"
((runtime_runs == 0)) || die "the runtime stage has RUN steps, which need a shell at run time"
[[ $runtime_user =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] ||
    die "the runtime stage runs as '$runtime_user'; expected a numeric non-root USER"
read -r _from binary _destination <<<"$runtime_copy"
[[ -x $root$binary ]] || die "the runtime stage copies $binary, which the build stage did not produce"
"$root$binary" --version
"$root$binary" crd | grep -q 'kind: CustomResourceDefinition' ||
    die "$binary crd printed no CustomResourceDefinition"
log "the build stage produced a working $binary ($(du -h "$root$binary" | cut -f1))"
