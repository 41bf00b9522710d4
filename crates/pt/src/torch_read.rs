//! Reading `.pt` files: the zip archive `torch.save` writes (reference §1.4).
//!
//! The archive holds `<prefix>/data.pkl` (the pickled object; the prefix varies:
//! `model_000650`, `archive`, …, so it is found, not assumed) and one stored entry
//! `<prefix>/data/<key>` per storage. Storages are read straight from the file at the
//! payload offset the zip records, and [`TorchFile::storage_file_offset`] exposes that
//! offset for memory mapping.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use zip::{CompressionMethod, ZipArchive};

use crate::dtype::{bf16_to_f32, f16_to_f32, DType};
use crate::pickle::parse;
use crate::tensor_record::{
    check_view_fits, gather_view, tensor_from_value, TensorRecord, MAX_VIEW_EXPANSION,
};
use crate::torch_error::{TorchError, TorchErrorKind};
use crate::value::Value;

/// An opened torch file: its unpickled root object plus access to its storages.
pub struct TorchFile<R = File> {
    source: String,
    reader: R,
    file_length: u64,
    entries: Vec<Entry>,
    entry_index: HashMap<String, usize>,
    prefix: String,
    root: Value,
}

/// What the zip directory says about one entry.
struct Entry {
    name: String,
    /// Absolute offset of the payload, or why the local header could not be read.
    data_start: Result<u64, String>,
    stored_length: u64,
    method: CompressionMethod,
    crc32: u32,
}

impl TorchFile<File> {
    /// Opens the `.pt` file at `path` and unpickles its `data.pkl`.
    pub fn open(path: impl AsRef<Path>) -> Result<TorchFile<File>, TorchError> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let file = File::open(path).map_err(|error| TorchError::new(&source, error.into()))?;
        TorchFile::from_reader(file, &source)
    }
}

impl TorchFile<Cursor<Vec<u8>>> {
    /// Reads a torch file held in memory; `name` stands for the file in errors.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Self, TorchError> {
        TorchFile::from_reader(Cursor::new(bytes), name)
    }
}

