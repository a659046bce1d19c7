#!/usr/bin/env bash
# The cargo steps of the Dockerfile's build stage, so that CI runs exactly
# what an image build runs.
#
# Usage: hack/build-image.sh dependencies|operator
#   dependencies  builds every dependency of the operator against stub sources,
#                 from the manifests alone, so the image layer that holds them
#                 changes only when Cargo.toml or Cargo.lock does
#   operator      builds the operator from the real sources
set -euo pipefail

# Workspace members besides the operator. Cargo needs their manifests and a
# target each to load the workspace, although the image builds none of them.
MEMBERS=(test-support/emulator-proxy test-support/fixtures)

build() {
    cargo build --release --locked --package mediaconvert-operator --bin mediaconvert-operator
}

build_dependencies() {
    mkdir -p src
    echo 'fn main() {}' >src/main.rs
    : >src/lib.rs
    for member in "${MEMBERS[@]}"; do
        mkdir -p "$member/src"
        : >"$member/src/lib.rs"
    done
    # Cargo checks that the file of every declared bench target exists.
    mkdir -p benches
    sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml |
        while read -r bench; do echo 'fn main() {}' >"benches/$bench.rs"; done
    build
    # Drops the stub operator, so the next build compiles the real sources even
    # when their modification times are older than the stub's.
    rm -rf src benches target/release/.fingerprint/mediaconvert-operator-* \
        target/release/deps/mediaconvert_operator-* target/release/deps/libmediaconvert_operator-*
}

case "${1:-}" in
dependencies) build_dependencies ;;
operator) build ;;
*)
    echo "usage: $0 dependencies|operator" >&2
    exit 2
    ;;
esac
