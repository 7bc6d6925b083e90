//! Conversions on JSON fixtures shaped like what `kubectl get -o json` returns.

use std::time::{Duration, Instant, UNIX_EPOCH};

use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use serde_json::{json, Value};

use super::*;
use crate::attachment::{AccessMode, MigrationTimeout};

const DRIVER: &str = "rds.csi.mikrotik.com";
/// 2026-11-02T10:00:00Z
const ATTACH_UNIX: u64 = 1_793_613_600;

fn va_json(name: &str, attacher: &str, node: &str, pv: &str, attached: bool) -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {
            "name": name,
            "uid": "6b3f1c2e-8d0a-4e55-9a41-0d2c5e7f9a10",
            "resourceVersion": "482913",
            "creationTimestamp": "2026-11-02T10:00:00Z",
            "finalizers": ["external-attacher/rds-csi-mikrotik-com"],
            "annotations": {"csi.alpha.kubernetes.io/node-id": node}
        },
        "spec": {
            "attacher": attacher,
            "nodeName": node,
            "source": {"persistentVolumeName": pv}
        },
        "status": {"attached": attached}
    })
}

fn va(name: &str, node: &str, pv: &str) -> VolumeAttachment {
    serde_json::from_value(va_json(name, DRIVER, node, pv, true)).unwrap()
}

fn pv_json(name: &str, handle: &str, modes: &[&str], volume_mode: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER},
            "finalizers": ["kubernetes.io/pv-protection", "external-attacher/rds-csi-mikrotik-com"],
            "creationTimestamp": "2026-11-02T09:59:30Z"
        },
        "spec": {
            "accessModes": modes,
            "capacity": {"storage": "10Gi"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "name": "vm-disk",
                "namespace": "vms",
                "uid": "a1b2c3d4-0000-4000-8000-000000000001",
                "resourceVersion": "482700"
            },
            "csi": {
                "driver": DRIVER,
                "volumeHandle": handle,
                "fsType": "ext4",
                "volumeAttributes": {
                    "nqn": format!("nqn.2000-02.com.mikrotik:{handle}"),
                    "nvmeAddress": "10.0.0.5",
                    "nvmePort": "4420",
                    "migrationTimeoutSeconds": "600",
                    "storage.kubernetes.io/csiProvisionerIdentity": "1793610000000-8081-rds.csi.mikrotik.com"
                }
            },
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "rds-block",
            "volumeMode": volume_mode
        },
        "status": {"phase": "Bound"}
    })
}

fn pv_from(v: Value) -> PersistentVolume {
    serde_json::from_value(v).unwrap()
}

fn pv(name: &str, modes: &[&str], volume_mode: &str) -> PersistentVolume {
    pv_from(pv_json(name, name, modes, volume_mode))
}

fn clock_at(unix: u64) -> Clock {
    Clock {
        instant: Instant::now(),
        wall: UNIX_EPOCH + Duration::from_secs(unix),
    }
}

#[test]
fn rwx_block_attachment_becomes_a_record_with_its_attach_time_and_timeout() {
    let clock = clock_at(ATTACH_UNIX + 90);
    let r = restore_record(
        &va("csi-aaa", "node-a", "pvc-1"),
        Some(&pv("pvc-1", &["ReadWriteMany"], "Block")),
        DRIVER,
        &clock,
    )
    .unwrap();
    assert_eq!(r.warning, None);
    assert_eq!(r.record.volume, "pvc-1");
    assert_eq!(r.record.node, "node-a");
    assert_eq!(r.record.mode, AccessMode::RwxBlock);
    assert_eq!(r.record.migration_timeout.as_secs(), 600);
    assert_eq!(
        clock.instant.duration_since(r.record.attached_at),
        Duration::from_secs(90)
    );
}

#[test]
fn volume_id_is_the_volume_handle_not_the_pv_name() {
    let p = pv_from(pv_json(
        "pv-static",
        "pvc-handle",
        &["ReadWriteOnce"],
        "Filesystem",
    ));
    let r = restore_record(
        &va("csi-b", "node-a", "pv-static"),
        Some(&p),
        DRIVER,
        &clock_at(ATTACH_UNIX),
    )
    .unwrap();
    assert_eq!(r.record.volume, "pvc-handle");
}

