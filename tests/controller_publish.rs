//! ControllerPublish/Unpublish and KubeVirt live migration over a real unix socket: fencing
//! rules, the migration stories with their events and metrics, and a restart mid-migration.

mod common;

use std::time::{Duration, Instant};

use common::controller::*;
use csi_proto::v1 as csi;
use rds_csi::attachment::{AccessMode, MigrationTimeout, RestoreRecord};
use rds_csi::rds::size::GIB;
use tonic::Code;

async fn volume(c: &mut Ctl, name: &str, cap: csi::VolumeCapability) -> csi::Volume {
    c.create(create_req(name, GIB as i64, cap)).await.unwrap()
}

/// An RWX block volume published to node-a, then to node-b: a live migration under way.
async fn migrating(c: &mut Ctl, name: &str) -> csi::Volume {
    let v = volume(c, name, rwx_block()).await;
    c.publish(&v, "node-a", rwx_block()).await.unwrap();
    c.publish(&v, "node-b", rwx_block()).await.unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rwo_is_fenced_to_one_node_and_a_second_node_is_told_who_holds_it() {
    let mut c = start().await;
    let v = volume(&mut c, "pvc-rwo", rwo()).await;
    let r = c.publish(&v, "node-a", rwo()).await.unwrap();
    assert_eq!(r.publish_context["nqn"], "nqn.2000-02.com.mikrotik:pvc-rwo");
    c.publish(&v, "node-a", rwo()).await.expect("idempotent");
    let e = c.publish(&v, "node-b", rwo()).await.unwrap_err();
    let holder = ["node-a", "pvc-rwo"];
    common::assert_refused("second RWO node", &e, Code::FailedPrecondition, &holder);
    assert_eq!(c.metric("rds_csi_attachment_conflicts_total"), 1.0);
    assert!(c
        .events
        .reasons()
        .contains(&"AttachmentConflict".to_string()));
    // Once node-a lets go, node-b gets it (a handoff within the grace period).
    c.unpublish(&v, "node-a").await.unwrap();
    c.publish(&v, "node-b", rwo()).await.unwrap();
    assert_eq!(c.metric("rds_csi_attachment_grace_period_used_total"), 1.0);
    // Unpublish is idempotent for unknown nodes and volumes.
    c.unpublish(&v, "node-z").await.unwrap();
    c.client
        .controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest {
            volume_id: "pvc-none".into(),
            node_id: "node-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_checks_that_the_volume_and_the_node_exist() {
    let mut c = start().await;
    let v = volume(&mut c, "pvc-exists", rwo()).await;
    let e = c.publish(&v, "node-unknown", rwo()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("node-unknown"));
    let mut gone = v.clone();
    gone.volume_id = "pvc-gone".into();
    let e = c.publish(&gone, "node-a", rwo()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let mut nocap = publish_req(&v, "node-a", rwo());
    nocap.volume_capability = None;
    assert_eq!(
        c.client
            .controller_publish_volume(nocap)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_rwx_publish_is_refused_with_the_kubevirt_hint() {
    let mut c = start().await;
    let v = volume(&mut c, "pvc-fs", rwo()).await;
    let cap = mount_cap(csi::volume_capability::access_mode::Mode::MultiNodeMultiWriter);
    let e = c.publish(&v, "node-a", cap).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("KubeVirt"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_migration_story_source_detaches_and_the_migration_succeeds() {
    let mut c = start().await;
    let v = migrating(&mut c, "pvc-vm").await;
    assert_eq!(c.metric("rds_csi_migration_active_migrations"), 1.0);
    let started = c.event("MigrationStarted");
    assert_eq!(started.0, "pvc-vm");
    assert_eq!(
        started.1.message,
        "source: node-a, target: node-b, timeout: 5m0s"
    );
    // A third node is refused, naming both.
    let e = c.publish(&v, "node-c", rwx_block()).await.unwrap_err();
    let both = ["node-a", "node-b"];
    common::assert_refused("third node", &e, Code::FailedPrecondition, &both);
    // The source lets go: success.
    c.unpublish(&v, "node-a").await.unwrap();
    assert_eq!(c.metric("rds_csi_migration_active_migrations"), 0.0);
    assert_eq!(
        c.metric("rds_csi_migration_migrations_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(c.metric("rds_csi_migration_duration_seconds_count"), 1.0);
    let done = c.event("MigrationCompleted");
    assert!(
        done.1
            .message
            .starts_with("source: node-a → target: node-b (duration: "),
        "{}",
        done.1.message
    );
    let r = c.get_volume("pvc-vm").await.unwrap();
    assert_eq!(
        r.status.unwrap().published_node_ids,
        vec!["node-b".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_story_target_detaches_first_and_the_migration_fails() {
    let mut c = start().await;
    let v = migrating(&mut c, "pvc-vm2").await;
    c.unpublish(&v, "node-b").await.unwrap();
    assert_eq!(c.metric("rds_csi_migration_active_migrations"), 0.0);
    assert_eq!(
        c.metric("rds_csi_migration_migrations_total{result=\"failed\"}"),
        1.0
    );
    let failed = c.event("MigrationFailed");
    assert!(
        failed.1.message.contains("node-a") && failed.1.message.contains("node-b"),
        "{}",
        failed.1.message
    );
    // The source keeps the volume; a new migration may start.
    c.publish(&v, "node-c", rwx_block()).await.unwrap();
    assert_eq!(c.metric("rds_csi_migration_active_migrations"), 1.0);
}

fn restored(volume: &str, node: &str, ago: Duration) -> RestoreRecord {
    RestoreRecord {
        volume: volume.into(),
        mode: AccessMode::RwxBlock,
        migration_timeout: MigrationTimeout::from_secs(30).unwrap(),
        node: node.into(),
        attached_at: Instant::now() - ago,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_migration_keeps_fencing_and_times_out_at_the_original_deadline() {
    // VolumeAttachments say: node-a since 60 s, node-b since 29 s, timeout 30 s. After a
    // restart the deadline is still 1 s away — not 30 s from now.
    let mut c = start_with(CtlOptions {
        restore: vec![
            restored("pvc-mig", "node-a", Duration::from_secs(60)),
            restored("pvc-mig", "node-b", Duration::from_secs(29)),
        ],
        ..Default::default()
    })
    .await;
    let v = volume(&mut c, "pvc-mig", rwx_block()).await;
    assert_eq!(c.metric("rds_csi_migration_active_migrations"), 1.0);
    let e = c.publish(&v, "node-c", rwx_block()).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "fencing survives the restart"
    );
    // The background sweep ends it at the deadline, without any publish.
    let t = Instant::now();
    while c.metric("rds_csi_migration_migrations_total{result=\"timeout\"}") < 1.0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the sweep did not time the migration out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.metric("rds_csi_migration_active_migrations"), 0.0);
    assert!(c.events.reasons().contains(&"MigrationFailed".to_string()));
    // After a timeout nobody new gets in until a node detaches.
    let e = c.publish(&v, "node-c", rwx_block()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    c.unpublish(&v, "node-b").await.unwrap();
    c.publish(&v, "node-c", rwx_block()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_published_volume_is_refused() {
    let mut c = start().await;
    let v = volume(&mut c, "pvc-inuse", rwo()).await;
    c.publish(&v, "node-a", rwo()).await.unwrap();
    let e = c.delete("pvc-inuse").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("node-a"));
    c.unpublish(&v, "node-a").await.unwrap();
    c.delete("pvc-inuse").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_declare_publish_and_published_nodes() {
    use csi::controller_service_capability::{rpc::Type, Type as Cap};
    let mut c = start().await;
    let answer = c
        .client
        .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    // The answer is the controller's own declaration, in full; that each declared RPC answers
    // is checked in csi_conformance (spec_advertised_capabilities_match_the_rpcs_that_answer).
    assert_eq!(answer, rds_csi::controller::Controller::capabilities());
    let caps: Vec<i32> = answer
        .into_iter()
        .filter_map(|c| match c.r#type {
            Some(Cap::Rpc(r)) => Some(r.r#type),
            _ => None,
        })
        .collect();
    // What the external-attacher needs to publish and to find where a volume is published,
    // and the capabilities no RPC shows: clones and volume conditions.
    for t in [
        Type::PublishUnpublishVolume,
        Type::ListVolumesPublishedNodes,
        Type::CloneVolume,
        Type::VolumeCondition,
    ] {
        assert!(caps.contains(&(t as i32)), "{t:?} missing");
    }
}
