//! The project's own CSI conformance run: the spec's rules for names, required fields,
//! idempotency, error codes and sizes, walked through every RPC of the three services over
//! real unix-socket gRPC — the controller (with Identity on its socket) over the RDS
//! simulator on real SSH, and a node plugin with the loop transport serving the simulator's
//! own backing files on real loop devices with real mkfs/mount.
//!
//! One test per rule group; each case names the rule it checks as
//! "(CSI spec, <RPC> <section>: <rule>)". The spec is CSI v1.12 (`spec.md`: each RPC's
//! description, its "Errors" table, and the "Error Scheme" / "Size Limits" sections).
//!
//! The node tests need root and e2fsprogs (they skip with a printed reason otherwise); those
//! that unstage run in a private pid namespace, where the holder scan can see every process
//! (see `common::loop_node::run_here`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::controller::{self as ctl, Ctl};
use common::loop_node::{self as ln, Cleanup, Harness};
use common::requests::*;
use csi::volume_capability::access_mode::Mode;
use csi_proto::v1 as csi;
use rds_csi::rds::size::GIB;
use tonic::Code;

const GI: i64 = GIB as i64;

macro_rules! need_loop {
    ($name:literal) => {
        if !ln::run_here($name).await {
            return;
        }
    };
}

/// Each `field` cleared in turn from the request `req` (a valid one): `client.rpc` answers
/// INVALID_ARGUMENT naming the field (CSI spec, <Rpc>Request.<field>: REQUIRED).
macro_rules! required {
    ($client:ident . $rpc:ident ( $req:expr ) $(, $field:ident)+ $(,)?) => {
        $(
            let mut r = $req;
            r.$field = Default::default();
            let rpc = rpc_name(stringify!($rpc));
            let field = stringify!($field);
            refused(
                &format!("{rpc} without {field} (CSI spec, {rpc}Request.{field}: REQUIRED)"),
                $client.$rpc(r).await,
                Code::InvalidArgument,
                &[field],
            );
        )+
    };
}

/// The RPC's name as the CSI spec writes it: `node_get_volume_stats` → `NodeGetVolumeStats`.
fn rpc_name(method: &str) -> String {
    method
        .split('_')
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect()
}

/// Asserts `r` failed with `code` and a message holding every word; `case` names the rule.
fn refused<T: std::fmt::Debug>(
    case: &str,
    r: Result<T, tonic::Status>,
    code: Code,
    words: &[&str],
) {
    let s = match r {
        Ok(v) => panic!("{case}: expected {code:?}, got OK {v:?}"),
        Err(s) => s,
    };
    common::assert_refused(case, &s, code, words);
}

fn ok<T>(case: &str, r: Result<tonic::Response<T>, tonic::Status>) -> T {
    match r {
        Ok(v) => v.into_inner(),
        Err(s) => panic!("{case}: expected OK, got {:?}: {}", s.code(), s.message()),
    }
}

async fn create(c: &mut Ctl, name: &str, bytes: i64, cap: csi::VolumeCapability) -> csi::Volume {
    let r = c
        .client
        .create_volume(ctl::create_req(name, bytes, cap))
        .await;
    ok(&format!("CreateVolume {name}"), r).volume.unwrap()
}

// ---- Controller and Identity (no root needed) ------------------------------------------------

/// CSI spec, each RPC's request message: fields marked "This field is REQUIRED" — and the
/// "Error Scheme": a missing required field is INVALID_ARGUMENT, before any work (no command
/// reaches the RDS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_required_fields_missing_is_invalid_argument_on_every_controller_rpc() {
    let mut c = ctl::start().await;
    let cl = &mut c.client;
    let cap = ctl::rwo();

    let v = csi::Volume {
        volume_id: "pvc-any".into(),
        ..Default::default()
    };
    let get = csi::ControllerGetVolumeRequest {
        volume_id: "pvc-any".into(),
    };
    let delete_snap = csi::DeleteSnapshotRequest {
        snapshot_id: "snap-1".into(),
        ..Default::default()
    };
    // ControllerUnpublishVolume's node_id is optional (empty: every node).
    required!(
        cl.create_volume(ctl::create_req("v", GI, cap.clone())),
        name,
        volume_capabilities
    );
    required!(cl.delete_volume(delete_req("pvc-any")), volume_id);
    required!(
        cl.controller_publish_volume(ctl::publish_req(&v, "node-a", cap.clone())),
        volume_id,
        node_id,
        volume_capability,
    );
    required!(
        cl.controller_unpublish_volume(ctl::unpublish_req(&v, "node-a")),
        volume_id
    );
    required!(
        cl.validate_volume_capabilities(validate_req("pvc-any", vec![cap.clone()])),
        volume_id,
        volume_capabilities,
    );
    required!(
        cl.controller_expand_volume(expand_req("pvc-any", GI)),
        volume_id,
        capacity_range
    );
    required!(cl.controller_get_volume(get.clone()), volume_id);
    required!(
        cl.create_snapshot(snap_req("snap-1", "pvc-any")),
        name,
        source_volume_id
    );
    required!(cl.delete_snapshot(delete_snap.clone()), snapshot_id);
    let mut r = ctl::create_req("half-cap", GI, cap.clone());
    r.volume_capabilities[0].access_mode = None;
    refused(
        concat!(
            "CreateVolume with a capability without access_mode (CSI spec, ",
            "VolumeCapability.access_mode: REQUIRED)"
        ),
        cl.create_volume(r).await,
        Code::InvalidArgument,
        &[],
    );

    assert!(
        c.sim.commands().is_empty(),
        "an invalid request reached the RDS: {:?}",
        c.sim.commands()
    );
}

