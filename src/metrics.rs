//! Metric primitives and the Prometheus text exposition format (version 0.0.4).
//!
//! [`Histogram`] is what the request path touches: a fixed array of bucket counts, updated by
//! integer arithmetic only (no float, no allocation, no search over the bounds), so observing a
//! wait or hold time costs a handful of instructions. The encoder functions are for the scrape
//! path: they append families (`# HELP`, `# TYPE` and samples) to a byte buffer, in the form the
//! Prometheus text parser accepts.
//!
//! Nothing here knows about sockets or the clock; durations arrive as microseconds.

use std::fmt::Write as _;

pub mod check;

/// Number of finite bucket bounds: 10 µs × 2^k for k = 0..=25, the last one 335.54432 s, the
/// first power-of-two multiple of 10 µs above 5 minutes.
pub const FINITE_BUCKETS: usize = 26;

/// Buckets including the last, unbounded (`le="+Inf"`) one.
pub const BUCKETS: usize = FINITE_BUCKETS + 1;

/// The smallest bucket bound, in microseconds.
pub const FIRST_BOUND_US: u64 = 10;

/// The upper bound of bucket `index` in microseconds (inclusive, as Prometheus `le` is);
/// `None` for the last, unbounded bucket.
pub const fn bucket_bound_us(index: usize) -> Option<u64> {
    if index < FINITE_BUCKETS {
        Some(FIRST_BOUND_US << index)
    } else {
        None
    }
}

/// The `le` label of each bucket: its bound in seconds, as [`Micros`] writes it.
pub const BUCKET_LE: [&str; BUCKETS] = [
    "0.00001",
    "0.00002",
    "0.00004",
    "0.00008",
    "0.00016",
    "0.00032",
    "0.00064",
    "0.00128",
    "0.00256",
    "0.00512",
    "0.01024",
    "0.02048",
    "0.04096",
    "0.08192",
    "0.16384",
    "0.32768",
    "0.65536",
    "1.31072",
    "2.62144",
    "5.24288",
    "10.48576",
    "20.97152",
    "41.94304",
    "83.88608",
    "167.77216",
    "335.54432",
    "+Inf",
];

/// The bucket a duration of `us` microseconds falls in: the smallest `k` with
/// `us <= 10 µs × 2^k`, or the unbounded bucket past the last bound.
#[inline]
pub const fn bucket_index(us: u64) -> usize {
    bucket_of_tens(us.div_ceil(FIRST_BOUND_US))
}

/// The bucket of a duration of `q` tens of microseconds, rounded up.
///
/// `us <= 10 × 2^k` is `q <= 2^k`, whose smallest solution is the bit length of `q - 1`:
/// `leading_zeros` gives that in one instruction, with no search over the bounds.
#[inline]
const fn bucket_of_tens(q: u64) -> usize {
    let bits = (u64::BITS - q.saturating_sub(1).leading_zeros()) as usize;
    if bits < FINITE_BUCKETS {
        bits
    } else {
        FINITE_BUCKETS
    }
}

/// A histogram of durations over the fixed buckets of [`bucket_bound_us`].
///
/// Counts are kept per bucket (not cumulative), so an observation increments one bucket and
/// adds to the sum; the total count is the sum of the buckets, added up when read rather than
/// kept on every observation. The encoder accumulates the buckets when it writes `_bucket`
/// lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    buckets: [u64; BUCKETS],
    /// Sum of the observations in microseconds. Wraps after 584 000 years of summed durations
    /// (one observation is at most [`MAX_MS`]), which a saturating addition would cost every
    /// observation to guard against.
    sum_us: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

