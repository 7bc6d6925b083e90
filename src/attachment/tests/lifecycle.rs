//! Unpublish, node deletion and a controller restart restoring the table.

use super::*;

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
