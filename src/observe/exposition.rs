//! The Prometheus text exposition format 0.0.4 and the metric families written in it:
//! [`Counter`], [`Gauge`] and [`Histogram`], each a family of series by label values behind a
//! short lock. A leaf: the registry declares its metrics with these types.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

/// A metric family: one series per distinct set of label values (in the order of `labels`).
struct Family<const N: usize, V> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    series: Mutex<BTreeMap<[String; N], V>>,
}

impl<const N: usize, V: Default> Family<N, V> {
    const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Family {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    fn update(&self, values: [&str; N], f: impl FnOnce(&mut V)) {
        let mut series = lock(&self.series);
        f(series.entry(values.map(str::to_owned)).or_default());
    }

    fn header(&self, out: &mut String, kind: &str) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
    }

    /// The header and one sample per series, its value written by `value` (counters, gauges).
    fn render_single(&self, out: &mut String, kind: &str, value: impl Fn(&V) -> String) {
        self.header(out, kind);
        for (values, v) in lock(&self.series).iter() {
            sample(out, self.name, "", &self.labels, values, None, &value(v));
        }
    }
}

/// A monotonic counter of whole numbers.
pub(super) struct Counter<const N: usize>(Family<N, u64>);

impl<const N: usize> Counter<N> {
    pub(super) const fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
    ) -> Self {
        Counter(Family::new(name, help, labels))
    }

    pub(super) fn add(&self, values: [&str; N], n: u64) {
        self.0.update(values, |v| *v = v.saturating_add(n));
    }

    pub(super) fn render(&self, out: &mut String) {
        self.0.render_single(out, "counter", u64::to_string);
    }
}

/// A value that goes up and down.
pub(super) struct Gauge<const N: usize>(Family<N, f64>);

impl<const N: usize> Gauge<N> {
    pub(super) const fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
    ) -> Self {
        Gauge(Family::new(name, help, labels))
    }

    pub(super) fn set(&self, values: [&str; N], value: f64) {
        self.0.update(values, |v| *v = value);
    }

    pub(super) fn add(&self, values: [&str; N], change: f64) {
        self.0.update(values, |v| *v += change);
    }

    pub(super) fn render(&self, out: &mut String) {
        self.0.render_single(out, "gauge", |v| number(*v));
    }
}

/// Observations counted into fixed buckets (upper bounds, ascending; `+Inf` implied).
pub(super) struct Histogram<const N: usize> {
    family: Family<N, HistogramSeries>,
    buckets: &'static [f64],
}

#[derive(Default)]
struct HistogramSeries {
    /// Observations per bucket, not cumulative: `counts[i]` fell in `(buckets[i-1], buckets[i]]`;
    /// one more slot for those above the last bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl<const N: usize> Histogram<N> {
    pub(super) const fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        buckets: &'static [f64],
    ) -> Self {
        Histogram {
            family: Family::new(name, help, labels),
            buckets,
        }
    }

    pub(super) fn observe(&self, values: [&str; N], value: f64) {
        let slot = self
            .buckets
            .iter()
            .position(|le| value <= *le)
            .unwrap_or(self.buckets.len());
        self.family.update(values, |s| {
            if s.counts.len() != self.buckets.len() + 1 {
                s.counts = vec![0; self.buckets.len() + 1];
            }
            s.counts[slot] += 1;
            s.sum += value;
            s.count += 1;
        });
    }

    pub(super) fn render(&self, out: &mut String) {
        let f = &self.family;
        f.header(out, "histogram");
        for (values, s) in lock(&f.series).iter() {
            let mut cumulative = 0;
            for (i, le) in self.buckets.iter().enumerate() {
                cumulative += s.counts.get(i).copied().unwrap_or(0);
                let le = number(*le);
                let extra = Some(("le", le.as_str()));
                let value = cumulative.to_string();
                sample(out, f.name, "_bucket", &f.labels, values, extra, &value);
            }
            let count = s.count.to_string();
            let inf = Some(("le", "+Inf"));
            sample(out, f.name, "_bucket", &f.labels, values, inf, &count);
            sample(out, f.name, "_sum", &f.labels, values, None, &number(s.sum));
            sample(out, f.name, "_count", &f.labels, values, None, &count);
        }
    }
}

/// A gauge family of one constant series, valued 1.
pub(super) fn render_constant(out: &mut String, name: &str, help: &str, labels: &[(&str, &str)]) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} gauge");
    let names: Vec<&str> = labels.iter().map(|(k, _)| *k).collect();
    let values: Vec<String> = labels.iter().map(|(_, v)| v.to_string()).collect();
    sample(out, name, "", &names, &values, None, "1");
}

