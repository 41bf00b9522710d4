//! Tensors as torch pickles them, and the geometry of reading them back.
//!
//! `torch.save` writes a tensor as
//! `torch._utils._rebuild_tensor_v2(persistent_load(('storage', torch.<X>Storage, key,
//! location, numel)), storage_offset, size, stride, requires_grad, backward_hooks)`;
//! [`tensor_from_value`] turns that object into a [`TensorRecord`] after checking that
//! the view stays inside the storage it names. [`gather_view`] copies a (possibly
//! strided) view out of storage bytes into C order.

use crate::dtype::DType;
use crate::torch_error::TorchErrorKind;
use crate::value::{Construction, Value};

/// How many times a view may repeat its storage elements (stride-0 expansion) before the
/// reader refuses to materialise it.
pub const MAX_VIEW_EXPANSION: u64 = 1024;

/// One tensor of a torch file: its type, view geometry and where its storage lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorRecord {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub stride: Vec<usize>,
    /// Offset of element `[0, …, 0]` in the storage, in elements.
    pub storage_offset: usize,
    /// The storage's key: its data is the zip entry `<prefix>/data/<key>`.
    pub storage_key: String,
    /// Elements in the storage, as the pickle declares.
    pub storage_numel: usize,
}

impl TensorRecord {
    /// Number of elements of the view (saturating on absurd shapes).
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |total, &dim| total.checked_mul(dim))
            .unwrap_or(usize::MAX)
    }

    /// Bytes of the view in C order.
    pub fn nbytes(&self) -> usize {
        self.numel().saturating_mul(self.dtype.size())
    }

    /// Whether the view is C-contiguous (strides of size-1 dimensions do not matter).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&dim, &stride) in self.shape.iter().zip(&self.stride).rev() {
            if dim != 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(dim);
        }
        true
    }

    /// The storage elements the view touches: `[first, last]`, or `None` when it is empty.
    pub fn element_span(&self) -> Option<(usize, usize)> {
        if self.shape.contains(&0) {
            return None;
        }
        let mut last = self.storage_offset;
        for (&dim, &stride) in self.shape.iter().zip(&self.stride) {
            last = last.checked_add((dim - 1).checked_mul(stride)?)?;
        }
        Some((self.storage_offset, last))
    }
}

/// Reads a tensor out of the unpickled `value`; `context` names it in errors.
pub(crate) fn tensor_from_value(
    value: &Value,
    context: &str,
) -> Result<TensorRecord, TorchErrorKind> {
    let not_a = |expected: &'static str, found: &Value| TorchErrorKind::NotATensor {
        context: context.to_owned(),
        expected,
        found: found.describe(),
    };
    let object = match value {
        Value::Object(object)
            if object.construction == Construction::Reduce
                && matches!(
                    object.callable_global(),
                    Some(("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor"))
                ) =>
        {
            object
        }
        other => {
            return Err(not_a(
                "a tensor (torch._utils._rebuild_tensor_v2(…))",
                other,
            ))
        }
    };
    let args = object.args_slice();
    let [storage, offset, size, stride, ..] = args else {
        return Err(not_a(
            "at least 4 arguments to _rebuild_tensor_v2",
            &object.args,
        ));
    };
    let Value::PersistentId(pid) = storage else {
        return Err(not_a("a persistent storage reference", storage));
    };
    let Some([tag, class, key, location, numel]) = pid
        .as_tuple()
        .and_then(|items| <&[Value; 5]>::try_from(items).ok())
    else {
        return Err(not_a("('storage', class, key, location, numel)", pid));
    };
    if tag.as_str() != Some("storage") || location.as_str().is_none() {
        return Err(not_a("('storage', class, key, location, numel)", pid));
    }
    let dtype = match class.as_global() {
        Some(("torch", name)) => DType::from_storage_class(name),
        Some(_) => None,
        None => return Err(not_a("a storage class", class)),
    };
    let Some(dtype) = dtype else {
        return Err(TorchErrorKind::UnknownStorageClass {
            context: context.to_owned(),
            class: class.describe(),
        });
    };
    let Some(storage_key) = key.as_str() else {
        return Err(not_a("a storage key string", key));
    };
    let record = TensorRecord {
        dtype,
        shape: index_tuple(size, context, "size")?,
        stride: index_tuple(stride, context, "stride")?,
        storage_offset: index(offset, context, "storage offset")?,
        storage_key: storage_key.to_owned(),
        storage_numel: index(numel, context, "storage size")?,
    };
    if record.stride.len() != record.shape.len() {
        return Err(TorchErrorKind::NotATensor {
            context: context.to_owned(),
            expected: "as many strides as dimensions",
            found: format!("size {:?} with stride {:?}", record.shape, record.stride),
        });
    }
    check_view_fits(&record, record.storage_numel as u64, context)?;
    Ok(record)
}

