//! Python's number semantics that the calculator must reproduce exactly, because the text it
//! injects is Python's `str()` of the result: `int / int` correctly rounded (half-even, also for
//! ints beyond 2^53 and for subnormal results, OverflowError past the float range), `float(int)`,
//! float floor division as CPython computes it, and `repr(float)` (shortest round-trip digits,
//! ties to even like David Gay's dtoa, exponent form below 1e-4 and from 1e16 on).

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{ToPrimitive, Zero};

use crate::calculator::{CalcError, Result};

/// CPython's `_float_div_mod` (floatobject.c), floor-quotient part; `b` is non-zero.
pub(crate) fn float_floor_div(a: f64, b: f64) -> f64 {
    let rem = a % b;
    let mut div = (a - rem) / b;
    if rem != 0.0 && ((b < 0.0) != (rem < 0.0)) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0.0f64.copysign(a / b);
    }
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

/// Python's `float(int)`: correctly rounded, OverflowError when out of range.
pub(crate) fn int_to_float(n: &BigInt) -> Result<f64> {
    int_true_div(n, &BigInt::from(1))
        .map_err(|_| CalcError::Eval("OverflowError: int too large to convert to float"))
}

/// Python's `int / int`: the correctly rounded (half-even) quotient, subnormals included;
/// OverflowError when it is too large for a float.
pub(crate) fn int_true_div(a: &BigInt, b: &BigInt) -> Result<f64> {
    if b.is_zero() {
        return Err(CalcError::Eval("ZeroDivisionError: division by zero"));
    }
    let negative = (a.sign() == Sign::Minus) != (b.sign() == Sign::Minus);
    let magnitude = match a.is_zero() {
        true => 0.0,
        false => ratio_to_f64(a.magnitude(), b.magnitude())?,
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// `n / d` (both non-zero) rounded to nearest-even in f64.
fn ratio_to_f64(n: &BigUint, d: &BigUint) -> Result<f64> {
    let overflow = Err(CalcError::Eval(
        "OverflowError: integer division result too large for a float",
    ));
    // Scale so the integer quotient has 55 or 56 bits; the remainder is the sticky bit.
    let shift = 55 - (n.bits() as i64 - d.bits() as i64);
    let (num, den) = match shift >= 0 {
        true => (n << shift as u64, d.clone()),
        false => (n.clone(), d << shift.unsigned_abs()),
    };
    let (q, r) = num.div_rem(&den);
    let Some(q) = q.to_u64() else { return overflow };
    let sticky = !r.is_zero();
    let q_bits = 64 - i64::from(q.leading_zeros());
    let exp = q_bits - 1 - shift; // n / d lies in [2^exp, 2^(exp+1))
    if exp > 1023 {
        return overflow;
    }
    let precision = if exp >= -1022 { 53 } else { 1075 + exp }; // bits a (sub)normal keeps
    if precision < 0 {
        return Ok(0.0); // below half the smallest subnormal
    }
    let drop = (q_bits - precision) as u32; // 2..=56
    let mut mantissa = q >> drop;
    let rem = q & ((1u64 << drop) - 1);
    let half = 1u64 << (drop - 1);
    if rem > half || (rem == half && (sticky || mantissa & 1 == 1)) {
        mantissa += 1;
    }
    let scale = exp + 1 - precision; // -1074..=971: a power of two f64 represents exactly
    let pow2 = match scale >= -1022 {
        true => f64::from_bits(((scale + 1023) as u64) << 52),
        false => f64::from_bits(1u64 << (scale + 1074)),
    };
    let result = mantissa as f64 * pow2;
    if result.is_infinite() {
        return overflow;
    }
    Ok(result)
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form when the decimal exponent is
/// below -4 or at least 16, and `.0` on integral values.
pub(crate) fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // The shortest round-trip digit count (`{:e}`), then the nearest decimal with that many digits,
    // ties to even as Python (David Gay's dtoa) does, where Rust's shortest picks the upper one.
    let shortest = format!("{:e}", x.abs());
    let n = shortest
        .split('e')
        .next()
        .map_or(1, |m| m.replace('.', "").len());
    let nearest = format!("{:.*e}", n - 1, x.abs());
    let sci = if nearest.parse() == Ok(x.abs()) {
        nearest
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits = mantissa.replace('.', "").trim_end_matches('0').to_string();
    if !(-4..16).contains(&exp) {
        let (head, tail) = digits.split_at(1);
        let dot = if tail.is_empty() { "" } else { "." };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{head}{dot}{tail}e{exp_sign}{:02}", exp.abs());
    }
    if exp < 0 {
        return format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize));
    }
    let point = exp as usize + 1;
    match digits.len() <= point {
        true => format!("{sign}{digits}{}.0", "0".repeat(point - digits.len())),
        false => format!("{sign}{}.{}", &digits[..point], &digits[point..]),
    }
}
