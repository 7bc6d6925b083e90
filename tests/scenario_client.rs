//! The CSI scenario client (`rds_csi::scenario`, used by `rds-csi demo` and the VM e2e)
//! against a real controller over its unix socket: typed calls name their object and keep the
//! gRPC code, and what the calls took is recorded before each call and released exactly.

mod common;

use csi_proto::v1::volume_capability::access_mode::Mode;
use rds_csi::scenario::channel::unix_channel;
use rds_csi::scenario::{block_capability, CallError, ContentSource, CsiClient, Holding, Layout};
use tonic::Code;

const GIB: i64 = 1 << 30;

#[tokio::test]
async fn calls_record_what_they_take_and_release_exactly_that() {
    let ctl = common::controller::start().await;
    let ch = unix_channel(&ctl.socket()).await.unwrap();
    let mut c = CsiClient::new(
        ch,
        Layout::PerNodeDir {
            root: "/nonexistent/nodes".into(),
        },
    );
    let v = c
        .create_volume(
            "pvc-scenario-1",
            GIB,
            block_capability(Mode::SingleNodeWriter),
            &[],
            None,
        )
        .await
        .unwrap();
    assert!(v.is_block() && v.capacity_bytes >= GIB, "{v:?}");
    assert!(v.context_value("nqn").is_some(), "{v:?}");
    assert_eq!(c.taken().volumes, [v.id.as_str()]);

    let ctx = c.controller_publish(&v, "node-a").await.unwrap();
    assert!(ctx.contains_key("nqn"), "{ctx:?}");
    assert_eq!(c.published_node_ids(&v.id).await.unwrap(), ["node-a"]);
    // RWO: a second node is refused; the error names the call and keeps the code.
    let e = c.controller_publish(&v, "node-b").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::FailedPrecondition), "{e}");
    assert!(
        e.to_string()
            .starts_with("ControllerPublish pvc-scenario-1 -> node-b: FailedPrecondition: "),
        "{e}"
    );
    assert_eq!(c.taken().count(Holding::ControllerPublished), 2);
    c.forget_controller_publish(&v.id, "node-b");
    assert_eq!(
        c.taken().controller_published,
        [(v.id.clone(), "node-a".to_string())]
    );

    // A node the client has no endpoint for: the staging is recorded before the call, so a
    // release tries it again (and reports it again).
    let e = c.node_stage(&v, "node-a").await.unwrap_err();
    assert!(matches!(e, CallError::NoNode { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "NodeStage pvc-scenario-1 on node-a: no CSI endpoint for node node-a"
    );
    assert_eq!(
        c.taken().staged[0].path,
        std::path::Path::new("/nonexistent/nodes/node-a/staging/pvc-scenario-1")
    );

    let grown = c.controller_expand(&v, 2 * GIB).await.unwrap();
    assert!(grown.capacity_bytes >= 2 * GIB);

    // A snapshot is recorded by its name, then by the id the controller chose.
    let s = c
        .create_snapshot(&v.id, "snapshot-scenario-1")
        .await
        .unwrap();
    assert_ne!(s.snapshot_id, "snapshot-scenario-1");
    assert_eq!(c.taken().snapshots, [s.snapshot_id.as_str()]);
    let restored = c
        .create_volume(
            "pvc-scenario-restore",
            2 * GIB,
            block_capability(Mode::SingleNodeWriter),
            &[],
            Some(ContentSource::Snapshot(s.snapshot_id.clone())),
        )
        .await
        .unwrap();
    assert!(c.release(Holding::Snapshots).await.is_empty());
    assert!(c.taken().snapshots.is_empty());

    // Releasing one volume leaves the other's holdings alone.
    let errors = c.release_volume(&v.id).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(matches!(errors[0], CallError::NoNode { .. }));
    assert_eq!(c.taken().volumes, [restored.id.as_str()]);
    assert!(c.taken().controller_published.is_empty());
    assert_eq!(c.taken().staged.len(), 1, "the failed unstage stays taken");
    assert!(c.release(Holding::Volumes).await.is_empty());
    assert!(c.list_volumes().await.unwrap().is_empty());
}
