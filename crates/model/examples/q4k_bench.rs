//! Throughput of our q4k matmul ([`nanochat_model::kernels::Q4KWeight`]) against candle's
//! `QMatMul` on a Q4K `QTensor`, y = x · wᵀ for the d20 linear shapes, at decode (m = 1),
//! batched decode (m = 8) and prefill-sized m.
//!
//! Decode is memory-bound, so the figure that matters is GB/s of weight bytes read (ggml's size,
//! 144 bytes per 256 values; ours streams exactly those, candle's x86 repacking widens the scales
//! and streams a third more). To measure DRAM rather than the 32 MB L3, every call uses the next
//! of enough distinct weight copies to total ≥ 300 MB. Ours and candle's are timed alternately,
//! round by round, so the machine's drift hits both alike; the first round (candle repacks its
//! weights on first use) is not timed. Prints the median and best ms per call and GB/s of the
//! median.
//!
//! Run: `cargo run --release -p nanochat-model --example q4k_bench` (add `-- ours` to skip
//! candle, `-- prefill` for m = 32, 128 too, `-- path=avx2` for a slower path of ours, `-- hot`
//! to reuse one weight copy, i.e. measure from cache where it fits, `-- m=4` for other row
//! counts, `-- shape=mlp` for the shapes whose label contains it).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};
use half::f16;
use nanochat_model::kernels::{self, Q4KWeight};

/// d20 linear shapes (k, n): qkv, attention out, MLP up, MLP down, lm_head.
const SHAPES: [(usize, usize, &str); 5] = [
    (1280, 3840, "qkv"),
    (1280, 1280, "attn out"),
    (1280, 5120, "mlp up"),
    (5120, 1280, "mlp down"),
    (1280, 65536, "lm_head"),
];
const TOTAL_BYTES: usize = 300 << 20;
const ROUNDS: usize = 7;
/// Bytes per Q4_K block of 256 values.
const BLOCK_BYTES: usize = 144;

/// Deterministic pseudo-random bytes.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Random Q4_K blocks (n, k): random quants and 6-bit scales, d and dmin in ±0.001.
fn random_q4k(n: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut bytes = random_bytes(n * k / 256 * BLOCK_BYTES, seed);
    for (i, block) in bytes.chunks_exact_mut(BLOCK_BYTES).enumerate() {
        let d = ((i * 7919 % 2001) as f32 - 1000.0) * 1e-6;
        let dmin = ((i * 104_729 % 1001) as f32) * 1e-6;
        block[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        block[2..4].copy_from_slice(&f16::from_f32(dmin).to_le_bytes());
    }
    bytes
}

/// (median, best) of the samples.
fn stats(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0])
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ours_only = args.iter().any(|a| a == "ours");
    let prefill = args.iter().any(|a| a == "prefill");
    let hot = args.iter().any(|a| a == "hot");
    let path = args
        .iter()
        .find_map(|a| a.strip_prefix("path="))
        .unwrap_or(kernels::q4k_path())
        .to_string();
    let only_shape = args.iter().find_map(|a| a.strip_prefix("shape="));
    let forced_m: Vec<usize> = args
        .iter()
        .filter_map(|a| a.strip_prefix("m=").and_then(|v| v.parse().ok()))
        .collect();
    let ms: &[usize] = if !forced_m.is_empty() {
        &forced_m
    } else if prefill {
        &[1, 8, 32, 128]
    } else {
        &[1, 8]
    };
    println!(
        "q4k matmul, {} rayon threads, our path {path} (supported {:?})",
        rayon::current_num_threads(),
        kernels::q4k_paths()
    );
    println!(
        "{:<9} {:>5} {:>6} {:>4} {:<7} {:>8} {:>8} {:>7}",
        "shape", "k", "n", "m", "impl", "ms", "best", "GB/s"
    );
    let dev = Device::Cpu;
    for &(k, n, label) in &SHAPES {
        if only_shape.is_some_and(|s| !label.contains(s)) {
            continue;
        }
        let bytes = n * k / 256 * BLOCK_BYTES;
        let copies = if hot {
            1
        } else {
            TOTAL_BYTES.div_ceil(bytes) + 1
        };
        let ggml: Vec<Vec<u8>> = (0..copies)
            .map(|c| random_q4k(n, k, c as u64 + 1))
            .collect();
        let ours: Vec<Q4KWeight> = ggml
            .iter()
            .map(|b| Q4KWeight::from_ggml(b, n, k).expect("valid shape"))
            .collect();
        let theirs: Vec<QMatMul> = if ours_only {
            Vec::new()
        } else {
            ggml.iter()
                .map(|b| {
                    let storage = QStorage::from_data(Cow::Borrowed(b), &dev, GgmlDType::Q4K)?;
                    QMatMul::from_arc(Arc::new(QTensor::new(storage, (n, k))?))
                })
                .collect::<candle_core::Result<_>>()?
        };
        drop(ggml);
        for &m in ms {
            let x: Vec<f32> = random_bytes(m * k, 1000 + m as u64)
                .into_iter()
                .map(|b| (b as f32 - 127.5) / 64.0)
                .collect();
            let xt = Tensor::from_slice(&x, (m, k), &dev)?;
            let mut y = vec![0f32; m * n];
            let (mut t_ours, mut t_theirs) = (Vec::new(), Vec::new());
            for round in 0..=ROUNDS {
                for w in &ours {
                    let start = Instant::now();
                    w.matmul_path(&path, &x, &mut y, m).expect("shapes match");
                    if round > 0 {
                        t_ours.push(start.elapsed().as_secs_f64());
                    }
                }
                for w in &theirs {
                    let start = Instant::now();
                    let out = w.forward(&xt)?;
                    if round > 0 {
                        t_theirs.push(start.elapsed().as_secs_f64());
                    }
                    assert_eq!(out.dims(), &[m, n]);
                }
            }
            let mut rows = vec![("ours", stats(t_ours))];
            if !theirs.is_empty() {
                rows.push(("candle", stats(t_theirs)));
            }
            for (name, (median, best)) in rows {
                println!(
                    "{label:<9} {k:>5} {n:>6} {m:>4} {name:<7} {:>8.3} {:>8.3} {:>7.1}",
                    median * 1e3,
                    best * 1e3,
                    bytes as f64 / median / 1e9
                );
            }
        }
    }
    Ok(())
}
