//! The attachment rules, told as operators meet them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use super::*;
use crate::error::Error;
use crate::observability::metrics::Metrics;

const V: &str = "pvc-0001";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn table() -> AttachmentTable {
    AttachmentTable::new(TableConfig::default())
}

fn req(volume: &str, node: &str, access: RequestedAccess) -> PublishRequest<'static> {
    // Leaked test strings keep the fixtures one-liners; a few bytes per test.
    PublishRequest {
        volume: Box::leak(volume.to_owned().into_boxed_str()),
        node: Box::leak(node.to_owned().into_boxed_str()),
        access,
        migration_timeout: MigrationTimeout::default(),
    }
}

fn rwo(volume: &str, node: &str) -> PublishRequest<'static> {
    req(volume, node, RequestedAccess::SingleNode)
}

fn rwx(volume: &str, node: &str) -> PublishRequest<'static> {
    req(volume, node, RequestedAccess::MultiNodeBlock)
}

fn status(e: AttachError) -> Status {
    Status::from(Error::from(e))
}

/// Publishes and expects success; returns the effects.
fn ok(t: &AttachmentTable, r: &PublishRequest<'_>, now: Instant) -> Vec<Effect> {
    let out = t.publish(r, now);
    assert!(out.result.is_ok(), "{:?}", out.result);
    out.effects
}

/// Publishes and expects a refusal; returns the status and the effects.
fn refused(t: &AttachmentTable, r: &PublishRequest<'_>, now: Instant) -> (Status, Vec<Effect>) {
    let out = t.publish(r, now);
    let e = out.result.expect_err("publish should be refused");
    (status(e), out.effects)
}

fn assert_mentions(s: &Status, words: &[&str]) {
    for w in words {
        assert!(
            s.message().contains(w),
            "{w:?} missing from {:?}",
            s.message()
        );
    }
}

fn attached(volume: &str, node: &str) -> Effect {
    Effect::Attached {
        volume: volume.into(),
        node: node.into(),
    }
}

fn detached(volume: &str, node: &str) -> Effect {
    Effect::Detached {
        volume: volume.into(),
        node: node.into(),
    }
}

// ---- RWO ----------------------------------------------------------------------------------

#[test]
fn rwo_first_publish_attaches() {
    let (t, now) = (table(), Instant::now());
    assert_eq!(ok(&t, &rwo(V, "a"), now), vec![attached(V, "a")]);
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn rwo_publish_to_the_same_node_again_is_idempotent_with_no_effects() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo(V, "a"), now);
    assert_eq!(ok(&t, &rwo(V, "a"), now + secs(1)), vec![]);
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn rwo_second_node_is_refused_naming_the_holder_and_the_remedy() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo(V, "node-a"), now);
    let (s, fx) = refused(&t, &rwo(V, "node-b"), now + secs(1));
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert_mentions(
        &s,
        &[
            V,
            "node-a",
            "node-b",
            "one node at a time",
            "Detach it from",
        ],
    );
    assert_eq!(
        fx,
        vec![Effect::Conflict {
            volume: V.into(),
            requested_node: "node-b".into(),
            holders: vec!["node-a".into()],
        }]
    );
    assert_eq!(t.published_nodes(V), vec!["node-a"]);
}

