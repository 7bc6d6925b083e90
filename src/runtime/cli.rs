//! Command-line interface. Flags are a public contract (docs/cli.md): names and meanings
//! stay; every flag also reads `RDS_CSI_<NAME>` from the environment.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::csi::endpoint::{Endpoint, MetricsAddress};
use crate::csi::identity::{validate_driver_name, DEFAULT_DRIVER_NAME};
use crate::observability::logging::{parse_log_level, LogFormat};

/// Where the kernel mounts nvmet's configfs: `--nvmet-root`'s default.
pub const DEFAULT_NVMET_ROOT: &str = "/sys/kernel/config/nvmet";

#[derive(Debug, Parser)]
#[command(
    name = "rds-csi",
    version,
    about = "Kubernetes CSI driver for MikroTik ROSE Data Server (RDS) volumes over NVMe/TCP",
    long_about = "Kubernetes CSI driver for MikroTik ROSE Data Server (RDS).\n\n\
Volumes are file-backed disks on the RDS, managed over SSH with RouterOS commands and served \
to nodes over NVMe/TCP through the Linux kernel. One binary runs every role: the controller \
(a Deployment), the node plugin (a DaemonSet), an RDS simulator for development, and a demo.\n\n\
Every flag can also be set through the environment: RDS_CSI_ + the flag name in upper case \
with '_' (e.g. --rds-address is RDS_CSI_RDS_ADDRESS)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the CSI controller: create, delete, expand and snapshot disks on the RDS over SSH,
    /// and fence volumes to nodes (RWO: one node; RWX block: a live-migration window of two).
    Controller(ControllerArgs),
    /// Run the CSI node plugin: connect NVMe/TCP controllers through the kernel, format (only
    /// fresh volumes), mount and publish, and refuse to disconnect a device still held open.
    Node(NodeArgs),
    /// Run an RDS simulator: an SSH server speaking the RouterOS subset the driver uses, with
    /// sparse backing files, optional real NVMe/TCP export through the kernel's nvmet, and
    /// fault injection.
    Simulator(SimulatorArgs),
    /// Walk volumes through their whole life on the built-in simulator (create, stage,
    /// publish, write/read, a two-node live migration of a block volume, expand, snapshot,
    /// restore, clone, cleanup) over the real CSI sockets, and print a table of steps with
    /// timings. Node steps need root (loop devices, mkfs, mount) and are skipped without it.
    Demo(DemoArgs),
    /// Preflight a node or the controller's RDS: one line per check (PASS, WARN or FAIL, with
    /// the remedy); exit status 1 when a check failed. Takes the role's own flags and
    /// environment, so inside the pod it checks what the plugin uses.
    Doctor(DoctorArgs),
    /// Print the driver version and the CSI spec version it implements.
    Version,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(subcommand)]
    pub role: DoctorRole,
}

#[derive(Debug, Subcommand)]
pub enum DoctorRole {
    /// On a node (e.g. `kubectl exec` in the node plugin's container): the nvme-tcp module and
    /// /dev/nvme-fabrics, io_uring, a complete holder scan (hostPID, CAP_SYS_PTRACE), the host
    /// NQN, the filesystem tools.
    Node(NodeArgs),
    /// With the controller's flags: the RDS answers over SSH with the pinned host key, and
    /// the pool's free space.
    Controller(ControllerArgs),
}