/// CSI spec, the "Errors" tables: NOT_FOUND where the RPC needs the volume to exist; OK where
/// the spec makes a missing object a success (deletes and unpublishes are idempotent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_unknown_ids_answer_not_found_or_ok_as_each_rpc_says() {
    let mut c = ctl::start().await;
    let v = create(&mut c, "known", GI, ctl::rwo()).await;
    let cl = &mut c.client;
    // Both an id of our form that names no disk and an id we never issue.
    for unknown in [
        "pvc-00000000-0000-0000-0000-000000000000",
        "Not An Id Of Ours",
    ] {
        let gone = csi::Volume {
            volume_id: unknown.into(),
            ..Default::default()
        };
        refused(
            &format!(
                concat!(
                    "ControllerPublishVolume {unknown:?} (CSI spec, ",
                    "ControllerPublishVolume Errors: volume does not exist → ",
                    "NOT_FOUND)"
                ),
                unknown = unknown
            ),
            cl.controller_publish_volume(ctl::publish_req(&gone, "node-a", ctl::rwo()))
                .await,
            Code::NotFound,
            &["does not exist"],
        );
        ok(
            &format!(
                concat!(
                    "ControllerUnpublishVolume {unknown:?} (CSI spec, ",
                    "ControllerUnpublishVolume: volume not found and safely ",
                    "unpublished → 0 OK)"
                ),
                unknown = unknown
            ),
            cl.controller_unpublish_volume(ctl::unpublish_req(&gone, "node-a"))
                .await,
        );
        ok(
            &format!(
                concat!(
                    "DeleteVolume {unknown:?} (CSI spec, DeleteVolume: volume does ",
                    "not exist → 0 OK)"
                ),
                unknown = unknown
            ),
            cl.delete_volume(delete_req(unknown)).await,
        );
        refused(
            &format!(
                concat!(
                    "ValidateVolumeCapabilities {unknown:?} (CSI spec, ",
                    "ValidateVolumeCapabilities Errors: volume does not exist → ",
                    "NOT_FOUND)"
                ),
                unknown = unknown
            ),
            cl.validate_volume_capabilities(validate_req(unknown, vec![ctl::rwo()]))
                .await,
            Code::NotFound,
            &["does not exist"],
        );
        refused(
            &format!(
                concat!(
                    "ControllerExpandVolume {unknown:?} (CSI spec, ",
                    "ControllerExpandVolume Errors: volume does not exist → ",
                    "NOT_FOUND)"
                ),
                unknown = unknown
            ),
            cl.controller_expand_volume(expand_req(unknown, 2 * GI))
                .await,
            Code::NotFound,
            &["does not exist"],
        );
        refused(
            &format!(
                concat!(
                    "ControllerGetVolume {unknown:?} (CSI spec, ControllerGetVolume ",
                    "Errors: volume does not exist → NOT_FOUND)"
                ),
                unknown = unknown
            ),
            cl.controller_get_volume(csi::ControllerGetVolumeRequest {
                volume_id: unknown.into(),
            })
            .await,
            Code::NotFound,
            &["does not exist"],
        );
        refused(
            &format!(
                concat!(
                    "CreateSnapshot of {unknown:?} (CSI spec, CreateSnapshot: the ",
                    "source volume must exist → NOT_FOUND)"
                ),
                unknown = unknown
            ),
            cl.create_snapshot(snap_req("snap-of-nothing", unknown))
                .await,
            Code::NotFound,
            &["does not exist"],
        );
        let mut clone = ctl::create_req("clone-of-nothing", GI, ctl::rwo());
        clone.volume_content_source = Some(csi::VolumeContentSource {
            r#type: Some(csi::volume_content_source::Type::Volume(
                csi::volume_content_source::VolumeSource {
                    volume_id: unknown.into(),
                },
            )),
        });
        refused(
            &format!(
                concat!(
                    "CreateVolume cloning {unknown:?} (CSI spec, CreateVolume ",
                    "Errors: source incompatible or not found → NOT_FOUND)"
                ),
                unknown = unknown
            ),
            cl.create_volume(clone).await,
            Code::NotFound,
            &["does not exist"],
        );
    }
    refused(
        concat!(
            "ControllerPublishVolume to an unknown node (CSI spec, ",
            "ControllerPublishVolume Errors: node does not exist → ",
            "NOT_FOUND)"
        ),
        cl.controller_publish_volume(ctl::publish_req(&v, "node-z", ctl::rwo()))
            .await,
        Code::NotFound,
        &["node-z", "does not exist"],
    );
    ok(
        concat!(
            "ControllerUnpublishVolume from a node it was never published ",
            "to (CSI spec, ControllerUnpublishVolume: safely unpublished → ",
            "0 OK)"
        ),
        cl.controller_unpublish_volume(ctl::unpublish_req(&v, "node-b"))
            .await,
    );
    for unknown in ["snap-never-issued", "Not A Snapshot Id"] {
        ok(
            &format!(
                concat!(
                    "DeleteSnapshot {unknown:?} (CSI spec, DeleteSnapshot: snapshot ",
                    "does not exist → 0 OK)"
                ),
                unknown = unknown
            ),
            cl.delete_snapshot(csi::DeleteSnapshotRequest {
                snapshot_id: unknown.into(),
                ..Default::default()
            })
            .await,
        );
        let l = ok(
            &format!(
                concat!(
                    "ListSnapshots snapshot_id {unknown:?} (CSI spec, ",
                    "ListSnapshots: no snapshot with the id → empty list, not an ",
                    "error)"
                ),
                unknown = unknown
            ),
            cl.list_snapshots(csi::ListSnapshotsRequest {
                snapshot_id: unknown.into(),
                ..Default::default()
            })
            .await,
        );
        assert!(l.entries.is_empty(), "{l:?}");
    }
    let l = ok(
        concat!(
            "ListSnapshots source_volume_id unknown (CSI spec, ",
            "ListSnapshots: no match → empty list)"
        ),
        cl.list_snapshots(csi::ListSnapshotsRequest {
            source_volume_id: "pvc-nothing".into(),
            ..Default::default()
        })
        .await,
    );
    assert!(l.entries.is_empty(), "{l:?}");
    assert_eq!(c.disk_adds(), 1, "only the known volume was ever added");
}

