//! Reading `.pt` files: the fixtures (token_bytes tables, checkpoints with bf16 and fp32
//! tensors, `_orig_mod.` keys), strided views, and an error naming the file and entry for
//! each way an archive can be wrong.

use std::io::{Cursor, Write};

use nanochat_fixtures::{fixture, fixture_json, read_fixture, read_npy};
use nanochat_pt::{dumps, DType, Object, TorchErrorKind, TorchFile, Value};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

#[test]
fn small_token_bytes_table() {
    let mut file =
        TorchFile::open(fixture("nanochat-2025/tokenizer/token_bytes.pt")).expect("open");
    assert_eq!(file.archive_prefix(), "archive");
    let tensor = file.single_tensor().expect("tensor");
    assert_eq!(
        (tensor.dtype, tensor.shape.clone(), tensor.stride.clone()),
        (DType::I32, vec![512], vec![1])
    );
    assert_eq!(
        (
            tensor.storage_key.as_str(),
            tensor.storage_numel,
            tensor.storage_offset
        ),
        ("0", 512, 0)
    );
    let expected: Vec<i32> = fixture_json("tokenizer/vocab.json")["token_bytes"]
        .as_array()
        .expect("token_bytes")
        .iter()
        .map(|count| count.as_i64().expect("int") as i32)
        .collect();
    assert_eq!(file.read_i32(&tensor).expect("values"), expected);
    // The payload is 64-byte aligned, at the offset `unzip -lv`/xxd show.
    assert_eq!(file.storage_file_offset("0").expect("offset"), (704, 2048));
    assert_eq!(file.storage_bytes("0").expect("bytes").len(), 2048);
}

#[test]
fn large_token_bytes_table() {
    let mut file = TorchFile::open(fixture("tokenizer-65k/token_bytes.pt")).expect("open");
    let tensor = file.single_tensor().expect("tensor");
    assert_eq!(tensor.shape, vec![65_536]);
    let values = file.read_i32(&tensor).expect("values");
    assert_eq!(&values[65_527..], &[0; 9], "special tokens count 0 bytes");
    assert!(values[..128].iter().all(|&count| count == 1));
    assert!(
        values[128..256].iter().all(|&count| count == 3),
        "lone bytes 0x80-0xff decode to U+FFFD"
    );
}

/// The key order nanochat's GPT state dict has.
fn expected_key_order(n_layer: usize) -> Vec<String> {
    let mut keys = vec!["transformer.wte.weight".to_owned()];
    for layer in 0..n_layer {
        for part in [
            "attn.c_q",
            "attn.c_k",
            "attn.c_v",
            "attn.c_proj",
            "mlp.c_fc",
            "mlp.c_proj",
        ] {
            keys.push(format!("transformer.h.{layer}.{part}.weight"));
        }
    }
    keys.push("lm_head.weight".to_owned());
    keys
}

