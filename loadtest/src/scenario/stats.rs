//! Medians, ratios round by round, and the markdown tables docs/benchmarks.md shows.

use serde_json::Value;

pub fn median(v: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `num[i] / den[i]`, round by round: the machine drifts between rounds more than most
/// changes move it, and a ratio of two runs a few seconds apart cancels the drift both
/// share.
pub fn ratios(num: &[f64], den: &[f64]) -> Vec<f64> {
    num.iter().zip(den).map(|(n, d)| n / d).collect()
}

/// A figure of a generator's JSON report: `field` is a path such as `latency.p99_ms`.
pub fn figure(report: &Value, field: &str) -> f64 {
    field
        .split('.')
        .fold(report, |v, k| &v[k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// Answers other than 200, and failures.
pub fn not_200(report: &Value) -> f64 {
    let requests = figure(report, "requests");
    requests - report["statuses"]["200"].as_f64().unwrap_or(0.0)
}

/// `a / b / c`, with `decimals`.
pub fn list(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A markdown table.
pub struct Table {
    text: String,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        let mut text = format!("| {} |\n|", header.join(" | "));
        text.push_str(&"---|".repeat(header.len()));
        text.push('\n');
        Table { text }
    }

    pub fn row(&mut self, cells: &[String]) {
        self.text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }

    pub fn markdown(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median([]).is_nan());
        assert_eq!(ratios(&[2.0, 9.0], &[1.0, 3.0]), vec![2.0, 3.0]);
    }

    #[test]
    fn figures_and_tables() {
        let r = serde_json::json!({"requests": 10, "statuses": {"200": 7, "503": 3},
            "latency": {"p99_ms": 1.5}});
        assert_eq!(figure(&r, "latency.p99_ms"), 1.5);
        assert!(figure(&r, "latency.nothing").is_nan());
        assert_eq!(not_200(&r), 3.0);
        let mut t = Table::new(&["a", "b"]);
        t.row(&["1".into(), list(&[1.0, 2.25], 1)]);
        assert_eq!(t.markdown(), "| a | b |\n|---|---|\n| 1 | 1.0 / 2.2 |\n");
    }
}
