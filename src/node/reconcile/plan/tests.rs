use super::*;
use crate::node::stage_record::BootId;
use node_io::sysfs;
use node_io::testing::{FakeSys, NS1};

const PREFIX: &str = "nqn.2000-02.com.mikrotik:pvc-";
const A: &str = "nqn.2000-02.com.mikrotik:pvc-a";
const B: &str = "nqn.2000-02.com.mikrotik:pvc-b";
const ORPHAN: &str = "nqn.2000-02.com.mikrotik:pvc-orphan";
const BOOT: &str = "nqn.2000-02.com.mikrotik:boot-disk";

const THIS_BOOT: &str = "6f1c0a4e-8a3b-4c1d-9e2f-0123456789ab";
const EARLIER_BOOT: &str = "11111111-2222-4333-8444-555555555555";

fn rec(vol: &str, nqn: &str) -> StageRecord {
    super::super::tests::nvme_record(vol, nqn, BootId::parse(THIS_BOOT).unwrap())
}

/// One pass's decision over `records` and `controllers`, in the running boot.
fn plan_of(
    records: &[StageRecord],
    controllers: &[Controller],
    last: &BTreeSet<String>,
    backoff: &HashMap<String, Backoff>,
    now: Instant,
) -> Plan {
    plan(&Inputs {
        controllers,
        records,
        unreadable: 0,
        prefix: PREFIX,
        boot: &BootId::parse(THIS_BOOT).unwrap(),
        orphans_last_pass: last,
        backoff,
        now,
        drop_stale: false,
    })
}

/// The first pass's decision (no orphans seen before, no backoff) over `records` and the
/// controllers in `s`.
fn first_plan(records: &[StageRecord], s: &FakeSys) -> Plan {
    let no_orphans = BTreeSet::new();
    plan_of(
        records,
        &controllers(s),
        &no_orphans,
        &HashMap::new(),
        Instant::now(),
    )
}

fn reconnect(volume_id: &str) -> Action {
    Action::Reconnect {
        volume_id: volume_id.into(),
    }
}

fn controllers(s: &FakeSys) -> Vec<Controller> {
    sysfs::list_controllers(s.root()).unwrap()
}

#[test]
fn a_staged_volume_without_controller_is_reconnected_and_a_live_one_is_left_alone() {
    let s = FakeSys::new();
    s.controller(0, B, 4420, "live")
        .subsystem(0, B, &[0])
        .private_ns(0, &NS1);
    let recs = [rec("pvc-a", A), rec("pvc-b", B)];
    let p = first_plan(&recs, &s);
    assert_eq!(p.actions, vec![reconnect("pvc-a")]);
    assert!(p.orphans.is_empty());
}

#[test]
fn a_controller_being_deleted_counts_as_lost_and_a_connecting_one_as_present() {
    let s = FakeSys::new();
    s.controller(0, A, 4420, "deleting")
        .controller(1, B, 4420, "connecting");
    let recs = [rec("pvc-a", A), rec("pvc-b", B)];
    let p = first_plan(&recs, &s);
    assert_eq!(p.actions, vec![reconnect("pvc-a")]);
}

#[test]
fn reconnects_back_off_exponentially() {
    let s = FakeSys::new();
    let now = Instant::now();
    let base = Duration::from_secs(30);
    let b1 = Backoff::after_failure(None, base, now);
    let b2 = Backoff::after_failure(Some(b1), base, now);
    assert_eq!((b1.next_at - now, b2.next_at - now), (base, base * 2));
    let b9 = (0..9)
        .fold(None, |b, _| Some(Backoff::after_failure(b, base, now)))
        .unwrap();
    assert_eq!(b9.next_at - now, Duration::from_secs(600), "capped");
    let backoff = HashMap::from([("pvc-a".to_string(), b2)]);
    let recs = [rec("pvc-a", A)];
    assert!(
        plan_of(&recs, &controllers(&s), &BTreeSet::new(), &backoff, now)
            .actions
            .is_empty()
    );
    let later = now + base * 2;
    assert_eq!(
        plan_of(&recs, &controllers(&s), &BTreeSet::new(), &backoff, later)
            .actions
            .len(),
        1
    );
}