#[test]
fn stale_detach_time_never_evicts_a_live_holder() {
    // The earlier driver kept the detach time after a re-attach, so a second node arriving
    // within the grace period took a volume that a live node still held.
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo(V, "a"), now);
    t.unpublish(V, "a", now + secs(1));
    assert!(t.snapshot()[V].last_detach().is_some());
    assert_eq!(ok(&t, &rwo(V, "a"), now + secs(2)), vec![attached(V, "a")]);
    assert_eq!(
        t.snapshot()[V].last_detach(),
        None,
        "re-attach clears the window"
    );

    let (s, fx) = refused(&t, &rwo(V, "b"), now + secs(3));
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert_mentions(&s, &["\"a\""]);
    assert!(
        !fx.iter()
            .any(|e| matches!(e, Effect::GracePeriodUsed { .. })),
        "{fx:?}"
    );
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn a_new_node_takes_over_within_the_grace_period_and_it_is_recorded() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo(V, "a"), now);
    assert_eq!(t.unpublish(V, "a", now + secs(10)), vec![detached(V, "a")]);
    let fx = ok(&t, &rwo(V, "b"), now + secs(15));
    assert_eq!(
        fx,
        vec![
            Effect::GracePeriodUsed {
                volume: V.into(),
                node: "b".into(),
                previous_node: "a".into(),
                since_detach: secs(5),
            },
            attached(V, "b"),
        ]
    );
}

#[test]
fn the_same_node_coming_back_within_the_grace_period_is_not_a_handoff() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo(V, "a"), now);
    t.unpublish(V, "a", now + secs(1));
    assert_eq!(ok(&t, &rwo(V, "a"), now + secs(2)), vec![attached(V, "a")]);
}

#[test]
fn after_the_grace_window_a_takeover_is_a_plain_attach_and_the_entry_is_forgotten() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo(V, "a"), now);
    t.unpublish(V, "a", now);
    assert_eq!(t.len(), 1, "the grace window keeps the entry");
    assert_eq!(t.next_deadline(), Some(now + secs(30)));
    assert_eq!(ok(&t, &rwo(V, "b"), now + secs(30)), vec![attached(V, "b")]);

    t.unpublish(V, "b", now + secs(40));
    assert_eq!(t.sweep(now + secs(69)), vec![]);
    assert_eq!(t.len(), 1);
    assert_eq!(t.sweep(now + secs(70)), vec![]);
    assert_eq!(t.len(), 0, "a lapsed window leaves nothing behind");
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn without_a_grace_period_a_detached_volume_leaves_no_entry() {
    let t = AttachmentTable::new(TableConfig {
        grace_period: Duration::ZERO,
        ..TableConfig::default()
    });
    let now = Instant::now();
    ok(&t, &rwo(V, "a"), now);
    t.unpublish(V, "a", now);
    assert!(t.is_empty());
    assert_eq!(ok(&t, &rwo(V, "b"), now), vec![attached(V, "b")]);
}

#[test]
fn an_rwo_request_for_an_rwx_volume_held_elsewhere_is_a_conflict() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwx(V, "a"), now);
    let (s, fx) = refused(&t, &rwo(V, "b"), now);
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert!(matches!(fx[..], [Effect::Conflict { .. }]), "{fx:?}");
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn the_same_node_with_another_access_mode_is_already_exists() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo(V, "a"), now);
    let (s, fx) = refused(&t, &rwx(V, "a"), now);
    assert_eq!(s.code(), Code::AlreadyExists);
    assert_mentions(&s, &[V, "\"a\"", "ReadWriteOnce", "incompatible"]);
    assert!(
        matches!(
            fx[..],
            [Effect::Refused {
                reason: RefusalReason::IncompatibleMode,
                ..
            }]
        ),
        "{fx:?}"
    );
}

// ---- RWX ----------------------------------------------------------------------------------

#[test]
fn filesystem_rwx_is_refused_with_a_kubevirt_hint() {
    let (t, now) = (table(), Instant::now());
    let (s, fx) = refused(&t, &req(V, "a", RequestedAccess::MultiNodeFilesystem), now);
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_mentions(
        &s,
        &[V, "ReadWriteMany", "KubeVirt live migration", "block"],
    );
    assert_eq!(
        fx,
        vec![Effect::Refused {
            volume: V.into(),
            node: "a".into(),
            reason: RefusalReason::FilesystemRwx,
        }]
    );
    assert!(t.is_empty());
}

