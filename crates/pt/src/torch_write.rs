//! Writing `.pt` files byte-identical to `torch.save` (torch 2.x, Linux, CPU tensors).
//!
//! Records, in torch's order: `data.pkl` (protocol 2, built like torch's pickler builds it:
//! `_rebuild_tensor_v2` reductions, `('storage', torch.<X>Storage, key, 'cpu', numel)`
//! persistent ids with keys `"0"`, `"1"`, … in order of first use, the shared `'storage'`
//! and `'cpu'` strings and an empty `OrderedDict()` of backward hooks per tensor),
//! `.format_version` = `1`, `.storage_alignment` = `64`, `byteorder` = `little`, one
//! `data/<key>` per tensor, `version` = `3\n`, and `.data/serialization_id`, computed as
//! torch computes it. Every tensor gets its own contiguous storage at offset 0 and
//! `requires_grad=False`, which is what `torch.save(model.state_dict())` produces.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::dtype::DType;
use crate::pickle_writer::dumps;
use crate::serialization_id::serialization_id;
use crate::torch_error::{TorchError, TorchErrorKind};
use crate::torch_zip_writer::StoredZipWriter;
use crate::value::{Object, Value};

/// One tensor to save: C-contiguous little-endian element bytes.
#[derive(Clone, Debug)]
pub struct TensorToWrite<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// The object `torch.save` is given.
#[derive(Clone, Debug)]
pub enum SaveRoot<'a> {
    /// A single tensor (`token_bytes.pt`).
    Tensor(TensorToWrite<'a>),
    /// `model.state_dict()`: an `OrderedDict` of name → tensor. `module_versions` is its
    /// `_metadata` (module prefix → `{'version': v}`, `""` for the root module) as
    /// `nn.Module.state_dict()` records it; `None` writes no `_metadata` at all.
    StateDict {
        tensors: Vec<(String, TensorToWrite<'a>)>,
        module_versions: Option<Vec<(String, i64)>>,
    },
}

/// torch's archive prefix for a file saved by path: the file name without its last
/// extension (`model_000650.pt` → `model_000650`). Files saved through a file object
/// use `archive` instead.
pub fn default_archive_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rfind('.') {
        Some(dot) => name[..dot].to_owned(),
        None => name,
    }
}

/// Saves `root` to `path` with the given archive prefix (see [`default_archive_prefix`]).
pub fn write_torch_file(
    path: &Path,
    archive_prefix: &str,
    root: &SaveRoot<'_>,
) -> Result<(), TorchError> {
    let name = path.display().to_string();
    let file = File::create(path).map_err(|error| TorchError::new(&name, error.into()))?;
    let writer = write_torch(BufWriter::new(file), archive_prefix, root, &name)?;
    let file = writer
        .into_inner()
        .map_err(|error| TorchError::new(&name, error.into_error().into()))?;
    file.sync_all()
        .map_err(|error| TorchError::new(&name, error.into()))
}

/// Writes the torch zip for `root` to `output` and returns it; `name` labels errors.
pub fn write_torch<W: Write>(
    output: W,
    archive_prefix: &str,
    root: &SaveRoot<'_>,
    name: &str,
) -> Result<W, TorchError> {
    let fail = |kind: TorchErrorKind| TorchError::new(name, kind);
    if archive_prefix.is_empty() || archive_prefix.contains(['/', '\\']) {
        return Err(fail(TorchErrorKind::InvalidPrefix(
            archive_prefix.to_owned(),
        )));
    }
    let tensors = tensors_in_order(root);
    for (tensor_name, tensor) in &tensors {
        check_tensor(tensor_name, tensor).map_err(fail)?;
    }
    let pickle = torch_data_pkl(root).map_err(fail)?;

    let mut records: Vec<(String, &[u8])> = vec![
        ("data.pkl".to_owned(), &pickle),
        (".format_version".to_owned(), b"1"),
        (".storage_alignment".to_owned(), b"64"),
        ("byteorder".to_owned(), b"little"),
    ];
    records.extend(
        tensors
            .iter()
            .enumerate()
            .map(|(key, (_, tensor))| (format!("data/{key}"), tensor.data)),
    );
    records.push(("version".to_owned(), b"3\n"));

    let mut zip = StoredZipWriter::new(output);
    let io_error = |error: std::io::Error| fail(error.into());
    for (record, data) in &records {
        zip.add_entry(&format!("{archive_prefix}/{record}"), data)
            .map_err(io_error)?;
    }
    let id = serialization_id(
        records.iter().map(|(record, _)| record.as_str()),
        zip.combined_descriptor_crc(),
    );
    zip.add_entry(
        &format!("{archive_prefix}/.data/serialization_id"),
        id.as_bytes(),
    )
    .map_err(io_error)?;
    zip.finish().map_err(io_error)
}

