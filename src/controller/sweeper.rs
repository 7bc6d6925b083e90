//! The deadline sweeper: ends migrations at their deadline (and forgets lapsed grace windows)
//! without waiting for the next RPC. It sleeps until the table's earliest deadline, or until a
//! publish or unpublish may have changed it. Every replica sweeps its own table (a replica
//! that does not lead must know a migration timed out when it starts leading); only the leader
//! reports what the sweep found ([`Controller::apply`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::attachment::Operation;

/// How long the sweeper sleeps when the table has no deadline (a publish wakes it anyway).
const IDLE: Duration = Duration::from_secs(3600);

pub async fn run_sweeper(ctl: Arc<Controller>, stop: CancellationToken) {
    loop {
        let sleep = ctl
            .fencing
            .table
            .next_deadline()
            .map_or(IDLE, |at| at.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctl.fencing.wake_sweeper.notified() => continue,
            _ = tokio::time::sleep(sleep) => {}
        }
        ctl.fence(Operation::Sweep, |table, now| ((), table.sweep(now)))
            .await;
    }
}
