//! Random interleavings of publish / unpublish / sweep / clear_node over a few volumes and
//! nodes, with a driven clock: the table never breaks the fencing rules, every migration ends
//! exactly once, and the active-migrations gauge follows the table.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::observability::metrics::Metrics;

const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];
/// Two RWO volumes and two RWX block volumes with different migration timeouts.
const VOLUMES: [(&str, RequestedAccess, u64); 4] = [
    ("rwo-0", RequestedAccess::SingleNode, 300),
    ("rwo-1", RequestedAccess::SingleNode, 300),
    ("rwx-0", RequestedAccess::MultiNodeBlock, 30),
    ("rwx-1", RequestedAccess::MultiNodeBlock, 60),
];

#[derive(Clone, Debug)]
enum Op {
    Publish(usize, usize),
    Unpublish(usize, usize),
    Sweep,
    ClearNode(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let v = 0..VOLUMES.len();
    let n = 0..NODES.len();
    prop_oneof![
        5 => (v.clone(), n.clone()).prop_map(|(v, n)| Op::Publish(v, n)),
        3 => (v, n.clone()).prop_map(|(v, n)| Op::Unpublish(v, n)),
        1 => Just(Op::Sweep),
        1 => n.prop_map(Op::ClearNode),
        // Short steps stay inside grace windows and deadlines; long ones cross them.
        3 => prop_oneof![0..20u64, 25..70u64].prop_map(Op::Advance),
    ]
}

fn request(v: usize, n: usize) -> PublishRequest<'static> {
    let (volume, access, timeout) = VOLUMES[v];
    PublishRequest {
        volume,
        node: NODES[n],
        access,
        migration_timeout: MigrationTimeout::from_secs(timeout).unwrap(),
    }
}

/// A held volume as compared across a restart: id, nodes, (deadline, timed out).
type Held = (String, Vec<String>, Option<(Instant, bool)>);

fn limit(mode: AccessMode) -> usize {
    match mode {
        AccessMode::Rwo => 1,
        AccessMode::RwxBlock => 2,
    }
}

fn nodes_of(snap: &BTreeMap<String, VolumeState>, v: &str) -> Vec<String> {
    snap.get(v)
        .map(|st| st.nodes().iter().map(|a| a.node.clone()).collect())
        .unwrap_or_default()
}

