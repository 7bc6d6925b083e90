//! The attachment table: which nodes each volume is published to, and the rules that fence it
//! (docs/architecture.md, "Correctness rules", rule 9).
//!
//! - RWO: one node. Another node is refused (FAILED_PRECONDITION naming the holder) until the
//!   holder detaches; a handoff grace period only describes takeovers of fully detached volumes.
//! - RWX is accepted for block volumes only, and a second node only as a KubeVirt live
//!   migration with an enforced timeout; a third node is refused.
//!
//! Pure state and rules: no I/O, no clock (every mutating call takes `now`), no async. Calls
//! return [`Effect`]s; the controller turns them into events, metrics and logs after the shard
//! lock is released.

mod effect;
mod error;
pub mod events;
mod hash;
mod key;
pub mod metrics;
mod model;
mod nodes;
pub mod persist;
mod rules;
mod state;
mod table;
mod volume_map;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use effect::{Effect, FailReason, RefusalReason};
pub use error::AttachError;
pub use events::{event_for, go_duration, Event, EventReason, EventType};
pub use metrics::{AttachmentMetrics, Operation};
pub use model::{AccessMode, MigrationTimeout, PublishRequest, RequestedAccess, RestoreRecord};
pub use state::{Attachment, MigrationView, VolumeState};
pub use table::{AttachmentTable, Outcome, TableConfig};
pub use volume_map::VolumeMap;
