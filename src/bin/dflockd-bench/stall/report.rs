//! The `stall` report, as text or as one JSON object.

use std::time::Duration;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::{Scenario, StallArgs};
use crate::stats::Summary;

/// `value` to the microsecond, so it prints without float noise.
pub(super) fn rounded(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// A report window: its name, length and probe latencies.
pub(super) type Window = (&'static str, Duration, Option<Summary>);

pub(super) fn render_text(
    args: &StallArgs,
    size: usize,
    facts: &[(&str, f64)],
    windows: &[Window],
) -> String {
    let mut out = format!(
        "dflockd-bench stall: scenario {}, size {size}, server {}\n",
        args.scenario.name(),
        args.servers
    );
    for (name, value) in facts {
        out += &format!("  {name:<25}: {}\n", rounded(*value));
    }
    out += "  probe ping     window_s  pings    p50_ms    p99_ms    max_ms";
    for (name, length, summary) in windows {
        out += &format!("\n  {name:<12} {:>10.3}", length.as_secs_f64());
        out += &match summary {
            Some(s) => format!(
                " {:>6} {:>9.3} {:>9.3} {:>9.3}",
                s.count, s.p50_ms, s.p99_ms, s.max_ms
            ),
            None => "      0         -         -         -".to_owned(),
        };
    }
    out
}

/// One window of the JSON report; the latencies are `null` when no ping overlapped it.
#[derive(Serialize)]
pub(super) struct WindowReport {
    pub(super) window_s: f64,
    pub(super) pings: usize,
    pub(super) p50_ms: Option<f64>,
    pub(super) p99_ms: Option<f64>,
    pub(super) max_ms: Option<f64>,
}

impl WindowReport {
    pub(super) fn new(length: Duration, summary: Option<&Summary>) -> Self {
        Self {
            window_s: length.as_secs_f64(),
            pings: summary.map_or(0, |s| s.count),
            p50_ms: summary.map(|s| s.p50_ms),
            p99_ms: summary.map(|s| s.p99_ms),
            max_ms: summary.map(|s| s.max_ms),
        }
    }
}

/// The report as one JSON object: scenario and size, then the facts and the windows as fields
/// named after them, in order.
pub(super) struct StallReport<'a> {
    pub(super) scenario: Scenario,
    pub(super) size: usize,
    pub(super) facts: &'a [(&'a str, f64)],
    pub(super) windows: &'a [Window],
}

impl Serialize for StallReport<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("scenario", self.scenario.name())?;
        map.serialize_entry("size", &self.size)?;
        for (name, value) in self.facts {
            map.serialize_entry(name, &rounded(*value))?;
        }
        for (name, length, summary) in self.windows {
            map.serialize_entry(name, &WindowReport::new(*length, summary.as_ref()))?;
        }
        map.end()
    }
}

pub(super) fn render_json(
    scenario: Scenario,
    size: usize,
    facts: &[(&str, f64)],
    windows: &[Window],
) -> String {
    let report = StallReport {
        scenario,
        size,
        facts,
        windows,
    };
    serde_json::to_string(&report).expect("the report has string keys only")
}
