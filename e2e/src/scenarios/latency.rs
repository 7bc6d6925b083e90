//! h. NodeStage latency (connect -> device ready) over `n` block volumes staged at once.

use std::time::Instant;

use csi_proto::v1::volume_capability::access_mode::Mode;
use rds_csi::scenario::block_capability;

use crate::harness::E2e;
use crate::{say, R};

/// Returns the summary line: median, max, min and every latency in ms.
pub async fn latency(e: &mut E2e, n: usize) -> R<String> {
    let mut vols = Vec::new();
    let r = async {
        for i in 0..n {
            let v = e
                .create(
                    &format!("pvc-e2e-lat-{i:02}"),
                    block_capability(Mode::SingleNodeWriter),
                    &[],
                )
                .await?;
            vols.push(v.clone());
            e.csi.controller_publish(&v, "node-a").await?;
        }
        let mut lat = Vec::new();
        for v in &vols {
            let t0 = Instant::now();
            e.csi.node_stage(v, "node-a").await?;
            lat.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let c = e
            .sh_ok("node-a", "ls -d /sys/class/nvme/nvme* | wc -l")
            .await?;
        say(format!(
            "latency: {} volumes staged at once ({} NVMe controllers on node-a)",
            vols.len(),
            c.trim()
        ));
        for v in &vols {
            e.csi.node_unstage(v, "node-a").await?;
            e.csi.controller_unpublish(&v.id, "node-a").await?;
            e.csi.delete_volume(&v.id).await?;
        }
        Ok(summary(&lat))
    }
    .await;
    if r.is_err() {
        for v in &vols {
            e.cleanup(v).await;
        }
    }
    r
}

fn summary(lat: &[f64]) -> String {
    let mut s = lat.to_vec();
    s.sort_by(f64::total_cmp);
    let med = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    let all: Vec<String> = lat.iter().map(|x| format!("{x:.0}")).collect();
    format!(
        "NodeStage latency over {} block volumes (connect -> device ready, TCG guest): median {:.0} ms, max {:.0} ms, min {:.0} ms; all (ms): {}",
        lat.len(),
        med,
        s[s.len() - 1],
        s[0],
        all.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_gives_median_max_min_in_order_taken() {
        assert_eq!(
            summary(&[30.0, 10.0, 20.0, 40.0]),
            "NodeStage latency over 4 block volumes (connect -> device ready, TCG guest): median 25 ms, max 40 ms, min 10 ms; all (ms): 30 10 20 40"
        );
    }
}
