//! Tensor element types and the legacy storage class names torch pickles for them
//! (`torch.FloatStorage`, `torch.BFloat16Storage`, …).

use std::fmt;

/// The element type of a tensor stored in a `.pt` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    /// `complex64`: two f32.
    C64,
    /// `complex128`: two f64.
    C128,
}

const STORAGE_CLASSES: [(DType, &str); 12] = [
    (DType::F64, "DoubleStorage"),
    (DType::F32, "FloatStorage"),
    (DType::F16, "HalfStorage"),
    (DType::BF16, "BFloat16Storage"),
    (DType::I64, "LongStorage"),
    (DType::I32, "IntStorage"),
    (DType::I16, "ShortStorage"),
    (DType::I8, "CharStorage"),
    (DType::U8, "ByteStorage"),
    (DType::Bool, "BoolStorage"),
    (DType::C64, "ComplexFloatStorage"),
    (DType::C128, "ComplexDoubleStorage"),
];

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::C64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::C128 => 16,
        }
    }

    /// The class name in module `torch` that torch pickles for storages of this type.
    pub fn storage_class(self) -> &'static str {
        STORAGE_CLASSES
            .iter()
            .find(|(dtype, _)| *dtype == self)
            .map_or("UnknownStorage", |(_, name)| name)
    }

    /// The dtype of a storage class name in module `torch` (e.g. `"FloatStorage"`).
    pub fn from_storage_class(name: &str) -> Option<DType> {
        STORAGE_CLASSES
            .iter()
            .find(|(_, class)| *class == name)
            .map(|(dtype, _)| *dtype)
    }

    /// torch's name for the dtype (`float32`, `bfloat16`, …).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.torch_name())
    }
}

/// bfloat16 bits to f32 (exact).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// IEEE half-precision bits to f32 (exact, including subnormals, infinities and NaN).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        (0, _) => {
            // Subnormal: value = mantissa · 2^-24, exactly representable in f32.
            let value = mantissa as f32 * f32::powi(2.0, -24);
            return if sign != 0 { -value } else { value };
        }
        (0x1f, 0) => 0xff << 23,
        (0x1f, _) => (0xff << 23) | (mantissa << 13) | (1 << 22),
        _ => ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_class_names_round_trip() {
        for (dtype, name) in STORAGE_CLASSES {
            assert_eq!(dtype.storage_class(), name);
            assert_eq!(DType::from_storage_class(name), Some(dtype));
        }
        assert_eq!(DType::from_storage_class("UntypedStorage"), None);
    }

    #[test]
    fn half_conversions_are_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), f32::powi(2.0, -24));
        assert_eq!(f16_to_f32(0x8001), -f32::powi(2.0, -24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * f32::powi(2.0, -24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc049), -3.140625);
    }
}
