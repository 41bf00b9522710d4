//! Checkpoints on disk: nanochat's discovery rules, conversion of every fixture checkpoint to
//! our safetensors format (bit-identical logits), save/reload of random models with every
//! architecture option, and clear errors (never panics) for broken checkpoints.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use candle_core::{DType, Device, Tensor};
use nanochat_fixtures::{fixture, fixture_json, max_abs_diff, read_npy, scratch_dir};
use nanochat_model::checkpoint::{
    checkpoint_at_path, checkpoint_in_dir, find_checkpoint, find_largest_model, load_checkpoint,
    read_meta, read_safetensors, CheckpointFiles, LoadedModel, Source, WeightFormat,
};
use nanochat_model::init::{random_model, random_weights, InitOptions};
use nanochat_model::save::{
    convert, save_checkpoint, save_model, tokenizer_dir_for, ConvertOptions, SaveOptions,
};
use nanochat_model::WeightDType;
use nanochat_model::{Activation, Config, Gpt};
use nanochat_pt::torch_write::{write_torch_file, SaveRoot, TensorToWrite};

const MODELS: [&str; 4] = ["base_d2", "mid_d2", "sft_d2", "sft_d3"];
/// The bf16 tolerance of the parity test (`bf16_weights_stay_close_to_fp32`).
const BF16_ATOL: f32 = 0.35;

fn fixture_checkpoint(name: &str) -> CheckpointFiles {
    let m = &fixture_json("outputs/models_index.json")["models"][name];
    find_checkpoint(
        &fixture("nanochat-2025"),
        m["source"].as_str().unwrap().parse().unwrap(),
        Some(m["model_tag"].as_str().unwrap()),
        Some(m["step"].as_u64().unwrap()),
    )
    .unwrap()
}

fn fixture_tokenizer() -> PathBuf {
    fixture("nanochat-2025/tokenizer")
}

fn load(files: &CheckpointFiles, dtype: DType) -> LoadedModel {
    let dtype = if dtype == DType::BF16 {
        WeightDType::Bf16
    } else {
        WeightDType::F32
    };
    load_checkpoint(files, dtype, &Device::Cpu)
        .unwrap_or_else(|e| panic!("loading {}: {e}", files.weights.display()))
}