/// Runs `ops`, checking every rule after each step; returns the table and the final time.
fn run(ops: &[Op], grace: Duration, min_step: Duration) -> (AttachmentTable, Instant) {
    let t = AttachmentTable::new(TableConfig {
        shards: 4,
        grace_period: grace,
    });
    let metrics = Metrics::new("controller");
    let am = AttachmentMetrics::new(&metrics);
    let mut now = Instant::now();
    // Volumes with a migration started and not yet ended, per the effects.
    let mut open: HashSet<String> = HashSet::new();

    for op in ops {
        let before = t.snapshot();
        let effects = match *op {
            Op::Publish(v, n) => {
                let r = request(v, n);
                let out = t.publish(&r, now);
                let was = before.get(r.volume);
                let new_node = !nodes_of(&before, r.volume).iter().any(|x| x == r.node);
                if out.result.is_ok() {
                    assert!(t.published_nodes(r.volume).iter().any(|x| x == r.node));
                    if new_node {
                        // Never a new node beside a migration, timed out or not, nor once
                        // the deadline has passed without anyone detaching.
                        assert!(
                            was.and_then(|st| st.migration()).is_none(),
                            "{op:?} joined a migration: {was:?}"
                        );
                    }
                } else {
                    assert_eq!(
                        nodes_of(&t.snapshot(), r.volume),
                        nodes_of(&before, r.volume)
                    );
                }
                out.effects
            }
            Op::Unpublish(v, n) => {
                let fx = t.unpublish(VOLUMES[v].0, NODES[n], now);
                assert!(!t
                    .published_nodes(VOLUMES[v].0)
                    .iter()
                    .any(|x| x == NODES[n]));
                fx
            }
            Op::Sweep => {
                let fx = t.sweep(now);
                for st in t.snapshot().values() {
                    if let Some(m) = st.migration() {
                        assert!(m.timed_out || m.deadline > now, "sweep missed {st:?}");
                    }
                    if let Some(at) = st.last_detach() {
                        assert!(at + grace > now, "lapsed window kept: {st:?}");
                    }
                }
                fx
            }
            Op::ClearNode(n) => {
                let fx = t.clear_node(NODES[n], now);
                assert!(t
                    .snapshot()
                    .values()
                    .all(|st| st.nodes().iter().all(|a| a.node != NODES[n])));
                fx
            }
            Op::Advance(s) => {
                now += Duration::from_secs(s);
                Vec::new()
            }
        };
        now += min_step;
        am.record(&effects);

        for e in &effects {
            match e {
                Effect::MigrationStarted { volume, .. }
                | Effect::MigrationResumed { volume, .. } => {
                    assert!(open.insert(volume.clone()), "second start: {e:?}")
                }
                Effect::MigrationCompleted { volume, .. }
                | Effect::MigrationFailed { volume, .. } => {
                    assert!(open.remove(volume), "result without a start: {e:?}")
                }
                _ => {}
            }
        }

        let snap = t.snapshot();
        let mut expected_deadline: Option<Instant> = None;
        for (v, st) in &snap {
            assert!(st.nodes().len() <= limit(st.mode()), "{st:?}");
            assert_eq!(st.migration().is_some(), st.nodes().len() == 2, "{st:?}");
            assert!(
                st.last_detach().is_none() || st.nodes().is_empty(),
                "{st:?}"
            );
            assert!(
                !st.nodes().is_empty() || st.last_detach().is_some(),
                "idle entry kept: {st:?}"
            );
            assert_eq!(
                st.migration_in_progress(),
                open.contains(v),
                "{st:?} vs {open:?}"
            );
            let due = match st.migration() {
                Some(m) if !m.timed_out => Some(m.deadline),
                _ => st.last_detach().map(|at| at + grace),
            };
            expected_deadline = expected_deadline.into_iter().chain(due).min();
        }
        assert_eq!(t.next_deadline(), expected_deadline);
        let in_progress = snap
            .values()
            .filter(|st| st.migration_in_progress())
            .count();
        assert_eq!(am.active_migrations.get(), in_progress as i64);
    }
    (t, now)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_interleavings_never_break_the_rules(
        ops in prop::collection::vec(op(), 1..120),
        grace in prop_oneof![Just(0u64), Just(30u64)],
    ) {
        run(&ops, Duration::from_secs(grace), Duration::ZERO);
    }

    #[test]
    fn restoring_a_snapshot_rebuilds_the_same_attachments_and_deadlines(
        ops in prop::collection::vec(op(), 1..80),
    ) {
        // One second per step, so attach times are distinct and attach order is recoverable.
        let (t, now) = run(&ops, Duration::from_secs(30), Duration::from_secs(1));
        let records: Vec<RestoreRecord> = t
            .snapshot()
            .values()
            .flat_map(|st| {
                st.nodes().iter().map(|a| RestoreRecord {
                    volume: st.id().to_owned(),
                    mode: st.mode(),
                    migration_timeout: st.migration_timeout(),
                    node: a.node.clone(),
                    attached_at: a.attached_at,
                })
            })
            .collect();
        let fresh = AttachmentTable::default();
        let metrics = Metrics::new("controller");
        let am = AttachmentMetrics::new(&metrics);
        am.record(&fresh.restore(records));
        // A restart loses nothing but grace windows; timeouts come back at the sweep.
        // The original's effects belong to its own metrics, checked inside `run`.
        t.sweep(now);
        am.record(&fresh.sweep(now));
        let held = |tab: &AttachmentTable| -> Vec<Held> {
            tab.snapshot()
                .values()
                .filter(|st| !st.nodes().is_empty())
                .map(|st| (
                    st.id().to_owned(),
                    st.nodes().iter().map(|a| a.node.clone()).collect(),
                    st.migration().map(|m| (m.deadline, m.timed_out)),
                ))
                .collect()
        };
        prop_assert_eq!(held(&t), held(&fresh));
        let in_progress = fresh.snapshot().values().filter(|st| st.migration_in_progress()).count();
        prop_assert_eq!(am.active_migrations.get(), in_progress as i64);
    }
}
