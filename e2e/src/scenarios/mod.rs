//! The end-to-end scenarios, one module each. Each creates its own volumes, checks what the
//! kernel did on the nodes after every CSI call, and on failure releases what its calls took
//! (`E2e::cleanup`) so the next scenario starts clean.

mod expand;
mod fs_handoff;
mod holder;
mod latency;
mod migration;
mod reconnect;
mod restage;
mod target_lost;

pub use expand::expand;
pub use fs_handoff::fs_handoff;
pub use holder::holder;
pub use latency::latency;
pub use migration::migration;
pub use reconnect::reconnect;
pub use restage::restage;
pub use target_lost::target_lost;

/// Every scenario volume's size.
const GIB: i64 = 1 << 30;