/// Flags shared by the controller and node.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// CSI endpoint: unix:///path/to.sock or tcp://host:port.
    #[arg(long, env = "RDS_CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: Endpoint,
    /// CSI driver name (domain notation, at most 63 characters).
    #[arg(long, env = "RDS_CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME, value_parser = validate_driver_name)]
    pub driver_name: String,
    /// Log format.
    #[arg(long, env = "RDS_CSI_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `info,rds_csi=debug`.
    #[arg(long, env = "RDS_CSI_LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address serving /metrics, /healthz and /readyz; empty turns it off.
    #[arg(long, env = "RDS_CSI_METRICS_ADDRESS", default_value = ":9809")]
    pub metrics_address: MetricsAddress,
    /// RDS management address, `host` or `host:port` (SSH; port 22 by default).
    #[arg(long, env = "RDS_CSI_RDS_ADDRESS")]
    pub rds_address: Option<String>,
    /// SSH user on the RDS.
    #[arg(long, env = "RDS_CSI_RDS_USER")]
    pub rds_user: Option<String>,
    /// SSH private key file (ed25519 or RSA).
    #[arg(long, env = "RDS_CSI_RDS_KEY_FILE")]
    pub rds_key_file: Option<PathBuf>,
    /// Pinned RDS host key: a known_hosts-style line, or `SHA256:<fingerprint>`.
    #[arg(long, env = "RDS_CSI_RDS_HOST_KEY")]
    pub rds_host_key: Option<String>,
    /// Skip host key verification (a warning is logged at every connect). Development only.
    #[arg(long, env = "RDS_CSI_RDS_INSECURE_SKIP_HOST_KEY_CHECK")]
    pub rds_insecure_skip_host_key_check: bool,
    /// Directory on the RDS under which all volume files live, e.g. /storage-pool/csi.
    #[arg(long, env = "RDS_CSI_VOLUME_BASE_PATH")]
    pub volume_base_path: Option<String>,
    /// Default NVMe/TCP address given to nodes (a StorageClass may override it).
    #[arg(long, env = "RDS_CSI_NVME_ADDRESS")]
    pub nvme_address: Option<String>,
    /// NQN of a volume = this prefix + the volume id.
    #[arg(
        long,
        env = "RDS_CSI_NQN_PREFIX",
        default_value = "nqn.2000-02.com.mikrotik:"
    )]
    pub nqn_prefix: String,
    /// Kubeconfig path; in-cluster configuration when absent.
    #[arg(long, env = "RDS_CSI_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Run without a Kubernetes API server (development, conformance runs). Fencing still
    /// works from in-memory state.
    #[arg(long, env = "RDS_CSI_NO_KUBERNETES")]
    pub no_kubernetes: bool,
    /// With --no-kubernetes: comma-separated node ids that exist; ControllerPublish to any
    /// other node is NOT_FOUND.
    #[arg(long, env = "RDS_CSI_STATIC_NODES", value_delimiter = ',')]
    pub static_nodes: Vec<String>,
    /// Seconds during which a fully detached RWO volume may be taken over by another node
    /// (a handoff); never while another node still holds it.
    #[arg(long, env = "RDS_CSI_ATTACHMENT_GRACE_PERIOD", default_value_t = 30)]
    pub attachment_grace_period: u64,
    /// Topology segments every volume is accessible from, e.g. `topology.kubernetes.io/region=r1`
    /// (comma-separated or repeated); none by default.
    #[arg(long, env = "RDS_CSI_TOPOLOGY", value_delimiter = ',')]
    pub topology: Vec<TopologySegment>,
    /// Two or more replicas: answer ControllerPublish/Unpublish only while this pod's
    /// external-attacher holds its Lease (the driver follows that Lease; it never writes it).
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the attacher's Lease (the attacher's --leader-election-namespace); default:
    /// this pod's namespace.
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// This pod's identity in the Lease; default: the host name, which is the pod name and
    /// what the sidecars use.
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION_IDENTITY")]
    pub leader_election_identity: Option<String>,
    /// The Lease followed; default: the external-attacher's,
    /// `external-attacher-leader-<driver name, with . as ->`.
    #[arg(long, env = "RDS_CSI_LEADER_ELECTION_LEASE_NAME")]
    pub leader_election_lease_name: Option<String>,
    /// With --no-kubernetes: the directory of the attachment table's durable state file
    /// (attachments.json), restored at start.
    #[arg(
        long,
        env = "RDS_CSI_STATE_DIR",
        default_value = "/var/lib/rds-csi/controller"
    )]
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// NVMe over TCP through the kernel (production).
    #[value(name = "nvme-tcp")]
    NvmeTcp,
    /// Loop devices over the simulator's backing files (development and tests only).
    Loop,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address serving /metrics, /healthz and /readyz; empty turns it off.
    #[arg(long, env = "RDS_CSI_METRICS_ADDRESS", default_value = ":9810")]
    pub metrics_address: MetricsAddress,
    /// This node's id (the Kubernetes node name).
    #[arg(long, env = "RDS_CSI_NODE_ID")]
    pub node_id: Option<String>,
    /// How volumes reach this node.
    #[arg(
        long,
        env = "RDS_CSI_TRANSPORT",
        value_enum,
        default_value = "nvme-tcp"
    )]
    pub transport: Transport,
    /// With --transport loop: the simulator's data directory.
    #[arg(long, env = "RDS_CSI_LOOP_DATA_DIR")]
    pub loop_data_dir: Option<PathBuf>,
    /// Only NQNs under this prefix are ever disconnected (hosts may also boot from RDS disks).
    #[arg(
        long,
        env = "RDS_CSI_NQN_PREFIX",
        default_value = "nqn.2000-02.com.mikrotik:pvc-"
    )]
    pub nqn_prefix: String,
    /// Where stage records live.
    #[arg(long, env = "RDS_CSI_STATE_DIR", default_value = "/var/lib/rds-csi")]
    pub state_dir: PathBuf,
    /// Host NQN file (generated once and persisted when absent).
    #[arg(
        long,
        env = "RDS_CSI_HOST_NQN_FILE",
        default_value = "/etc/nvme/hostnqn"
    )]
    pub host_nqn_file: PathBuf,
    /// Host ID file (generated once and persisted when absent).
    #[arg(long, env = "RDS_CSI_HOST_ID_FILE", default_value = "/etc/nvme/hostid")]
    pub host_id_file: PathBuf,
    /// Root of procfs (tests).
    #[arg(long, env = "RDS_CSI_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Root of sysfs (tests).
    #[arg(long, env = "RDS_CSI_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,
    /// Root of devfs (tests).
    #[arg(long, env = "RDS_CSI_DEV_ROOT", default_value = "/dev")]
    pub dev_root: PathBuf,
    /// Volumes this node may hold at once (NodeGetInfo max_volumes_per_node); 0 = no limit.
    #[arg(long, env = "RDS_CSI_MAX_VOLUMES", default_value_t = 0)]
    pub max_volumes: u32,
    /// Topology segments this node reports, e.g. `topology.kubernetes.io/zone=a`
    /// (comma-separated or repeated); none by default.
    #[arg(long, env = "RDS_CSI_TOPOLOGY", value_delimiter = ',')]
    pub topology: Vec<TopologySegment>,
    /// Seconds between passes of the reconnect reconciler (nvme-tcp only); 0 turns it off.
    #[arg(long, env = "RDS_CSI_RECONCILE_INTERVAL", default_value_t = 30)]
    pub reconcile_interval: u64,
}