impl<R: Read + Seek> TorchFile<R> {
    /// Reads a torch file from any seekable reader; `name` stands for it in errors.
    pub fn from_reader(mut reader: R, name: &str) -> Result<Self, TorchError> {
        let fail = |kind: TorchErrorKind| TorchError::new(name, kind);
        let file_length = reader
            .seek(SeekFrom::End(0))
            .map_err(|error| fail(error.into()))?;
        reader.rewind().map_err(|error| fail(error.into()))?;
        let archive = ZipArchive::new(reader)
            .map_err(|error| fail(TorchErrorKind::NotZip(error.to_string())))?;
        let (entries, reader) = read_directory(archive);
        let entry_index = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| (entry.name.clone(), index))
            .collect();
        let data_pkl = find_data_pkl(&entries).map_err(fail)?;
        let prefix = data_pkl.trim_end_matches("/data.pkl").to_owned();
        let mut torch_file = TorchFile {
            source: name.to_owned(),
            reader,
            file_length,
            entries,
            entry_index,
            prefix,
            root: Value::None,
        };
        let pickle = torch_file.read_entry(&data_pkl)?;
        torch_file.root = parse(&pickle).map_err(|source| {
            fail(TorchErrorKind::Pickle {
                entry: data_pkl,
                source,
            })
        })?;
        Ok(torch_file)
    }

    /// The path or name errors use for this file.
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// The archive's top directory (`model_000650`, `archive`, …).
    pub fn archive_prefix(&self) -> &str {
        &self.prefix
    }

    /// All entry names of the zip, in central-directory order.
    pub fn entry_names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|entry| entry.name.clone())
            .collect()
    }

    /// The unpickled `data.pkl`.
    pub fn root(&self) -> &Value {
        &self.root
    }

    fn error(&self, kind: TorchErrorKind) -> TorchError {
        TorchError::new(&self.source, kind)
    }

    /// Interprets `value` (part of [`root`](Self::root)) as a tensor.
    pub fn tensor(&self, value: &Value) -> Result<TensorRecord, TorchError> {
        tensor_from_value(value, "tensor").map_err(|kind| self.error(kind))
    }

    /// The root as a single tensor (what `torch.save(tensor)` writes, e.g. `token_bytes.pt`).
    pub fn single_tensor(&self) -> Result<TensorRecord, TorchError> {
        tensor_from_value(&self.root, "root tensor").map_err(|kind| self.error(kind))
    }

    /// The root as a state dict (`OrderedDict` or dict of name → tensor), in file order.
    /// The `_metadata` attribute of an `OrderedDict` is ignored.
    pub fn state_dict(&self) -> Result<Vec<(String, TensorRecord)>, TorchError> {
        let items: &[(Value, Value)] = match &self.root {
            Value::Object(object)
                if object.callable_global() == Some(("collections", "OrderedDict")) =>
            {
                &object.dict_items
            }
            Value::Dict(items) => items,
            other => {
                return Err(self.error(TorchErrorKind::UnexpectedRoot {
                    expected: "a state dict (collections.OrderedDict)",
                    found: other.describe(),
                }))
            }
        };
        let mut seen = std::collections::HashSet::new();
        let mut tensors = Vec::with_capacity(items.len());
        for (index, (key, value)) in items.iter().enumerate() {
            let Some(name) = key.as_str() else {
                return Err(self.error(TorchErrorKind::NotATensor {
                    context: format!("state dict key #{index}"),
                    expected: "a str key",
                    found: key.describe(),
                }));
            };
            if !seen.insert(name) {
                return Err(self.error(TorchErrorKind::DuplicateKey(name.to_owned())));
            }
            let record = tensor_from_value(value, &format!("tensor {name:?}"))
                .map_err(|kind| self.error(kind))?;
            tensors.push((name.to_owned(), record));
        }
        Ok(tensors)
    }

    /// The zip entry name of a storage.
    pub fn storage_entry_name(&self, key: &str) -> String {
        format!("{}/data/{key}", self.prefix)
    }

    /// Absolute file offset and length of a storage's bytes (entries are stored, so the
    /// payload can be memory-mapped).
    pub fn storage_file_offset(&self, key: &str) -> Result<(u64, u64), TorchError> {
        let entry = self.storage_entry_name(key);
        self.entry_payload(&entry, &format!("storage {key:?}"))
    }

    /// All bytes of a storage.
    pub fn storage_bytes(&mut self, key: &str) -> Result<Vec<u8>, TorchError> {
        let (_, length) = self.storage_file_offset(key)?;
        self.read_storage_range(key, 0, length)
    }

    /// The tensor's elements in C order as little-endian bytes; strided views and
    /// storage offsets are honoured (only the touched part of the storage is read).
    pub fn read_tensor_bytes(&mut self, tensor: &TensorRecord) -> Result<Vec<u8>, TorchError> {
        let context = format!("tensor over storage {:?}", tensor.storage_key);
        let size = tensor.dtype.size() as u64;
        let (_, stored_bytes) = self.storage_file_offset(&tensor.storage_key)?;
        check_view_fits(tensor, stored_bytes / size, &context).map_err(|kind| self.error(kind))?;
        let Some((first, last)) = tensor.element_span() else {
            return Ok(Vec::new());
        };
        let span_elements = (last - first) as u64 + 1;
        let numel = tensor.numel() as u64;
        if numel > span_elements.saturating_mul(MAX_VIEW_EXPANSION) {
            return Err(self.error(TorchErrorKind::ViewTooLarge {
                context,
                source_elements: span_elements,
                elements: numel,
            }));
        }
        let bytes = self.read_storage_range(
            &tensor.storage_key,
            first as u64 * size,
            span_elements * size,
        )?;
        if tensor.is_contiguous() {
            return Ok(bytes);
        }
        Ok(gather_view(tensor, &bytes, first))
    }

    /// The tensor as f32 (float32 as is; bfloat16 and float16 converted exactly).
    pub fn read_f32(&mut self, tensor: &TensorRecord) -> Result<Vec<f32>, TorchError> {
        let convert: fn(&[u8]) -> f32 = match tensor.dtype {
            DType::F32 => |raw| f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            DType::BF16 => |raw| bf16_to_f32(u16::from_le_bytes([raw[0], raw[1]])),
            DType::F16 => |raw| f16_to_f32(u16::from_le_bytes([raw[0], raw[1]])),
            other => return Err(self.wrong_dtype(tensor, other, "float32")),
        };
        let bytes = self.read_tensor_bytes(tensor)?;
        Ok(bytes
            .chunks_exact(tensor.dtype.size())
            .map(convert)
            .collect())
    }

    /// The tensor as i32 (int32 tensors only).
    pub fn read_i32(&mut self, tensor: &TensorRecord) -> Result<Vec<i32>, TorchError> {
        if tensor.dtype != DType::I32 {
            return Err(self.wrong_dtype(tensor, tensor.dtype, "int32"));
        }
        let bytes = self.read_tensor_bytes(tensor)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|raw| i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
            .collect())
    }

    fn wrong_dtype(
        &self,
        tensor: &TensorRecord,
        actual: DType,
        requested: &'static str,
    ) -> TorchError {
        self.error(TorchErrorKind::WrongDType {
            context: format!("tensor over storage {:?}", tensor.storage_key),
            actual,
            requested,
        })
    }

    /// Offset and length of a stored entry's payload, checked against the file size.
    fn entry_payload(&self, entry_name: &str, context: &str) -> Result<(u64, u64), TorchError> {
        let Some(entry) = self
            .entry_index
            .get(entry_name)
            .map(|&index| &self.entries[index])
        else {
            let kind = TorchErrorKind::MissingStorage {
                context: context.to_owned(),
                entry: entry_name.to_owned(),
            };
            return Err(self.error(kind));
        };
        let start = entry.data_start.clone().map_err(|detail| {
            self.error(TorchErrorKind::BadEntry {
                entry: entry_name.to_owned(),
                detail,
            })
        })?;
        if entry.method != CompressionMethod::Stored {
            let kind = TorchErrorKind::CompressedEntry {
                entry: entry_name.to_owned(),
                method: method_name(entry.method),
            };
            return Err(self.error(kind));
        }
        let available = self.file_length.saturating_sub(start);
        if entry.stored_length > available {
            let kind = TorchErrorKind::TruncatedEntry {
                entry: entry_name.to_owned(),
                expected: entry.stored_length,
                actual: available,
            };
            return Err(self.error(kind));
        }
        Ok((start, entry.stored_length))
    }

    /// `length` bytes of a storage starting `offset` bytes into it.
    fn read_storage_range(
        &mut self,
        key: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, TorchError> {
        let entry = self.storage_entry_name(key);
        let (start, stored) = self.entry_payload(&entry, &format!("storage {key:?}"))?;
        if offset.saturating_add(length) > stored {
            let kind = TorchErrorKind::TruncatedEntry {
                entry,
                expected: offset.saturating_add(length),
                actual: stored,
            };
            return Err(self.error(kind));
        }
        self.read_at(&entry, start + offset, length)
    }

    /// Reads a whole stored entry (used for `data.pkl`, whose CRC is also checked).
    fn read_entry(&mut self, entry: &str) -> Result<Vec<u8>, TorchError> {
        let (start, length) = self.entry_payload(entry, "data.pkl")?;
        let bytes = self.read_at(entry, start, length)?;
        let expected_crc = self
            .entry_index
            .get(entry)
            .map_or(0, |&index| self.entries[index].crc32);
        if crc32fast::hash(&bytes) != expected_crc {
            let detail = format!("CRC mismatch (expected {expected_crc:08x})");
            return Err(self.error(TorchErrorKind::BadEntry {
                entry: entry.to_owned(),
                detail,
            }));
        }
        Ok(bytes)
    }

    fn read_at(&mut self, entry: &str, start: u64, length: u64) -> Result<Vec<u8>, TorchError> {
        let file = self.source.clone();
        let io_error = |error: std::io::Error| TorchError::new(&file, error.into());
        let reader = &mut self.reader;
        reader.seek(SeekFrom::Start(start)).map_err(io_error)?;
        // `entry_payload` checked the length against the file size, so this is bounded.
        let mut bytes = Vec::with_capacity(length as usize);
        reader
            .take(length)
            .read_to_end(&mut bytes)
            .map_err(io_error)?;
        if (bytes.len() as u64) < length {
            let kind = TorchErrorKind::TruncatedEntry {
                entry: entry.to_owned(),
                expected: length,
                actual: bytes.len() as u64,
            };
            return Err(self.error(kind));
        }
        Ok(bytes)
    }
}

