//! Latency recording (HDR histograms, overall and per second) and the SVG plot of a run.

use std::fmt::Write;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Latencies are recorded in microseconds, up to an hour, with three significant digits.
const HIGHEST_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3).expect("valid bounds")
}

pub struct Latencies {
    pub all: Histogram<u64>,
    /// One histogram per second of the run.
    pub per_second: Vec<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies { all: histogram(), per_second: Vec::new() }
    }
}

impl Latencies {
    pub fn record(&mut self, latency_us: u64, at_second: usize) {
        let v = latency_us.clamp(1, HIGHEST_US);
        let _ = self.all.record(v);
        while self.per_second.len() <= at_second {
            self.per_second.push(histogram());
        }
        let _ = self.per_second[at_second].record(v);
    }

    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.all.add(&other.all);
        for (i, h) in other.per_second.iter().enumerate() {
            while self.per_second.len() <= i {
                self.per_second.push(histogram());
            }
            let _ = self.per_second[i].add(h);
        }
    }

    /// p50, p90, p99, p999 and max, in milliseconds.
    pub fn summary_ms(&self) -> [f64; 5] {
        let q = |p: f64| self.all.value_at_quantile(p) as f64 / 1e3;
        [q(0.5), q(0.9), q(0.99), q(0.999), self.all.max() as f64 / 1e3]
    }

    pub fn json(&self) -> Value {
        let [p50, p90, p99, p999, max] = self.summary_ms();
        json!({
            "count": self.all.len(),
            "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "p999_ms": p999, "max_ms": max,
            "per_second_p99_ms": self.per_second.iter().map(|h| h.value_at_quantile(0.99) as f64 / 1e3).collect::<Vec<_>>(),
        })
    }

    /// Two charts: p50/p99 per second over the run, and the latency distribution by percentile.
    pub fn svg(&self, title: &str) -> String {
        let (w, h, pad) = (900.0, 300.0, 50.0);
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12">"#,
            h * 2.0 + 40.0
        );
        let _ = write!(
            out,
            r#"<rect width="100%" height="100%" fill="white"/><text x="{pad}" y="20" font-size="14">{}</text>"#,
            xml(title)
        );
        // Over time.
        let secs = self.per_second.len().max(1);
        let series: Vec<(&str, &str, Vec<f64>)> = vec![
            ("p50", "#1f77b4", self.per_second.iter().map(|h| h.value_at_quantile(0.5) as f64 / 1e3).collect()),
            ("p99", "#d62728", self.per_second.iter().map(|h| h.value_at_quantile(0.99) as f64 / 1e3).collect()),
        ];
        let ymax = series.iter().flat_map(|s| s.2.iter().copied()).fold(0.001f64, f64::max) * 1.1;
        chart(&mut out, 30.0, w, h, pad, "second of the run", "latency (ms)", secs as f64, ymax, &series, |i, _| {
            i as f64
        });
        // Distribution: latency at each percentile, x on a log scale of 1/(1-p).
        let ps: Vec<f64> = (0..=40).map(|i| 1.0 - 10f64.powf(-(i as f64) / 10.0)).collect();
        let dist: Vec<f64> = ps.iter().map(|p| self.all.value_at_quantile(*p) as f64 / 1e3).collect();
        let ymax = dist.iter().copied().fold(0.001f64, f64::max) * 1.1;
        let series = vec![("latency", "#2ca02c", dist)];
        chart(
            &mut out,
            h + 40.0,
            w,
            h,
            pad,
            "percentile (50, 90, 99, 99.9, 99.99)",
            "latency (ms)",
            40.0,
            ymax,
            &series,
            |i, _| i as f64,
        );
        out.push_str("</svg>\n");
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn chart(
    out: &mut String,
    top: f64,
    w: f64,
    h: f64,
    pad: f64,
    xlabel: &str,
    ylabel: &str,
    xmax: f64,
    ymax: f64,
    series: &[(&str, &str, Vec<f64>)],
    x_of: impl Fn(usize, f64) -> f64,
) {
    let (x0, y0, x1, y1) = (pad, top + h - pad, w - 20.0, top + 10.0);
    let sx = |x: f64| x0 + (x1 - x0) * x / xmax.max(1.0);
    let sy = |y: f64| y0 - (y0 - y1) * y / ymax;
    let _ = write!(
        out,
        r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>"#
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}">{}</text><text x="5" y="{}">{}</text>"#,
        (x0 + x1) / 2.0 - 60.0,
        y0 + 30.0,
        xml(xlabel),
        y1 - 2.0,
        xml(ylabel)
    );
    for t in 0..=4 {
        let v = ymax * t as f64 / 4.0;
        let _ = write!(out, r#"<text x="5" y="{:.1}">{v:.2}</text>"#, sy(v) + 4.0);
    }
    for (k, (name, color, ys)) in series.iter().enumerate() {
        let pts: Vec<String> =
            ys.iter().enumerate().map(|(i, y)| format!("{:.1},{:.1}", sx(x_of(i, *y)), sy(*y))).collect();
        let _ = write!(out, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        let _ =
            write!(out, r#"<text x="{}" y="{}" fill="{color}">{name}</text>"#, x1 - 80.0, y1 + 15.0 * (k as f64 + 1.0));
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_plots() {
        let mut l = Latencies::default();
        for i in 1..=1000u64 {
            l.record(i * 10, (i / 100) as usize);
        }
        let [p50, _, p99, _, max] = l.summary_ms();
        assert!((4.9..=5.1).contains(&p50), "{p50}");
        assert!((9.8..=10.0).contains(&p99), "{p99}");
        assert!((9.9..=10.1).contains(&max), "{max}");
        let svg = l.svg("test <run>");
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("test &lt;run&gt;"));
        assert_eq!(l.per_second.len(), 11);
    }
}
