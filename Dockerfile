# Multi-stage image of the operator: a Rust build stage, and a distroless
# runtime stage with no shell and no package manager that runs as non-root.
# hack/check-image.sh runs the build stage's steps without Docker in CI.

# The full image, because jemalloc's build needs make, which the slim one lacks.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src

# Dependencies first, built from the manifests alone, so this layer is reused
# until Cargo.toml or Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
COPY test-support/emulator-proxy/Cargo.toml test-support/emulator-proxy/
COPY test-support/fixtures/Cargo.toml test-support/fixtures/
COPY hack/build-image.sh hack/
RUN hack/build-image.sh dependencies

COPY src src
COPY benches benches
RUN hack/build-image.sh operator

# glibc, libgcc and CA certificates, user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/mediaconvert-operator /usr/local/bin/mediaconvert-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mediaconvert-operator"]
CMD ["run"]