#[test]
fn every_checkpoint_matches_the_manifest() {
    let manifest = fixture_json("checkpoints_manifest.json");
    let checkpoints = manifest["checkpoints"].as_array().expect("checkpoints");
    assert!(checkpoints.len() >= 6);
    for checkpoint in checkpoints {
        let model_file = checkpoint["model_file"].as_str().expect("model_file");
        let file = TorchFile::open(fixture(model_file)).expect("open checkpoint");
        let state_dict = file.state_dict().expect("state dict");
        let expected = checkpoint["tensors"].as_object().expect("tensors");
        assert_eq!(state_dict.len(), expected.len(), "{model_file}");
        for (name, tensor) in &state_dict {
            let entry = &expected[name.as_str()];
            let shape: Vec<usize> = entry["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|dim| dim.as_u64().expect("dim") as usize)
                .collect();
            assert_eq!(tensor.shape, shape, "{model_file} {name}");
            assert_eq!(
                tensor.dtype.torch_name(),
                entry["dtype"].as_str().expect("dtype"),
                "{model_file} {name}"
            );
            assert!(tensor.is_contiguous() && tensor.storage_offset == 0);
        }
        let n_layer = checkpoint["model_config"]["n_layer"]
            .as_u64()
            .expect("n_layer") as usize;
        let mut keys: Vec<String> = state_dict.iter().map(|(name, _)| name.clone()).collect();
        if model_file.contains("mid_checkpoints") {
            assert!(
                keys.iter().all(|key| key.starts_with("_orig_mod.")),
                "{keys:?}"
            );
            keys = keys
                .iter()
                .map(|key| key["_orig_mod.".len()..].to_owned())
                .collect();
        }
        assert_eq!(keys, expected_key_order(n_layer), "{model_file}");
    }
}

#[test]
fn d3_checkpoint_has_bf16_embedding_and_prefix_from_file_name() {
    let file = TorchFile::open(fixture(
        "nanochat-2025/chatsft_checkpoints/d3/model_000650.pt",
    ))
    .expect("open");
    assert_eq!(file.archive_prefix(), "model_000650");
    let state_dict = file.state_dict().expect("state dict");
    assert_eq!(state_dict[0].1.dtype, DType::BF16);
    assert!(state_dict[1..]
        .iter()
        .all(|(_, tensor)| tensor.dtype == DType::F32));
}

/// The embedding rows of the `fox` sequence equal the `emb` activation (bf16 → f32 is exact).
#[test]
fn embedding_rows_equal_the_reference_activations() {
    let index = fixture_json("outputs/intermediates_index.json");
    for (model, checkpoint) in [
        ("sft_d3", "chatsft_checkpoints/d3/model_000650.pt"),
        ("base_d2", "base_checkpoints/d2/model_000000.pt"),
    ] {
        let mut file =
            TorchFile::open(fixture(&format!("nanochat-2025/{checkpoint}"))).expect("open");
        let (_, wte) = file
            .state_dict()
            .expect("state dict")
            .into_iter()
            .next()
            .expect("wte");
        let weights = file.read_f32(&wte).expect("read wte");
        let ids: Vec<usize> = index["models"][model]["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|id| id.as_u64().expect("id") as usize)
            .collect();
        let npy = read_npy(&format!("outputs/{model}/intermediates/emb.npy"));
        let (shape, expected) = (npy.shape, npy.f32);
        let width = wte.shape[1];
        assert_eq!(shape, vec![ids.len(), width]);
        let rows: Vec<f32> = ids
            .iter()
            .flat_map(|&id| weights[id * width..(id + 1) * width].iter().copied())
            .collect();
        assert_eq!(rows, expected, "{model}");
    }
}

// --- hand-made archives ------------------------------------------------------------------

fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        writer
            .start_file(
                *name,
                SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
            )
            .expect("start");
        writer.write_all(data).expect("write");
    }
    writer.finish().expect("finish").into_inner()
}

fn tensor_value(
    class: &str,
    key: &str,
    numel: i64,
    offset: i64,
    shape: &[i64],
    stride: &[i64],
) -> Value {
    let ints =
        |values: &[i64]| Value::tuple(values.iter().map(|&value| Value::Int(value)).collect());
    let storage = Value::tuple(vec![
        Value::str("storage"),
        Value::global("torch", class),
        Value::str(key),
        Value::str("cpu"),
        Value::Int(numel),
    ]);
    let hooks = Value::object(Object::reduce(
        Value::global("collections", "OrderedDict"),
        Vec::new(),
    ));
    let args = vec![
        Value::persistent_id(storage),
        Value::Int(offset),
        ints(shape),
        ints(stride),
        Value::Bool(false),
        hooks,
    ];
    Value::object(Object::reduce(
        Value::global("torch._utils", "_rebuild_tensor_v2"),
        args,
    ))
}

fn pickle_of(value: &Value) -> Vec<u8> {
    dumps(value, 2).expect("dumps")
}

