//! Python `int`s beyond 32 bits as pickles store them (`LONG1`/`LONG4`): little-endian
//! two's complement in as few bytes as possible, which is also what CPython writes.

use std::rc::Rc;

use crate::value::Value;

/// An `int` from little-endian two's complement bytes (`LONG1`/`LONG4` operands).
pub fn int_from_twos_complement(digits: &[u8]) -> Value {
    let minimal = minimal_twos_complement(digits);
    if minimal.len() <= 8 {
        let negative = minimal.last().is_some_and(|&byte| byte & 0x80 != 0);
        let mut wide = if negative { [0xffu8; 8] } else { [0u8; 8] };
        wide[..minimal.len()].copy_from_slice(minimal);
        Value::Int(i64::from_le_bytes(wide))
    } else {
        Value::BigInt(Rc::from(minimal))
    }
}

/// Drops redundant sign-extension bytes from little-endian two's complement.
pub fn minimal_twos_complement(digits: &[u8]) -> &[u8] {
    let mut length = digits.len();
    while length > 1 {
        let top = digits[length - 1];
        let next_sign = digits[length - 2] & 0x80;
        if (top == 0x00 && next_sign == 0) || (top == 0xff && next_sign != 0) {
            length -= 1;
        } else {
            break;
        }
    }
    if length == 1 && digits[0] == 0 {
        length = 0;
    }
    &digits[..length]
}
