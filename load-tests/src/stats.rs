//! Measurements: latency histograms per phase, counters, errors by code, and a
//! per-second series of the main latency for the chart; then the arithmetic that
//! turns them into a report.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram holds, in microseconds (one minute).
const MAX_US: u64 = 60_000_000;

#[allow(
    clippy::expect_used,
    reason = "the bounds are constants that hdrhistogram accepts"
)]
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records a duration, clamped into the histogram's range.
fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_US);
    h.record(us).ok();
}

#[derive(Default)]
struct Inner {
    phases: BTreeMap<&'static str, Histogram<u64>>,
    /// Per-second histograms of the series phase, indexed by seconds since the
    /// measurement window opened.
    series: Vec<Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    counts: BTreeMap<&'static str, u64>,
}

/// Shared by every task of a run. Latencies recorded for events scheduled before
/// the warm-up ends are left out of the histograms.
pub struct Recorder {
    /// Zero of the run's clock: timestamps inside messages count from here.
    pub epoch: Instant,
    /// Start of the measurement window (after warm-up).
    measure_from: Mutex<Instant>,
    /// The phase drawn over time in the chart.
    series_phase: &'static str,
    inner: Mutex<Inner>,
    frames: AtomicU64,
    errors: AtomicU64,
    progress: AtomicU64,
}

