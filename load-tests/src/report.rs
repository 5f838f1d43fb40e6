//! The end of a run: the summary table, the JSON report, and an HTML page with an
//! SVG chart of latency percentiles over time.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::stats::{table, Recorder, SeriesPoint};

/// Where the report goes besides stdout.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Output {
    /// Also write the JSON report to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Write an HTML report (tables and the latency-over-time chart) to this file.
    #[arg(long, global = true)]
    pub html: Option<PathBuf>,
    /// Write the latency-over-time chart alone as SVG to this file.
    #[arg(long, global = true)]
    pub svg: Option<PathBuf>,
    /// No progress bar and no table on stderr.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// Adds the recorder's measurements to `report`, prints the table (stderr) and
/// the JSON (stdout), and writes the files asked for.
pub fn finish(recorder: &Recorder, mut report: Value, out: &Output) -> anyhow::Result<Value> {
    let latencies = recorder.latencies();
    let series = recorder.series();
    report["latency_ms"] = json!(latencies);
    report["errors"] = json!(recorder.errors());
    report["error_total"] = json!(recorder.errors().values().sum::<u64>());
    report["counts"] = json!(recorder.counts());
    report["series"] = json!(series);
    if !out.quiet {
        eprintln!("\n{}", table(&latencies));
        if !recorder.errors().is_empty() {
            eprintln!("errors by code: {}", json!(recorder.errors()));
        }
    }
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = &out.json {
        std::fs::write(path, &text)?;
    }
    let title = format!(
        "{} latency over time",
        report["series_phase"].as_str().unwrap_or("main")
    );
    if let Some(path) = &out.svg {
        std::fs::write(path, svg_chart(&series, &title))?;
    }
    if let Some(path) = &out.html {
        std::fs::write(path, html(&report, &series, &title))?;
    }
    Ok(report)
}

const W: f64 = 760.0;
const H: f64 = 320.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// Maps a latency to a y coordinate on a log scale from 0.01 ms to `top_ms`.
fn y_of(ms: f64, top_ms: f64) -> f64 {
    let lo = 0.01f64.log10();
    let hi = top_ms.max(0.1).log10();
    let v = ms.max(0.01).log10().clamp(lo, hi);
    TOP + (H - TOP - BOTTOM) * (1.0 - (v - lo) / (hi - lo))
}

fn x_of(t: f64, t_max: f64) -> f64 {
    LEFT + (W - LEFT - RIGHT) * if t_max > 0.0 { t / t_max } else { 0.0 }
}

/// An SVG line chart of p50, p90, p99 and max per second (log scale).
pub fn svg_chart(series: &[SeriesPoint], title: &str) -> String {
    let points: Vec<&SeriesPoint> = series.iter().filter(|p| p.count > 0).collect();
    let t_max = series.len().saturating_sub(1).max(1) as f64;
    let top_ms = points.iter().map(|p| p.max_ms).fold(1.0, f64::max);
    let top_ms = 10f64.powf(top_ms.log10().ceil());
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{LEFT}" y="18" font-size="13">{}</text>
"##,
        escape(title)
    );
    let mut decade = 0.01;
    while decade <= top_ms * 1.0001 {
        let y = y_of(decade, top_ms);
        svg.push_str(&format!(
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{} ms</text>
"##,
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            decade
        ));
        decade *= 10.0;
    }
    let ticks = 10usize.min(series.len().max(1));
    for i in 0..=ticks {
        let t = t_max * i as f64 / ticks as f64;
        let x = x_of(t, t_max);
        svg.push_str(&format!(
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#999"/><text x="{x:.1}" y="{}" text-anchor="middle">{t:.0} s</text>
"##,
            H - BOTTOM,
            H - BOTTOM + 4.0,
            H - BOTTOM + 16.0
        ));
    }
    type Line = (&'static str, &'static str, fn(&SeriesPoint) -> f64);
    let lines: [Line; 4] = [
        ("p50", "#1b9e77", |p| p.p50_ms),
        ("p90", "#7570b3", |p| p.p90_ms),
        ("p99", "#d95f02", |p| p.p99_ms),
        ("max", "#999999", |p| p.max_ms),
    ];
    for (i, (name, color, value)) in lines.iter().enumerate() {
        let coords: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x_of(p.t, t_max), y_of(value(p), top_ms)))
            .collect();
        svg.push_str(&format!(
            r##"<polyline class="{name}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>
<text x="{}" y="{}" fill="{color}">{name}</text>
"##,
            coords.join(" "),
            W - RIGHT - 160.0 + 40.0 * i as f64,
            H - 6.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page: headline numbers, latency table, errors, chart.
pub fn html(report: &Value, series: &[SeriesPoint], title: &str) -> String {
    let mut rows = String::new();
    if let Some(phases) = report["latency_ms"].as_object() {
        for (phase, s) in phases {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(phase),
                s["count"],
                s["p50_ms"],
                s["p90_ms"],
                s["p99_ms"],
                s["p999_ms"],
                s["max_ms"]
            ));
        }
    }
    let mut headline = String::new();
    if let Some(fields) = report.as_object() {
        for (k, v) in fields {
            if v.is_number() || v.is_string() || v.is_boolean() {
                headline.push_str(&format!(
                    "<tr><th>{}</th><td>{}</td></tr>\n",
                    escape(k),
                    escape(
                        &v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    )
                ));
            }
        }
    }
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>vc-load: {scenario}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{text-align:left}}</style>
</head><body>
<h1>vc-load: {scenario}</h1>
<table>{headline}</table>
<h2>Latency by phase (ms)</h2>
<table><tr><th>phase</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
{rows}</table>
<h2>Errors by code</h2>
<pre>{errors}</pre>
<h2>{title}</h2>
{chart}
</body></html>
"#,
        scenario = escape(report["scenario"].as_str().unwrap_or("?")),
        errors = escape(&serde_json::to_string_pretty(&report["errors"]).unwrap_or_default()),
        title = escape(title),
        chart = svg_chart(series, title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, p50: f64) -> SeriesPoint {
        SeriesPoint {
            t,
            count: 10,
            p50_ms: p50,
            p90_ms: p50 * 2.0,
            p99_ms: p50 * 4.0,
            max_ms: p50 * 8.0,
        }
    }

    #[test]
    fn chart_has_one_point_per_non_empty_second() {
        let mut series = vec![point(0.0, 1.0), point(1.0, 2.0), point(2.0, 3.0)];
        series[1].count = 0;
        let svg = svg_chart(&series, "relay <latency>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("relay &lt;latency&gt;"));
        let p99 = svg
            .lines()
            .find(|l| l.contains(r#"class="p99""#))
            .expect("p99 line");
        assert_eq!(p99.matches(',').count(), 2, "{p99}");
    }

    #[test]
    fn log_scale_orders_latencies() {
        assert!(y_of(1.0, 100.0) > y_of(10.0, 100.0));
        assert!((y_of(100.0, 100.0) - TOP).abs() < 1e-9);
        assert!((y_of(0.001, 100.0) - (H - BOTTOM)).abs() < 1e-9);
    }

    #[test]
    fn html_lists_phases_and_headline_numbers() {
        let report = json!({
            "scenario": "relay",
            "throughput_per_s": 1234.5,
            "latency_ms": {"relay": {"count": 3, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "p999_ms": 3.0, "max_ms": 3.0}},
            "errors": {},
        });
        let page = html(&report, &[point(0.0, 1.0)], "relay latency over time");
        assert!(page.contains("<td>relay</td><td>3</td>"));
        assert!(page.contains("throughput_per_s"));
        assert!(page.contains("<svg"));
    }
}
