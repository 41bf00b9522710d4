//! Numbers, integers and strings: values within the bounds, `multipleOf`, length limits,
//! `pattern` (via `pattern`) and `format` (via `formats`), kept small and readable.

use super::formats::format_matches;
use super::keywords::{bounds, count_keyword, default_range, is_multiple, multiple_of};
use super::pattern::{generate, regex_matches, Budget};
use super::sampler::Sampler;
use super::{
    invalid, unsatisfiable, unsupported, Result, Schema, MAX_STRING_CHARS, SAFE_INTEGER, WORDS,
};
use rand::Rng;
use serde_json::{Number, Value};

impl Sampler<'_> {
    pub(super) fn integer(&mut self, schema: &Schema, path: &str) -> Result<Value> {
        let (lower, upper) = bounds(schema, path)?;
        let lo = lower.map(|(v, open)| if open { v.floor() + 1.0 } else { v.ceil() });
        let hi = upper.map(|(v, open)| if open { v.ceil() - 1.0 } else { v.floor() });
        let (lo, hi) = default_range(lo, hi);
        if lo > SAFE_INTEGER || hi < -SAFE_INTEGER {
            return Err(unsupported(path, "integer bounds beyond ±2^53"));
        }
        let (lo, hi) = (lo.max(-SAFE_INTEGER), hi.min(SAFE_INTEGER));
        let step = match multiple_of(schema, path)? {
            None => 1.0,
            Some(m) if m.fract() == 0.0 => m,
            // The smallest integer that is a multiple of a fractional step, e.g. 2 for 0.4.
            Some(m) => match (1..=1000).map(f64::from).find(|n| is_multiple(*n, m)) {
                Some(n) => n,
                None => {
                    return Err(unsupported(
                        path,
                        "`multipleOf` has no small integer multiple",
                    ))
                }
            },
        };
        let (k_lo, k_hi) = ((lo / step).ceil(), (hi / step).floor());
        if k_lo > k_hi {
            return Err(unsatisfiable(path, "no integer within the bounds"));
        }
        let k = self.rng.random_range(k_lo as i64..=k_hi as i64);
        Ok(Value::from((k as f64 * step) as i64))
    }

    pub(super) fn number(&mut self, schema: &Schema, path: &str) -> Result<Value> {
        let (lower, upper) = bounds(schema, path)?;
        let (lo, hi) = default_range(lower.map(|b| b.0), upper.map(|b| b.0));
        let (lo_open, hi_open) = (lower.is_some_and(|b| b.1), upper.is_some_and(|b| b.1));
        let above = |v: f64| v > lo || (!lo_open && v == lo);
        let below = |v: f64| v < hi || (!hi_open && v == hi);
        let fits = |v: &f64| v.is_finite() && above(*v) && below(*v);
        // Draw from a sane window of the range: [-1e12, 1e12] when it overlaps.
        let window = (lo.max(-1e12), hi.min(1e12));
        let (draw_lo, draw_hi) = if window.0 <= window.1 {
            window
        } else {
            (lo, hi)
        };
        let found = if let Some(step) = multiple_of(schema, path)? {
            // Round k × step to a short step's decimals so 0.1 × 3 reads 0.3, not 0.30…04.
            let decimals = format!("{step}").split('.').nth(1).map_or(0, str::len);
            let scale = if decimals <= 6 {
                10f64.powi(decimals as i32)
            } else {
                f64::NAN
            };
            let k_lo = (draw_lo / step).ceil() as i64;
            let k_hi = (draw_hi / step).floor() as i64;
            let random = (0..32).map(|_| self.rng.random_range(k_lo.min(k_hi)..=k_hi.max(k_lo)));
            let edges = [k_lo, k_lo.saturating_add(1), k_hi.saturating_sub(1), k_hi];
            random.chain(edges).find_map(|k| {
                let exact = k as f64 * step;
                [(exact * scale).round() / scale, exact]
                    .into_iter()
                    .find(fits)
            })
        } else {
            let raw = draw_lo + self.rng.random::<f64>() * (draw_hi - draw_lo);
            [(raw * 100.0).round() / 100.0, raw, lo / 2.0 + hi / 2.0]
                .into_iter()
                .find(fits)
        };
        match found.and_then(Number::from_f64) {
            Some(number) => Ok(Value::Number(number)),
            None => Err(unsatisfiable(
                path,
                "no number meets the bounds and `multipleOf`",
            )),
        }
    }

    pub(super) fn string(&mut self, schema: &Schema, path: &str) -> Result<String> {
        let min = count_keyword(schema, "minLength", path)?.unwrap_or(0);
        let max = count_keyword(schema, "maxLength", path)?;
        if min > MAX_STRING_CHARS {
            return Err(unsupported(
                path,
                format!("`minLength` above {MAX_STRING_CHARS}"),
            ));
        }
        if max.is_some_and(|max| max < min) {
            return Err(unsatisfiable(path, "`minLength` exceeds `maxLength`"));
        }
        let fits = |s: &str| (min..=max.unwrap_or(usize::MAX)).contains(&s.chars().count());
        let format = schema.get("format").and_then(Value::as_str);
        if let Some(pattern) = schema.get("pattern") {
            let Some(pattern) = pattern.as_str() else {
                return Err(invalid(path, "`pattern` must be a string"));
            };
            let unsupported_pattern = |error: &dyn std::fmt::Display| {
                unsupported(
                    path,
                    format!("pattern `{pattern}` is not supported: {error}"),
                )
            };
            if regex_matches(pattern, "").is_none() {
                let error = fancy_regex::Regex::new(pattern).err();
                let reason = error.map_or("matching gives up".to_string(), |e| e.to_string());
                return Err(unsupported_pattern(&reason));
            }
            let matches = |text: &str| regex_matches(pattern, text) == Some(true);
            // With a `format` too: its values if they match, else pattern matches in that format.
            for _ in 0..4 {
                let text = format.and_then(|format| self.format(format));
                if let Some(text) = text.filter(|text| fits(text) && matches(text)) {
                    return Ok(text);
                }
            }
            let hir = regex_syntax::Parser::new()
                .parse(pattern)
                .map_err(|e| unsupported_pattern(&e))?;
            for attempt in 0..32 {
                // Later attempts let `*`, `+` and `{n,}` run longer to reach `minLength`.
                let extra = if attempt < 8 {
                    3
                } else {
                    2 * min.max(3) as u32
                };
                let mut budget = Budget {
                    extra,
                    steps: 100_000,
                    ended: false,
                };
                let mut out = String::new();
                let generated = generate(&hir, &mut budget, self.rng, &mut out);
                let formatted = format.and_then(|format| format_matches(format, &out));
                if generated && fits(&out) && matches(&out) && formatted != Some(false) {
                    return Ok(out);
                }
            }
            return Err(unsupported(
                path,
                format!("cannot fit `{pattern}` to the length bounds"),
            ));
        }
        if let Some(text) = format.and_then(|format| self.format(format)) {
            return match fits(&text) {
                true => Ok(text),
                false => Err(unsupported(
                    path,
                    "the `format` does not fit the length bounds",
                )),
            };
        }
        let mut text = self.word().to_string();
        while text.len() < min || (text.len() < 12 && self.rng.random_bool(0.3)) {
            text.push(' ');
            text.push_str(self.word());
        }
        if let Some(max) = max.filter(|&max| text.len() > max) {
            text.truncate(max);
            text.truncate(text.trim_end().len());
            while text.len() < min {
                text.push('x');
            }
        }
        Ok(text)
    }

    pub(super) fn word(&mut self) -> &'static str {
        WORDS[self.rng.random_range(0..WORDS.len())]
    }
}