#[test]
fn only_rwx_with_block_mode_is_rwx_block() {
    let cases = [
        (&["ReadWriteMany"][..], "Block", AccessMode::RwxBlock),
        (
            &["ReadWriteOnce", "ReadWriteMany"][..],
            "Block",
            AccessMode::RwxBlock,
        ),
        (&["ReadWriteMany"][..], "Filesystem", AccessMode::Rwo),
        (&["ReadWriteOnce"][..], "Block", AccessMode::Rwo),
        (&["ReadOnlyMany"][..], "Block", AccessMode::Rwo),
        (&["ReadWriteOncePod"][..], "Filesystem", AccessMode::Rwo),
    ];
    for (modes, vm, want) in cases {
        assert_eq!(access_mode(&pv("p", modes, vm)), want, "{modes:?} {vm}");
    }
    // volumeMode absent means Filesystem.
    let mut v = pv_json("p", "p", &["ReadWriteMany"], "Block");
    v["spec"].as_object_mut().unwrap().remove("volumeMode");
    assert_eq!(access_mode(&pv_from(v)), AccessMode::Rwo);
}

#[test]
fn absent_timeout_is_the_default_without_a_warning() {
    let mut v = pv_json("pvc-1", "pvc-1", &["ReadWriteMany"], "Block");
    v["spec"]["csi"]["volumeAttributes"]
        .as_object_mut()
        .unwrap()
        .remove("migrationTimeoutSeconds");
    let r = restore_record(
        &va("csi-a", "node-a", "pvc-1"),
        Some(&pv_from(v)),
        DRIVER,
        &clock_at(ATTACH_UNIX),
    )
    .unwrap();
    assert_eq!(r.record.migration_timeout, MigrationTimeout::default());
    assert_eq!(r.warning, None);
}

#[test]
fn invalid_or_out_of_range_timeout_keeps_the_fence_with_the_default_and_warns() {
    for bad in ["5", "7200", "ten", ""] {
        let mut v = pv_json("pvc-1", "pvc-1", &["ReadWriteMany"], "Block");
        v["spec"]["csi"]["volumeAttributes"]["migrationTimeoutSeconds"] = json!(bad);
        let r = restore_record(
            &va("csi-a", "node-a", "pvc-1"),
            Some(&pv_from(v)),
            DRIVER,
            &clock_at(ATTACH_UNIX),
        )
        .unwrap_or_else(|s| panic!("{bad:?} dropped the attachment: {s}"));
        assert_eq!(r.record.migration_timeout.as_secs(), 300, "{bad:?}");
        assert_eq!(r.record.node, "node-a");
        let w = r.warning.expect("a warning");
        assert!(
            w.contains("PersistentVolume pvc-1") && w.contains(&format!("{bad:?}")),
            "{w}"
        );
        assert!(w.contains("StorageClass"), "next step missing: {w}");
    }
}

#[test]
fn other_drivers_unattached_inline_and_missing_pvs_are_skipped_with_reasons() {
    let clock = clock_at(ATTACH_UNIX);
    let p = pv("pvc-1", &["ReadWriteOnce"], "Filesystem");
    // Why the VolumeAttachment `va` (JSON) of a volume whose PersistentVolume is `p` is skipped.
    let skip = |va: serde_json::Value| {
        restore_record(
            &serde_json::from_value(va).unwrap(),
            Some(&p),
            DRIVER,
            &clock,
        )
        .unwrap_err()
    };

    let s = skip(va_json("csi-o", "ebs.csi.aws.com", "node-a", "pvc-1", true));
    assert!(
        matches!(s, Skip::OtherDriver { .. }) && !s.is_warning(),
        "{s}"
    );

    let s = skip(va_json("csi-p", DRIVER, "node-a", "pvc-1", false));
    assert!(matches!(s, Skip::NotAttached { .. }), "{s}");

    let mut no_status = va_json("csi-n", DRIVER, "node-a", "pvc-1", true);
    no_status.as_object_mut().unwrap().remove("status");
    let s = skip(no_status);
    assert!(matches!(s, Skip::NotAttached { .. }), "{s}");

    let mut inline = va_json("csi-i", DRIVER, "node-a", "pvc-1", true);
    inline["spec"]["source"] = json!({"inlineVolumeSpec": {
        "accessModes": ["ReadWriteOnce"],
        "csi": {"driver": DRIVER, "volumeHandle": "x"}
    }});
    let s = skip(inline);
    assert!(matches!(s, Skip::Inline { .. }), "{s}");

    let s = restore_record(&va("csi-m", "node-b", "pvc-gone"), None, DRIVER, &clock).unwrap_err();
    assert!(s.is_warning());
    let msg = s.to_string();
    assert!(
        msg.contains("csi-m")
            && msg.contains("pvc-gone")
            && msg.contains("node-b")
            && msg.contains("delete VolumeAttachment csi-m"),
        "{msg}"
    );

    let mut foreign = pv_json("pvc-1", "pvc-1", &["ReadWriteOnce"], "Filesystem");
    foreign["spec"]["csi"]["driver"] = json!("other.csi.example.com");
    let s = restore_record(
        &va("csi-f", "node-a", "pvc-1"),
        Some(&pv_from(foreign)),
        DRIVER,
        &clock,
    )
    .unwrap_err();
    assert!(
        matches!(&s, Skip::PvNotOurs { driver: Some(d), .. } if d == "other.csi.example.com"),
        "{s}"
    );
}