/// A readable name for a zip compression method.
fn method_name(method: CompressionMethod) -> String {
    if method == CompressionMethod::DEFLATE {
        "deflate".to_owned()
    } else if method == CompressionMethod::DEFLATE64 {
        "deflate64".to_owned()
    } else {
        format!("{method:?}")
    }
}

/// Reads every entry's payload position, then takes the reader back from the archive.
fn read_directory<R: Read + Seek>(mut archive: ZipArchive<R>) -> (Vec<Entry>, R) {
    let mut entries = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let name = archive.name_for_index(index).unwrap_or_default().to_owned();
        let entry = match archive.by_index_raw(index) {
            Ok(file) => Entry {
                name: file.name().to_owned(),
                data_start: Ok(file.data_start()),
                stored_length: file.compressed_size(),
                method: file.compression(),
                crc32: file.crc32(),
            },
            Err(error) => Entry {
                name,
                data_start: Err(error.to_string()),
                stored_length: 0,
                method: CompressionMethod::Stored,
                crc32: 0,
            },
        };
        entries.push(entry);
    }
    (entries, archive.into_inner())
}

/// Finds the single `<dir>/data.pkl` entry.
fn find_data_pkl(entries: &[Entry]) -> Result<String, TorchErrorKind> {
    let candidates: Vec<&str> = entries
        .iter()
        .map(|entry| entry.name.as_str())
        .filter(|name| {
            name.ends_with("/data.pkl")
                && name.matches('/').count() == 1
                && name.len() > "/data.pkl".len()
        })
        .collect();
    match candidates.as_slice() {
        [single] => Ok((*single).to_owned()),
        [] => {
            let mut names: Vec<&str> = entries
                .iter()
                .take(8)
                .map(|entry| entry.name.as_str())
                .collect();
            if entries.len() > names.len() {
                names.push("…");
            }
            let entries = if names.is_empty() {
                "no entries".to_owned()
            } else {
                names.join(", ")
            };
            Err(TorchErrorKind::NoDataPkl { entries })
        }
        several => Err(TorchErrorKind::SeveralDataPkl {
            names: several.join(", "),
        }),
    }
}
