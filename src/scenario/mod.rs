//! A CSI scenario client: a development tool that walks volumes through their lives over the
//! CSI wire contract, shared by `rds-csi demo` (`src/demo/`) and the VM end-to-end driver
//! (`e2e/`).
//!
//! It knows the CSI gRPC services and nothing of the driver behind them (no controller, node
//! or RDS types): [`channel`] dials a plugin's endpoint, [`CsiClient`] makes typed calls
//! (create, publish, stage, publish-node, unpublish, unstage, delete, snapshot, expand) with a
//! deadline each and remembers what it took so a scenario can release exactly that, also
//! after a failure; [`Layout`] says where kubelet-like staging and target paths live;
//! [`Report`] times steps and keeps their outcomes for the tool's own table or summary.

pub mod channel;
mod client;
mod error;
pub mod exposition;
mod layout;
mod report;
mod taken;
mod volume;

pub use client::CsiClient;
pub use error::CallError;
pub use layout::Layout;
pub use report::{timed, Outcome, Report, Row};
pub use taken::{Held, Holding, Taken};
pub use volume::{block_capability, mount_capability, ContentSource, Volume};
