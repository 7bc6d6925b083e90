//! Metrics registry, the `/metrics` `/healthz` `/readyz` endpoint, and tracing setup.

pub mod build_info;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod rpc;

pub use metrics::Metrics;