/// One sample line: `name{label="value",...} value`.
fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[&str],
    values: &[String],
    extra: Option<(&str, &str)>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let pairs = labels
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .chain(extra);
    let mut first = true;
    for (label, v) in pairs {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A label value escaped for the text format: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A `# HELP` text escaped for the text format: `\` -> `\\`, newline -> `\n`.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value or bucket bound as the text format spells it (`+Inf`, `-Inf`, `NaN`;
/// otherwise the shortest decimal that reads back the same, e.g. `0.1`, `1`, `3600`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// Locks, also after a panic elsewhere poisoned the lock (the data stays consistent: no update
/// can panic half-way).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::RUN_DURATION_BUCKETS;
    use crate::observe::metrics::timestamp_seconds;

    fn rendered<F: FnOnce(&mut String)>(f: F) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn a_counter_renders_help_type_and_one_sorted_line_per_label_set() {
        let c = Counter::new("t_things_total", "Things counted.", ["a", "b"]);
        c.add(["x", "y"], 2);
        c.add(["x", "y"], 3);
        c.add(["m", "z"], 1);
        assert_eq!(
            rendered(|o| c.render(o)),
            "# HELP t_things_total Things counted.\n\
             # TYPE t_things_total counter\n\
             t_things_total{a=\"m\",b=\"z\"} 1\n\
             t_things_total{a=\"x\",b=\"y\"} 5\n"
        );
    }

    #[test]
    fn a_family_without_series_still_renders_its_help_and_type() {
        let c = Counter::new("t_empty_total", "Nothing yet.", ["a"]);
        assert_eq!(
            rendered(|o| c.render(o)),
            "# HELP t_empty_total Nothing yet.\n# TYPE t_empty_total counter\n"
        );
    }

    #[test]
    fn a_gauge_keeps_the_last_value_set() {
        let g = Gauge::new("t_when_seconds", "When.", ["job"]);
        g.set(["j"], 1.0);
        g.set(
            ["j"],
            timestamp_seconds("2026-07-30T15:30:01.5Z".parse().unwrap()),
        );
        assert_eq!(
            rendered(|o| g.render(o)),
            "# HELP t_when_seconds When.\n\
             # TYPE t_when_seconds gauge\n\
             t_when_seconds{job=\"j\"} 1785425401.5\n"
        );
    }

    #[test]
    fn a_histogram_counts_cumulative_buckets_with_inf_sum_and_count() {
        let h = Histogram::new("t_took_seconds", "Took.", ["s"], &[0.1, 0.5, 1.0]);
        for v in [0.05, 0.5, 0.7, 2.0] {
            h.observe(["r"], v);
        }
        assert_eq!(
            rendered(|o| h.render(o)),
            "# HELP t_took_seconds Took.\n\
             # TYPE t_took_seconds histogram\n\
             t_took_seconds_bucket{s=\"r\",le=\"0.1\"} 1\n\
             t_took_seconds_bucket{s=\"r\",le=\"0.5\"} 2\n\
             t_took_seconds_bucket{s=\"r\",le=\"1\"} 3\n\
             t_took_seconds_bucket{s=\"r\",le=\"+Inf\"} 4\n\
             t_took_seconds_sum{s=\"r\"} 3.25\n\
             t_took_seconds_count{s=\"r\"} 4\n"
        );
    }

    #[test]
    fn an_observation_on_a_bucket_bound_counts_in_that_bucket() {
        let h = Histogram::new("t_bound_seconds", "Bound.", ["s"], RUN_DURATION_BUCKETS);
        h.observe(["r"], 3600.0);
        h.observe(["r"], 3600.5);
        let out = rendered(|o| h.render(o));
        assert!(out.contains("t_bound_seconds_bucket{s=\"r\",le=\"900\"} 0\n"));
        assert!(out.contains("t_bound_seconds_bucket{s=\"r\",le=\"3600\"} 1\n"));
        assert!(out.contains("t_bound_seconds_bucket{s=\"r\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("t_bound_seconds_count{s=\"r\"} 2\n"));
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        let c = Counter::new("t_escaped_total", "Escaped.", ["v"]);
        c.add(["a\\b\"c\nd"], 1);
        assert_eq!(
            rendered(|o| c.render(o)),
            "# HELP t_escaped_total Escaped.\n\
             # TYPE t_escaped_total counter\n\
             t_escaped_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
        );
    }

    #[test]
    fn help_text_escapes_backslash_and_newline() {
        let out = rendered(|o| render_constant(o, "t_c", "a\\b\nc \"q\"", &[]));
        assert_eq!(
            out,
            "# HELP t_c a\\\\b\\nc \"q\"\n# TYPE t_c gauge\nt_c 1\n"
        );
    }

    #[test]
    fn special_values_are_spelled_as_the_format_requires() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(60.0), "60");
    }
}
