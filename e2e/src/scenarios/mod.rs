//! The end-to-end scenarios, one module each. Each creates its own volumes, checks what the
//! kernel did on the nodes after every CSI call, and on failure releases what its calls took
//! (`E2e::releasing`) so the next scenario starts clean.

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

/// ctrl_loss_tmo (seconds) of the volumes created with [`QUICK_LOSS`].
const CTRL_LOSS_TMO: u64 = 8;

/// StorageClass parameters of a volume whose host gives up on a lost target within seconds:
/// ctrl_loss_tmo [`CTRL_LOSS_TMO`], a reconnect try every second, keep-alive 2 s.
const QUICK_LOSS: [(&str, &str); 3] = [
    ("ctrlLossTmo", "8"),
    ("reconnectDelay", "1"),
    ("keepAliveTmo", "2"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_loss_sets_the_ctrl_loss_tmo_the_scenarios_wait_for() {
        assert!(QUICK_LOSS.contains(&("ctrlLossTmo", CTRL_LOSS_TMO.to_string().as_str())));
    }
}