#[test]
fn a_second_node_of_an_rwx_block_volume_starts_a_migration() {
    let (t, now) = (table(), Instant::now());
    let mut first = rwx(V, "src");
    first.migration_timeout = MigrationTimeout::from_secs(120).unwrap();
    ok(&t, &first, now);
    let fx = ok(&t, &rwx(V, "dst"), now + secs(5));
    assert_eq!(
        fx,
        vec![
            attached(V, "dst"),
            Effect::MigrationStarted {
                volume: V.into(),
                source: "src".into(),
                target: "dst".into(),
                timeout: secs(120),
            },
        ]
    );
    assert_eq!(t.published_nodes(V), vec!["src", "dst"]);
    assert_eq!(t.next_deadline(), Some(now + secs(125)));
    let snap = t.snapshot();
    let m = snap[V].migration().unwrap();
    assert_eq!((m.source, m.target, m.timed_out), ("src", "dst", false));
}

#[test]
fn third_node_is_refused_during_migration() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwx(V, "node-a"), now);
    ok(&t, &rwx(V, "node-b"), now);
    let (s, fx) = refused(&t, &rwx(V, "node-c"), now + secs(1));
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert_mentions(
        &s,
        &[
            V,
            "node-a",
            "node-b",
            "node-c",
            "third",
            "Wait for the live migration",
        ],
    );
    assert_eq!(
        fx,
        vec![Effect::Conflict {
            volume: V.into(),
            requested_node: "node-c".into(),
            holders: vec!["node-a".into(), "node-b".into()],
        }]
    );
}

#[test]
fn migration_succeeds_when_the_source_detaches() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwx(V, "a"), now);
    ok(&t, &rwx(V, "b"), now + secs(10));
    let fx = t.unpublish(V, "a", now + secs(55));
    assert_eq!(
        fx,
        vec![
            detached(V, "a"),
            Effect::MigrationCompleted {
                volume: V.into(),
                source: "a".into(),
                target: "b".into(),
                duration: secs(45),
            },
        ]
    );
    assert_eq!(t.published_nodes(V), vec!["b"]);
    assert_eq!(
        t.next_deadline(),
        None,
        "no deadline left once the migration ends"
    );
}

#[test]
fn migration_fails_when_the_target_detaches_first_and_the_source_keeps_the_volume() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwx(V, "a"), now);
    ok(&t, &rwx(V, "b"), now);
    let fx = t.unpublish(V, "b", now + secs(90));
    assert_eq!(
        fx,
        vec![
            detached(V, "b"),
            Effect::MigrationFailed {
                volume: V.into(),
                source: "a".into(),
                target: "b".into(),
                reason: FailReason::TargetDetached,
                elapsed: secs(90),
            },
        ]
    );
    assert_eq!(t.published_nodes(V), vec!["a"]);
    // The rolled-back volume can migrate again.
    assert!(ok(&t, &rwx(V, "c"), now + secs(91))
        .iter()
        .any(|e| matches!(e, Effect::MigrationStarted { .. })));
}

#[test]
fn timeout_is_detected_by_the_sweep_not_only_at_next_publish() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwx(V, "a"), now);
    ok(&t, &rwx(V, "b"), now);
    let deadline = now + secs(300);
    assert_eq!(t.next_deadline(), Some(deadline));
    assert_eq!(t.sweep(deadline - Duration::from_millis(1)), vec![]);
    assert!(!t.migration_timed_out(V));

    let fx = t.sweep(deadline);
    assert_eq!(
        fx,
        vec![Effect::MigrationFailed {
            volume: V.into(),
            source: "a".into(),
            target: "b".into(),
            reason: FailReason::Timeout,
            elapsed: secs(300),
        }]
    );
    assert!(t.migration_timed_out(V));
    assert_eq!(t.next_deadline(), None);
    assert_eq!(
        t.sweep(deadline + secs(60)),
        vec![],
        "one result per migration"
    );
    assert_eq!(
        t.published_nodes(V),
        vec!["a", "b"],
        "the table cannot detach anyone"
    );
}

