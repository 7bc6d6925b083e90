//! The table's mechanics (shards), the CSI code of every refusal, and the events and
//! metrics the rules emit.

use super::*;

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
    for series in [
        format!("{}{{result=\"timeout\"}}", metrics::MIGRATIONS_TOTAL),
        format!("{}{{result=\"failed\"}}", metrics::MIGRATIONS_TOTAL),
        format!("{}{{result=\"success\"}}", metrics::MIGRATIONS_TOTAL),
        format!("{}{{status=\"error\"}}", metrics::ATTACH_TOTAL),
    ] {
        assert_eq!(samples(&text, &series), vec![1.0], "{series}");
    }
    assert_eq!(samples(&text, metrics::GRACE_PERIOD_USED_TOTAL), vec![1.0]);
    // Bounded labels only: no volume or node id leaks into a series.
    for id in ["pvc-", "n1", "n2", "n3"] {
        assert!(!text.contains(id), "{id} in metrics:\n{text}");
    }
}
