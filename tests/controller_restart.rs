//! `--no-kubernetes`: a controller restart keeps fencing. The table is in a durable state file,
//! restored at start with migration deadlines kept; a corrupt file stops the controller with
//! an error naming it.

mod common;

use common::controller::*;
use tonic::Code;

const GI: i64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_third_node_a_second_rwo_node_and_deleting_an_attached_volume_are_refused(
) {
    let mut c = start_with(CtlOptions {
        state_file: true,
        ..CtlOptions::default()
    })
    .await;
    let db = c.create(create_req("pvc-db", GI, rwo())).await.unwrap();
    let vm = c
        .create(create_req("pvc-vm", GI, rwx_block()))
        .await
        .unwrap();
    c.publish(&db, "node-a", rwo()).await.unwrap();
    c.publish(&vm, "node-a", rwx_block()).await.unwrap();
    c.publish(&vm, "node-b", rwx_block()).await.unwrap();
    let deadline = c.controller.attachments().snapshot()["pvc-vm"]
        .migration()
        .unwrap()
        .deadline;

    c.restart().await.unwrap();

    let e = c.publish(&vm, "node-c", rwx_block()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "third node: {e:?}");
    let e = c.publish(&db, "node-b", rwo()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "second RWO node: {e:?}");
    assert!(e.message().contains("node-a"), "{}", e.message());
    let e = c
        .client
        .delete_volume(rds_csi_delete(&db))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "delete while attached: {e:?}"
    );
    let m = c.controller.attachments().snapshot()["pvc-vm"]
        .migration()
        .map(|m| m.deadline)
        .unwrap();
    let drift = m.max(deadline) - m.min(deadline);
    assert!(
        drift < std::time::Duration::from_millis(5),
        "deadline moved by {drift:?}"
    );

    // The migration completes after the restart, and that is kept too.
    c.unpublish(&vm, "node-a").await.unwrap();
    c.restart().await.unwrap();
    assert_eq!(
        c.controller.attachments().published_nodes("pvc-vm"),
        ["node-b"]
    );
}

fn rds_csi_delete(v: &csi_proto::v1::Volume) -> csi_proto::v1::DeleteVolumeRequest {
    csi_proto::v1::DeleteVolumeRequest {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_the_controller_with_an_error_naming_it() {
    let mut c = start_with(CtlOptions {
        state_file: true,
        ..CtlOptions::default()
    })
    .await;
    let db = c.create(create_req("pvc-db", GI, rwo())).await.unwrap();
    c.publish(&db, "node-a", rwo()).await.unwrap();
    let path = c.state_path().unwrap();
    std::fs::write(&path, "{\"version\": 1, \"attachments\": [{\"volume\"").unwrap();
    let e = c.restart().await.unwrap_err();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("does not start"),
        "{e}"
    );
    // A file from a newer controller (another format version) is refused too.
    std::fs::write(&path, "{\"version\": 2, \"attachments\": []}").unwrap();
    let e = c.restart().await.unwrap_err();
    assert!(e.contains("format version 2"), "{e}");
}
