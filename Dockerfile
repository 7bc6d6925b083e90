# syntax=docker/dockerfile:1
# The rds-csi image: one binary for every role (controller, node, simulator, demo).
#   docker build -t rds-csi:0.1.0 \
#     --build-arg GIT_COMMIT=$(git rev-parse HEAD) \
#     --build-arg SOURCE_URL=<where you publish the repository> .
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.
# Both stages are on Debian 13 "trixie" (the current stable), so the binary runs on the glibc it
# was linked against.
# tests/dockerfile.rs copies exactly what the build stage COPYs into a temporary directory and
# loads the workspace there (`cargo metadata --locked`): a member left out fails `cargo test`.

FROM rust:1-trixie AS build
# The commit this image is built from: `rds-csi version` and the rds_csi_build_info metric
# carry it (build.rs reads RDS_CSI_GIT_COMMIT; .git is not copied into the build).
ARG GIT_COMMIT=unknown
ENV RDS_CSI_GIT_COMMIT=${GIT_COMMIT}
WORKDIR /src
# Only what the build reads: the workspace manifests and lockfile, every workspace member
# (cargo loads them all, even to build one binary), the build script, and the bench sources
# that Cargo.toml declares (cargo checks that declared targets exist). fuzz/ is not a member.
# With BuildKit nothing else is sent to the builder; .dockerignore keeps target/ out anyway.
COPY Cargo.toml Cargo.lock build.rs ./
COPY build ./build
COPY src ./src
COPY proto ./proto
COPY node-io ./node-io
COPY e2e ./e2e
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rds-csi \
 && install -m 0755 target/release/rds-csi /usr/local/bin/rds-csi

FROM debian:trixie-slim
ARG GIT_COMMIT=unknown
# The package version (Cargo.toml; tests/dockerfile.rs checks the default matches it).
ARG VERSION=0.1.0
ARG SOURCE_URL=
LABEL org.opencontainers.image.title="rds-csi" \
      org.opencontainers.image.description="Kubernetes CSI driver for MikroTik ROSE Data Server (NVMe/TCP)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.version="${VERSION}"
# What the node plugin runs besides its own code: mkfs.ext4/e2fsck/resize2fs (e2fsprogs),
# mkfs.xfs/xfs_growfs (xfsprogs), blkid and friends (util-linux, mount). ca-certificates for
# the API server's TLS. NVMe/TCP needs no userspace tool (no nvme-cli): the driver writes
# /dev/nvme-fabrics and sysfs directly.
RUN apt-get update \
 && apt-get install -y --no-install-recommends e2fsprogs xfsprogs util-linux mount ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/rds-csi /usr/local/bin/rds-csi
# No USER here: the node plugin formats and mounts devices from a privileged container and
# must run as root. The controller needs no privilege and its Deployment runs it as
# uid/gid 65532 (runAsNonRoot) with a read-only root filesystem.
ENTRYPOINT ["/usr/local/bin/rds-csi"]
CMD ["--help"]