#[test]
fn timeout_is_detected_at_publish_when_the_sweep_has_not_run() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwx(V, "a"), now);
    ok(&t, &rwx(V, "b"), now);
    let (s, fx) = refused(&t, &rwx(V, "c"), now + secs(301));
    assert_eq!(s.code(), Code::FailedPrecondition);
    assert_mentions(&s, &["timed out after 5m0s", "\"a\"", "\"b\"", "\"c\""]);
    assert!(
        matches!(
            fx[..],
            [
                Effect::MigrationFailed {
                    reason: FailReason::Timeout,
                    ..
                },
                Effect::Conflict { .. }
            ]
        ),
        "{fx:?}"
    );
    assert_eq!(t.sweep(now + secs(400)), vec![], "already counted");
}

#[test]
fn after_a_timeout_any_new_node_is_refused_until_a_node_detaches() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwx(V, "a"), now);
    ok(&t, &rwx(V, "b"), now);
    t.sweep(now + secs(300));
    for n in ["c", "d"] {
        let (s, _) = refused(&t, &rwx(V, n), now + secs(310));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_mentions(&s, &["timed out", "detach"]);
    }
    assert_eq!(
        ok(&t, &rwx(V, "b"), now + secs(311)),
        vec![],
        "holders stay idempotent"
    );
    // The timed-out migration already had its result: the detach adds none.
    assert_eq!(t.unpublish(V, "a", now + secs(320)), vec![detached(V, "a")]);
    assert!(!t.migration_timed_out(V));
    let fx = ok(&t, &rwx(V, "c"), now + secs(321));
    assert!(
        fx.contains(&Effect::MigrationStarted {
            volume: V.into(),
            source: "b".into(),
            target: "c".into(),
            timeout: secs(300),
        }),
        "{fx:?}"
    );
}

// ---- unpublish, node deletion -------------------------------------------------------------

#[test]
fn unpublish_is_idempotent_for_unknown_volume_and_node() {
    let (t, now) = (table(), Instant::now());
    assert_eq!(t.unpublish("pvc-unknown", "a", now), vec![]);
    ok(&t, &rwo(V, "a"), now);
    assert_eq!(t.unpublish(V, "b", now), vec![]);
    assert_eq!(t.unpublish(V, "a", now), vec![detached(V, "a")]);
    assert_eq!(t.unpublish(V, "a", now), vec![]);
}

#[test]
fn clear_node_drops_its_attachments_and_ends_its_migrations() {
    let (t, now) = (table(), Instant::now());
    ok(&t, &rwo("pvc-r", "gone"), now);
    ok(&t, &rwo("pvc-other", "stays"), now);
    ok(&t, &rwx("pvc-m", "stays"), now);
    ok(&t, &rwx("pvc-m", "gone"), now);
    let mut fx = t.clear_node("gone", now + secs(20));
    fx.sort_by(|a, b| a.volume().cmp(b.volume()));
    assert_eq!(
        fx,
        vec![
            Effect::StaleCleared {
                volume: "pvc-m".into(),
                node: "gone".into(),
            },
            Effect::MigrationFailed {
                volume: "pvc-m".into(),
                source: "stays".into(),
                target: "gone".into(),
                reason: FailReason::NodeDeleted,
                elapsed: secs(20),
            },
            Effect::StaleCleared {
                volume: "pvc-r".into(),
                node: "gone".into(),
            },
        ]
    );
    assert!(t.published_nodes("pvc-r").is_empty());
    assert_eq!(
        t.snapshot().get("pvc-r"),
        None,
        "a deleted node opens no grace window"
    );
    assert_eq!(t.published_nodes("pvc-m"), vec!["stays"]);
    assert_eq!(t.published_nodes("pvc-other"), vec!["stays"]);
    assert_eq!(t.clear_node("gone", now + secs(21)), vec![]);
}

// ---- restart ------------------------------------------------------------------------------