fn index(value: &Value, context: &str, what: &'static str) -> Result<usize, TorchErrorKind> {
    match value {
        Value::Int(number) if *number >= 0 => {
            usize::try_from(*number).map_err(|_| TorchErrorKind::NotATensor {
                context: context.to_owned(),
                expected: what,
                found: format!("int {number}"),
            })
        }
        other => Err(TorchErrorKind::NotATensor {
            context: context.to_owned(),
            expected: what,
            found: match other {
                Value::Int(number) => format!("int {number}"),
                other => other.describe(),
            },
        }),
    }
}

fn index_tuple(
    value: &Value,
    context: &str,
    what: &'static str,
) -> Result<Vec<usize>, TorchErrorKind> {
    let Some(items) = value.as_tuple() else {
        return Err(TorchErrorKind::NotATensor {
            context: context.to_owned(),
            expected: what,
            found: value.describe(),
        });
    };
    items
        .iter()
        .map(|item| index(item, context, what))
        .collect()
}

/// Checks that the view's elements lie inside a storage of `available` elements.
pub(crate) fn check_view_fits(
    record: &TensorRecord,
    available: u64,
    context: &str,
) -> Result<(), TorchErrorKind> {
    if record
        .shape
        .iter()
        .try_fold(1usize, |total, &dim| total.checked_mul(dim))
        .is_none()
    {
        return Err(TorchErrorKind::NotATensor {
            context: context.to_owned(),
            expected: "a shape whose element count fits in memory",
            found: format!("{:?}", record.shape),
        });
    }
    if record.shape.contains(&0) {
        return Ok(());
    }
    match record.element_span() {
        Some((_, last)) if (last as u64) < available => Ok(()),
        span => Err(TorchErrorKind::StorageTooShort {
            context: context.to_owned(),
            key: record.storage_key.clone(),
            needed: span.map_or(u64::MAX, |(_, last)| last as u64 + 1),
            available,
        }),
    }
}

/// Copies the view out of `source`, which holds storage elements starting at element
/// `first_element`, into little-endian C-order bytes.
pub(crate) fn gather_view(record: &TensorRecord, source: &[u8], first_element: usize) -> Vec<u8> {
    let size = record.dtype.size();
    let numel = record.numel();
    let mut output = Vec::with_capacity(numel.saturating_mul(size));
    if numel == 0 {
        return output;
    }
    let copy_element = |output: &mut Vec<u8>, element: usize| {
        let start = (element - first_element) * size;
        output.extend_from_slice(&source[start..start + size]);
    };
    let Some((&inner_dim, outer_dims)) = record.shape.split_last() else {
        copy_element(&mut output, record.storage_offset);
        return output;
    };
    let inner_stride = record.stride[outer_dims.len()];
    let mut counter = vec![0usize; outer_dims.len()];
    loop {
        let base = record.storage_offset
            + counter
                .iter()
                .zip(&record.stride)
                .map(|(&index, &stride)| index * stride)
                .sum::<usize>();
        if inner_stride == 1 {
            let start = (base - first_element) * size;
            output.extend_from_slice(&source[start..start + inner_dim * size]);
        } else {
            for step in 0..inner_dim {
                copy_element(&mut output, base + step * inner_stride);
            }
        }
        // Advance the odometer over the outer dimensions.
        let mut dim = outer_dims.len();
        loop {
            if dim == 0 {
                return output;
            }
            dim -= 1;
            counter[dim] += 1;
            if counter[dim] < outer_dims[dim] {
                break;
            }
            counter[dim] = 0;
        }
    }
}