/// CSI spec, "Idempotency" (Concepts) and each RPC's "This operation MUST be idempotent":
/// a repeated call with the same arguments answers the same and changes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_every_controller_rpc_is_idempotent() {
    let mut c = ctl::start().await;
    let v = create(&mut c, "idem", GI, ctl::rwo()).await;
    let again = create(&mut c, "idem", GI, ctl::rwo()).await;
    assert_eq!(
        again, v,
        concat!(
            "CreateVolume twice (CSI spec, CreateVolume: same name and ",
            "compatible arguments → the same volume, 0 OK)"
        )
    );
    // Compatible, not identical: a range the existing size satisfies, another supported
    // capability (every disk serves either access type; the driver keeps no per-volume caps).
    let mut r = ctl::create_req("idem", 0, ctl::rwx_block());
    r.capacity_range = Some(csi::CapacityRange {
        required_bytes: GI / 2,
        limit_bytes: 4 * GI,
    });
    let compatible = ok(
        concat!(
            "CreateVolume same name, compatible range and capability (CSI ",
            "spec, CreateVolume Errors: ALREADY_EXISTS only when ",
            "incompatible)"
        ),
        c.client.create_volume(r).await,
    )
    .volume
    .unwrap();
    assert_eq!(compatible.volume_id, v.volume_id);
    assert_eq!(
        c.disk_adds(),
        1,
        "one /disk add for three CreateVolume calls"
    );

    let p1 = ok(
        "ControllerPublishVolume",
        c.client
            .controller_publish_volume(ctl::publish_req(&v, "node-a", ctl::rwo()))
            .await,
    );
    let p2 = ok(
        concat!(
            "ControllerPublishVolume twice (CSI spec, ",
            "ControllerPublishVolume: already published compatibly → 0 OK, ",
            "same publish_context)"
        ),
        c.client
            .controller_publish_volume(ctl::publish_req(&v, "node-a", ctl::rwo()))
            .await,
    );
    assert_eq!(p1.publish_context, p2.publish_context);
    let got = ok(
        "ControllerGetVolume",
        c.client
            .controller_get_volume(csi::ControllerGetVolumeRequest {
                volume_id: v.volume_id.clone(),
            })
            .await,
    );
    assert_eq!(
        got.status.unwrap().published_node_ids,
        vec!["node-a".to_string()],
        "published once, to node-a"
    );
    for i in 0..2 {
        ok(
            &format!(
                concat!(
                    "ControllerUnpublishVolume #{i} (CSI spec, ",
                    "ControllerUnpublishVolume: MUST be idempotent)"
                ),
                i = i
            ),
            c.client
                .controller_unpublish_volume(ctl::unpublish_req(&v, "node-a"))
                .await,
        );
    }

    for i in 0..2 {
        let e = ok(
            &format!(
                concat!(
                    "ControllerExpandVolume to 2 GiB #{i} (CSI spec, ",
                    "ControllerExpandVolume: MUST be idempotent; a volume already ",
                    "that large → 0 OK)"
                ),
                i = i
            ),
            c.client
                .controller_expand_volume(expand_req(&v.volume_id, 2 * GI))
                .await,
        );
        assert_eq!(e.capacity_bytes, 2 * GI);
        assert!(
            e.node_expansion_required,
            "a mount volume needs the node to grow its filesystem"
        );
    }
    let grows = c
        .sim
        .commands()
        .iter()
        .filter(|x| x.starts_with("/disk set"))
        .count();
    assert_eq!(grows, 1, "one resize on the RDS: {:?}", c.sim.commands());

    let s1 = ok(
        "CreateSnapshot",
        c.client
            .create_snapshot(snap_req("snap-idem", &v.volume_id))
            .await,
    )
    .snapshot
    .unwrap();
    let s2 = ok(
        concat!(
            "CreateSnapshot twice (CSI spec, CreateSnapshot: same name and ",
            "source → the same snapshot, 0 OK)"
        ),
        c.client
            .create_snapshot(snap_req("snap-idem", &v.volume_id))
            .await,
    )
    .snapshot
    .unwrap();
    assert_eq!(s1.snapshot_id, s2.snapshot_id);
    assert_eq!(s1.source_volume_id, v.volume_id);
    assert!(s1.ready_to_use && s1.size_bytes >= 2 * GI, "{s1:?}");
    for i in 0..2 {
        ok(
            &format!(
                concat!(
                    "DeleteSnapshot #{i} (CSI spec, DeleteSnapshot: MUST be ",
                    "idempotent; gone → 0 OK)"
                ),
                i = i
            ),
            c.client
                .delete_snapshot(csi::DeleteSnapshotRequest {
                    snapshot_id: s1.snapshot_id.clone(),
                    ..Default::default()
                })
                .await,
        );
    }
    for i in 0..2 {
        ok(
            &format!(
                concat!(
                    "DeleteVolume #{i} (CSI spec, DeleteVolume: MUST be idempotent; ",
                    "gone → 0 OK)"
                ),
                i = i
            ),
            c.client.delete_volume(delete_req(&v.volume_id)).await,
        );
    }
    assert!(c.sim.disks().is_empty(), "{:?}", c.sim.disks());
}