fn record(volume: &str, mode: AccessMode, node: &str, at: Instant) -> RestoreRecord {
    RestoreRecord {
        volume: volume.into(),
        mode,
        migration_timeout: MigrationTimeout::from_secs(600).unwrap(),
        node: node.into(),
        attached_at: at,
    }
}

#[test]
fn restart_mid_migration_keeps_the_original_deadline() {
    let now = Instant::now();
    let started = now - secs(200);
    let t = table();
    // Input order is not attach order: the target's record comes first.
    let fx = t.restore(vec![
        record(V, AccessMode::RwxBlock, "dst", started),
        record(V, AccessMode::RwxBlock, "src", now - secs(3000)),
        record("pvc-solo", AccessMode::Rwo, "x", now - secs(5)),
    ]);
    assert_eq!(
        fx,
        vec![Effect::MigrationResumed {
            volume: V.into(),
            source: "src".into(),
            target: "dst".into(),
            started,
            deadline: started + secs(600),
        }]
    );
    assert_eq!(t.published_nodes(V), vec!["src", "dst"]);
    assert_eq!(t.published_nodes("pvc-solo"), vec!["x"]);
    assert_eq!(
        t.next_deadline(),
        Some(now + secs(400)),
        "not extended by the restart"
    );
    assert_eq!(t.sweep(now + secs(399)), vec![]);
    let fx = t.sweep(now + secs(400));
    assert!(
        matches!(
            &fx[..],
            [Effect::MigrationFailed { reason: FailReason::Timeout, elapsed, .. }] if *elapsed == secs(600)
        ),
        "{fx:?}"
    );
}

#[test]
fn restart_after_the_deadline_times_out_at_the_next_sweep() {
    let now = Instant::now();
    let t = table();
    t.restore(vec![
        record(V, AccessMode::RwxBlock, "a", now - secs(1000)),
        record(V, AccessMode::RwxBlock, "b", now - secs(900)),
    ]);
    assert!(t.next_deadline().unwrap() < now);
    assert!(!t.migration_timed_out(V));
    let fx = t.sweep(now);
    assert!(
        matches!(
            fx[..],
            [Effect::MigrationFailed {
                reason: FailReason::Timeout,
                ..
            }]
        ),
        "{fx:?}"
    );
    assert!(t.migration_timed_out(V));
}

#[test]
fn restore_reports_what_the_rules_refuse_and_keeps_the_earliest_holders() {
    let now = Instant::now();
    let t = table();
    let fx = t.restore(vec![
        record("pvc-rwo", AccessMode::Rwo, "late", now - secs(1)),
        record("pvc-rwo", AccessMode::Rwo, "early", now - secs(9)),
        record(V, AccessMode::RwxBlock, "a", now - secs(30)),
        record(V, AccessMode::RwxBlock, "b", now - secs(20)),
        record(V, AccessMode::RwxBlock, "c", now - secs(10)),
    ]);
    let conflicts: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Conflict {
                volume,
                requested_node,
                holders,
            } => Some((volume.as_str(), requested_node.as_str(), holders.len())),
            _ => None,
        })
        .collect();
    assert_eq!(conflicts, vec![(V, "c", 2), ("pvc-rwo", "late", 1)]);
    assert_eq!(t.published_nodes("pvc-rwo"), vec!["early"]);
    assert_eq!(t.published_nodes(V), vec!["a", "b"]);
}

// ---- table mechanics ----------------------------------------------------------------------

#[test]
fn shards_are_a_power_of_two_and_volumes_spread_over_them() {
    let t = AttachmentTable::new(TableConfig {
        shards: 10,
        ..TableConfig::default()
    });
    assert_eq!(t.shard_count(), 16);
    let t = table();
    let now = Instant::now();
    for i in 0..2000 {
        ok(&t, &rwo(&format!("pvc-{i:08x}"), "a"), now);
    }
    assert_eq!(t.len(), 2000);
    // Each of the 64 shards should get about 31; a broken hash puts them in a few.
    let snap = t.snapshot();
    assert_eq!(snap.len(), 2000);
    let used: HashSet<usize> = snap
        .keys()
        .map(|k| super::table::shard_index_for_tests(k, 63))
        .collect();
    assert_eq!(used.len(), 64);
}