/// Longest duration in milliseconds whose microseconds fit a `u64`; longer ones are recorded
/// as this (they land in the unbounded bucket either way).
pub const MAX_MS: u64 = u64::MAX / 1000;

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Histogram {
        Histogram {
            buckets: [0; BUCKETS],
            sum_us: 0,
        }
    }

    /// Records a duration of `us` microseconds.
    #[inline]
    pub fn observe_us(&mut self, us: u64) {
        self.buckets[bucket_index(us)] += 1;
        self.sum_us = self.sum_us.wrapping_add(us);
    }

    /// Records a duration of `ms` milliseconds (the engine clock's resolution). Whole
    /// milliseconds are whole hundreds of tens of microseconds, so the bucket needs no
    /// division. 0 (an immediate grant, a lock released within the millisecond it was taken:
    /// the common case) only increments the first bucket.
    #[inline]
    pub fn observe_ms(&mut self, ms: u64) {
        if ms == 0 {
            self.buckets[0] += 1;
            return;
        }
        let ms = ms.min(MAX_MS);
        self.buckets[bucket_of_tens(ms * 100)] += 1;
        self.sum_us = self.sum_us.wrapping_add(ms * 1000);
    }

    /// How many observations fell in each bucket, the last being the unbounded one; not
    /// cumulative.
    pub fn buckets(&self) -> &[u64; BUCKETS] {
        &self.buckets
    }

    /// Number of observations: the sum of the buckets.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the observations in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }
}

/// The `# TYPE` of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up (resets with the process).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Bucketed observations with `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One label of a sample: `(name, value)`. The name must be a valid label name; the value is
/// escaped on output.
pub type Label<'a> = (&'a str, &'a str);

/// A sample value as the text format writes it.
pub trait SampleValue {
    /// Appends the value's text.
    fn write_value(&self, out: &mut Vec<u8>);
}

impl SampleValue for u64 {
    fn write_value(&self, out: &mut Vec<u8>) {
        write_display(out, self);
    }
}

impl SampleValue for i64 {
    fn write_value(&self, out: &mut Vec<u8>) {
        write_display(out, self);
    }
}

impl SampleValue for f64 {
    /// Finite values in Rust's shortest round-trip decimal form (never an exponent), which Go's
    /// `strconv.ParseFloat` reads back exactly; `NaN`, `+Inf` and `-Inf` as the format spells them.
    fn write_value(&self, out: &mut Vec<u8>) {
        if self.is_nan() {
            out.extend_from_slice(b"NaN");
        } else if self.is_infinite() {
            out.extend_from_slice(if *self > 0.0 { b"+Inf" } else { b"-Inf" });
        } else {
            write_display(out, self);
        }
    }
}

/// A duration in microseconds, written as exact decimal seconds (`0.00001`, `335.54432`):
/// integer arithmetic, so bounds and sums never pick up binary rounding noise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Micros(pub u64);

