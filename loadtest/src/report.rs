//! The result of a run: a human summary, a JSON document, and a latency percentile plot.

use std::collections::BTreeMap;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::run::Tally;
use crate::LoadError;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Latency {
        let q = |q: f64| ms(h.value_at_quantile(q));
        Latency {
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command's settings, as given.
    pub settings: serde_json::Value,
    pub seconds: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    /// Checks answered as expected (batch items count one each).
    pub items: u64,
    pub items_per_second: f64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub latency: Latency,
    /// Latency of the answers with the expected status only.
    pub latency_expected: Latency,
    /// The same answers, counted from when each was sent rather than when it was due.
    pub latency_expected_sent: Latency,
    /// Percentile → latency (ms), for plotting and comparing.
    pub percentiles: Vec<(f64, f64)>,
    /// The run in slices of time (by when each request was due): where the slow ones were.
    pub timeline: Vec<Slice>,
    /// The generator's own CPU over the measured time, in cores: near the cores it may
    /// use (1.0 when pinned to one), the generator set the pace, not the server.
    pub generator_cpu: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Slice {
    /// Start of the slice, seconds into the measured time.
    pub at_s: f64,
    pub requests: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

/// `a: 1, b: 2`
fn listed<K: std::fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    pub fn new(settings: serde_json::Value, t: &Tally) -> Report {
        let secs = t.elapsed.as_secs_f64().max(1e-9);
        let h = &t.latency;
        Report {
            settings,
            seconds: secs,
            requests: t.requests,
            requests_per_second: t.requests as f64 / secs,
            items: t.items,
            items_per_second: t.items as f64 / secs,
            errors: t.error_count(),
            errors_by_kind: t.errors.clone(),
            statuses: t.statuses.clone(),
            latency: Latency::of(h),
            latency_expected: Latency::of(&t.latency_expected),
            latency_expected_sent: Latency::of(&t.latency_expected_sent),
            percentiles: percentiles(h),
            timeline: t
                .timeline
                .slices
                .iter()
                .enumerate()
                .map(|(i, &(n, sum, max))| Slice {
                    at_s: t.timeline.slice.as_secs_f64() * i as f64,
                    requests: n,
                    mean_ms: ms(sum) / n.max(1) as f64,
                    max_ms: ms(max),
                })
                .collect(),
            generator_cpu: t.generator_cpu,
        }
    }

    pub fn summary(&self) -> String {
        let l = &self.latency;
        let mut s = format!(
            "{} requests in {:.1} s: {:.0} req/s, {:.0} checks/s\n\
             latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n\
             statuses: {}\n",
            self.requests,
            self.seconds,
            self.requests_per_second,
            self.items_per_second,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            listed(&self.statuses)
        );
        if let Some(cores) = self.generator_cpu {
            s.push_str(&format!("generator CPU: {cores:.2} cores\n"));
        }
        if self.errors > 0 {
            let e = &self.latency_expected;
            s.push_str(&format!(
                "expected answers only, ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
                e.p50_ms, e.p90_ms, e.p99_ms, e.p999_ms, e.max_ms
            ));
        }
        if let Some(w) = self
            .timeline
            .iter()
            .max_by(|a, b| a.max_ms.total_cmp(&b.max_ms))
        {
            s.push_str(&format!(
                "slowest slice: {:.1} s in, max {:.3} ms over {} requests (JSON: timeline)\n",
                w.at_s, w.max_ms, w.requests
            ));
        }
        if self.errors == 0 {
            s.push_str("errors: none\n");
        } else {
            s.push_str(&format!(
                "errors: {} ({})\n",
                self.errors,
                listed(&self.errors_by_kind)
            ));
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(path, bytes).map_err(|source| LoadError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The latency percentile plot (HdrHistogram style: x in "nines"), PNG.
    pub fn plot(&self, path: &Path, font: &Path) -> Result<(), LoadError> {
        crate::plot::percentiles(&self.percentiles, path, font)
    }
}

/// Latency at percentiles from 0 to 99.99 and the maximum, spaced evenly in "nines".
fn percentiles(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = (0..=40)
        .map(|i| {
            let nines = f64::from(i) / 10.0;
            let q = 1.0 - 10f64.powf(-nines);
            (q * 100.0, ms(h.value_at_quantile(q)))
        })
        .collect();
    out.push((100.0, ms(h.max())));
    out
}