/// The `data.pkl` bytes `torch.save` writes for `root`.
pub fn torch_data_pkl(root: &SaveRoot<'_>) -> Result<Vec<u8>, TorchErrorKind> {
    let mut builder = PickleBuilder::new();
    let value = match root {
        SaveRoot::Tensor(tensor) => builder.tensor(tensor),
        SaveRoot::StateDict {
            tensors,
            module_versions,
        } => {
            let items = tensors
                .iter()
                .map(|(name, tensor)| (Value::str(name), builder.tensor(tensor)))
                .collect();
            let mut state_dict =
                Object::reduce(builder.ordered_dict.clone(), Vec::new()).with_dict_items(items);
            if let Some(versions) = module_versions {
                let version_key = Value::str("version");
                let entries = versions
                    .iter()
                    .map(|(prefix, version)| {
                        (
                            Value::str(prefix),
                            Value::dict(vec![(version_key.clone(), Value::Int(*version))]),
                        )
                    })
                    .collect();
                let metadata = Object::reduce(builder.ordered_dict.clone(), Vec::new())
                    .with_dict_items(entries);
                state_dict = state_dict.with_state(Value::dict(vec![(
                    Value::str("_metadata"),
                    Value::object(metadata),
                )]));
            }
            Value::object(state_dict)
        }
    };
    Ok(dumps(&value, 2)?)
}

fn tensors_in_order<'r, 'a>(root: &'r SaveRoot<'a>) -> Vec<(&'r str, &'r TensorToWrite<'a>)> {
    match root {
        SaveRoot::Tensor(tensor) => vec![("root", tensor)],
        SaveRoot::StateDict { tensors, .. } => tensors
            .iter()
            .map(|(name, tensor)| (name.as_str(), tensor))
            .collect(),
    }
}

fn check_tensor(name: &str, tensor: &TensorToWrite<'_>) -> Result<(), TorchErrorKind> {
    let invalid = |detail: String| TorchErrorKind::InvalidTensorData {
        name: name.to_owned(),
        detail,
    };
    let numel = tensor
        .shape
        .iter()
        .try_fold(1usize, |total, &dim| total.checked_mul(dim))
        .ok_or_else(|| invalid(format!("shape {:?} has too many elements", tensor.shape)))?;
    let expected = numel
        .checked_mul(tensor.dtype.size())
        .ok_or_else(|| invalid("too many bytes".to_owned()))?;
    if tensor.data.len() != expected {
        return Err(invalid(format!(
            "{} bytes given, but shape {:?} of {} needs {expected}",
            tensor.data.len(),
            tensor.shape,
            tensor.dtype
        )));
    }
    Ok(())
}

/// Builds the pickled objects, sharing what torch's pickler shares.
struct PickleBuilder {
    rebuild_tensor: Value,
    ordered_dict: Value,
    storage_tag: Value,
    cpu_location: Value,
    next_key: usize,
}

impl PickleBuilder {
    fn new() -> Self {
        PickleBuilder {
            rebuild_tensor: Value::global("torch._utils", "_rebuild_tensor_v2"),
            ordered_dict: Value::global("collections", "OrderedDict"),
            storage_tag: Value::str("storage"),
            cpu_location: Value::str("cpu"),
            next_key: 0,
        }
    }

    fn tensor(&mut self, tensor: &TensorToWrite<'_>) -> Value {
        let key = self.next_key.to_string();
        self.next_key += 1;
        let numel: usize = tensor.shape.iter().product();
        let mut strides = vec![1usize; tensor.shape.len()];
        for dim in (0..tensor.shape.len().saturating_sub(1)).rev() {
            strides[dim] = strides[dim + 1] * tensor.shape[dim + 1];
        }
        let storage = Value::tuple(vec![
            self.storage_tag.clone(),
            Value::global("torch", tensor.dtype.storage_class()),
            Value::str(&key),
            self.cpu_location.clone(),
            int(numel),
        ]);
        let args = vec![
            Value::persistent_id(storage),
            Value::Int(0),
            Value::tuple(tensor.shape.iter().map(|&dim| int(dim)).collect()),
            Value::tuple(strides.into_iter().map(int).collect()),
            Value::Bool(false),
            Value::object(Object::reduce(self.ordered_dict.clone(), Vec::new())),
        ];
        Value::object(Object::reduce(self.rebuild_tensor.clone(), args))
    }
}

fn int(number: usize) -> Value {
    Value::Int(i64::try_from(number).unwrap_or(i64::MAX))
}