fn logits(model: &Gpt, ids: &[u32]) -> Vec<f32> {
    let ids = Tensor::from_vec(ids.to_vec(), (1, ids.len()), &Device::Cpu).unwrap();
    model
        .forward(&ids, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// (sequence name, ids, reference logits .npy) of a fixture model.
fn sequences(name: &str) -> Vec<(String, Vec<u32>, String)> {
    let index = fixture_json("outputs/models_index.json");
    index["models"][name]["sequences"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(seq, case)| {
            (
                seq.clone(),
                serde_json::from_value(case["ids"].clone()).unwrap(),
                case["logits_npy"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn convert_opts() -> ConvertOptions {
    ConvertOptions {
        tokenizer: Some(fixture_tokenizer()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Discovery

#[test]
fn discovery_matches_nanochat_on_the_fixture_base_dir() {
    let base = fixture("nanochat-2025");
    let discovery = fixture_json("outputs/models_index.json")["discovery"].clone();
    let stages = discovery.as_object().unwrap();
    assert_eq!(stages.len(), 4);
    for (stage, expected) in stages {
        let source = Source::ALL
            .into_iter()
            .find(|s| s.dir_name() == stage)
            .unwrap_or_else(|| panic!("unknown stage {stage}"));
        let tag = find_largest_model(&base.join(stage)).unwrap();
        assert_eq!(tag, expected["find_largest_model"], "{stage}");
        let files = find_checkpoint(&base, source, None, None).unwrap();
        assert_eq!(
            files.step,
            expected["find_last_step"].as_u64().unwrap(),
            "{stage}"
        );
        assert_eq!(files.dir, base.join(stage).join(&tag));
        assert_eq!(files.format, WeightFormat::Torch);
        assert_eq!(
            files.weights,
            files.dir.join(format!("model_{:06}.pt", files.step))
        );
        assert_eq!(
            files.meta,
            files.dir.join(format!("meta_{:06}.json", files.step))
        );
    }
}

fn touch(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

fn set_mtime(dir: &Path, seconds_ago: u64) {
    std::fs::File::open(dir)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(seconds_ago))
        .unwrap();
}

#[test]
fn discovery_rules_on_hand_made_directories() {
    let base = scratch_dir("discovery");
    let stage = base.join("base_checkpoints");
    for tag in ["d12", "d20_foo", "d3", "x99", "dev"] {
        std::fs::create_dir_all(stage.join(tag)).unwrap();
    }
    // `d20_foo` counts as depth 20 (re.match at the start of the name).
    assert_eq!(find_largest_model(&stage).unwrap(), "d20_foo");
    let dir = stage.join("d20_foo");
    for name in [
        "model_000050.pt",
        "meta_000050.json",
        "model_000100.pt",
        "meta_000100.json",
        "model_000200_backup.pt",
        "model_000300.pt.bak",
        "optim_000400_rank0.pt",
    ] {
        touch(&dir.join(name));
    }
    // `model_000200_backup.pt` is not `model_<digits>.pt`: the last step is 100.
    let files = find_checkpoint(&base, Source::Base, None, None).unwrap();
    assert_eq!((files.step, files.format), (100, WeightFormat::Torch));
    assert_eq!(files.weights, dir.join("model_000100.pt"));
    // A safetensors file of the same step wins over the .pt.
    touch(&dir.join("model_000100.safetensors"));
    let files = checkpoint_in_dir(&dir, None).unwrap();
    assert_eq!(files.format, WeightFormat::Safetensors);
    assert_eq!(files.weights, dir.join("model_000100.safetensors"));
    // An explicit step.
    let files = find_checkpoint(&base, Source::Base, Some("d20_foo"), Some(50)).unwrap();
    assert_eq!(files.weights, dir.join("model_000050.pt"));
    let err = find_checkpoint(&base, Source::Base, Some("d20_foo"), Some(60))
        .unwrap_err()
        .to_string();
    assert!(err.contains("60"), "{err}");

    // No d<N> directory: the most recently modified one wins.
    let stage = base.join("mid_checkpoints");
    for tag in ["alpha", "beta", "dev"] {
        std::fs::create_dir_all(stage.join(tag)).unwrap();
    }
    set_mtime(&stage.join("alpha"), 10);
    set_mtime(&stage.join("beta"), 100);
    set_mtime(&stage.join("dev"), 1000);
    assert_eq!(find_largest_model(&stage).unwrap(), "alpha");
    set_mtime(&stage.join("beta"), 1);
    assert_eq!(find_largest_model(&stage).unwrap(), "beta");
    // A file is not a model directory.
    touch(&stage.join("d99"));
    assert_eq!(find_largest_model(&stage).unwrap(), "beta");

    // An empty stage directory and a missing one say so.
    std::fs::create_dir_all(base.join("chatrl_checkpoints")).unwrap();
    let err = find_checkpoint(&base, Source::Rl, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("chatrl_checkpoints"), "{err}");
    let err = find_checkpoint(&base, Source::Sft, None, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("chatsft_checkpoints"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Converting nanochat checkpoints

#[test]
fn every_fixture_checkpoint_converts_with_bit_identical_logits() {
    let out = scratch_dir("convert-fixtures");
    for name in MODELS {
        let source = fixture_checkpoint(name);
        let original = load(&source, DType::F32);
        let to = out.join(name);
        let converted = convert(&source.weights, &to, &convert_opts()).unwrap();
        assert_eq!(converted.source, source);
        assert_eq!(converted.config, original.config);
        assert_eq!(converted.tensors, 2 + 6 * original.config.n_layer, "{name}");
        assert_eq!(converted.output.format, WeightFormat::Safetensors);
        assert_eq!(
            converted.output.weights,
            to.join(format!("model_{:06}.safetensors", source.step))
        );
        assert_eq!(converted.tokenizer_from, Some(fixture_tokenizer()));
        // Discovery finds it, and the tokenizer travels with it.
        let files = checkpoint_in_dir(&to, None).unwrap();
        assert_eq!(files, converted.output);
        assert_eq!(tokenizer_dir_for(&files), to);
        for file in ["tokenizer.pkl", "token_bytes.pt"] {
            assert_eq!(
                std::fs::read(to.join(file)).unwrap(),
                std::fs::read(fixture_tokenizer().join(file)).unwrap(),
                "{name}: {file}"
            );
        }
        // The meta is the original one (model_config: nanochat's six keys).
        let (meta, config) = read_meta(&files.meta).unwrap();
        assert_eq!(meta, original.meta, "{name}");
        assert_eq!(config, original.config);
        assert_eq!(meta["model_config"].as_object().unwrap().len(), 6);

        let reloaded = load(&files, DType::F32);
        for (seq, ids, _) in sequences(name) {
            assert_eq!(
                logits(&reloaded.model, &ids),
                logits(&original.model, &ids),
                "{name}/{seq}: converted logits differ"
            );
        }
    }
}

#[test]
fn conversion_keeps_bf16_wte_unless_a_dtype_is_asked_for() {
    let out = scratch_dir("convert-dtypes");
    let source = fixture_checkpoint("sft_d3");
    let original = load(&source, DType::F32);

    // No dtype: sft_d3's bf16 wte stays bf16, the rest f32.
    let kept = convert(&source.dir, &out.join("kept"), &convert_opts()).unwrap();
    assert_eq!(kept.source.step, 650, "a directory converts its last step");
    let stored = read_safetensors(&kept.output.weights).unwrap();
    for (name, t) in &stored {
        let expected = if name == "transformer.wte.weight" {
            DType::BF16
        } else {
            DType::F32
        };
        assert_eq!(t.dtype(), expected, "{name}");
    }
    let mut dtypes = kept.dtypes.clone();
    dtypes.sort_by_key(|(d, _)| format!("{d:?}"));
    assert_eq!(
        dtypes,
        vec![("bf16".to_string(), 1), ("f32".to_string(), 19)]
    );

    // f32: everything f32, still bit-identical.
    let f32_dir = out.join("f32");
    let opts = ConvertOptions {
        dtype: Some(WeightDType::F32),
        ..convert_opts()
    };
    convert(&source.weights, &f32_dir, &opts).unwrap();
    let files = checkpoint_in_dir(&f32_dir, None).unwrap();
    assert!(read_safetensors(&files.weights)
        .unwrap()
        .iter()
        .all(|(_, t)| t.dtype() == DType::F32));
    let reloaded = load(&files, DType::F32);
    let bf16_original = load(&source, DType::BF16);

    // bf16: every tensor bf16; loads, and stays within the parity test's bf16 tolerance.
    let bf16_dir = out.join("bf16");
    let opts = ConvertOptions {
        dtype: Some(WeightDType::Bf16),
        ..convert_opts()
    };
    let bf16 = convert(&source.weights, &bf16_dir, &opts).unwrap();
    assert_eq!(bf16.dtypes, vec![("bf16".to_string(), 20)]);
    assert!(
        bf16.bytes < kept.bytes * 6 / 10,
        "{} vs {}",
        bf16.bytes,
        kept.bytes
    );
    let bf16_files = checkpoint_in_dir(&bf16_dir, None).unwrap();
    assert!(read_safetensors(&bf16_files.weights)
        .unwrap()
        .iter()
        .all(|(_, t)| t.dtype() == DType::BF16));
    let as_bf16 = load(&bf16_files, DType::BF16);
    let as_f32 = load(&bf16_files, DType::F32);
    assert_eq!(as_bf16.model.linear_dtype(), WeightDType::Bf16);
    let mut worst = 0f32;
    for (seq, ids, npy) in sequences("sft_d3") {
        let reference = read_npy(&npy).f32;
        let ours = logits(&original.model, &ids);
        assert_eq!(logits(&reloaded.model, &ids), ours, "f32 {seq}");
        // bf16 rounding happens once, whether at conversion or at load.
        assert_eq!(
            logits(&as_bf16.model, &ids),
            logits(&bf16_original.model, &ids),
            "bf16 {seq}"
        );
        worst = worst.max(max_abs_diff(&logits(&as_bf16.model, &ids), &reference));
        worst = worst.max(max_abs_diff(&logits(&as_f32.model, &ids), &reference));
    }
    eprintln!("sft_d3 converted to bf16 vs fp32 reference: max |Δlogit| = {worst}");
    assert!(worst < BF16_ATOL, "bf16 conversion drifts {worst}");
}

#[test]
fn conversion_refuses_to_overwrite_unless_forced_and_converts_safetensors_again() {
    let out = scratch_dir("convert-force");
    let source = fixture_checkpoint("base_d2");
    let to = out.join("model");
    convert(&source.weights, &to, &convert_opts()).unwrap();
    let err = convert(&source.weights, &to, &convert_opts())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model_000000.safetensors") && err.contains("already exists"),
        "{err}"
    );
    let forced = ConvertOptions {
        force: true,
        dtype: Some(WeightDType::Bf16),
        ..convert_opts()
    };
    convert(&source.weights, &to, &forced).unwrap();
    let files = checkpoint_in_dir(&to, None).unwrap();
    assert!(read_safetensors(&files.weights)
        .unwrap()
        .iter()
        .all(|(_, t)| t.dtype() == DType::BF16));
    // Converting our own checkpoint (tokenizer taken from its directory) back to f32.
    let again = out.join("again");
    let c = convert(
        &to,
        &again,
        &ConvertOptions {
            dtype: Some(WeightDType::F32),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.tokenizer_from, Some(to.clone()));
    assert!(again.join("tokenizer.pkl").is_file());
    // A different tokenizer already in the target is not silently replaced.
    std::fs::write(again.join("tokenizer.pkl"), b"something else").unwrap();
    let err = convert(
        &source.weights,
        &again,
        &ConvertOptions {
            step: Some(0),
            ..convert_opts()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("already exists"), "{err}");
    // A tokenizer bigger than the model's vocabulary does not belong to it.
    let err = convert(
        &source.weights,
        &out.join("wrong-tokenizer"),
        &ConvertOptions {
            tokenizer: Some(fixture("tokenizer-65k")),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("65536") && err.contains("512"), "{err}");
    assert!(!out
        .join("wrong-tokenizer/model_000000.safetensors")
        .exists());
}

// ---------------------------------------------------------------------------------------------
// Random models with every architecture option: save, reload, same logits

fn small() -> Config {
    Config::nanochat(32, 96, 2, 4, 4, 64)
}

fn variants() -> Vec<(&'static str, Config)> {
    let mut out = vec![("default", small())];
    let mut add = |name, f: &dyn Fn(&mut Config)| {
        let mut cfg = small();
        f(&mut cfg);
        out.push((name, cfg));
    };
    add("tie_embeddings", &|c| c.tie_embeddings = true);
    add("mlp_ratio_3", &|c| c.mlp_ratio = 3.0);
    add("mlp_ratio_2.5", &|c| c.mlp_ratio = 2.5);
    add("gelu", &|c| c.activation = Activation::Gelu);
    add("silu", &|c| c.activation = Activation::Silu);
    add("no_softcap", &|c| c.logit_softcap = None);
    add("rope_base_100000", &|c| c.rope_base = 100_000.0);
    add("gqa_4_2", &|c| c.n_kv_head = 2);
    add("mqa_4_1", &|c| c.n_kv_head = 1);
    add("everything", &|c| {
        c.tie_embeddings = true;
        c.mlp_ratio = 2.5;
        c.activation = Activation::Silu;
        c.logit_softcap = None;
        c.rope_base = 100_000.0;
        c.n_kv_head = 1;
    });
    out
}

const IDS: [u32; 12] = [3, 17, 95, 0, 42, 42, 7, 88, 1, 60, 33, 2];

#[test]
fn random_models_with_every_option_save_and_reload_bit_identically() {
    let out = scratch_dir("options");
    let default_logits = logits(
        &random_model(
            &small(),
            11,
            DType::F32,
            &Device::Cpu,
            &InitOptions::nonzero(),
        )
        .unwrap(),
        &IDS,
    );
    for (name, cfg) in variants() {
        let model =
            random_model(&cfg, 11, DType::F32, &Device::Cpu, &InitOptions::nonzero()).unwrap();
        let before = logits(&model, &IDS);
        assert!(
            before.iter().all(|x| x.is_finite()),
            "{name}: non-finite logits"
        );
        if name != "default" {
            assert_ne!(before, default_logits, "{name}: the option changes nothing");
        }
        let dir = out.join(name);
        let user_meta = serde_json::json!({"step": 1, "val_bpb": 1.25, "note": name});
        let files = save_model(&dir, 7, &model, Some(&user_meta), &SaveOptions::default()).unwrap();
        assert_eq!(files, checkpoint_in_dir(&dir, None).unwrap());
        assert_eq!(files.step, 7);

        // One tensor for tied embeddings.
        let stored = read_safetensors(&files.weights).unwrap();
        assert_eq!(
            stored.len(),
            6 * cfg.n_layer + if cfg.tie_embeddings { 1 } else { 2 },
            "{name}"
        );
        assert_eq!(
            stored.iter().any(|(n, _)| n == "lm_head.weight"),
            !cfg.tie_embeddings,
            "{name}"
        );

        // The meta round-trips: the user's keys, step updated, only non-default options.
        let (meta, config) = read_meta(&files.meta).unwrap();
        assert_eq!(config, cfg, "{name}");
        assert_eq!(meta["note"], name);
        assert_eq!(meta["val_bpb"], 1.25);
        assert_eq!(meta["step"], 7);
        let keys = meta["model_config"].as_object().unwrap().len();
        let options = [
            cfg.tie_embeddings,
            cfg.mlp_ratio != 4.0,
            cfg.activation != Activation::Relu2,
            cfg.logit_softcap.is_none(),
            cfg.rope_base != 10_000.0,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        assert_eq!(keys, 6 + options, "{name}: {}", meta["model_config"]);

        let reloaded = load(&files, DType::F32);
        assert_eq!(logits(&reloaded.model, &IDS), before, "{name}");
    }
}

#[test]
fn bf16_random_models_round_trip_and_saving_twice_needs_force() {
    let out = scratch_dir("bf16-random");
    let mut cfg = small();
    cfg.n_kv_head = 2;
    let model = random_model(&cfg, 5, DType::BF16, &Device::Cpu, &InitOptions::nonzero()).unwrap();
    assert_eq!(model.linear_dtype(), WeightDType::Bf16);
    let files = save_model(&out, 3, &model, None, &SaveOptions::default()).unwrap();
    assert!(read_safetensors(&files.weights)
        .unwrap()
        .iter()
        .all(|(_, t)| t.dtype() == DType::BF16));
    let (meta, _) = read_meta(&files.meta).unwrap();
    assert_eq!(meta["step"], 3);
    let reloaded = load(&files, DType::BF16);
    assert_eq!(logits(&reloaded.model, &IDS), logits(&model, &IDS));

    let err = save_model(&out, 3, &model, None, &SaveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    // Forced, converted to f32 on the way: values are the bf16 values exactly.
    let opts = SaveOptions {
        dtype: Some(DType::F32),
        force: true,
    };
    let files = save_model(&out, 3, &model, None, &opts).unwrap();
    let as_f32 = load(&files, DType::F32);
    assert_eq!(as_f32.model.linear_dtype(), WeightDType::F32);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn the_weights_of_a_random_model_are_random_weights() {
    let cfg = small();
    let opts = InitOptions::benchmark();
    let weights = random_weights(&cfg, 9, DType::F32, &opts).unwrap();
    let model = random_model(&cfg, 9, DType::F32, &Device::Cpu, &opts).unwrap();
    let named = model.named_weights().unwrap();
    assert_eq!(named.len(), weights.len());
    for (name, t) in named {
        let a: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = weights[&name].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }
    // benchmark(): lm_head zero, so every logit is 0 and greedy picks token 0.
    assert!(logits(&model, &IDS).iter().all(|x| *x == 0.0));
}

// ---------------------------------------------------------------------------------------------
// Broken checkpoints: clear errors naming the tensor or file

fn pt_dtype(dtype: DType) -> nanochat_pt::DType {
    match dtype {
        DType::F32 => nanochat_pt::DType::F32,
        DType::BF16 => nanochat_pt::DType::BF16,
        DType::I64 => nanochat_pt::DType::I64,
        other => panic!("no .pt dtype for {other:?}"),
    }
}

fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let flat = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => flat
            .to_vec1::<half::bf16>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect(),
        DType::I64 => flat
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => panic!("unsupported {other:?}"),
    }
}

/// Writes a nanochat-style `.pt` state dict.
fn write_pt(path: &Path, tensors: &[(String, Tensor)]) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| tensor_bytes(t)).collect();
    let records = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), data)| {
            (
                name.clone(),
                TensorToWrite {
                    dtype: pt_dtype(t.dtype()),
                    shape: t.dims().to_vec(),
                    data,
                },
            )
        })
        .collect();
    let root = SaveRoot::StateDict {
        tensors: records,
        module_versions: None,
    };
    write_torch_file(path, &nanochat_pt::default_archive_prefix(path), &root).unwrap();
}

fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) {
    let map: std::collections::HashMap<String, Tensor> = tensors.iter().cloned().collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn write_meta(dir: &Path, step: u64, meta: &serde_json::Value) {
    std::fs::write(
        dir.join(format!("meta_{step:06}.json")),
        serde_json::to_string_pretty(meta).unwrap(),
    )
    .unwrap();
}

fn good_weights(cfg: &Config) -> Vec<(String, Tensor)> {
    random_model(cfg, 1, DType::F32, &Device::Cpu, &InitOptions::nonzero())
        .unwrap()
        .named_weights()
        .unwrap()
}

fn meta_of(cfg: &Config) -> serde_json::Value {
    serde_json::json!({"step": 1, "model_config": cfg})
}

#[derive(Clone, Copy)]
enum Format {
    Pt,
    Safetensors,
}

/// A checkpoint directory with `tensors` at step 1 and the given meta.
fn broken(
    test: &str,
    format: Format,
    tensors: &[(String, Tensor)],
    meta: Option<&serde_json::Value>,
) -> PathBuf {
    let dir = scratch_dir(&format!("broken-{test}"));
    match format {
        Format::Pt => write_pt(&dir.join("model_000001.pt"), tensors),
        Format::Safetensors => write_safetensors(&dir.join("model_000001.safetensors"), tensors),
    }
    if let Some(meta) = meta {
        write_meta(&dir, 1, meta);
    }
    dir
}

/// Loading and converting `dir` both fail, with messages containing every needle.
fn assert_refused(dir: &Path, needles: &[&str]) {
    let load_err = checkpoint_at_path(dir, None)
        .and_then(|files| load_checkpoint(&files, WeightDType::F32, &Device::Cpu).map(|_| ()))
        .err()
        .unwrap_or_else(|| panic!("{} loaded", dir.display()))
        .to_string();
    let out = dir.join("converted");
    let convert_err = convert(dir, &out, &convert_opts())
        .err()
        .unwrap_or_else(|| panic!("{} converted", dir.display()))
        .to_string();
    for err in [&load_err, &convert_err] {
        for needle in needles {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
    }
    assert!(
        !out.join("model_000001.safetensors").exists(),
        "a refused conversion wrote weights"
    );
}

#[test]
fn missing_unexpected_and_misshapen_tensors_are_named() {
    let cfg = small();
    let meta = meta_of(&cfg);
    for format in [Format::Pt, Format::Safetensors] {
        let file = match format {
            Format::Pt => "model_000001.pt",
            Format::Safetensors => "model_000001.safetensors",
        };
        let mut tensors = good_weights(&cfg);
        tensors.retain(|(n, _)| n != "transformer.h.1.mlp.c_fc.weight");
        let dir = broken("missing", format, &tensors, Some(&meta));
        assert_refused(&dir, &[file, "transformer.h.1.mlp.c_fc.weight", "missing"]);

        let mut tensors = good_weights(&cfg);
        for (name, t) in tensors.iter_mut() {
            if name == "transformer.h.0.attn.c_q.weight" {
                *t = t.narrow(0, 0, 32).unwrap().contiguous().unwrap();
            }
        }
        let dir = broken("shape", format, &tensors, Some(&meta));
        assert_refused(&dir, &[file, "transformer.h.0.attn.c_q.weight", "shape"]);

        let mut tensors = good_weights(&cfg);
        tensors.push((
            "transformer.h.2.attn.c_q.weight".into(),
            Tensor::zeros((64, 64), DType::F32, &Device::Cpu).unwrap(),
        ));
        let dir = broken("extra", format, &tensors, Some(&meta));
        assert_refused(
            &dir,
            &[file, "transformer.h.2.attn.c_q.weight", "unexpected"],
        );

        // A config that does not match the weights: tied embeddings but an lm_head stored.
        let mut tied = cfg.clone();
        tied.tie_embeddings = true;
        let dir = broken("tied", format, &good_weights(&cfg), Some(&meta_of(&tied)));
        assert_refused(&dir, &[file, "lm_head.weight"]);
    }
}

#[test]
fn integer_tensors_are_refused() {
    let cfg = small();
    let mut tensors = good_weights(&cfg);
    for (name, t) in tensors.iter_mut() {
        if name == "transformer.h.0.attn.c_k.weight" {
            *t = Tensor::zeros(t.dims(), DType::I64, &Device::Cpu).unwrap();
        }
    }
    let dir = broken("int-pt", Format::Pt, &tensors, Some(&meta_of(&cfg)));
    assert_refused(&dir, &["transformer.h.0.attn.c_k.weight", "dtype"]);
    // In a safetensors file both loading and converting refuse it too.
    let dir = broken(
        "int-st",
        Format::Safetensors,
        &tensors,
        Some(&meta_of(&cfg)),
    );
    assert_refused(&dir, &["transformer.h.0.attn.c_k.weight", "dtype"]);
}

#[test]
fn truncated_weight_files_are_refused_with_their_path() {
    let cfg = small();
    for (format, file) in [
        (Format::Pt, "model_000001.pt"),
        (Format::Safetensors, "model_000001.safetensors"),
    ] {
        for keep in [0.5, 0.99, 0.0] {
            let dir = broken(
                "truncated",
                format,
                &good_weights(&cfg),
                Some(&meta_of(&cfg)),
            );
            let path = dir.join(file);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
            assert_refused(&dir, &[file]);
        }
    }
}

#[test]
fn meta_problems_are_named() {
    let cfg = small();
    let tensors = good_weights(&cfg);

    let dir = broken("no-meta", Format::Safetensors, &tensors, None);
    assert_refused(&dir, &["meta_000001.json", "missing"]);
    let err = checkpoint_at_path(&dir.join("model_000001.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("meta_000001.json"), "{err}");

    let meta = serde_json::json!({"step": 1, "val_bpb": 0.8});
    let dir = broken("no-config", Format::Pt, &tensors, Some(&meta));
    assert_refused(&dir, &["meta_000001.json", "model_config"]);

    let dir = scratch_dir("broken-json");
    write_safetensors(&dir.join("model_000001.safetensors"), &tensors);
    std::fs::write(dir.join("meta_000001.json"), b"{\"model_config\": ").unwrap();
    assert_refused(&dir, &["meta_000001.json", "JSON"]);

    let mut newer = meta_of(&cfg);
    newer["model_config"]["window_pattern"] = "SSSL".into();
    let dir = broken("window-pattern", Format::Pt, &tensors, Some(&newer));
    assert_refused(
        &dir,
        &["meta_000001.json", "window_pattern", "newer nanochat"],
    );

    let mut impossible = meta_of(&cfg);
    impossible["model_config"]["n_kv_head"] = 3.into();
    let dir = broken("kv-heads", Format::Pt, &tensors, Some(&impossible));
    assert_refused(&dir, &["meta_000001.json", "n_kv_head"]);

    let mut missing_field = meta_of(&cfg);
    missing_field["model_config"]
        .as_object_mut()
        .unwrap()
        .remove("n_embd");
    let dir = broken(
        "no-n-embd",
        Format::Safetensors,
        &tensors,
        Some(&missing_field),
    );
    assert_refused(&dir, &["meta_000001.json", "n_embd"]);
}

#[test]
fn newer_nanochat_state_dicts_are_recognised() {
    let cfg = small();
    for (extra, shape) in [
        ("resid_lambdas", vec![2]),
        ("value_embeds.0.weight", vec![96, 64]),
    ] {
        let mut tensors = good_weights(&cfg);
        tensors.push((
            extra.to_string(),
            Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap(),
        ));
        let dir = broken("newer", Format::Pt, &tensors, Some(&meta_of(&cfg)));
        assert_refused(&dir, &["model_000001.pt", extra, "newer nanochat"]);
    }
}

#[test]
fn saving_inconsistent_weights_is_refused_before_writing() {
    let dir = scratch_dir("save-refused");
    let cfg = small();
    let mut tensors = good_weights(&cfg);
    tensors.pop();
    let err = save_checkpoint(&dir, 1, &cfg, &tensors, None, &SaveOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("lm_head.weight"), "{err}");
    let mut bad = cfg.clone();
    bad.n_kv_head = 3;
    let err = save_checkpoint(
        &dir,
        1,
        &bad,
        &good_weights(&cfg),
        None,
        &SaveOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("n_kv_head"), "{err}");
    let err = save_checkpoint(
        &dir,
        1,
        &cfg,
        &good_weights(&cfg),
        None,
        &SaveOptions {
            dtype: Some(DType::U8),
            force: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("U8"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