#[test]
fn an_orphan_is_disconnected_only_when_seen_twice_and_never_outside_the_prefix() {
    let s = FakeSys::new();
    s.controller(0, ORPHAN, 4420, "live")
        .controller(1, ORPHAN, 4421, "live")
        .controller(2, BOOT, 4420, "live")
        .subsystem(0, ORPHAN, &[0, 1])
        .mp_head(0, &NS1);
    let ctrls = controllers(&s);
    let first = plan_of(
        &[],
        &ctrls,
        &BTreeSet::new(),
        &HashMap::new(),
        Instant::now(),
    );
    assert!(
        first.actions.is_empty(),
        "a stage may be between connect and record"
    );
    assert_eq!(first.orphans, BTreeSet::from([ORPHAN.to_string()]));
    let second = plan_of(&[], &ctrls, &first.orphans, &HashMap::new(), Instant::now());
    assert_eq!(
        second.actions,
        vec![Action::DisconnectOrphan { nqn: ORPHAN.into() }],
        "one action per NQN, boot disk untouched"
    );
    // A record appearing in between (stage finished) owns it.
    let owned = plan_of(
        &[rec("pvc-orphan", ORPHAN)],
        &ctrls,
        &first.orphans,
        &HashMap::new(),
        Instant::now(),
    );
    assert!(owned.actions.is_empty() && owned.orphans.is_empty());
}

#[test]
fn loop_records_are_not_reconnected() {
    // A loop record's target is its backing file: nothing to reconnect.
    let r = StageRecord {
        target: Target::LoopFile("/data/pvc-a.img".into()),
        ..rec("pvc-a", A)
    };
    let p = plan_of(&[r], &[], &BTreeSet::new(), &HashMap::new(), Instant::now());
    assert!(p.actions.is_empty());
}

/// Issue 15.2: a record from an earlier boot and an empty sysfs — nothing is reconnected
/// (another node may own the volume now), its NQN still counts as owned, and it is dropped
/// only once the grace period is over.
#[test]
fn a_record_from_an_earlier_boot_is_never_reconnected_and_is_dropped_after_the_grace() {
    let s = FakeSys::new();
    s.controller(0, B, 4420, "live");
    let old = StageRecord {
        boot_id: Some(BootId::parse(EARLIER_BOOT).unwrap()),
        ..rec("pvc-a", A)
    };
    let legacy = StageRecord {
        boot_id: None,
        ..rec("pvc-b", B)
    };
    let recs = [old, legacy];
    let boot = BootId::parse(THIS_BOOT).unwrap();
    let ctrls = controllers(&s);
    let seen = BTreeSet::from([B.to_string()]);
    let backoff = HashMap::new();
    let inputs = |drop_stale| Inputs {
        controllers: &ctrls,
        records: &recs,
        unreadable: 0,
        prefix: PREFIX,
        boot: &boot,
        orphans_last_pass: &seen,
        backoff: &backoff,
        now: Instant::now(),
        drop_stale,
    };
    let p = plan(&inputs(false));
    assert_eq!(p, Plan::default(), "no reconnect, B's controller is owned");
    let p = plan(&inputs(true));
    assert_eq!(
        p.actions,
        vec![
            Action::DropStale {
                volume_id: "pvc-a".into()
            },
            Action::DropStale {
                volume_id: "pvc-b".into()
            }
        ]
    );
}

/// A record that cannot be read might own any controller: no orphan is disconnected, while
/// the readable records are still reconnected.
#[test]
fn an_unreadable_record_stops_orphan_disconnects_but_not_reconnects() {
    let s = FakeSys::new();
    s.controller(0, ORPHAN, 4420, "live");
    let ctrls = controllers(&s);
    let seen = BTreeSet::from([ORPHAN.to_string()]);
    let recs = [rec("pvc-a", A)];
    let boot = BootId::parse(THIS_BOOT).unwrap();
    let p = plan(&Inputs {
        controllers: &ctrls,
        records: &recs,
        unreadable: 1,
        prefix: PREFIX,
        boot: &boot,
        orphans_last_pass: &seen,
        backoff: &HashMap::new(),
        now: Instant::now(),
        drop_stale: false,
    });
    assert_eq!(p.actions, vec![reconnect("pvc-a")]);
}
