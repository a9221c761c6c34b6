//! The exporter's own async runtime, read at each render: a task count that only grows is
//! a leak that RSS would show much later.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Opts};

/// `glitchtip_exporter_tasks`: the tasks alive in the tokio runtime that renders.
pub(super) struct RuntimeCollector {
    tasks: IntGauge,
}

impl RuntimeCollector {
    pub(super) fn new() -> Self {
        let tasks = IntGauge::with_opts(Opts::new(
            "glitchtip_exporter_tasks",
            "Tasks alive in the exporter's async runtime (probes, schedules, connections); steady in a healthy exporter.",
        ))
        .expect("valid metric definition");
        Self { tasks }
    }
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.tasks.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Outside a runtime (a render from a plain test thread) there is nothing to count.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Vec::new();
        };
        let alive = handle.metrics().num_alive_tasks();
        self.tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
        self.tasks.collect()
    }
}
