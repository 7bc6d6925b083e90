//! The reconciler's decision for one pass: a pure function of (records, controllers, the
//! running boot, memory of the last pass, now), tested on fake sysfs trees.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use node_io::sysfs::Controller;

use crate::node::stage_record::{BootId, StageRecord};
use crate::node::transport::{under_prefix, Target};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The volume is staged in this boot but its NQN has no controller left: connect it
    /// again.
    Reconnect { volume_id: String },
    /// A controller under the prefix that no record owns, seen in two passes in a row.
    DisconnectOrphan { nqn: String },
    /// A record from an earlier boot that no NodeStage confirmed within the grace period:
    /// nothing it describes exists, and the kubelet does not want the volume here.
    DropStale { volume_id: String },
}

/// Per-volume retry state after failed reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub failures: u32,
    pub next_at: Instant,
}

impl Backoff {
    /// Exponential from `base`, at most ten minutes.
    pub fn after_failure(prev: Option<Backoff>, base: Duration, now: Instant) -> Backoff {
        let failures = prev.map_or(0, |b| b.failures) + 1;
        let delay = base
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(Duration::from_secs(600));
        Backoff {
            failures,
            next_at: now + delay,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Orphan NQNs seen in this pass (the next pass acts on those seen twice).
    pub orphans: BTreeSet<String>,
}

/// What one pass decides from.
pub struct Inputs<'a> {
    /// Listed BEFORE `records` are read: NodeStage saves its record before it connects, so a
    /// controller listed first whose record is not found afterwards really has no owner (and
    /// a second pass must agree before acting).
    pub controllers: &'a [Controller],
    pub records: &'a [StageRecord],
    /// Record files that could not be read: what they own is unknown, so no controller is
    /// taken for an orphan while there are any.
    pub unreadable: usize,
    pub prefix: &'a str,
    pub boot: &'a BootId,
    pub orphans_last_pass: &'a BTreeSet<String>,
    pub backoff: &'a HashMap<String, Backoff>,
    pub now: Instant,
    /// The grace period for records of earlier boots is over.
    pub drop_stale: bool,
}

/// Decides one pass.
///
/// A record from an earlier boot is never reconnected: after a reboot the kubelet stages
/// again what still belongs on this node, and another node may own the volume by now (for a
/// KubeVirt disk, reconnecting would expose the guest's data to this host). Its NQN still
/// counts as owned, so a controller of it is not taken for an orphan until the record goes.
pub fn plan(i: &Inputs) -> Plan {
    let mut out = Plan::default();
    for r in i.records {
        if !r.of_boot(i.boot) {
            if i.drop_stale {
                out.actions.push(Action::DropStale {
                    volume_id: r.volume_id.clone(),
                });
            }
            continue;
        }
        // Loop-transport records, or foreign NQNs, are not ours to reconnect.
        let Target::NvmeTcp(t) = &r.target else {
            continue;
        };
        if !under_prefix(i.prefix, t.nqn.as_str()) {
            continue;
        }
        let connected = i
            .controllers
            .iter()
            .any(|c| c.subsysnqn == t.nqn.as_str() && !c.state.is_gone());
        let waiting = i
            .backoff
            .get(&r.volume_id)
            .is_some_and(|b| b.next_at > i.now);
        if !connected && !waiting {
            out.actions.push(Action::Reconnect {
                volume_id: r.volume_id.clone(),
            });
        }
    }
    if i.unreadable > 0 {
        return out;
    }
    for c in i.controllers {
        let owned = i.records.iter().any(|r| r.target.key() == c.subsysnqn);
        if owned || c.state.is_gone() || !under_prefix(i.prefix, &c.subsysnqn) {
            continue;
        }
        if out.orphans.insert(c.subsysnqn.clone()) && i.orphans_last_pass.contains(&c.subsysnqn) {
            out.actions.push(Action::DisconnectOrphan {
                nqn: c.subsysnqn.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