/// CSI spec, CreateVolume / CreateSnapshot / ControllerPublishVolume Errors: the same name
/// (or the same volume and node) with incompatible arguments is ALREADY_EXISTS; a volume in
/// use is FAILED_PRECONDITION for DeleteVolume and for a second node of a single-node volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_same_name_with_incompatible_arguments_is_already_exists() {
    let mut c = ctl::start().await;
    let v = create(&mut c, "taken", GI, ctl::rwo()).await;
    let cl = &mut c.client;
    refused(
        concat!(
            "CreateVolume same name, larger size (CSI spec, CreateVolume ",
            "Errors: volume already exists but is incompatible → ",
            "ALREADY_EXISTS)"
        ),
        cl.create_volume(ctl::create_req("taken", 2 * GI, ctl::rwo()))
            .await,
        Code::AlreadyExists,
        &["already exists", "bytes"],
    );
    ok(
        "CreateVolume 2 GiB",
        cl.create_volume(ctl::create_req("taken-2g", 2 * GI, ctl::rwo()))
            .await,
    );
    let mut r = ctl::create_req("taken-2g", GI, ctl::rwo());
    r.capacity_range = Some(csi::CapacityRange {
        required_bytes: GI,
        limit_bytes: GI,
    });
    refused(
        concat!(
            "CreateVolume same name, existing size above the new limit (CSI ",
            "spec, CreateVolume Errors: incompatible capacity_range → ",
            "ALREADY_EXISTS)"
        ),
        cl.create_volume(r).await,
        Code::AlreadyExists,
        &["already exists"],
    );
    let mut r = ctl::create_req("taken", GI, ctl::rwo());
    r.parameters
        .insert("volumePath".into(), "/storage-pool/csi/elsewhere".into());
    refused(
        concat!(
            "CreateVolume same name, different parameters (CSI spec, ",
            "CreateVolume Errors: incompatible parameters → ALREADY_EXISTS)"
        ),
        cl.create_volume(r).await,
        Code::AlreadyExists,
        &["already exists"],
    );
    let mut r = ctl::create_req("taken", GI, ctl::rwo());
    r.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Volume(
            csi::volume_content_source::VolumeSource {
                volume_id: v.volume_id.clone(),
            },
        )),
    });
    refused(
        concat!(
            "CreateVolume same name, now with a content source (CSI spec, ",
            "CreateVolume Errors: incompatible volume_content_source → ",
            "ALREADY_EXISTS)"
        ),
        cl.create_volume(r).await,
        Code::AlreadyExists,
        &["already exists"],
    );

    let other = ok(
        "CreateVolume",
        cl.create_volume(ctl::create_req("other", GI, ctl::rwo()))
            .await,
    )
    .volume
    .unwrap();
    ok(
        "CreateSnapshot",
        cl.create_snapshot(snap_req("snap-taken", &v.volume_id))
            .await,
    );
    refused(
        concat!(
            "CreateSnapshot same name, other source (CSI spec, ",
            "CreateSnapshot Errors: snapshot already exists but is ",
            "incompatible → ALREADY_EXISTS)"
        ),
        cl.create_snapshot(snap_req("snap-taken", &other.volume_id))
            .await,
        Code::AlreadyExists,
        &["already exists"],
    );

    ok(
        "ControllerPublishVolume",
        cl.controller_publish_volume(ctl::publish_req(&v, "node-a", ctl::rwo()))
            .await,
    );
    refused(
        concat!(
            "ControllerPublishVolume same node, other capability (CSI spec, ",
            "ControllerPublishVolume Errors: volume published but is ",
            "incompatible → ALREADY_EXISTS)"
        ),
        cl.controller_publish_volume(ctl::publish_req(&v, "node-a", ctl::rwx_block()))
            .await,
        Code::AlreadyExists,
        &[],
    );
    refused(
        concat!(
            "ControllerPublishVolume of a single-node volume to a second ",
            "node (CSI spec, ControllerPublishVolume Errors: volume ",
            "published to another node → FAILED_PRECONDITION)"
        ),
        cl.controller_publish_volume(ctl::publish_req(&v, "node-b", ctl::rwo()))
            .await,
        Code::FailedPrecondition,
        &["node-a"],
    );
    refused(
        concat!(
            "DeleteVolume while published (CSI spec, DeleteVolume Errors: ",
            "volume in use → FAILED_PRECONDITION)"
        ),
        cl.delete_volume(delete_req(&v.volume_id)).await,
        Code::FailedPrecondition,
        &["node-a", "unpublish"],
    );
    assert_eq!(
        c.disk_adds(),
        4,
        "three volumes and one snapshot: no refused create added a disk"
    );
}

/// CSI spec, CreateVolume / ControllerExpandVolume Errors: "Unsupported capacity" — a range
/// the plugin cannot satisfy (below its minimum volume size, or required above limit) →
/// OUT_OF_RANGE, before any command. A negative byte count is a malformed field →
/// INVALID_ARGUMENT. Without a capacity_range the plugin picks the size (CapacityRange: "at
/// least one of the fields MUST be specified" applies only when the range is given).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_sizes_the_driver_cannot_honour_are_out_of_range() {
    let mut c = ctl::start().await;
    let cl = &mut c.client;
    let range = |req: i64, lim: i64| {
        let mut r = ctl::create_req("sized", 0, ctl::rwo());
        r.capacity_range = Some(csi::CapacityRange {
            required_bytes: req,
            limit_bytes: lim,
        });
        r
    };
    refused(
        concat!(
            "CreateVolume limit below the 1 GiB minimum (CSI spec, ",
            "CreateVolume Errors: unsupported capacity → OUT_OF_RANGE)"
        ),
        cl.create_volume(range(0, GI / 2)).await,
        Code::OutOfRange,
        &["1 GiB"],
    );
    refused(
        concat!(
            "CreateVolume required above limit (CSI spec, CreateVolume ",
            "Errors: unsupported capacity → OUT_OF_RANGE)"
        ),
        cl.create_volume(range(3 * GI, 2 * GI)).await,
        Code::OutOfRange,
        &["limit_bytes"],
    );
    refused(
        concat!(
            "CreateVolume negative required_bytes (CSI spec, Error Scheme: ",
            "malformed field → INVALID_ARGUMENT)"
        ),
        cl.create_volume(range(-1, 0)).await,
        Code::InvalidArgument,
        &["negative"],
    );
    assert!(
        c.sim.commands().iter().all(|x| !x.starts_with("/disk add")),
        "{:?}",
        c.sim.commands()
    );

    // Small requests round up to the minimum; the reply says the real size (CSI spec,
    // CreateVolumeResponse.volume.capacity_bytes: the actual size).
    let v = ok(
        "CreateVolume of 1 byte",
        cl.create_volume(range(1, 0)).await,
    )
    .volume
    .unwrap();
    assert_eq!(v.capacity_bytes, GI);
    let mut none = ctl::create_req("unsized", 0, ctl::rwo());
    none.capacity_range = None;
    let u = ok(
        concat!(
            "CreateVolume without capacity_range (CSI spec, ",
            "CreateVolumeRequest.capacity_range: OPTIONAL, plugin default)"
        ),
        cl.create_volume(none).await,
    )
    .volume
    .unwrap();
    assert_eq!(u.capacity_bytes, GI);

    let mut e = expand_req(&v.volume_id, 3 * GI);
    e.capacity_range.as_mut().unwrap().limit_bytes = 2 * GI;
    refused(
        concat!(
            "ControllerExpandVolume required above limit (CSI spec, ",
            "ControllerExpandVolume Errors: unsupported capacity → ",
            "OUT_OF_RANGE)"
        ),
        cl.controller_expand_volume(e).await,
        Code::OutOfRange,
        &["limit_bytes"],
    );
    let cap = ok(
        "GetCapacity",
        cl.get_capacity(csi::GetCapacityRequest::default()).await,
    );
    refused(
        concat!(
            "ControllerExpandVolume beyond the pool (CSI spec, ",
            "ControllerExpandVolume Errors: unsupported capacity → ",
            "OUT_OF_RANGE)"
        ),
        cl.controller_expand_volume(expand_req(
            &v.volume_id,
            cap.maximum_volume_size.unwrap() + 64 * GI,
        ))
        .await,
        Code::OutOfRange,
        &[],
    );
}

