//! CSI v1.12 messages and gRPC services, generated at build time from `proto/csi.proto`.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod v1 {
    tonic::include_proto!("csi.v1");
}
