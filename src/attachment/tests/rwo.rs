//! ReadWriteOnce: one node at a time, the grace period for a handoff, mode conflicts.

use super::*;

#[test]
fn rwo_first_publish_attaches() {
    let (t, now) = (table(), Instant::now());
    assert_eq!(ok(&t, &rwo(V, "a"), now), vec![attached(V, "a")]);
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn rwo_publish_to_the_same_node_again_is_idempotent_with_no_effects() {
    let (t, now) = published(rwo(V, "a"));
    assert_eq!(ok(&t, &rwo(V, "a"), now + secs(1)), vec![]);
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn rwo_second_node_is_refused_naming_the_holder_and_the_remedy() {
    let (t, now) = published(rwo(V, "node-a"));
    let words = [
        V,
        "node-a",
        "node-b",
        "one node at a time",
        "Detach it from",
    ];
    let fx = refused(&t, &rwo(V, "node-b"), now + secs(1)).with(Code::FailedPrecondition, &words);
    assert_eq!(fx, vec![conflict("node-b", &["node-a"])]);
    assert_eq!(t.published_nodes(V), vec!["node-a"]);
}

#[test]
fn stale_detach_time_never_evicts_a_live_holder() {
    // The earlier driver kept the detach time after a re-attach, so a second node arriving
    // within the grace period took a volume that a live node still held.
    let (t, now) = published(rwo(V, "a"));
    t.unpublish(V, "a", now + secs(1));
    assert!(t.snapshot()[V].last_detach().is_some());
    assert_eq!(ok(&t, &rwo(V, "a"), now + secs(2)), vec![attached(V, "a")]);
    assert_eq!(
        t.snapshot()[V].last_detach(),
        None,
        "re-attach clears the window"
    );

    let words = ["\"a\""];

    let fx = refused(&t, &rwo(V, "b"), now + secs(3)).with(Code::FailedPrecondition, &words);
    assert!(
        !fx.iter()
            .any(|e| matches!(e, Effect::GracePeriodUsed { .. })),
        "{fx:?}"
    );
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn a_new_node_takes_over_within_the_grace_period_and_it_is_recorded() {
    let (t, now) = published(rwo(V, "a"));
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
    let (t, now) = published(rwo(V, "a"));
    t.unpublish(V, "a", now + secs(1));
    assert_eq!(ok(&t, &rwo(V, "a"), now + secs(2)), vec![attached(V, "a")]);
}

#[test]
fn after_the_grace_window_a_takeover_is_a_plain_attach_and_the_entry_is_forgotten() {
    let (t, now) = published(rwo(V, "a"));
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
    let (t, now) = published(rwx(V, "a"));
    let fx = refused(&t, &rwo(V, "b"), now).with(Code::FailedPrecondition, &[]);
    assert!(matches!(fx[..], [Effect::Conflict { .. }]), "{fx:?}");
    assert_eq!(t.published_nodes(V), vec!["a"]);
}

#[test]
fn the_same_node_with_another_access_mode_is_already_exists() {
    let (t, now) = published(rwo(V, "a"));
    let words = [V, "\"a\"", "ReadWriteOnce", "incompatible"];
    let fx = refused(&t, &rwx(V, "a"), now).with(Code::AlreadyExists, &words);
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