/// CSI spec, ValidateVolumeCapabilities: `confirmed` is set only if every capability is
/// supported; otherwise it is empty and `message` says why (an answer, not an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_validate_volume_capabilities_confirms_only_supported_capabilities() {
    let mut c = ctl::start().await;
    let v = create(&mut c, "validated", GI, ctl::rwo()).await;
    let cl = &mut c.client;
    for (case, caps) in [
        ("RWO mount", vec![ctl::rwo()]),
        ("RWX block (live migration)", vec![ctl::rwx_block()]),
        (
            "RWO block + single-node read-only mount",
            vec![
                ctl::block_cap(Mode::SingleNodeWriter),
                ctl::mount_cap(Mode::SingleNodeReaderOnly),
            ],
        ),
    ] {
        let r = ok(
            case,
            cl.validate_volume_capabilities(validate_req(&v.volume_id, caps.clone()))
                .await,
        );
        let confirmed = r.confirmed.unwrap_or_else(|| {
            panic!(
                concat!(
                    "{case} (CSI spec, ValidateVolumeCapabilities: supported → ",
                    "confirmed): {}"
                ),
                r.message,
                case = case
            )
        });
        assert_eq!(
            confirmed.volume_capabilities, caps,
            "{case}: confirmed echoes the capabilities"
        );
    }
    let r = ok(
        "RWX mount",
        cl.validate_volume_capabilities(validate_req(
            &v.volume_id,
            vec![ctl::rwo(), ctl::mount_cap(Mode::MultiNodeMultiWriter)],
        ))
        .await,
    );
    assert!(
        r.confirmed.is_none(),
        concat!(
            "RWX filesystem (CSI spec, ValidateVolumeCapabilities: ",
            "unsupported → confirmed empty): {r:?}"
        ),
        r = r
    );
    assert!(
        r.message.contains(&v.volume_id),
        "the message names the volume: {}",
        r.message
    );
    refused(
        concat!(
            "CreateVolume with an unsupported capability (CSI spec, ",
            "CreateVolume Errors: unsupported capability → ",
            "INVALID_ARGUMENT)"
        ),
        cl.create_volume(ctl::create_req(
            "rwx-fs",
            GI,
            ctl::mount_cap(Mode::MultiNodeMultiWriter),
        ))
        .await,
        Code::InvalidArgument,
        &[],
    );
}