impl SampleValue for Micros {
    fn write_value(&self, out: &mut Vec<u8>) {
        let (secs, frac) = (self.0 / 1_000_000, self.0 % 1_000_000);
        write_display(out, &secs);
        if frac != 0 {
            let mut digits = [b'0'; 6];
            let mut rest = frac;
            for digit in digits.iter_mut().rev() {
                *digit = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            // `frac` is not 0, so some digit is not '0' and the trim stops before the point.
            let mut len = digits.len();
            while digits[len - 1] == b'0' {
                len -= 1;
            }
            out.push(b'.');
            out.extend_from_slice(&digits[..len]);
        }
    }
}

fn write_display(out: &mut Vec<u8>, value: &impl std::fmt::Display) {
    struct Bytes<'a>(&'a mut Vec<u8>);
    impl std::fmt::Write for Bytes<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend_from_slice(s.as_bytes());
            Ok(())
        }
    }
    // Writing into a Vec cannot fail.
    let _ = write!(Bytes(out), "{value}");
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`
/// (reserved for Prometheus itself).
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Appends the `# HELP` and `# TYPE` lines that open a family. `help` is escaped as the format
/// requires there (backslash and line feed).
pub fn write_family_header(out: &mut Vec<u8>, name: &str, kind: Kind, help: &str) {
    debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
    out.extend_from_slice(b"# HELP ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    for &b in help.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(b"\n# TYPE ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(kind.name().as_bytes());
    out.push(b'\n');
}

/// Appends a label value, escaped as the format requires (backslash, double quote, line feed).
fn write_label_value(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Appends `{a="x",b="y"}` (`labels`, then `last` if any), or nothing if there are no labels.
fn write_labels(out: &mut Vec<u8>, labels: &[Label<'_>], last: Option<Label<'_>>) {
    if labels.is_empty() && last.is_none() {
        return;
    }
    out.push(b'{');
    for (i, (name, value)) in labels.iter().chain(&last).enumerate() {
        debug_assert!(is_label_name(name), "invalid label name {name:?}");
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        write_label_value(out, value);
        out.push(b'"');
    }
    out.push(b'}');
}

/// Appends one sample line: `name{labels} value`.
pub fn write_sample(out: &mut Vec<u8>, name: &str, labels: &[Label<'_>], value: &impl SampleValue) {
    debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
    out.extend_from_slice(name.as_bytes());
    write_labels(out, labels, None);
    out.push(b' ');
    value.write_value(out);
    out.push(b'\n');
}

/// Appends a whole counter or gauge family without labels.
pub fn write_single(
    out: &mut Vec<u8>,
    name: &str,
    kind: Kind,
    help: &str,
    value: &impl SampleValue,
) {
    debug_assert!(kind != Kind::Histogram, "a histogram has no single value");
    write_family_header(out, name, kind, help);
    write_sample(out, name, &[], value);
}

/// Appends a whole counter or gauge family with one label, one sample per `(label value,
/// value)` pair: e.g. `dflockd_keys{ns="lock"} 3` and `dflockd_keys{ns="semaphore"} 1`.
pub fn write_labelled<V: SampleValue>(
    out: &mut Vec<u8>,
    name: &str,
    kind: Kind,
    help: &str,
    label: &str,
    samples: &[(&str, V)],
) {
    debug_assert!(kind != Kind::Histogram, "use write_histograms");
    write_family_header(out, name, kind, help);
    for (label_value, value) in samples {
        write_sample(out, name, &[(label, label_value)], value);
    }
}

/// Appends the series of one histogram: cumulative `name_bucket{labels,le="..."}` lines, then
/// `name_sum` in seconds and `name_count`. The family header must come first
/// ([`write_family_header`] with [`Kind::Histogram`]); a labelled family repeats this per label
/// value.
pub fn write_histogram_series(
    out: &mut Vec<u8>,
    name: &str,
    labels: &[Label<'_>],
    histogram: &Histogram,
) {
    debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
    debug_assert!(
        labels.iter().all(|(label, _)| *label != "le"),
        "le is the bucket label"
    );
    let mut cumulative = 0u64;
    for (&count, le) in histogram.buckets.iter().zip(BUCKET_LE) {
        cumulative += count;
        series_line(out, name, "_bucket", labels, Some(le), &cumulative);
    }
    series_line(out, name, "_sum", labels, None, &Micros(histogram.sum_us));
    // The +Inf bucket is cumulative over every bucket: the count.
    series_line(out, name, "_count", labels, None, &cumulative);
}

/// Appends a whole histogram family: the header, then the series of each `(labels,
/// histogram)`.
pub fn write_histograms(
    out: &mut Vec<u8>,
    name: &str,
    help: &str,
    series: &[(&[Label<'_>], &Histogram)],
) {
    write_family_header(out, name, Kind::Histogram, help);
    for (labels, histogram) in series {
        write_histogram_series(out, name, labels, histogram);
    }
}

/// One line of a histogram's series: `name` + `suffix`, the labels, optionally `le`.
fn series_line(
    out: &mut Vec<u8>,
    name: &str,
    suffix: &str,
    labels: &[Label<'_>],
    le: Option<&str>,
    value: &impl SampleValue,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    write_labels(out, labels, le.map(|le| ("le", le)));
    out.push(b' ');
    value.write_value(out);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket by the definition: the first bound at or above `us`.
    fn bucket_by_search(us: u64) -> usize {
        (0..FINITE_BUCKETS)
            .find(|&k| us <= bucket_bound_us(k).unwrap())
            .unwrap_or(FINITE_BUCKETS)
    }

    #[test]
    fn the_bucket_arithmetic_agrees_with_a_search_over_the_bounds() {
        let mut probes = vec![0, 1, 9, u64::MAX, u64::MAX - 9, 1 << 63];
        for k in 0..FINITE_BUCKETS {
            let bound = bucket_bound_us(k).unwrap();
            probes.extend([bound - 1, bound, bound + 1]);
        }
        // A cheap deterministic spread over every magnitude.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for shift in 0..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            probes.push(x >> shift);
        }
        for us in probes {
            assert_eq!(bucket_index(us), bucket_by_search(us), "{us} µs");
        }
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(10), 0);
        assert_eq!(bucket_index(11), 1);
        assert_eq!(bucket_index(335_544_320), FINITE_BUCKETS - 1);
        assert_eq!(bucket_index(335_544_321), FINITE_BUCKETS);
    }

    #[test]
    fn milliseconds_land_where_their_microseconds_do() {
        let mut ms_values = vec![0, 1, 2, 9, 10, 11, 1_000, MAX_MS - 1, MAX_MS, u64::MAX];
        for k in 0..FINITE_BUCKETS {
            let bound_ms = bucket_bound_us(k).unwrap() / 1000;
            ms_values.extend([bound_ms.saturating_sub(1), bound_ms, bound_ms + 1]);
        }
        for ms in ms_values {
            let (mut by_ms, mut by_us) = (Histogram::new(), Histogram::new());
            by_ms.observe_ms(ms);
            by_us.observe_us(ms.min(MAX_MS) * 1000);
            assert_eq!(by_ms, by_us, "{ms} ms");
        }
    }

    #[test]
    fn the_buckets_span_10_microseconds_to_past_5_minutes() {
        assert_eq!(bucket_bound_us(0), Some(10));
        let last = bucket_bound_us(FINITE_BUCKETS - 1).unwrap();
        assert!(last >= 300_000_000 && last / 2 < 300_000_000);
        assert_eq!(bucket_bound_us(FINITE_BUCKETS), None);
    }

    #[test]
    fn the_le_labels_are_the_bounds_in_seconds() {
        for (k, le) in BUCKET_LE.iter().enumerate() {
            match bucket_bound_us(k) {
                Some(bound) => {
                    let mut text = Vec::new();
                    Micros(bound).write_value(&mut text);
                    assert_eq!(std::str::from_utf8(&text).unwrap(), *le);
                    assert_eq!(le.parse::<f64>().unwrap(), bound as f64 / 1e6);
                }
                None => assert_eq!(*le, "+Inf"),
            }
        }
    }

    #[test]
    fn micros_are_written_as_exact_decimal_seconds() {
        let text = |us| {
            let mut out = Vec::new();
            Micros(us).write_value(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(0), "0");
        assert_eq!(text(1), "0.000001");
        assert_eq!(text(1_500_000), "1.5");
        assert_eq!(text(2_000_000), "2");
        assert_eq!(text(123_456_789), "123.456789");
        assert_eq!(text(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn observations_land_in_one_bucket_each_with_count_and_sum() {
        let mut h = Histogram::new();
        h.observe_us(0);
        h.observe_us(15);
        h.observe_ms(1);
        h.observe_ms(3_600_000);
        assert_eq!(h.count(), 4);
        assert_eq!(h.sum_us(), 15 + 1_000 + 3_600_000_000);
        let mut expected = [0; BUCKETS];
        expected[0] = 1;
        expected[1] = 1;
        expected[7] = 1; // 1 000 µs <= 1 280 µs
        expected[FINITE_BUCKETS] = 1;
        assert_eq!(h.buckets(), &expected);
        let sum = h.sum_us();
        h.observe_ms(u64::MAX);
        assert_eq!(
            h.sum_us(),
            sum.wrapping_add(MAX_MS * 1000),
            "one observation is capped"
        );
    }

    #[test]
    fn float_values_use_the_formats_spellings() {
        let text = |v: f64| {
            let mut out = Vec::new();
            v.write_value(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(f64::INFINITY), "+Inf");
        assert_eq!(text(f64::NEG_INFINITY), "-Inf");
        assert_eq!(text(f64::NAN), "NaN");
        assert_eq!(text(0.25), "0.25");
        assert_eq!(text(1e-5), "0.00001");
        assert_eq!(text(1_700_000_000.5), "1700000000.5");
    }

    /// An exposition with every kind of family and awkward label values and help texts.
    fn sample_exposition() -> (Vec<u8>, Histogram, Histogram) {
        let mut out = Vec::new();
        write_single(&mut out, "t_up", Kind::Gauge, "Always 1.", &1u64);
        write_single(
            &mut out,
            "t_start_time_seconds",
            Kind::Gauge,
            "Start, in seconds since the epoch.",
            &1_700_000_000.25f64,
        );
        write_labelled(
            &mut out,
            "t_requests_total",
            Kind::Counter,
            "Requests by command; a back\\slash and a\nline feed in help.",
            "command",
            &[("l", 3u64), ("weird \"quoted\" \\ \n", 0)],
        );
        write_labelled(
            &mut out,
            "t_delta",
            Kind::Gauge,
            "Signed.",
            "ns",
            &[("lock", -2i64), ("semaphore", 5)],
        );
        let mut lock = Histogram::new();
        for us in [0, 5, 10, 11, 999, 1_000_000, 400_000_000] {
            lock.observe_us(us);
        }
        let mut sem = Histogram::new();
        sem.observe_ms(2);
        write_histograms(
            &mut out,
            "t_wait_seconds",
            "Queued to granted.",
            &[(&[("ns", "lock")], &lock), (&[("ns", "semaphore")], &sem)],
        );
        write_histograms(&mut out, "t_turn_seconds", "No labels.", &[(&[], &sem)]);
        (out, lock, sem)
    }

    #[test]
    fn the_exposition_passes_the_strict_grammar_and_reads_back() {
        let (out, lock, sem) = sample_exposition();
        let text = String::from_utf8(out).unwrap();
        let parsed = check::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.families.len(), 6);
        assert_eq!(parsed.value("t_up", &[]), Some(1.0));
        assert_eq!(
            parsed.value("t_start_time_seconds", &[]),
            Some(1_700_000_000.25)
        );
        assert_eq!(
            parsed.value("t_requests_total", &[("command", "weird \"quoted\" \\ \n")]),
            Some(0.0)
        );
        assert_eq!(parsed.value("t_delta", &[("ns", "lock")]), Some(-2.0));
        let lock_labels = |le| [("ns", "lock"), ("le", le)];
        assert_eq!(
            parsed.value("t_wait_seconds_bucket", &lock_labels("0.00001")),
            Some(3.0)
        );
        assert_eq!(
            parsed.value("t_wait_seconds_bucket", &lock_labels("0.00002")),
            Some(4.0)
        );
        assert_eq!(
            parsed.value("t_wait_seconds_bucket", &lock_labels("335.54432")),
            Some(6.0)
        );
        assert_eq!(
            parsed.value("t_wait_seconds_bucket", &lock_labels("+Inf")),
            Some(lock.count() as f64)
        );
        assert_eq!(
            parsed.value("t_wait_seconds_sum", &[("ns", "lock")]),
            Some(lock.sum_us() as f64 / 1e6)
        );
        assert_eq!(
            parsed.value("t_turn_seconds_count", &[]),
            Some(sem.count() as f64)
        );
        assert_eq!(parsed.value("t_turn_seconds_sum", &[]), Some(0.002));
        // Two labelled histograms and one bare one, each with every bucket, a sum and a count.
        assert_eq!(parsed.samples.len(), 1 + 1 + 2 + 2 + 3 * (BUCKETS + 2));
        for line in text.lines() {
            assert!(!line.ends_with(' ') && !line.contains("  "), "{line:?}");
        }
    }

    #[test]
    fn the_checker_rejects_malformed_expositions() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n";
        assert!(check::parse(good).is_ok());
        let bad = [
            // No TYPE before the sample.
            "a_total 1\n",
            // No final line feed.
            "# TYPE a_total counter\na_total 1",
            // Unknown comment, unknown type, bad name, bad escape, bad value.
            "# note\n",
            "# TYPE a summary\n",
            "# TYPE 1a gauge\n1a 1\n",
            "# TYPE a gauge\na{l=\"\\x\"} 1\n",
            "# TYPE a gauge\na 1 2\n",
            "# TYPE a gauge\na one\n",
            "# TYPE a gauge\na{l=\"x\",l=\"y\"} 1\n",
            "# TYPE a gauge\na{__l=\"x\"} 1\n",
            // Duplicate series; family split in two blocks.
            "# TYPE a gauge\na 1\na 2\n",
            "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 1\n",
            // Negative counter.
            "# TYPE a_total counter\na_total -1\n",
            // Histograms: decreasing, missing +Inf, count mismatch, no sum.
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 2\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh 1\n",
        ];
        for text in bad {
            assert!(check::parse(text).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(is_metric_name("dflockd_keys") && is_metric_name("a:b_1"));
        assert!(!is_metric_name("") && !is_metric_name("1a") && !is_metric_name("a-b"));
        assert!(is_label_name("ns") && is_label_name("_x1"));
        assert!(!is_label_name("__name__") && !is_label_name("a:b") && !is_label_name(""));
    }
}
