//! The CSI gRPC plumbing both roles share: the server on a unix socket or TCP
//! ([`server`], listen addresses in [`endpoint`]), the Identity service ([`identity`]), the
//! per-volume in-flight guard that answers ABORTED ([`inflight`]) and the RPC deadline taken
//! from `grpc-timeout` ([`deadline`]). It knows the CSI wire contract, not volumes or devices:
//! `controller/` and `node/` build on it (docs/architecture.md, "Layers").

pub mod deadline;
pub mod endpoint;
pub mod identity;
pub mod inflight;
pub mod server;

/// The CSI spec version whose wire contract this driver implements.
pub const CSI_SPEC_VERSION: &str = "1.12.0";
