//! ReadWriteMany block: the KubeVirt live migration (two nodes for the handoff, never a
//! third), its success, rollback and timeout; filesystem RWX refused.

use super::*;

#[test]
fn filesystem_rwx_is_refused_with_a_kubevirt_hint() {
    let (t, now) = (table(), Instant::now());
    let words = [V, "ReadWriteMany", "KubeVirt live migration", "block"];
    let fx = refused(&t, &req(V, "a", RequestedAccess::MultiNodeFilesystem), now)
        .with(Code::InvalidArgument, &words);
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
    let (t, now) = migrating("node-a", "node-b");
    let words = [
        V,
        "node-a",
        "node-b",
        "node-c",
        "third",
        "Wait for the live migration",
    ];
    let fx = refused(&t, &rwx(V, "node-c"), now + secs(1)).with(Code::FailedPrecondition, &words);
    assert_eq!(fx, vec![conflict("node-c", &["node-a", "node-b"])]);
}

#[test]
fn migration_succeeds_when_the_source_detaches() {
    let (t, now) = published(rwx(V, "a"));
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
    let (t, now) = migrating("a", "b");
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
    let (t, now) = migrating("a", "b");
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
    let (t, now) = migrating("a", "b");
    let words = ["timed out after 5m0s", "\"a\"", "\"b\"", "\"c\""];
    let fx = refused(&t, &rwx(V, "c"), now + secs(301)).with(Code::FailedPrecondition, &words);
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
    let (t, now) = migrating("a", "b");
    t.sweep(now + secs(300));
    for n in ["c", "d"] {
        let words = ["timed out", "detach"];
        refused(&t, &rwx(V, n), now + secs(310)).with(Code::FailedPrecondition, &words);
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