/// One `--topology` segment, `key=value` (CSI `Topology.segments`; a Kubernetes node label,
/// e.g. `topology.kubernetes.io/zone=a`). Parsed once here for the controller and the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySegment {
    pub key: String,
    pub value: String,
}

impl std::str::FromStr for TopologySegment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => Ok(TopologySegment {
                key: k.trim().to_owned(),
                value: v.trim().to_owned(),
            }),
            _ => Err("expected key=value, e.g. topology.kubernetes.io/zone=a".into()),
        }
    }
}

impl TopologySegment {
    /// The segments as a map; a key given twice keeps its last value (as a repeated flag
    /// overrides an earlier one).
    pub fn map(segments: &[TopologySegment]) -> std::collections::BTreeMap<String, String> {
        segments
            .iter()
            .map(|s| (s.key.clone(), s.value.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportBackend {
    /// Disks are not exported (control plane only).
    None,
    /// Exported disks become real NVMe/TCP subsystems through the kernel's nvmet (configfs).
    Nvmet,
}

#[derive(Debug, Args)]
pub struct SimulatorArgs {
    /// SSH listen address, e.g. 127.0.0.1:2222.
    #[arg(long, env = "RDS_CSI_LISTEN", default_value = "127.0.0.1:2222")]
    pub listen: String,
    /// Persisted disks and the simulator's host key.
    #[arg(long, env = "RDS_CSI_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Backing files of the disks.
    #[arg(long, env = "RDS_CSI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Public keys allowed to log in (authorized_keys format).
    #[arg(long, env = "RDS_CSI_AUTHORIZED_KEYS")]
    pub authorized_keys: Option<PathBuf>,
    /// Pool capacity, e.g. 100G.
    #[arg(long, env = "RDS_CSI_POOL_SIZE", default_value = "100G")]
    pub pool_size: String,
    /// Mount point name of the pool.
    #[arg(long, env = "RDS_CSI_POOL_NAME", default_value = "storage-pool")]
    pub pool_name: String,
    /// Export backend.
    #[arg(long, env = "RDS_CSI_EXPORT", value_enum, default_value = "none")]
    pub export: ExportBackend,
    /// With --export nvmet: NVMe/TCP listen address, e.g. 127.0.0.1:4420.
    #[arg(long, env = "RDS_CSI_NVME_LISTEN")]
    pub nvme_listen: Option<String>,
    /// Print the host key line to pin (--rds-host-key), then exit.
    #[arg(long, env = "RDS_CSI_PRINT_HOST_KEY")]
    pub print_host_key: bool,
    /// Faults to inject from the start, e.g. `latency=200ms` or `disk-full=yes`
    /// (repeatable; the same spec as `/simulator fault ...` over SSH).
    #[arg(long, env = "RDS_CSI_FAULT")]
    pub fault: Vec<String>,
    /// With --export nvmet: the nvmet configfs directory (tests point it at a fake tree).
    #[arg(
        long,
        env = "RDS_CSI_NVMET_ROOT",
        default_value = DEFAULT_NVMET_ROOT
    )]
    pub nvmet_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the work directory in place for inspection.
    #[arg(long, env = "RDS_CSI_KEEP")]
    pub keep: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn topology_is_parsed_the_same_for_controller_and_node() {
        for role in ["controller", "node"] {
            let cli = Cli::try_parse_from([
                "rds-csi",
                role,
                "--topology",
                "topology.kubernetes.io/zone=a,rack=r1",
                "--topology",
                "zone2=b",
            ])
            .unwrap();
            let segs = match cli.command {
                Command::Controller(a) => a.topology,
                Command::Node(a) => a.topology,
                _ => unreachable!(),
            };
            let map = TopologySegment::map(&segs);
            assert_eq!(map.len(), 3, "{role}: {map:?}");
            assert_eq!(map["topology.kubernetes.io/zone"], "a");
            for bad in ["zone", "=a", "zone=", " = "] {
                let e = Cli::try_parse_from(["rds-csi", role, "--topology", bad]).unwrap_err();
                let text = e.to_string();
                assert!(
                    text.contains("--topology") && text.contains("expected key=value"),
                    "{role} {bad:?}: {text}"
                );
            }
        }
    }
}
