//! Writing `.pt` files: the token_bytes tables and every checkpoint fixture are re-created
//! byte for byte (zip layout, data.pkl, CRCs and the serialization id), and what is
//! written reads back with the same values.

use std::path::PathBuf;

use nanochat_fixtures::{fixture, fixture_json, read_fixture};
use nanochat_pt::{
    default_archive_prefix, write_torch, write_torch_file, DType, SaveRoot, TensorToWrite,
    TorchErrorKind, TorchFile, Value,
};

fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn write_to_vec(prefix: &str, root: &SaveRoot<'_>) -> Vec<u8> {
    write_torch(Vec::new(), prefix, root, "memory").expect("write")
}

/// Byte positions where two files differ (for readable failures).
fn differing_positions(ours: &[u8], theirs: &[u8]) -> Vec<usize> {
    let mut positions: Vec<usize> = ours
        .iter()
        .zip(theirs)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(index, _)| index)
        .collect();
    if ours.len() != theirs.len() {
        positions.push(ours.len().min(theirs.len()));
    }
    positions.truncate(10);
    positions
}

#[test]
fn token_bytes_is_byte_identical_to_nanochats() {
    let values: Vec<i32> = fixture_json("tokenizer/vocab.json")["token_bytes"]
        .as_array()
        .expect("token_bytes")
        .iter()
        .map(|count| count.as_i64().expect("int") as i32)
        .collect();
    let data = i32_bytes(&values);
    let root = SaveRoot::Tensor(TensorToWrite {
        dtype: DType::I32,
        shape: vec![values.len()],
        data: &data,
    });
    let written = write_to_vec("archive", &root);
    let expected = read_fixture("nanochat-2025/tokenizer/token_bytes.pt");
    // Identical including the 40-digit serialization id and every CRC, which are
    // computed exactly as torch computes them.
    assert!(
        written == expected,
        "differs at {:?}",
        differing_positions(&written, &expected)
    );

    let mut file = TorchFile::from_bytes(written, "written.pt").expect("read back");
    let tensor = file.single_tensor().expect("tensor");
    assert_eq!(file.read_i32(&tensor).expect("values"), values);
}

#[test]
fn large_token_bytes_is_byte_identical() {
    let mut original = TorchFile::open(fixture("tokenizer-65k/token_bytes.pt")).expect("open");
    let tensor = original.single_tensor().expect("tensor");
    let data = original.read_tensor_bytes(&tensor).expect("bytes");
    let root = SaveRoot::Tensor(TensorToWrite {
        dtype: tensor.dtype,
        shape: tensor.shape.clone(),
        data: &data,
    });
    let written = write_to_vec(original.archive_prefix(), &root);
    let expected = read_fixture("tokenizer-65k/token_bytes.pt");
    assert!(
        written == expected,
        "differs at {:?}",
        differing_positions(&written, &expected)
    );
}

/// The `_metadata` of a state dict: module prefix → version.
fn module_versions(root: &Value) -> Option<Vec<(String, i64)>> {
    let metadata = root.as_object()?.state.as_ref()?.dict_get("_metadata")?;
    metadata
        .as_object()?
        .dict_items
        .iter()
        .map(|(prefix, entry)| {
            Some((
                prefix.as_str()?.to_owned(),
                entry.dict_get("version")?.as_int()?,
            ))
        })
        .collect()
}