/// CSI spec, ControllerGetCapabilities / NodeGetCapabilities / GetPluginCapabilities: an RPC
/// whose capability is declared works; an optional RPC whose capability is not declared
/// answers UNIMPLEMENTED (gRPC's code for a method the server does not offer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_advertised_capabilities_match_the_rpcs_that_answer() {
    use csi::controller_service_capability::rpc::Type;
    let mut c = ctl::start().await;
    let caps: BTreeSet<i32> = ok(
        "ControllerGetCapabilities",
        c.client
            .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
            .await,
    )
    .capabilities
    .into_iter()
    .filter_map(|c| match c.r#type {
        Some(csi::controller_service_capability::Type::Rpc(r)) => Some(r.r#type),
        _ => None,
    })
    .collect();
    let v = create(&mut c, "cap", GI, ctl::rwo()).await;
    let cl = &mut c.client;
    // Declared → the RPC answers (not UNIMPLEMENTED).
    for (t, answer) in [
        (
            Type::CreateDeleteVolume,
            cl.delete_volume(delete_req("pvc-nothing"))
                .await
                .map(|_| ()),
        ),
        (
            Type::PublishUnpublishVolume,
            cl.controller_unpublish_volume(ctl::unpublish_req(&v, "node-a"))
                .await
                .map(|_| ()),
        ),
        (
            Type::ListVolumes,
            cl.list_volumes(list_volumes_req(0, "")).await.map(|_| ()),
        ),
        (
            Type::GetCapacity,
            cl.get_capacity(csi::GetCapacityRequest::default())
                .await
                .map(|_| ()),
        ),
        (
            Type::CreateDeleteSnapshot,
            cl.delete_snapshot(csi::DeleteSnapshotRequest {
                snapshot_id: "x".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        ),
        (
            Type::ListSnapshots,
            cl.list_snapshots(list_snapshots_req(0, ""))
                .await
                .map(|_| ()),
        ),
        (
            Type::ExpandVolume,
            cl.controller_expand_volume(expand_req(&v.volume_id, GI))
                .await
                .map(|_| ()),
        ),
        (
            Type::GetVolume,
            cl.controller_get_volume(csi::ControllerGetVolumeRequest {
                volume_id: v.volume_id.clone(),
            })
            .await
            .map(|_| ()),
        ),
    ] {
        assert!(caps.contains(&(t as i32)), "{t:?} is declared");
        if let Err(e) = answer {
            panic!(
                concat!(
                    "{t:?} is declared, so its RPC must answer (CSI spec, ",
                    "ControllerGetCapabilities): {:?} {}"
                ),
                e.code(),
                e.message(),
                t = t
            );
        }
    }
    // Not declared → UNIMPLEMENTED.
    assert!(!caps.contains(&(Type::ModifyVolume as i32)));
    refused(
        concat!(
            "ControllerModifyVolume without MODIFY_VOLUME (CSI spec, ",
            "ControllerModifyVolume: plugins without the capability → ",
            "UNIMPLEMENTED)"
        ),
        cl.controller_modify_volume(csi::ControllerModifyVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await,
        Code::Unimplemented,
        &["MODIFY_VOLUME"],
    );
    for t in [
        Type::PublishReadonly,
        Type::SingleNodeMultiWriter,
        Type::GetSnapshot,
    ] {
        assert!(!caps.contains(&(t as i32)), "{t:?} is not declared");
    }

    // Identity on the controller socket declares the Controller service; the Node service
    // is not served there (UNIMPLEMENTED).
    use csi::plugin_capability::service::Type as Svc;
    let plugin: Vec<i32> = ok(
        "GetPluginCapabilities",
        c.identity
            .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
            .await,
    )
    .capabilities
    .into_iter()
    .filter_map(|c| match c.r#type {
        Some(csi::plugin_capability::Type::Service(s)) => Some(s.r#type),
        _ => None,
    })
    .collect();
    assert!(
        plugin.contains(&(Svc::ControllerService as i32)),
        "controller declares CONTROLLER_SERVICE: {plugin:?}"
    );
    let mut node_on_ctl =
        csi_proto::v1::node_client::NodeClient::new(common::unix_channel(&c.socket()).await);
    refused(
        concat!(
            "Node RPC on the controller socket (CSI spec, Identity: only ",
            "declared services are offered → UNIMPLEMENTED)"
        ),
        node_on_ctl
            .node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
            .await,
        Code::Unimplemented,
        &[],
    );
}

/// CSI spec, GetPluginInfo / Probe: a driver name in domain-name form of at most 63
/// characters and a non-empty vendor_version; Probe answers ready once the RDS answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_identity_names_the_plugin_and_probes_ready() {
    let mut c = ctl::start().await;
    let info = ok(
        "GetPluginInfo",
        c.identity
            .get_plugin_info(csi::GetPluginInfoRequest {})
            .await,
    );
    assert!(
        info.name.len() <= 63 && info.name.contains('.'),
        concat!(
            "name (CSI spec, GetPluginInfoResponse.name: domain name ",
            "notation, ≤ 63 chars): {}"
        ),
        info.name
    );
    assert!(
        info.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
        "{}",
        info.name
    );
    assert!(
        !info.vendor_version.is_empty(),
        "vendor_version (CSI spec: REQUIRED)"
    );
    let p = ok("Probe", c.identity.probe(csi::ProbeRequest {}).await);
    assert_eq!(p.ready, Some(true), "Probe (CSI spec, Probe: ready)");
}

/// CSI spec, ListVolumes / ListSnapshots: at most max_entries per page, next_token to go on
/// until it is empty; a starting_token the plugin does not know → ABORTED; a negative
/// max_entries → INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_listings_page_by_max_entries_and_abort_on_an_unknown_token() {
    let mut c = ctl::start().await;
    let mut made = BTreeSet::new();
    for i in 0..5 {
        let v = create(&mut c, &format!("listed-{i}"), GI, ctl::rwo()).await;
        ok(
            "CreateSnapshot",
            c.client
                .create_snapshot(snap_req(&format!("snap-listed-{i}"), &v.volume_id))
                .await,
        );
        made.insert(v.volume_id);
    }
    let cl = &mut c.client;
    let (mut seen, mut token, mut pages) = (BTreeSet::new(), String::new(), 0);
    loop {
        let page = ok(
            "ListVolumes page",
            cl.list_volumes(list_volumes_req(2, &token)).await,
        );
        assert!(
            page.entries.len() <= 2,
            concat!(
                "ListVolumes (CSI spec, ListVolumesRequest.max_entries: at most ",
                "this many): {}"
            ),
            page.entries.len()
        );
        for e in page.entries {
            let v = e.volume.unwrap();
            assert!(
                seen.insert(v.volume_id.clone()),
                "{} listed twice",
                v.volume_id
            );
        }
        pages += 1;
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen, made, "the pages together list every volume once");
    assert_eq!(pages, 3, "5 volumes, 2 per page");
    let all = ok(
        "ListVolumes max_entries 0 (CSI spec: 0 → as many as the plugin likes)",
        cl.list_volumes(list_volumes_req(0, "")).await,
    );
    assert_eq!(all.entries.len(), 5);
    refused(
        concat!(
            "ListVolumes with a token it never issued (CSI spec, ",
            "ListVolumes Errors: invalid starting_token → ABORTED)"
        ),
        cl.list_volumes(list_volumes_req(2, "not-a-token")).await,
        Code::Aborted,
        &[],
    );
    refused(
        concat!(
            "ListVolumes max_entries -1 (CSI spec, ",
            "ListVolumesRequest.max_entries: MUST NOT be negative → ",
            "INVALID_ARGUMENT)"
        ),
        cl.list_volumes(list_volumes_req(-1, "")).await,
        Code::InvalidArgument,
        &["max_entries"],
    );

    let (mut seen, mut token) = (BTreeSet::new(), String::new());
    loop {
        let page = ok(
            "ListSnapshots page",
            cl.list_snapshots(list_snapshots_req(2, &token)).await,
        );
        assert!(
            page.entries.len() <= 2,
            "ListSnapshots (CSI spec, ListSnapshotsRequest.max_entries)"
        );
        for e in page.entries {
            let s = e.snapshot.unwrap();
            assert!(made.contains(&s.source_volume_id), "{s:?}");
            assert!(
                seen.insert(s.snapshot_id.clone()),
                "{} listed twice",
                s.snapshot_id
            );
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen.len(), 5, "every snapshot once: {seen:?}");
    refused(
        concat!(
            "ListSnapshots with a token it never issued (CSI spec, ",
            "ListSnapshots Errors: invalid starting_token → ABORTED)"
        ),
        cl.list_snapshots(list_snapshots_req(2, "not-a-token"))
            .await,
        Code::Aborted,
        &[],
    );
    refused(
        concat!(
            "ListSnapshots max_entries -1 (CSI spec: MUST NOT be negative → ",
            "INVALID_ARGUMENT)"
        ),
        cl.list_snapshots(list_snapshots_req(-1, "")).await,
        Code::InvalidArgument,
        &["max_entries"],
    );
}

/// CSI spec, GetCapacity: available_capacity for the given parameters and capabilities
/// (0 for a capability the plugin cannot provision), minimum/maximum_volume_size, and a
/// capacity that falls as volumes take room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_get_capacity_reports_what_create_volume_can_use() {
    let mut c = ctl::start().await;
    let before = ok(
        "GetCapacity",
        c.client
            .get_capacity(csi::GetCapacityRequest::default())
            .await,
    );
    assert!(before.available_capacity >= GI, "{before:?}");
    assert_eq!(before.minimum_volume_size, Some(GI), "the 1 GiB floor");
    assert!(before.maximum_volume_size.unwrap() <= before.available_capacity);
    let rwx_fs = ok(
        "GetCapacity RWX mount",
        c.client
            .get_capacity(csi::GetCapacityRequest {
                volume_capabilities: vec![ctl::mount_cap(Mode::MultiNodeMultiWriter)],
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        rwx_fs.available_capacity, 0,
        concat!(
            "unsupported capability (CSI spec, GetCapacity: capacity for ",
            "volumes with these capabilities) → 0"
        )
    );
    let mut bad = csi::GetCapacityRequest::default();
    bad.parameters
        .insert("nvmePort".into(), "not-a-port".into());
    refused(
        concat!(
            "GetCapacity with a bad parameter (CSI spec, Error Scheme: ",
            "invalid parameter → INVALID_ARGUMENT)"
        ),
        c.client.get_capacity(bad).await,
        Code::InvalidArgument,
        &["nvmePort"],
    );
    create(&mut c, "room", 4 * GI, ctl::rwo()).await;
    let after = ok(
        "GetCapacity",
        c.client
            .get_capacity(csi::GetCapacityRequest::default())
            .await,
    );
    assert!(
        after.available_capacity <= before.available_capacity,
        "{before:?} → {after:?}"
    );
    refused(
        concat!(
            "CreateVolume beyond available_capacity (CSI spec, CreateVolume ",
            "Errors: unsupported capacity → OUT_OF_RANGE / no room → ",
            "RESOURCE_EXHAUSTED)"
        ),
        c.client
            .create_volume(ctl::create_req(
                "too-big",
                after.available_capacity + GI,
                ctl::rwo(),
            ))
            .await,
        Code::ResourceExhausted,
        &[],
    );
}

// ---- Node (loop devices over the simulator's files; root) -----------------------------------

/// Node volumes use XFS: ext4's online grow (resize2fs) needs CAP_SYS_RESOURCE, which this
/// machine's sandbox drops (see `xfs_grows_online_after_the_backing_file_grows`).
///
/// A controller over the simulator and a loop-transport node plugin ("node-a") serving the
/// simulator's backing files. Declared in drop order: the harness (mounts) goes first, then
/// the cleanup of loop devices over the simulator's files, then the controller.
struct Stack {
    h: Harness,
    _loops: Cleanup,
    c: Ctl,
}

async fn stack() -> Stack {
    let c = ctl::start().await;
    let data = std::fs::canonicalize(c.sim.data_dir()).unwrap();
    let h = Harness::start_on(Some(data.clone())).await;
    Stack {
        h,
        _loops: Cleanup { root: data },
        c,
    }
}

impl Stack {
    /// CreateVolume + ControllerPublishVolume to node-a, as the provisioner and attacher do:
    /// the volume with both contexts, at node-a's kubelet paths.
    async fn volume(&mut self, name: &str) -> ln::Vol {
        let v = create(&mut self.c, name, GI, ctl::rwo()).await;
        let p = ok(
            "ControllerPublishVolume",
            self.c
                .client
                .controller_publish_volume(ctl::publish_req(&v, "node-a", ctl::rwo()))
                .await,
        );
        let mut vol = self.h.vol(&v.volume_id, v.volume_context);
        vol.publish = p.publish_context;
        vol
    }
}

/// CSI spec, each Node RPC's request: REQUIRED fields (volume_id, staging_target_path,
/// target_path, volume_capability, volume_path) missing → INVALID_ARGUMENT, with nothing
/// attached or mounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_required_fields_missing_is_invalid_argument_on_every_node_rpc() {
    need_loop!("spec_required_fields_missing_is_invalid_argument_on_every_node_rpc");
    let mut s = stack().await;
    let v = s.volume("node-fields").await;
    let n = &mut s.h.c.clone();
    let xfs = ln::mount_cap("xfs");
    // NodePublishVolume's staging_target_path: REQUIRED with STAGE_UNSTAGE_VOLUME.
    required!(
        n.node_stage_volume(v.stage_req(xfs.clone())),
        volume_id,
        staging_target_path,
        volume_capability
    );
    required!(
        n.node_unstage_volume(v.unstage_req()),
        volume_id,
        staging_target_path
    );
    required!(
        n.node_publish_volume(v.publish_req(xfs.clone(), false)),
        volume_id,
        staging_target_path,
        target_path,
        volume_capability,
    );
    required!(
        n.node_unpublish_volume(v.unpublish_req()),
        volume_id,
        target_path
    );
    required!(n.node_get_volume_stats(v.stats_req(&v.target)), volume_id);
    required!(n.node_expand_volume(v.expand_req(&v.target)), volume_id);
    assert!(
        ln::mount_at(&v.staging).is_none() && ln::loops_backing_under(&s._loops.root).is_empty(),
        "a refused request attached or mounted nothing"
    );
}

/// The whole volume life over the three services, every step twice (CSI spec, "Idempotency"
/// and each Node RPC's "MUST be idempotent"), with the node's codes for unknown and
/// incompatible requests (NodeUnstage/NodeUnpublish Errors: not staged/published there → 0 OK;
/// NodeGetVolumeStats/NodeExpandVolume: unknown volume → NOT_FOUND; NodePublishVolume:
/// incompatible with the existing publish → ALREADY_EXISTS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_volume_lifecycle_is_idempotent_through_controller_and_node() {
    need_loop!("spec_volume_lifecycle_is_idempotent_through_controller_and_node");
    let mut s = stack().await;
    let v = s.volume("lifecycle").await;
    let mut n = s.h.c.clone();

    // Nothing here yet: unknown → NOT_FOUND for stats/expand, OK for unpublish/unstage.
    refused(
        concat!(
            "NodeGetVolumeStats before staging (CSI spec, ",
            "NodeGetVolumeStats Errors: volume does not exist → NOT_FOUND)"
        ),
        n.node_get_volume_stats(v.stats_req(&v.target)).await,
        Code::NotFound,
        &[],
    );
    refused(
        concat!(
            "NodeExpandVolume before staging (CSI spec, NodeExpandVolume ",
            "Errors: volume does not exist → NOT_FOUND)"
        ),
        n.node_expand_volume(v.expand_req(&v.target)).await,
        Code::NotFound,
        &[],
    );
    ok(
        concat!(
            "NodeUnpublishVolume of a volume never published here (CSI ",
            "spec, NodeUnpublishVolume: not published at target_path → 0 ",
            "OK)"
        ),
        n.node_unpublish_volume(v.unpublish_req()).await,
    );
    ok(
        concat!(
            "NodeUnstageVolume of a volume never staged here (CSI spec, ",
            "NodeUnstageVolume: not staged at staging_target_path → 0 OK)"
        ),
        n.node_unstage_volume(v.unstage_req()).await,
    );

    for i in 0..2 {
        ok(
            &format!("NodeStageVolume #{i} (CSI spec, NodeStageVolume: MUST be idempotent)"),
            n.node_stage_volume(v.stage_req(ln::mount_cap("xfs"))).await,
        );
    }
    let (_, fs, _) = ln::mount_at(&v.staging).expect("staged");
    assert_eq!(fs, "xfs");
    let mut other = v.stage_req(ln::mount_cap("xfs"));
    other.volume_capability = Some(ln::block_cap());
    refused(
        concat!(
            "NodeStageVolume same path, now as a block device (CSI spec, ",
            "NodeStageVolume Errors: published at staging_target_path but ",
            "incompatible volume_capability → ALREADY_EXISTS)"
        ),
        n.node_stage_volume(other).await,
        Code::AlreadyExists,
        &[],
    );

    for i in 0..2 {
        ok(
            &format!(
                concat!(
                    "NodePublishVolume #{i} (CSI spec, NodePublishVolume: MUST be ",
                    "idempotent)"
                ),
                i = i
            ),
            n.node_publish_volume(v.publish_req(ln::mount_cap("xfs"), false))
                .await,
        );
    }
    std::fs::write(v.target.join("data"), b"kept").unwrap();
    refused(
        concat!(
            "NodePublishVolume same target, now read-only (CSI spec, ",
            "NodePublishVolume Errors: published with incompatible readonly ",
            "→ ALREADY_EXISTS)"
        ),
        n.node_publish_volume(v.publish_req(ln::mount_cap("xfs"), true))
            .await,
        Code::AlreadyExists,
        &[],
    );

    let st = ok(
        "NodeGetVolumeStats",
        n.node_get_volume_stats(v.stats_req(&v.target)).await,
    );
    assert!(st.usage.iter().any(|u| u.total > 0), "{st:?}");
    refused(
        concat!(
            "NodeGetVolumeStats without volume_path (CSI spec, ",
            "NodeGetVolumeStatsRequest.volume_path: REQUIRED)"
        ),
        n.node_get_volume_stats(v.stats_req(Path::new(""))).await,
        Code::InvalidArgument,
        &["volume_path"],
    );
    refused(
        concat!(
            "NodeExpandVolume without volume_path (CSI spec, ",
            "NodeExpandVolumeRequest.volume_path: REQUIRED)"
        ),
        n.node_expand_volume(v.expand_req(Path::new(""))).await,
        Code::InvalidArgument,
        &["volume_path"],
    );
    let missing = s.h.path("kubelet/pods/p1/volumes/nowhere");
    refused(
        concat!(
            "NodeGetVolumeStats at a path that does not exist (CSI spec, ",
            "NodeGetVolumeStats Errors: volume_path not found → NOT_FOUND)"
        ),
        n.node_get_volume_stats(v.stats_req(&missing)).await,
        Code::NotFound,
        &[],
    );

    // ControllerExpandVolume then NodeExpandVolume, each twice.
    for _ in 0..2 {
        ok(
            "ControllerExpandVolume",
            s.c.client
                .controller_expand_volume(expand_req(&v.id, 2 * GI))
                .await,
        );
    }
    for i in 0..2 {
        let mut r = v.expand_req(&v.target);
        r.capacity_range = Some(csi::CapacityRange {
            required_bytes: 2 * GI,
            limit_bytes: 0,
        });
        let e = ok(
            &format!("NodeExpandVolume #{i} (CSI spec, NodeExpandVolume: MUST be idempotent)"),
            n.node_expand_volume(r).await,
        );
        assert!(e.capacity_bytes >= 2 * GI, "{e:?}");
    }

    for i in 0..2 {
        ok(
            &format!(
                concat!(
                    "NodeUnpublishVolume #{i} (CSI spec, NodeUnpublishVolume: MUST ",
                    "be idempotent)"
                ),
                i = i
            ),
            n.node_unpublish_volume(v.unpublish_req()).await,
        );
    }
    assert!(ln::mount_at(&v.target).is_none());
    for i in 0..2 {
        ok(
            &format!(
                concat!(
                    "NodeUnstageVolume #{i} (CSI spec, NodeUnstageVolume: MUST be ",
                    "idempotent)"
                ),
                i = i
            ),
            n.node_unstage_volume(v.unstage_req()).await,
        );
    }
    assert!(ln::mount_at(&v.staging).is_none());
    assert!(
        ln::loops_backing_under(&s._loops.root).is_empty(),
        "loop device detached"
    );

    let vol = csi::Volume {
        volume_id: v.id.clone(),
        ..Default::default()
    };
    for _ in 0..2 {
        ok(
            "ControllerUnpublishVolume (CSI spec: MUST be idempotent)",
            s.c.client
                .controller_unpublish_volume(ctl::unpublish_req(&vol, "node-a"))
                .await,
        );
    }
    for _ in 0..2 {
        ok(
            "DeleteVolume (CSI spec: MUST be idempotent)",
            s.c.client.delete_volume(delete_req(&v.id)).await,
        );
    }
    assert!(s.c.sim.disks().is_empty());
}