#[test]
fn attach_time_maps_onto_the_monotonic_clock_and_saturates() {
    let now = Instant::now();
    let clock = Clock {
        instant: now,
        wall: UNIX_EPOCH + Duration::from_secs(ATTACH_UNIX),
    };
    let earlier = clock.wall - Duration::from_secs(3600);
    assert_eq!(clock.instant_of(earlier), now - Duration::from_secs(3600));
    // The API server's clock ahead of ours: attached "now", never in the future.
    assert_eq!(clock.instant_of(clock.wall + Duration::from_secs(5)), now);
    // An age Instant cannot represent saturates instead of panicking.
    let floor = saturating_sub(now, Duration::MAX);
    assert!(floor <= now);
    assert_eq!(saturating_sub(floor, Duration::from_secs(1)), floor);
    assert_eq!(
        saturating_sub(now, Duration::from_secs(2)),
        now - Duration::from_secs(2)
    );
}

#[test]
fn kubernetes_times_are_whole_seconds_and_pre_epoch_times_work() {
    let v: VolumeAttachment =
        serde_json::from_value(va_json("csi-a", DRIVER, "n", "p", true)).unwrap();
    let t = v.metadata.creation_timestamp.unwrap();
    assert_eq!(wall_time(&t), UNIX_EPOCH + Duration::from_secs(ATTACH_UNIX));
    let old: Time = serde_json::from_value(json!("1969-12-31T23:59:58Z")).unwrap();
    assert_eq!(wall_time(&old), UNIX_EPOCH - Duration::from_secs(2));
    let frac: Time = serde_json::from_value(json!("2026-11-02T10:00:00.750Z")).unwrap();
    assert_eq!(
        wall_time(&frac),
        UNIX_EPOCH + Duration::from_millis(ATTACH_UNIX * 1000 + 750)
    );
}

#[test]
fn claim_comes_from_claim_ref_then_from_pvc_attributes() {
    let p = pv("pvc-1", &["ReadWriteOnce"], "Filesystem");
    let c = claim_of(&p).unwrap();
    assert_eq!(c.kind.as_deref(), Some("PersistentVolumeClaim"));
    assert_eq!(c.namespace.as_deref(), Some("vms"));
    assert_eq!(c.name.as_deref(), Some("vm-disk"));
    assert_eq!(
        c.uid.as_deref(),
        Some("a1b2c3d4-0000-4000-8000-000000000001")
    );
    assert_eq!(
        c.resource_version, None,
        "a stale resourceVersion is not copied"
    );

    let mut v = pv_json("pvc-2", "pvc-2", &["ReadWriteOnce"], "Filesystem");
    v["spec"].as_object_mut().unwrap().remove("claimRef");
    assert_eq!(
        claim_of(&pv_from(v.clone())),
        None,
        "unbound, no attributes"
    );
    let attrs = v["spec"]["csi"]["volumeAttributes"]
        .as_object_mut()
        .unwrap();
    attrs.insert(PVC_NAME_ATTRIBUTE.into(), json!("data"));
    attrs.insert(PVC_NAMESPACE_ATTRIBUTE.into(), json!("apps"));
    let c = claim_of(&pv_from(v)).unwrap();
    assert_eq!(
        (c.namespace.as_deref(), c.name.as_deref()),
        (Some("apps"), Some("data"))
    );

    let r = pv_reference(&p);
    assert_eq!(r.kind.as_deref(), Some("PersistentVolume"));
    assert_eq!(r.name.as_deref(), Some("pvc-1"));
}

#[test]
fn pv_ownership_and_volume_id() {
    let p = pv("pvc-1", &["ReadWriteOnce"], "Filesystem");
    assert!(pv_is_ours(&p, DRIVER));
    assert!(!pv_is_ours(&p, "other.csi"));
    assert_eq!(volume_id(&p, DRIVER), Some("pvc-1"));
    assert_eq!(volume_id(&p, "other.csi"), None);
    assert_eq!(pv_name(&va("x", "n", "pvc-9")), Some("pvc-9"));
}