#[test]
fn every_checkpoint_is_rewritten_byte_identical() {
    let manifest = fixture_json("checkpoints_manifest.json");
    for checkpoint in manifest["checkpoints"].as_array().expect("checkpoints") {
        let model_file = checkpoint["model_file"].as_str().expect("model_file");
        let mut original = TorchFile::open(fixture(model_file)).expect("open");
        let versions = module_versions(original.root()).expect("_metadata");
        assert_eq!(versions[0], (String::new(), 1), "root module first");
        let state_dict = original.state_dict().expect("state dict");
        let data: Vec<Vec<u8>> = state_dict
            .iter()
            .map(|(_, tensor)| original.read_tensor_bytes(tensor).expect("bytes"))
            .collect();
        let tensors = state_dict
            .iter()
            .zip(&data)
            .map(|((name, tensor), bytes)| {
                (
                    name.clone(),
                    TensorToWrite {
                        dtype: tensor.dtype,
                        shape: tensor.shape.clone(),
                        data: bytes,
                    },
                )
            })
            .collect();
        let root = SaveRoot::StateDict {
            tensors,
            module_versions: Some(versions),
        };
        let prefix = default_archive_prefix(&PathBuf::from(model_file));
        assert_eq!(prefix, original.archive_prefix());
        let written = write_to_vec(&prefix, &root);
        let expected = read_fixture(model_file);
        assert!(
            written == expected,
            "{model_file} differs at {:?}",
            differing_positions(&written, &expected)
        );
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nanochat-pt-{}-{name}", std::process::id()))
}

#[test]
fn state_dict_without_metadata_round_trips_through_a_file() {
    let weights: Vec<f32> = (0..12).map(|index| index as f32 * 0.5 - 1.0).collect();
    let weight_bytes: Vec<u8> = weights
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    let embedding_bits: Vec<u16> = vec![0x3f80, 0xc000, 0x4049, 0x0000];
    let embedding_bytes: Vec<u8> = embedding_bits
        .iter()
        .flat_map(|bits| bits.to_le_bytes())
        .collect();
    let counts = i32_bytes(&[7, -7]);
    let empty: Vec<u8> = Vec::new();
    let root = SaveRoot::StateDict {
        tensors: vec![
            (
                "embedding.weight".to_owned(),
                TensorToWrite {
                    dtype: DType::BF16,
                    shape: vec![2, 2],
                    data: &embedding_bytes,
                },
            ),
            (
                "linear.weight".to_owned(),
                TensorToWrite {
                    dtype: DType::F32,
                    shape: vec![3, 4],
                    data: &weight_bytes,
                },
            ),
            (
                "counts".to_owned(),
                TensorToWrite {
                    dtype: DType::I32,
                    shape: vec![2],
                    data: &counts,
                },
            ),
            (
                "empty".to_owned(),
                TensorToWrite {
                    dtype: DType::F32,
                    shape: vec![0, 5],
                    data: &empty,
                },
            ),
        ],
        module_versions: None,
    };
    let path = temp_path("model_000001.pt");
    write_torch_file(&path, &default_archive_prefix(&path), &root).expect("write");
    let mut file = TorchFile::open(&path).expect("read back");
    std::fs::remove_file(&path).ok();
    assert_eq!(
        file.archive_prefix(),
        format!("nanochat-pt-{}-model_000001", std::process::id())
    );
    assert!(
        file.root()
            .as_object()
            .expect("OrderedDict")
            .state
            .is_none(),
        "no _metadata written"
    );
    let state_dict = file.state_dict().expect("state dict");
    let names: Vec<&str> = state_dict.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["embedding.weight", "linear.weight", "counts", "empty"]
    );
    assert_eq!(state_dict[1].1.shape, vec![3, 4]);
    assert_eq!(state_dict[1].1.stride, vec![4, 1]);
    assert_eq!(
        file.read_f32(&state_dict[0].1).expect("bf16"),
        vec![1.0, -2.0, 3.140625, 0.0]
    );
    assert_eq!(file.read_f32(&state_dict[1].1).expect("f32"), weights);
    assert_eq!(file.read_i32(&state_dict[2].1).expect("i32"), vec![7, -7]);
    assert_eq!(
        file.read_f32(&state_dict[3].1).expect("empty"),
        Vec::<f32>::new()
    );
    let entries = file.entry_names();
    let prefix = file.archive_prefix().to_owned();
    let expected: Vec<String> = [
        "data.pkl",
        ".format_version",
        ".storage_alignment",
        "byteorder",
        "data/0",
        "data/1",
        "data/2",
        "data/3",
        "version",
        ".data/serialization_id",
    ]
    .iter()
    .map(|name| format!("{prefix}/{name}"))
    .collect();
    assert_eq!(entries, expected);
    for key in ["0", "1", "2", "3"] {
        let (offset, _) = file.storage_file_offset(key).expect("offset");
        assert_eq!(offset % 64, 0, "storage {key} is 64-byte aligned");
    }
}

#[test]
fn invalid_inputs_are_refused() {
    let data = [0u8; 7];
    let root = SaveRoot::Tensor(TensorToWrite {
        dtype: DType::F32,
        shape: vec![2],
        data: &data,
    });
    let error = write_torch(Vec::new(), "archive", &root, "out.pt").expect_err("size mismatch");
    assert_eq!(
        error.to_string(),
        "out.pt: tensor root: 7 bytes given, but shape [2] of float32 needs 8"
    );
    let root = SaveRoot::Tensor(TensorToWrite {
        dtype: DType::U8,
        shape: vec![7],
        data: &data,
    });
    for prefix in ["", "a/b"] {
        let error = write_torch(Vec::new(), prefix, &root, "out.pt").expect_err("bad prefix");
        assert!(
            matches!(error.kind, TorchErrorKind::InvalidPrefix(_)),
            "{error}"
        );
    }
    assert_eq!(
        default_archive_prefix(&PathBuf::from("/x/model_000650.pt")),
        "model_000650"
    );
    assert_eq!(default_archive_prefix(&PathBuf::from("a.b.pt")), "a.b");
    assert_eq!(default_archive_prefix(&PathBuf::from("plain")), "plain");
}
