//! Latency summary over a sample of nanosecond durations, through an HDR histogram. It owns the
//! arithmetic only; it must not measure time or format output.

use hdrhistogram::Histogram;

/// Significant decimal digits the histogram keeps: every value it reports (percentiles, min,
/// max, mean, standard deviation) is within 0.1 % of the exact one, far below run-to-run noise.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Summary of one run's op latencies, in milliseconds.
#[derive(Debug, PartialEq)]
pub struct Summary {
    /// Number of samples (exact).
    pub count: usize,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Median: the smallest value at least half of the samples do not exceed.
    pub p50_ms: f64,
    /// 99th percentile: the smallest value at least 99 % of the samples do not exceed.
    pub p99_ms: f64,
    /// Population standard deviation; 0 for a single sample.
    pub stdev_ms: f64,
}

/// Nanoseconds (whole, so no float noise is printed) as milliseconds.
fn ms(ns: f64) -> f64 {
    ns.round() / 1e6
}

/// Summarises `samples_ns`; `None` when it is empty.
pub fn summarize(samples_ns: &[u64]) -> Option<Summary> {
    if samples_ns.is_empty() {
        return None;
    }
    // Auto-resizing, so any u64 fits.
    let mut histogram =
        Histogram::<u64>::new(SIGNIFICANT_DIGITS).expect("3 significant digits are supported");
    for &ns in samples_ns {
        histogram
            .record(ns)
            .expect("an auto-resizing histogram records any value");
    }
    let quantile = |q: f64| ms(histogram.value_at_quantile(q) as f64);
    Some(Summary {
        count: samples_ns.len(),
        mean_ms: ms(histogram.mean()),
        min_ms: ms(histogram.min() as f64),
        max_ms: ms(histogram.max() as f64),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        stdev_ms: ms(histogram.stdev()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within the histogram's precision of `exact`.
    fn near(value: f64, exact: f64) -> bool {
        (value - exact).abs() <= exact.abs() * 1e-3
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        // 1..=100 ms.
        let sample: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        let s = summarize(&sample).expect("non-empty");
        assert!(near(s.p50_ms, 50.0), "{s:?}");
        assert!(near(s.p99_ms, 99.0), "{s:?}");
        assert!(near(s.min_ms, 1.0) && near(s.max_ms, 100.0), "{s:?}");
    }

    #[test]
    fn summary_of_known_sample() {
        // Values in ms: 1, 2, 3, 4, 10, in no particular order.
        let sample = [4_000_000, 1_000_000, 10_000_000, 2_000_000, 3_000_000];
        let s = summarize(&sample).expect("non-empty");
        assert_eq!(s.count, 5);
        assert!(near(s.mean_ms, 4.0), "{s:?}");
        assert!(near(s.min_ms, 1.0), "{s:?}");
        assert!(near(s.max_ms, 10.0), "{s:?}");
        assert!(near(s.p50_ms, 3.0), "{s:?}");
        assert!(near(s.p99_ms, 10.0), "{s:?}");
        // Squared deviations 9+4+1+0+36 = 50, / 5 = 10.
        assert!(near(s.stdev_ms, 10f64.sqrt()), "{s:?}");
    }

    #[test]
    fn single_sample_has_zero_stdev() {
        let s = summarize(&[1_500_000]).expect("non-empty");
        assert_eq!(s.stdev_ms, 0.0);
        assert!(near(s.p99_ms, 1.5), "{s:?}");
    }

    #[test]
    fn empty_sample_has_no_summary() {
        assert!(summarize(&[]).is_none());
    }
}
