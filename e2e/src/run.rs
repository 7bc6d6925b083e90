//! `rds-csi-e2e run`: connects the harness, runs the chosen scenarios in a fixed order and
//! prints one `E2E-SCENARIO` line per scenario as it ends, then the `E2E-SUMMARY` table.

use std::time::{Duration, Instant};

use rds_csi::scenario::channel::connect_ready;
use rds_csi::scenario::{timed, CsiClient, Layout, Outcome, Report, Row};

use crate::harness::E2e;
use crate::opts::Opts;
use crate::shell::run_remote;
use crate::{say, scenarios, R};

/// Every CSI call's deadline (sent as `grpc-timeout`): the kubelet's for node calls
/// (pkg/volume/csi: csiTimeout, 2 minutes).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the controller may take to answer after the VM boots (it waits for the RDS).
const CONTROLLER_WAIT: Duration = Duration::from_secs(90);
/// How long a node plugin (node-b boots in the other VM) and an agent may take.
const NODE_WAIT: Duration = Duration::from_secs(120);

/// A row's label: (scenario id, title).
type Label = (String, String);

fn pass_fail(o: Outcome) -> &'static str {
    if o == Outcome::Ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// `sep` and the row's detail when it did not pass; nothing when it did.
fn reason(row: &Row<Label>, sep: &str) -> String {
    match row.outcome {
        Outcome::Ok => String::new(),
        _ => format!("{sep}{}", row.detail),
    }
}

fn scenario_line(row: &Row<Label>) -> String {
    let (id, title) = &row.label;
    let why = reason(row, ": ");
    format!(
        "E2E-SCENARIO {id} {} {:.1}s {title}{why}",
        pass_fail(row.outcome),
        row.took.as_secs_f64()
    )
}

/// The harness and the rows of the scenarios run so far.
struct Runner<'o> {
    e: E2e,
    /// The scenario ids asked for.
    wanted: &'o [String],
    report: Report<Label>,
}

impl Runner<'_> {
    fn on(&self, id: &str) -> bool {
        self.wanted.iter().any(|w| w == id)
    }

    fn record(&mut self, id: &str, title: &str, r: R<()>, took: Duration) {
        let (outcome, why) = match r {
            Ok(()) => (Outcome::Ok, String::new()),
            Err(e) => (Outcome::Fail, e.to_string()),
        };
        self.report
            .record((id.into(), title.into()), outcome, took, why);
    }

    /// Runs `scenario` and records its row, when its scenario was asked for: a row id is its
    /// scenario's id, with a suffix after `-` where one scenario gives several rows (`a-xfs`).
    async fn row(&mut self, id: &str, title: &str, scenario: impl AsyncFnOnce(&mut E2e) -> R<()>) {
        let scenario_id = id.split('-').next().unwrap_or(id);
        if self.on(scenario_id) {
            let (r, took) = timed(scenario(&mut self.e)).await;
            self.record(id, title, r, took);
        }
    }
}

