//! Regex `pattern`s: matching (compiled with fancy-regex, cached per thread), and generating a
//! random matching string by walking the pattern as parsed by regex-syntax.

use super::MAX_STRING_CHARS;
use rand::rngs::StdRng;
use rand::Rng;
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use std::cell::RefCell;
use std::collections::HashMap;

/// Whether `pattern` (ECMA-like syntax) matches somewhere in `text`; None when it does not
/// compile or gives up. Compiled patterns are kept per thread, a few hundred at most.
pub(super) fn regex_matches(pattern: &str, text: &str) -> Option<bool> {
    type Cache = HashMap<String, Option<fancy_regex::Regex>>;
    thread_local!(static CACHE: RefCell<Cache> = RefCell::new(HashMap::new()));
    CACHE.with_borrow_mut(|cache| {
        if cache.len() >= 256 && !cache.contains_key(pattern) {
            cache.clear();
        }
        let compiled = cache.entry(pattern.to_string());
        let regex = compiled.or_insert_with(|| fancy_regex::Regex::new(pattern).ok());
        regex.as_ref()?.is_match(text).ok()
    })
}

/// State of one generated match: `extra` repeats allowed past an unbounded quantifier's
/// minimum, `steps` left before giving up (nested counted repeats multiply), and whether an
/// end anchor has been passed, after which nothing more may be written.
pub(super) struct Budget {
    pub(super) extra: u32,
    pub(super) steps: usize,
    pub(super) ended: bool,
}

/// Appends a random match of `hir`; false when it cannot (word boundaries, bytes) or when it
/// grows too long or takes too many steps.
pub(super) fn generate(hir: &Hir, budget: &mut Budget, rng: &mut StdRng, out: &mut String) -> bool {
    let Some(steps) = budget.steps.checked_sub(1) else {
        return false;
    };
    budget.steps = steps;
    let done = match hir.kind() {
        HirKind::Empty => true,
        HirKind::Literal(_) | HirKind::Class(_) if budget.ended => false,
        HirKind::Literal(literal) => match std::str::from_utf8(&literal.0) {
            Ok(text) => {
                out.push_str(text);
                true
            }
            Err(_) => false,
        },
        HirKind::Class(Class::Unicode(class)) => {
            let ranges = class
                .ranges()
                .iter()
                .map(|r| (r.start() as u32, r.end() as u32));
            push_from_class(ranges.collect(), rng, out)
        }
        HirKind::Class(Class::Bytes(class)) => {
            let ranges = class
                .ranges()
                .iter()
                .map(|r| (r.start() as u32, r.end() as u32));
            push_from_class(ranges.filter(|r| r.1 < 0x80).collect(), rng, out)
        }
        // The generated string is the whole input: `^` holds at its start, `$` ends it.
        HirKind::Look(Look::Start) => out.is_empty(),
        HirKind::Look(Look::StartLF) => out.is_empty() || out.ends_with('\n'),
        HirKind::Look(Look::End | Look::EndLF) => {
            budget.ended = true;
            true
        }
        HirKind::Look(_) => false, // word boundaries and CRLF anchors are not handled
        HirKind::Repetition(repetition) => {
            let (min, max) = (repetition.min, repetition.max);
            let max = max.unwrap_or(min.saturating_add(budget.extra)).max(min);
            (0..rng.random_range(min..=max)).all(|_| generate(&repetition.sub, budget, rng, out))
        }
        HirKind::Capture(capture) => generate(&capture.sub, budget, rng, out),
        HirKind::Concat(parts) => parts.iter().all(|part| generate(part, budget, rng, out)),
        HirKind::Alternation(options) => generate(
            &options[rng.random_range(0..options.len())],
            budget,
            rng,
            out,
        ),
    };
    done && out.len() <= 4 * MAX_STRING_CHARS
}

/// Pushes a random character of the class: printable ASCII when the class has any.
fn push_from_class(ranges: Vec<(u32, u32)>, rng: &mut StdRng, out: &mut String) -> bool {
    let clip = |&(lo, hi): &(u32, u32)| (lo.max(0x20), hi.min(0x7e));
    let printable: Vec<(u32, u32)> = ranges
        .iter()
        .map(clip)
        .filter(|(lo, hi)| lo <= hi)
        .collect();
    let ranges = if printable.is_empty() {
        ranges
    } else {
        printable
    };
    let total: u32 = ranges.iter().map(|(lo, hi)| hi - lo + 1).sum();
    if total == 0 {
        return false;
    }
    let mut index = rng.random_range(0..total);
    for (lo, hi) in ranges {
        if index <= hi - lo {
            out.extend(char::from_u32(lo + index));
            return true;
        }
        index -= hi - lo + 1;
    }
    false
}
