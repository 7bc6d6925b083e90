# syntax=docker/dockerfile:1
# The rds-csi image: one binary for every role (controller, node, simulator, demo).
#   docker build -t rds-csi:0.1.0 .
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the build reads: the workspace manifests and lockfile, the three crates, and the
# bench sources that Cargo.toml declares (cargo checks that declared targets exist). With
# BuildKit nothing else, target/ included, is sent to the builder.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY proto ./proto
COPY node-io ./node-io
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin rds-csi \
 && install -m 0755 target/release/rds-csi /usr/local/bin/rds-csi

FROM debian:bookworm-slim
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
