//! `rds-csi-e2e run` arguments.

use crate::R;

/// The scenario ids `--scenarios` accepts (see `scenarios/`).
pub const SCENARIO_IDS: [&str; 9] = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];

pub struct Opts {
    /// The controller's CSI endpoint (`unix:///path` or `tcp://host:port`).
    pub controller: String,
    /// (node id, CSI endpoint)
    pub nodes: Vec<(String, String)>,
    /// (node id, agent address): that node's shell commands go through its agent.
    pub agents: Vec<(String, String)>,
    /// (node id, plugin log file readable on that node)
    pub logs: Vec<(String, String)>,
    /// The controller's Prometheus endpoint, fetched from node-a.
    pub metrics: String,
    /// Scenario ids to run, in the driver's fixed order.
    pub scenarios: Vec<String>,
    /// Volumes staged at once by the latency scenario.
    pub stage_count: usize,
}

pub const USAGE: &str = "usage: rds-csi-e2e run --controller EP --node ID=EP... [--agent ID=ADDR] [--node-log ID=FILE] [--metrics URL] [--scenarios a,b,c,d,e,f,g,h,i] [--stage-count N]\n       rds-csi-e2e agent --listen ADDR";

pub fn parse(args: &[String]) -> R<Opts> {
    let mut o = Opts {
        controller: String::new(),
        nodes: Vec::new(),
        agents: Vec::new(),
        logs: Vec::new(),
        metrics: "http://127.0.0.1:9809/metrics".into(),
        scenarios: SCENARIO_IDS.iter().map(|s| s.to_string()).collect(),
        stage_count: 20,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let kv = |s: String| {
            s.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or(format!("expected id=value, got {s:?}"))
        };
        match a.as_str() {
            "--controller" => o.controller = val()?,
            "--node" => o.nodes.push(kv(val()?)?),
            "--agent" => o.agents.push(kv(val()?)?),
            "--node-log" => o.logs.push(kv(val()?)?),
            "--metrics" => o.metrics = val()?,
            "--scenarios" => o.scenarios = val()?.split(',').map(|s| s.trim().to_owned()).collect(),
            "--stage-count" => {
                o.stage_count = val()?.parse().map_err(|_| "--stage-count: a number")?
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    ensure!(!o.controller.is_empty(), "--controller is required");
    for id in &o.scenarios {
        ensure!(
            SCENARIO_IDS.contains(&id.as_str()),
            "--scenarios: unknown scenario {id:?} (known: {})",
            SCENARIO_IDS.join(",")
        );
    }
    Ok(o)
}