/// Connects to the controller, the node plugins and the agents, and checks each node
/// plugin answers for its own node id.
async fn connect(o: &Opts) -> R<E2e> {
    let (ch, info) = connect_ready(&o.controller, CONTROLLER_WAIT).await?;
    say(format!(
        "connected to {}: {} {}",
        o.controller, info.name, info.vendor_version
    ));
    // kubelet's paths name the driver as the plugin names itself.
    let layout = Layout::Kubelet { driver: info.name };
    let mut csi = CsiClient::new(ch, layout).with_timeout(RPC_TIMEOUT);
    for (id, ep) in &o.nodes {
        let (ch, info) = connect_ready(ep, NODE_WAIT).await?;
        say(format!(
            "connected to {ep}: {} {}",
            info.name, info.vendor_version
        ));
        csi.add_node(id.clone(), ch);
    }
    let mut e = E2e {
        csi,
        agents: o.agents.iter().cloned().collect(),
        metrics_url: o.metrics.clone(),
        node_logs: o.logs.iter().cloned().collect(),
    };
    for (n, a) in &o.agents {
        let until = Instant::now() + NODE_WAIT;
        loop {
            match run_remote(a, "echo ok").await {
                Ok((0, _)) => break,
                r if Instant::now() > until => {
                    return Err(format!("agent of {n} at {a}: {r:?}").into())
                }
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }
    for (id, _) in &o.nodes {
        let info = e.csi.node_get_info(id).await?;
        ensure!(
            info.node_id == *id,
            "endpoint of {id} reports node id {}",
            info.node_id
        );
    }
    Ok(e)
}

/// Runs the scenarios `o` names; true when every one passed.
pub async fn run(o: Opts) -> R<bool> {
    let t_all = Instant::now();
    let e = connect(&o).await?;
    say(format!(
        "harness ready in {:.1}s",
        t_all.elapsed().as_secs_f64()
    ));

    let mut run = Runner {
        e,
        wanted: &o.scenarios,
        report: Report::new(|_, row| println!("{}", scenario_line(row))),
    };
    for fs in ["ext4", "xfs"] {
        let title = format!("{fs} volume: write on node-a, handoff, same data on node-b");
        run.row(&format!("a-{fs}"), &title, async |e| {
            scenarios::fs_handoff(e, fs).await
        })
        .await;
    }
    if run.on("b") || run.on("c") {
        let ((rb, rc), took) = timed(scenarios::migration(&mut run.e)).await;
        if run.on("b") {
            run.record("b", "RWX block live migration node-a -> node-b, both attached, data visible, migration metric +1", rb, took);
        }
        if run.on("c") {
            run.record(
                "c",
                "third node refused with FAILED_PRECONDITION during the migration",
                rc,
                Duration::ZERO,
            );
        }
    }
    run.row("d", "device held open: NodeUnstage refused naming the pid, stays connected; after kill it disconnects", scenarios::holder).await;
    run.row(
        "f",
        "online expansion: ControllerExpand + NodeExpand grow a mounted ext4",
        scenarios::expand,
    )
    .await;
    run.row(
        "g",
        "restage keeps data: no reformat of a volume with a filesystem",
        scenarios::restage,
    )
    .await;
    run.row("e", "target port removed: short outage keeps the device; past ctrl_loss_tmo the reconciler restores it, stats abnormal meanwhile", scenarios::reconnect).await;
    run.row("i", "target lost for good while published: stats abnormal, NodeUnpublish and NodeUnstage OK within their deadlines, nothing left", scenarios::target_lost).await;
    let mut latency_line = None;
    let title = format!("NodeStage latency over {} volumes", o.stage_count);
    run.row("h", &title, async |e| {
        latency_line = Some(scenarios::latency(e, o.stage_count).await?);
        Ok(())
    })
    .await;
    let report = run.report;

    println!("E2E-SUMMARY ---------------------------------------------------------------");
    for row in report.rows() {
        let (id, title) = &row.label;
        let why = reason(row, "\nE2E-SUMMARY         reason: ");
        println!(
            "E2E-SUMMARY {:<7} {:<4} {:>6.1}s  {title}{why}",
            id,
            pass_fail(row.outcome),
            row.took.as_secs_f64(),
        );
    }
    if let Some(l) = latency_line {
        println!("E2E-SUMMARY {l}");
    }
    let (total, failed) = (report.rows().len(), report.count(Outcome::Fail));
    println!(
        "E2E-SUMMARY {total} scenario(s), {} passed, {failed} failed, driver wall time {:.1}s (guest clock, TCG)",
        total - failed,
        t_all.elapsed().as_secs_f64()
    );
    Ok(report.ok() && total > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_lines_keep_the_format_the_vm_script_greps() {
        let mut row = Row {
            label: ("b".to_string(), "RWX block live migration".to_string()),
            outcome: Outcome::Ok,
            took: Duration::from_millis(12_340),
            detail: String::new(),
        };
        assert_eq!(
            scenario_line(&row),
            "E2E-SCENARIO b PASS 12.3s RWX block live migration"
        );
        row.outcome = Outcome::Fail;
        row.detail = "node-b reads md5 x, node-a wrote y".into();
        assert_eq!(
            scenario_line(&row),
            "E2E-SCENARIO b FAIL 12.3s RWX block live migration: node-b reads md5 x, node-a wrote y"
        );
    }
}