#[test]
fn published_nodes_of_an_unknown_volume_is_empty() {
    assert!(table().published_nodes("nope").is_empty());
    assert!(!table().migration_timed_out("nope"));
}

// ---- errors, events, metrics --------------------------------------------------------------

#[test]
fn every_refusal_maps_to_its_csi_code() {
    let cases = [
        (
            AttachError::HeldByAnotherNode {
                volume: V.into(),
                requested: "b".into(),
                holder: "a".into(),
            },
            Code::FailedPrecondition,
        ),
        (
            AttachError::MigrationInProgress {
                volume: V.into(),
                requested: "c".into(),
                source_node: "a".into(),
                target_node: "b".into(),
            },
            Code::FailedPrecondition,
        ),
        (
            AttachError::MigrationTimedOut {
                volume: V.into(),
                requested: "c".into(),
                source_node: "a".into(),
                target_node: "b".into(),
                timeout: secs(300),
            },
            Code::FailedPrecondition,
        ),
        (
            AttachError::FilesystemRwx { volume: V.into() },
            Code::InvalidArgument,
        ),
        (
            AttachError::IncompatibleMode {
                volume: V.into(),
                node: "a".into(),
                attached_as: AccessMode::Rwo,
                requested: AccessMode::RwxBlock,
            },
            Code::AlreadyExists,
        ),
    ];
    for (e, code) in cases {
        let s = status(e.clone());
        assert_eq!(s.code(), code, "{e:?}");
        assert_mentions(&s, &[V]);
    }
}

#[test]
fn go_durations_read_like_kubernetes() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::from_nanos(100), "100ns"),
        (Duration::from_micros(1), "1µs"),
        (Duration::from_micros(1500), "1.5ms"),
        (Duration::from_millis(250), "250ms"),
        (Duration::from_millis(1500), "1.5s"),
        (secs(45), "45s"),
        (secs(90), "1m30s"),
        (secs(300), "5m0s"),
        (Duration::from_millis(120_500), "2m0.5s"),
        (secs(3600), "1h0m0s"),
        (Duration::from_millis(3_661_500), "1h1m1.5s"),
        (secs(100 * 3600), "100h0m0s"),
    ];
    for (d, want) in cases {
        assert_eq!(go_duration(d), want, "{d:?}");
    }
}

#[test]
fn migration_event_messages_match_the_go_driver() {
    let started = Effect::MigrationStarted {
        volume: V.into(),
        source: "A".into(),
        target: "B".into(),
        timeout: secs(300),
    };
    let completed = Effect::MigrationCompleted {
        volume: V.into(),
        source: "A".into(),
        target: "B".into(),
        duration: secs(45),
    };
    let failed = Effect::MigrationFailed {
        volume: V.into(),
        source: "A".into(),
        target: "B".into(),
        reason: FailReason::Timeout,
        elapsed: secs(90),
    };
    let ev = |e: &Effect| event_for(e).unwrap();
    assert_eq!(ev(&started).message, "source: A, target: B, timeout: 5m0s");
    assert_eq!(ev(&started).reason.as_str(), "MigrationStarted");
    assert_eq!(
        ev(&completed).message,
        "source: A → target: B (duration: 45s)"
    );
    assert_eq!(ev(&completed).event_type, EventType::Normal);
    assert_eq!(
        ev(&failed).message,
        "migration timed out (source: A, target: B, elapsed: 1m30s)"
    );
    assert_eq!(ev(&failed).event_type, EventType::Warning);
    assert_eq!(ev(&failed).event_type.as_str(), "Warning");
}