impl Recorder {
    pub fn new(series_phase: &'static str) -> Self {
        let now = Instant::now();
        Self {
            epoch: now,
            measure_from: Mutex::new(now),
            series_phase,
            inner: Mutex::new(Inner::default()),
            frames: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            progress: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the measurement window at `at` (the end of the warm-up).
    pub fn measure_from(&self, at: Instant) {
        *self.measure_from.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn window_start(&self) -> Instant {
        *self.measure_from.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an event that started (or was scheduled) at `at` is measured.
    pub fn in_window(&self, at: Instant) -> bool {
        at >= self.window_start()
    }

    /// Microseconds since the epoch, for timestamps carried inside messages.
    pub fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The instant of a stamp made by [`Recorder::stamp`].
    pub fn unstamp(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    /// Records `latency` of `phase` for an event that started at `started`;
    /// ignored when it started before the window.
    pub fn latency(&self, phase: &'static str, started: Instant, latency: Duration) {
        let from = self.window_start();
        if started < from {
            return;
        }
        let mut inner = self.lock();
        record(inner.phases.entry(phase).or_insert_with(histogram), latency);
        if phase == self.series_phase {
            let second = started.duration_since(from).as_secs() as usize;
            if inner.series.len() <= second {
                inner.series.resize_with(second + 1, histogram);
            }
            record(&mut inner.series[second], latency);
        }
    }

    /// Records a latency regardless of the window (set-up phases before it).
    pub fn latency_always(&self, phase: &'static str, latency: Duration) {
        let mut inner = self.lock();
        record(inner.phases.entry(phase).or_insert_with(histogram), latency);
    }

    pub fn count(&self, name: &'static str, n: u64) {
        *self.lock().counts.entry(name).or_insert(0) += n;
    }

    pub fn error(&self, code: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.lock().errors.entry(code.to_owned()).or_insert(0) += 1;
    }

    pub fn frame_received(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves the progress bar's position.
    pub fn progress(&self, n: u64) {
        self.progress.fetch_add(n, Ordering::Relaxed);
    }

    /// (progress, frames received, errors) for the progress bar.
    pub fn live(&self) -> (u64, u64, u64) {
        (
            self.progress.load(Ordering::Relaxed),
            self.frames.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.lock()
            .counts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    pub fn get(&self, name: &str) -> u64 {
        self.lock().counts.get(name).copied().unwrap_or(0)
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.lock().errors.clone()
    }

    pub fn latencies(&self) -> BTreeMap<String, LatencySummary> {
        self.lock()
            .phases
            .iter()
            .map(|(k, h)| (k.to_string(), LatencySummary::of(h)))
            .collect()
    }

    pub fn series(&self) -> Vec<SeriesPoint> {
        self.lock()
            .series
            .iter()
            .enumerate()
            .map(|(i, h)| SeriesPoint::of(i as f64, h))
            .collect()
    }
}

/// Milliseconds, rounded to microseconds.
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self {
                count: 0,
                min_ms: 0.0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Self {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// One second of the series phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Seconds since the measurement window opened.
    pub t: f64,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl SeriesPoint {
    pub fn of(t: f64, h: &Histogram<u64>) -> Self {
        let s = LatencySummary::of(h);
        Self {
            t,
            count: s.count,
            p50_ms: s.p50_ms,
            p90_ms: s.p90_ms,
            p99_ms: s.p99_ms,
            max_ms: s.max_ms,
        }
    }
}

/// Events per second over a window, 0 for an empty window.
pub fn per_second(count: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole == 0.0 {
        0.0
    } else {
        part / whole
    }
}

/// The closing summary as a text table, one row per latency phase.
pub fn table(latencies: &BTreeMap<String, LatencySummary>) -> String {
    let mut out = format!(
        "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "phase", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (phase, s) in latencies {
        out.push_str(&format!(
            "{:<18} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
            phase, s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).expect("in range");
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{}", s.p50_ms);
        assert!((s.p90_ms - 90.0).abs() < 0.1, "{}", s.p90_ms);
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{}", s.p99_ms);
        assert!((s.max_ms - 100.0).abs() < 0.1, "{}", s.max_ms);
        assert!((s.min_ms - 1.0).abs() < 0.01);
        assert!((s.mean_ms - 50.5).abs() < 0.1, "{}", s.mean_ms);
    }

    #[test]
    fn empty_histograms_give_zeroes() {
        let s = LatencySummary::of(&histogram());
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_ms, 0.0);
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut h = histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(3600));
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= MAX_US);
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(per_second(500, Duration::from_secs(10)), 50.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert_eq!(per_second(3, Duration::from_millis(1500)), 2.0);
        assert_eq!(ratio(45.0, 90.0), 0.5);
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }

    #[test]
    fn warm_up_is_left_out_and_the_series_is_per_second() {
        let r = Recorder::new("relay");
        let t0 = r.epoch;
        let window = t0 + Duration::from_secs(2);
        r.measure_from(window);
        r.latency(
            "relay",
            t0 + Duration::from_secs(1),
            Duration::from_millis(900),
        );
        r.latency("relay", window, Duration::from_millis(2));
        r.latency(
            "relay",
            window + Duration::from_millis(2500),
            Duration::from_millis(4),
        );
        r.latency("join", window, Duration::from_millis(7));
        let l = r.latencies();
        assert_eq!(l["relay"].count, 2);
        assert!(l["relay"].max_ms < 5.0);
        let series = r.series();
        assert_eq!(series.len(), 3);
        assert_eq!(series[0].count, 1);
        assert_eq!(series[1].count, 0);
        assert_eq!(series[2].count, 1);
        assert!((series[2].p50_ms - 4.0).abs() < 0.01);
    }

    #[test]
    fn stamps_round_trip() {
        let r = Recorder::new("x");
        let at = r.epoch + Duration::from_micros(123_456);
        assert_eq!(r.stamp(at), 123_456);
        assert_eq!(r.unstamp(123_456), at);
    }

    #[test]
    fn errors_and_counts_add_up() {
        let r = Recorder::new("x");
        r.error("rate-limited");
        r.error("rate-limited");
        r.error("bad-json");
        r.count("sent", 3);
        r.count("sent", 2);
        assert_eq!(r.errors()["rate-limited"], 2);
        assert_eq!(r.get("sent"), 5);
        assert_eq!(r.live().2, 3);
        let t = table(&r.latencies());
        assert!(t.starts_with("phase"));
    }
}