fn int32_storage(count: i32) -> Vec<u8> {
    (0..count).flat_map(i32::to_le_bytes).collect()
}

fn open_bytes(bytes: Vec<u8>) -> TorchFile<Cursor<Vec<u8>>> {
    TorchFile::from_bytes(bytes, "test.pt").expect("open")
}

#[test]
fn strided_views_and_offsets_are_honoured() {
    let storage = int32_storage(8);
    /// Storage offset, shape, stride, expected elements.
    type ViewCase = (i64, &'static [i64], &'static [i64], &'static [i32]);
    let cases: [ViewCase; 5] = [
        (3, &[2], &[1], &[3, 4]),
        (2, &[2, 3], &[1, 2], &[2, 4, 6, 3, 5, 7]),
        (0, &[2, 2], &[4, 1], &[0, 1, 4, 5]),
        (5, &[3], &[0], &[5, 5, 5]),
        (1, &[], &[], &[1]),
    ];
    for (offset, shape, stride, expected) in cases {
        let root = tensor_value("IntStorage", "0", 8, offset, shape, stride);
        let bytes = stored_zip(&[("t/data.pkl", &pickle_of(&root)), ("t/data/0", &storage)]);
        let mut file = open_bytes(bytes);
        let tensor = file.single_tensor().expect("tensor");
        assert_eq!(
            file.read_i32(&tensor).expect("values"),
            expected,
            "offset {offset} shape {shape:?} stride {stride:?}"
        );
    }
    // float16 and bfloat16 are converted to f32.
    for (class, raw) in [
        ("HalfStorage", [0x00u8, 0x3c, 0x00, 0xc0]),
        ("BFloat16Storage", [0x80, 0x3f, 0x00, 0xc0]),
    ] {
        let root = tensor_value(class, "0", 2, 0, &[2], &[1]);
        let mut file = open_bytes(stored_zip(&[
            ("x/data.pkl", &pickle_of(&root)),
            ("x/data/0", &raw),
        ]));
        let tensor = file.single_tensor().expect("tensor");
        assert_eq!(
            file.read_f32(&tensor).expect("values"),
            vec![1.0, -2.0],
            "{class}"
        );
    }
}

fn open_error(bytes: Vec<u8>) -> nanochat_pt::TorchError {
    match TorchFile::from_bytes(bytes, "bad.pt") {
        Ok(_) => panic!("expected an error"),
        Err(error) => error,
    }
}

fn read_error(root: &Value, storage: &[u8]) -> nanochat_pt::TorchError {
    let mut file = open_bytes(stored_zip(&[
        ("p/data.pkl", &pickle_of(root)),
        ("p/data/0", storage),
    ]));
    match file
        .single_tensor()
        .and_then(|tensor| file.read_tensor_bytes(&tensor))
    {
        Ok(bytes) => panic!("expected an error, read {} bytes", bytes.len()),
        Err(error) => error,
    }
}

#[test]
fn archive_errors_name_the_file_and_entry() {
    let error = open_error(b"not a zip at all".to_vec());
    assert!(matches!(error.kind, TorchErrorKind::NotZip(_)));
    assert!(
        error.to_string().starts_with("bad.pt: not a zip archive"),
        "{error}"
    );

    let error = open_error(stored_zip(&[
        ("archive/other.pkl", b"x"),
        ("archive/data/0", b""),
    ]));
    assert_eq!(
        error.to_string(),
        "bad.pt: no <dir>/data.pkl entry; the archive holds archive/other.pkl, archive/data/0"
    );

    let pickle = pickle_of(&Value::None);
    let error = open_error(stored_zip(&[
        ("a/data.pkl", &pickle),
        ("b/data.pkl", &pickle),
    ]));
    assert_eq!(
        error.to_string(),
        "bad.pt: several data.pkl entries: a/data.pkl, b/data.pkl"
    );

    let error = open_error(stored_zip(&[("a/data.pkl", b"\x80\x02\xfe.")]));
    assert_eq!(
        error.to_string(),
        "bad.pt: entry a/data.pkl: unsupported pickle opcode 0xfe at offset 2"
    );

    let fixture = read_fixture("nanochat-2025/tokenizer/token_bytes.pt");
    let error = open_error(fixture[..fixture.len() / 2].to_vec());
    assert!(matches!(error.kind, TorchErrorKind::NotZip(_)), "{error}");
    let missing = TorchFile::open("/nonexistent/model.pt")
        .err()
        .expect("missing file");
    assert!(
        missing.to_string().starts_with("/nonexistent/model.pt: "),
        "{missing}"
    );

    // An entry marked as deflate-compressed (method 8 in its local and central headers).
    let mut compressed = stored_zip(&[("z/data.pkl", &pickle)]);
    for position in 0..compressed.len() - 12 {
        match &compressed[position..position + 4] {
            b"PK\x03\x04" => compressed[position + 8] = 8,
            b"PK\x01\x02" => compressed[position + 10] = 8,
            _ => {}
        }
    }
    let error = open_error(compressed);
    assert_eq!(
        error.to_string(),
        "bad.pt: entry z/data.pkl is compressed (deflate); torch stores entries uncompressed"
    );
}

#[test]
fn tensor_errors_name_the_tensor_and_storage() {
    let storage = int32_storage(4);
    let error = read_error(&tensor_value("IntStorage", "7", 4, 0, &[4], &[1]), &storage);
    assert_eq!(
        error.to_string(),
        "test.pt: storage \"7\": storage entry p/data/7 is missing"
    );

    let error = read_error(&tensor_value("IntStorage", "0", 4, 1, &[4], &[1]), &storage);
    assert_eq!(
        error.to_string(),
        "test.pt: root tensor: storage 0 holds 4 elements but the tensor's offset, shape and stride need 5"
    );
    // The pickle claims 8 elements, the entry holds 4.
    let error = read_error(&tensor_value("IntStorage", "0", 8, 0, &[8], &[1]), &storage);
    assert!(
        matches!(
            error.kind,
            TorchErrorKind::StorageTooShort {
                needed: 8,
                available: 4,
                ..
            }
        ),
        "{error}"
    );

    let error = read_error(
        &tensor_value("QuantumStorage", "0", 4, 0, &[4], &[1]),
        &storage,
    );
    assert_eq!(
        error.to_string(),
        "test.pt: root tensor: unknown storage class global torch.QuantumStorage"
    );

    let error = read_error(
        &tensor_value("IntStorage", "0", 4, 0, &[2, 2], &[1]),
        &storage,
    );
    assert!(
        matches!(error.kind, TorchErrorKind::NotATensor { .. }),
        "{error}"
    );

    let error = read_error(
        &tensor_value("IntStorage", "0", 4, 0, &[1_000_000], &[0]),
        &storage,
    );
    assert!(
        matches!(error.kind, TorchErrorKind::ViewTooLarge { .. }),
        "{error}"
    );

    let error = read_error(&Value::str("not a tensor"), &storage);
    assert_eq!(
        error.to_string(),
        "test.pt: root tensor: expected a tensor (torch._utils._rebuild_tensor_v2(…)), found str"
    );

    let mut file = open_bytes(stored_zip(&[
        (
            "p/data.pkl",
            &pickle_of(&tensor_value("FloatStorage", "0", 1, 0, &[1], &[1])),
        ),
        ("p/data/0", &[0; 4]),
    ]));
    let tensor = file.single_tensor().expect("tensor");
    let error = file.read_i32(&tensor).expect_err("wrong dtype");
    assert_eq!(
        error.to_string(),
        "test.pt: tensor over storage \"0\": a float32 tensor cannot be read as int32"
    );
    let error = file.state_dict().expect_err("not a state dict");
    assert!(
        matches!(error.kind, TorchErrorKind::UnexpectedRoot { .. }),
        "{error}"
    );
}