/// Values of every sample of `name` in a text exposition (`name{..} v` or `name v`).
fn samples(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn every_declared_metric_is_recorded_and_every_event_can_fire() {
    let metrics = Metrics::new("controller");
    let am = AttachmentMetrics::new(&metrics);
    let (t, now) = (table(), Instant::now());
    let mut fx = Vec::new();
    let publish = |r: PublishRequest<'_>, at: Instant| {
        let out = am.timed(Operation::Publish, || t.publish(&r, at));
        out.effects
    };
    // RWO: attach, conflict, detach, grace-period takeover; filesystem RWX refusal.
    fx.extend(publish(rwo("pvc-rwo", "n1"), now));
    fx.extend(publish(rwo("pvc-rwo", "n2"), now));
    fx.extend(publish(
        req("pvc-fs", "n1", RequestedAccess::MultiNodeFilesystem),
        now,
    ));
    fx.extend(t.unpublish("pvc-rwo", "n1", now + secs(1)));
    fx.extend(publish(rwo("pvc-rwo", "n2"), now + secs(2)));
    // Migrations: success, rolled back, timed out; a node deletion.
    for v in ["pvc-ok", "pvc-back", "pvc-slow"] {
        fx.extend(publish(rwx(v, "n1"), now));
        fx.extend(publish(rwx(v, "n2"), now + secs(10)));
    }
    am.record(&fx);
    assert_eq!(am.active_migrations.get(), 3);
    let mut all = std::mem::take(&mut fx);
    fx.extend(t.unpublish("pvc-ok", "n1", now + secs(70)));
    fx.extend(t.unpublish("pvc-back", "n2", now + secs(80)));
    fx.extend(t.sweep(now + secs(310)));
    fx.extend(publish(rwo("pvc-gone", "n3"), now));
    fx.extend(t.clear_node("n3", now + secs(400)));
    fx.extend(t.restore(vec![
        record("pvc-r", AccessMode::RwxBlock, "n1", now),
        record("pvc-r", AccessMode::RwxBlock, "n2", now + secs(1)),
    ]));
    am.record(&fx);
    assert_eq!(am.active_migrations.get(), 1, "the resumed migration");
    all.extend(fx);

    // What the controller's event sink does: post each effect's event, count it.
    let mut fired = HashSet::new();
    for e in &all {
        if let Some(ev) = event_for(e) {
            am.event_posted(ev.reason);
            fired.insert(ev.reason);
        }
    }
    assert_eq!(fired.len(), EventReason::ALL.len(), "{fired:?}");
    am.observe_operation(Operation::Unpublish, Duration::from_micros(3));

    let text = metrics.render();
    for name in metrics::NAMES {
        let values = match name {
            metrics::MIGRATION_DURATION_SECONDS | metrics::OPERATION_DURATION_SECONDS => {
                samples(&text, &format!("{name}_count"))
            }
            _ => samples(&text, name),
        };
        assert!(
            values.iter().any(|v| *v > 0.0),
            "{name} never recorded:\n{text}"
        );
    }
    assert_eq!(
        samples(
            &text,
            &format!("{}{{result=\"timeout\"}}", metrics::MIGRATIONS_TOTAL)
        ),
        vec![1.0]
    );
    assert_eq!(
        samples(
            &text,
            &format!("{}{{result=\"failed\"}}", metrics::MIGRATIONS_TOTAL)
        ),
        vec![1.0]
    );
    assert_eq!(
        samples(
            &text,
            &format!("{}{{result=\"success\"}}", metrics::MIGRATIONS_TOTAL)
        ),
        vec![1.0]
    );
    assert_eq!(
        samples(
            &text,
            &format!("{}{{status=\"error\"}}", metrics::ATTACH_TOTAL)
        ),
        vec![1.0]
    );
    assert_eq!(samples(&text, metrics::GRACE_PERIOD_USED_TOTAL), vec![1.0]);
    // Bounded labels only: no volume or node id leaks into a series.
    for id in ["pvc-", "n1", "n2", "n3"] {
        assert!(!text.contains(id), "{id} in metrics:\n{text}");
    }
}
