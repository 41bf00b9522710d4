//! Percentiles, the report of one concurrency level, and its printing (a table row or JSON).

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The `p`-th percentile (0–100) of sorted values, interpolating linearly between ranks
/// (NumPy's default); `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

pub(super) fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// What one concurrency level measured.
pub(super) struct LevelReport {
    pub(super) concurrency: usize,
    pub(super) requests: usize,
    pub(super) ok: usize,
    pub(super) errors: BTreeMap<String, usize>,
    pub(super) wall_s: f64,
    /// Sorted, in seconds.
    pub(super) ttft: Vec<f64>,
    pub(super) itl: Vec<f64>,
    pub(super) e2e: Vec<f64>,
    /// Per stream: (completion_tokens − 1) / (e2e − ttft).
    pub(super) stream_tok_s: Vec<f64>,
    pub(super) tokens: u64,
    pub(super) usage_missing: usize,
    pub(super) no_content: usize,
}

impl LevelReport {
    fn aggregate_tok_s(&self) -> f64 {
        self.tokens as f64 / self.wall_s
    }

    pub(super) fn to_json(&self) -> Value {
        let ms = |v: &[f64], p: f64| percentile(v, p).map(|x| x * 1e3);
        json!({
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "wall_s": self.wall_s,
            "ttft_ms": {"p50": ms(&self.ttft, 50.0), "p90": ms(&self.ttft, 90.0), "p99": ms(&self.ttft, 99.0), "max": ms(&self.ttft, 100.0)},
            "itl_ms": {"p50": ms(&self.itl, 50.0), "p90": ms(&self.itl, 90.0), "p99": ms(&self.itl, 99.0), "max": ms(&self.itl, 100.0)},
            "e2e_ms": {"p50": ms(&self.e2e, 50.0), "p99": ms(&self.e2e, 99.0)},
            "completion_tokens": self.tokens,
            "aggregate_tok_s": self.aggregate_tok_s(),
            "stream_tok_s_median": percentile(&self.stream_tok_s, 50.0),
            "usage_missing": self.usage_missing,
            "no_content": self.no_content,
        })
    }
}

pub(super) fn print_header() {
    println!(
        "{:>6} {:>6} {:>6} {:>6} {:>8} | {:>9} {:>9} | {:>8} {:>8} | {:>9} | {:>10} {:>10}",
        "conc",
        "reqs",
        "ok",
        "errors",
        "wall s",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p99",
        "E2E p50",
        "agg tok/s",
        "tok/s/strm"
    );
}

pub(super) fn print_row(r: &LevelReport) {
    let ms = |v: &[f64], p: f64| match percentile(v, p) {
        Some(x) => format!("{:.1}", x * 1e3),
        None => "-".into(),
    };
    let errors: usize = r.errors.values().sum();
    println!(
        "{:>6} {:>6} {:>6} {:>6} {:>8.2} | {:>9} {:>9} | {:>8} {:>8} | {:>9} | {:>10.1} {:>10}",
        r.concurrency,
        r.requests,
        r.ok,
        errors,
        r.wall_s,
        ms(&r.ttft, 50.0),
        ms(&r.ttft, 99.0),
        ms(&r.itl, 50.0),
        ms(&r.itl, 99.0),
        ms(&r.e2e, 50.0),
        r.aggregate_tok_s(),
        percentile(&r.stream_tok_s, 50.0).map_or("-".into(), |x| format!("{x:.1}")),
    );
    for (kind, n) in &r.errors {
        println!("{:>6} error ×{n}: {kind}", "");
    }
    if r.usage_missing > 0 {
        println!(
            "{:>6} {} answers had no usage chunk: their tokens are counted as content chunks",
            "", r.usage_missing
        );
    }
    if r.no_content > 0 {
        println!("{:>6} {} answers had no content", "", r.no_content);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 50.0), Some(50.5));
        assert!((percentile(&v, 99.0).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 25.0), Some(1.75));
        assert_eq!(sorted(vec![3.0, 1.0, 2.0]), [1.0, 2.0, 3.0]);
    }
}
