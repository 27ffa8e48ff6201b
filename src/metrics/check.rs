//! A strict reader of the text exposition format, for tests: everything the encoder writes must
//! pass it, and a test can then look values up by name and labels.
//!
//! Stricter than Prometheus itself where that catches encoder bugs: every sample must belong to
//! a family declared by `# TYPE` before it, a family's lines must be contiguous, a series may
//! appear only once, and each histogram series must have cumulative, non-decreasing buckets in
//! ascending `le` order ending in `+Inf`, whose count equals `_count`.

use std::collections::{BTreeMap, BTreeSet};

use super::{Kind, is_label_name, is_metric_name};

/// Labels of a sample, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One sample line, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name, suffix included (`x_bucket`).
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// A whole exposition that passed [`parse`].
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    /// Every family by name, with its type.
    pub families: BTreeMap<String, Kind>,
    /// Every sample in order of appearance.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the series `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }
}

/// Histogram series being read: its buckets so far, then its sum and count.
#[derive(Default)]
struct HistogramSeries {
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

/// Parses `text` as a text-format 0.0.4 exposition, or says which line is wrong and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a line feed".to_owned());
    }
    let mut exposition = Exposition::default();
    let mut helped = BTreeSet::new();
    let mut closed = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen = BTreeSet::new();
    let mut histograms: BTreeMap<(String, Vec<(String, String)>), HistogramSeries> =
        BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let Some((name, help)) = rest.split_once(' ') else {
                return Err(fail("HELP without text"));
            };
            if !is_metric_name(name) {
                return Err(fail("invalid metric name"));
            }
            if !valid_help_escapes(help) {
                return Err(fail("bad escape in HELP"));
            }
            if !helped.insert(name.to_owned()) {
                return Err(fail("second HELP"));
            }
            switch_family(&mut current, &mut closed, name).map_err(|e| fail(&e))?;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                return Err(fail("TYPE without a type"));
            };
            let kind = match kind {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                _ => return Err(fail("unknown type")),
            };
            if !is_metric_name(name) {
                return Err(fail("invalid metric name"));
            }
            if exposition.families.insert(name.to_owned(), kind).is_some() {
                return Err(fail("second TYPE"));
            }
            switch_family(&mut current, &mut closed, name).map_err(|e| fail(&e))?;
        } else if line.starts_with('#') {
            return Err(fail("a comment other than HELP or TYPE"));
        } else {
            let sample = parse_sample(line).map_err(|e| fail(&e))?;
            let (family, kind) = family_of(&exposition.families, &sample.name)
                .ok_or_else(|| fail("sample of an undeclared family"))?;
            if current.as_deref() != Some(family) {
                return Err(fail("sample outside its family's block"));
            }
            let key = (sample.name.clone(), sample.labels.clone());
            if !seen.insert(key) {
                return Err(fail("duplicate series"));
            }
            if kind == Kind::Counter && (sample.value.is_nan() || sample.value < 0.0) {
                return Err(fail("negative or NaN counter"));
            }
            if kind == Kind::Histogram {
                let mut labels = sample.labels.clone();
                let le = labels.remove("le");
                let series = histograms
                    .entry((family.to_owned(), labels.into_iter().collect()))
                    .or_default();
                let suffix = &sample.name[family.len()..];
                match (suffix, le) {
                    ("_bucket", Some(le)) => {
                        let le = parse_value(&le).map_err(|e| fail(&e))?;
                        if series.sum.is_some() || series.count.is_some() {
                            return Err(fail("bucket after _sum or _count"));
                        }
                        if let Some(&(last_le, last)) = series.buckets.last() {
                            if le <= last_le {
                                return Err(fail("bucket bounds not ascending"));
                            }
                            if sample.value < last {
                                return Err(fail("bucket counts decrease"));
                            }
                        }
                        series.buckets.push((le, sample.value));
                    }
                    ("_sum", None) => series.sum = Some(sample.value),
                    ("_count", None) => series.count = Some(sample.value),
                    _ => return Err(fail("histogram series without le, or le on _sum/_count")),
                }
            }
            exposition.samples.push(sample);
        }
    }
    for ((family, labels), series) in &histograms {
        let what = format!("histogram {family} {labels:?}");
        let Some(&(last_le, inf)) = series.buckets.last() else {
            return Err(format!("{what}: no buckets"));
        };
        if last_le != f64::INFINITY {
            return Err(format!("{what}: the last bucket is not +Inf"));
        }
        if series.count != Some(inf) {
            return Err(format!("{what}: _count differs from the +Inf bucket"));
        }
        if series.sum.is_none() {
            return Err(format!("{what}: no _sum"));
        }
    }
    Ok(exposition)
}

/// Enters the block of family `name`, which must not have been left before.
fn switch_family(
    current: &mut Option<String>,
    closed: &mut BTreeSet<String>,
    name: &str,
) -> Result<(), String> {
    if current.as_deref() == Some(name) {
        return Ok(());
    }
    if closed.contains(name) {
        return Err("family lines are not contiguous".to_owned());
    }
    if let Some(previous) = current.replace(name.to_owned()) {
        closed.insert(previous);
    }
    Ok(())
}

/// The declared family a series belongs to: its own name, or a histogram's name plus one of
/// the histogram suffixes.
fn family_of<'a>(families: &'a BTreeMap<String, Kind>, series: &str) -> Option<(&'a str, Kind)> {
    if let Some((name, &kind)) = families.get_key_value(series) {
        return (kind != Kind::Histogram).then_some((name.as_str(), kind));
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = series.strip_suffix(suffix)?;
        let (name, &kind) = families.get_key_value(base)?;
        (kind == Kind::Histogram).then_some((name.as_str(), kind))
    })
}

/// `name{labels} value`, with no timestamp.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err("invalid metric name".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            if !labels.is_empty() {
                rest = rest
                    .strip_prefix(',')
                    .ok_or_else(|| "labels not separated by a comma".to_owned())?;
            }
            let (label, after) = rest
                .split_once("=\"")
                .ok_or_else(|| "label without =\"".to_owned())?;
            if !is_label_name(label) {
                return Err(format!("invalid label name {label:?}"));
            }
            let (value, after) = read_label_value(after)?;
            if labels.insert(label.to_owned(), value).is_some() {
                return Err("repeated label".to_owned());
            }
            rest = after;
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no single space before the value".to_owned())?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Reads an escaped label value up to its closing quote; returns it unescaped and the rest.
fn read_label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                _ => return Err("bad escape in a label value".to_owned()),
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value".to_owned())
}

/// Whether every backslash in a HELP text starts one of its two escapes, `\\` and `\n`.
fn valid_help_escapes(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\' | 'n') => {}
                _ => return false,
            }
        }
    }
    true
}

/// A sample value: a Go float literal, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text.is_empty()
            || !text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) =>
        {
            Err(format!("invalid value {text:?}"))
        }
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("invalid value {text:?}")),
    }
}
