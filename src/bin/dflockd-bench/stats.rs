//! Latency summary over a sample of nanosecond durations. It owns the arithmetic only; it
//! must not measure time or format output.

/// Summary of one run's op latencies, in milliseconds.
#[derive(Debug, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Median (linear interpolation between closest ranks).
    pub p50_ms: f64,
    /// 99th percentile (linear interpolation between closest ranks).
    pub p99_ms: f64,
    /// Sample standard deviation (n - 1 denominator); 0 for a single sample.
    pub stdev_ms: f64,
}

const NS_PER_MS: f64 = 1e6;

/// Sorts `samples_ns` in place and summarises it; `None` when it is empty.
pub fn summarize(samples_ns: &mut [u64]) -> Option<Summary> {
    let (&min, &max) = (samples_ns.iter().min()?, samples_ns.iter().max()?);
    samples_ns.sort_unstable();
    let n = samples_ns.len();
    // Summing in u128 keeps the mean exact however long the run.
    let total: u128 = samples_ns.iter().map(|&v| u128::from(v)).sum();
    let mean = total as f64 / n as f64;
    let stdev = if n > 1 {
        let squares: f64 = samples_ns.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
        (squares / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Summary {
        count: n,
        mean_ms: mean / NS_PER_MS,
        min_ms: min as f64 / NS_PER_MS,
        max_ms: max as f64 / NS_PER_MS,
        p50_ms: percentile(samples_ns, 50.0) / NS_PER_MS,
        p99_ms: percentile(samples_ns, 99.0) / NS_PER_MS,
        stdev_ms: stdev / NS_PER_MS,
    })
}

/// The `pct`-th percentile (0-100) of a sorted, non-empty sample, interpolating linearly
/// between the two closest ranks (rank = pct/100 * (n - 1)).
pub fn percentile(sorted: &[u64], pct: f64) -> f64 {
    let rank = pct / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = rank - lo as f64;
    sorted[lo] as f64 + (sorted[hi] as f64 - sorted[lo] as f64) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let sample: Vec<u64> = (1..=100).collect();
        assert!(close(percentile(&sample, 50.0), 50.5));
        assert!(close(percentile(&sample, 99.0), 99.01));
        assert!(close(percentile(&sample, 0.0), 1.0));
        assert!(close(percentile(&sample, 100.0), 100.0));
        assert!(close(percentile(&[10, 20, 30, 40], 50.0), 25.0));
        assert!(close(percentile(&[7], 99.0), 7.0));
    }

    #[test]
    fn summary_of_known_sample() {
        // Unsorted on purpose: summarize must sort. Values in ms: 1, 2, 3, 4, 10.
        let mut sample = vec![4_000_000, 1_000_000, 10_000_000, 2_000_000, 3_000_000];
        let s = summarize(&mut sample).expect("non-empty");
        assert_eq!(s.count, 5);
        assert!(close(s.mean_ms, 4.0));
        assert!(close(s.min_ms, 1.0));
        assert!(close(s.max_ms, 10.0));
        assert!(close(s.p50_ms, 3.0));
        // rank 3.96 between 4 and 10.
        assert!(close(s.p99_ms, 9.76));
        // Squared deviations 9+4+1+0+36 = 50, / 4 = 12.5.
        assert!(close(s.stdev_ms, 12.5f64.sqrt()));
    }

    #[test]
    fn single_sample_has_zero_stdev() {
        let s = summarize(&mut [1_500_000]).expect("non-empty");
        assert!(close(s.stdev_ms, 0.0));
        assert!(close(s.p99_ms, 1.5));
    }

    #[test]
    fn empty_sample_has_no_summary() {
        assert!(summarize(&mut []).is_none());
    }
}
