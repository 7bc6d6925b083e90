//! d. A device held open by a process is never disconnected: NodeUnstage is refused naming
//! the pid and the controller stays connected; after the holder dies it disconnects.

use std::time::{Duration, Instant};

use csi_proto::v1::volume_capability::access_mode::Mode;
use rds_csi::scenario::block_capability;
use tonic::Code;

use crate::harness::{live, nqn, E2e};
use crate::{say, R};

/// How long a NodeUnstage may still see the killed holder (its fds close asynchronously).
const HOLDER_GONE_WITHIN: Duration = Duration::from_secs(15);

pub async fn holder(e: &mut E2e) -> R<()> {
    let v = e
        .create(
            "pvc-e2e-held",
            block_capability(Mode::SingleNodeWriter),
            &[],
        )
        .await?;
    let r = async {
        e.attach(&v, "node-a").await?;
        let dev = e.block_dev(&v, "node-a").await?;
        let pid = e
            .sh_out(
                "node-a",
                &format!("sh -c 'exec 3</dev/{dev}; exec sleep 120' </dev/null >/dev/null 2>&1 & echo $!"),
            )
            .await?;
        // wait until the fd is really open
        e.sh_ok(
            "node-a",
            &format!("i=0; until ls -l /proc/{pid}/fd 2>/dev/null | grep -q /dev/{dev}; do i=$((i+1)); [ $i -gt 50 ] && exit 1; sleep 0.1; done"),
        )
        .await?;
        say(format!("holder: pid {pid} holds /dev/{dev} open"));
        e.csi.node_unpublish(&v, "node-a").await?;
        match e.csi.node_unstage(&v, "node-a").await {
            Err(err) if err.code() == Some(Code::FailedPrecondition) => {
                ensure!(
                    err.message().contains(&format!("pid {pid}")),
                    "NodeUnstage refused but does not name pid {pid}: {}",
                    err.message()
                );
                say(format!("holder: NodeUnstage refused: {}", err.message()));
            }
            Err(err) => {
                return Err(format!("NodeUnstage with a holder: expected FAILED_PRECONDITION: {err}").into())
            }
            Ok(()) => return Err(format!("NodeUnstage succeeded although pid {pid} holds /dev/{dev}").into()),
        }
        let c = e.ctrls("node-a", nqn(&v)).await?;
        ensure!(
            live(&c),
            "after the refused unstage the controller must still be connected: {c:?}"
        );
        e.sh_ok("node-a", &format!("[ -b /dev/{dev} ] && [ -e /sys/block/{dev} ]")).await?;
        say(format!("holder: still connected: {c:?}, /dev/{dev} present"));
        e.sh_ok("node-a", &format!("kill -9 {pid}")).await?;
        let until = Instant::now() + HOLDER_GONE_WITHIN;
        loop {
            match e.csi.node_unstage(&v, "node-a").await {
                Ok(()) => break,
                Err(err) if err.code() == Some(Code::FailedPrecondition) && Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(err) => return Err(format!("NodeUnstage after killing the holder: {err}").into()),
            }
        }
        let c = e.ctrls("node-a", nqn(&v)).await?;
        ensure!(c.is_empty(), "after unstage, controllers of {} are left: {c:?}", nqn(&v));
        say("holder: after kill, NodeUnstage succeeded; no controller left for the NQN");
        e.csi.controller_unpublish(&v.id, "node-a").await?;
        Ok(e.csi.delete_volume(&v.id).await?)
    }
    .await;
    if r.is_err() {
        let _ = e.sh("node-a", "pkill -9 -f 'exec sleep 120' ; true").await;
        e.cleanup(&v).await;
    }
    r
}
