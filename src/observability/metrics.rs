//! The driver's own prometheus registry (never the global default registry, so tests and
//! several services in one process never collide) and the metrics common to every process.

use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Names of every registered metric family (the registry does not list unlabelled
    /// vectors until they have a sample; docs are checked against this list).
    names: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
    /// Volume RPCs refused with ABORTED because another operation on the volume was running.
    pub inflight_rejections: IntCounter,
}

/// Names of the metrics registered here (docs are checked against this list).
pub const BUILD_INFO: &str = "rds_csi_build_info";
pub const INFLIGHT_REJECTIONS: &str = "rds_csi_inflight_rejections_total";

impl Metrics {
    /// `role` is `controller`, `node` or `demo`; a bounded label.
    pub fn new(role: &str) -> Self {
        let registry = Registry::new();
        let build = IntGauge::with_opts(
            Opts::new(
                BUILD_INFO,
                "Always 1; labels carry the version, the git commit and the role",
            )
            .const_label("version", super::build_info::VERSION)
            .const_label("commit", super::build_info::GIT_COMMIT)
            .const_label("role", role),
        )
        .expect("static metric definition");
        build.set(1);
        let inflight_rejections = IntCounter::new(
            INFLIGHT_REJECTIONS,
            "Volume operations refused with ABORTED because another one was in progress",
        )
        .expect("static metric definition");
        let m = Metrics {
            registry,
            names: Default::default(),
            inflight_rejections,
        };
        m.register(Box::new(build));
        m.register(Box::new(m.inflight_rejections.clone()));
        // The standard process_* families (Prometheus client conventions), outside the
        // rds_csi_* names listed by `registered_names`.
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics registered once per registry");
        m
    }

    /// Registers a collector; panics only on a programming error (duplicate name).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.names
            .lock()
            .extend(c.desc().iter().map(|d| d.fq_name.clone()));
        self.registry
            .register(c)
            .expect("metric registered twice: a programming error");
    }

    /// Registers a metric just defined (from a static definition: an error is a programming
    /// error) and returns it. Prometheus metrics are handles: the clone returned records into
    /// the one registered.
    pub fn add<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        defined: prometheus::Result<C>,
    ) -> C {
        let c = defined.expect("static metric definition");
        self.register(Box::new(c.clone()));
        c
    }

    /// Every `rds_csi_*` metric name registered so far, sorted (the process_* families are
    /// not listed).
    pub fn registered_names(&self) -> Vec<String> {
        let mut v = self.names.lock().clone();
        v.sort();
        v
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_private_and_renders_our_metrics() {
        let a = Metrics::new("controller");
        let b = Metrics::new("node");
        a.inflight_rejections.inc();
        let text = a.render();
        let build = text
            .lines()
            .find(|l| l.starts_with("rds_csi_build_info{"))
            .unwrap_or_else(|| panic!("no build_info in {text}"));
        assert!(
            build.contains("role=\"controller\"") && build.ends_with("} 1"),
            "{build}"
        );
        let commit = format!("commit=\"{}\"", super::super::build_info::GIT_COMMIT);
        assert!(text.contains(&commit), "{text}");
        assert!(
            text.contains("rds_csi_inflight_rejections_total 1"),
            "{text}"
        );
        assert!(b.render().contains("rds_csi_inflight_rejections_total 0"));
        // Process metrics, read from /proc for this process.
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{family} "))),
                "{family} missing:\n{text}"
            );
        }
    }
}
