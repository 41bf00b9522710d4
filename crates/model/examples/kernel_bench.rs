//! Throughput of the matmul kernels (`nanochat_model::kernels`), in two parts.
//!
//! Decode: our kernels against candle's `Tensor::matmul`, for y = x · wᵀ with w (5120, 1280) — a
//! d20 MLP up-projection — at m = 1..16 rows. Decode is memory-bound, so the figure that matters
//! is GB/s of weights read. Prints the median ms per call, GB/s, and the time relative to m = 1.
//!
//! Prefill: bf16 weights at m = 32, 64, 128 for every d20 linear shape, on each bf16 kernel path
//! this CPU has (`avx512bf16`: x rounded to bf16, `vdpbf16ps`; `avx512`: weights widened to f32,
//! f32 FMA), timed back to back. Prefill is compute-bound: prints median ms and GFLOP/s
//! (2·m·k·n per call), the GFLOP/s of the fastest call, and each path's median speed relative
//! to the first.
//!
//! To measure DRAM rather than the 32 MB L3, every call uses the next of enough distinct weight
//! copies to total ≥ 300 MB (real weights come from DRAM: a d20 model is ~1 GB in bf16).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo run --release -p nanochat-model --example kernel_bench`
//! (add `-- ours` to skip candle, `-- hot` to reuse one weight copy, i.e. measure from L3,
//! `-- decode` or `-- prefill` for one part only, `-- shape=KxN` for that prefill shape only, `-- ms=8,12,16` for those prefill row counts).

use std::time::Instant;

use candle_core::{Device, Tensor};
use half::bf16;
use nanochat_model::kernels;

const K: usize = 1280;
const N: usize = 5120;
const MS: [usize; 4] = [1, 4, 8, 16];
const TOTAL_BYTES: usize = 300 << 20;
const ROUNDS: usize = 8;

/// Deterministic pseudo-random values in [-1, 1). Random, not a repeating pattern: on this VM
/// pattern-filled weights measured up to a third faster (the host presumably dedups pages).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// Median seconds per call of `call(j, copy)` for each `MS[j]`, cycling through `copies` weight
/// copies: one warm-up pass, then `ROUNDS` rounds, each timing every m over every copy (so the
/// machine's drift hits all m alike and the ratios to m = 1 hold up).
fn median_secs(copies: usize, mut call: impl FnMut(usize, usize)) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(ROUNDS * copies); MS.len()];
    for round in 0..=ROUNDS {
        for (j, t) in times.iter_mut().enumerate() {
            for c in 0..copies {
                let start = Instant::now();
                call(j, c);
                if round > 0 {
                    t.push(start.elapsed().as_secs_f64());
                }
            }
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

fn report(label: &str, bytes_per_copy: usize, secs: &[f64]) {
    for (&m, &s) in MS.iter().zip(secs) {
        println!(
            "{label:<22} {m:>3} {:>9.3} {:>8.1} {:>9.2}x",
            s * 1e3,
            bytes_per_copy as f64 / s / 1e9,
            s / secs[0]
        );
    }
}

/// `kernels::matmul_bf16_nt` or `kernels::matmul_f32_nt`.
type Kernel<W> =
    fn(&[f32], &[W], &mut [f32], usize, usize, usize) -> Result<(), kernels::KernelError>;

/// Our kernel and candle's matmul for one weight dtype.
fn bench<W: Copy + Send + Sync + candle_core::WithDType>(
    opts: &Opts,
    name: &str,
    from_f32: fn(f32) -> W,
    kernel: Kernel<W>,
) -> candle_core::Result<()> {
    let bytes = N * K * std::mem::size_of::<W>();
    let copies = if opts.hot {
        1
    } else {
        TOTAL_BYTES.div_ceil(bytes) + 1
    };
    let ws: Vec<Vec<W>> = (0..copies)
        .map(|c| {
            values(N * K, c as u64 + 1)
                .into_iter()
                .map(from_f32)
                .collect()
        })
        .collect();
    let xs: Vec<Vec<f32>> = MS.iter().map(|&m| values(m * K, 1000 + m as u64)).collect();

    let mut ys: Vec<Vec<f32>> = MS.iter().map(|&m| vec![0f32; m * N]).collect();
    let ours = median_secs(copies, |j, c| {
        kernel(&xs[j], &ws[c], &mut ys[j], MS[j], K, N).unwrap()
    });
    report(&format!("ours {name}"), bytes, &ours);
    if opts.ours_only {
        return Ok(());
    }

    // candle: same weights as (N, K) tensors, x in the weight dtype (candle needs matching dtypes).
    let dev = Device::Cpu;
    let wt: Vec<Tensor> = ws
        .iter()
        .map(|w| Tensor::from_slice(w, (N, K), &dev))
        .collect::<candle_core::Result<_>>()?;
    drop(ws);
    let xt: Vec<Tensor> = MS
        .iter()
        .zip(&xs)
        .map(|(&m, x)| Tensor::from_slice(x, (m, K), &dev)?.to_dtype(W::DTYPE))
        .collect::<candle_core::Result<_>>()?;
    let theirs = median_secs(copies, |j, c| {
        let y = xt[j].matmul(&wt[c].t().unwrap()).unwrap();
        assert_eq!(y.dims(), &[MS[j], N]);
    });
    report(&format!("candle {name}"), bytes, &theirs);
    Ok(())
}

/// d20 linear shapes (k, n): qkv, attention out, MLP up, MLP down, lm_head.
const PREFILL_SHAPES: [(usize, usize, &str); 5] = [
    (1280, 3840, "qkv"),
    (1280, 1280, "attn out"),
    (1280, 5120, "mlp up"),
    (5120, 1280, "mlp down"),
    (1280, 65536, "lm_head"),
];
const PREFILL_MS: [usize; 3] = [32, 64, 128];
const PREFILL_ROUNDS: usize = 5;

/// bf16 prefill on every supported bf16 kernel path: for each shape and m, the paths are timed
/// alternately over the same weight copies (so drift and the other load hit them alike).
fn bench_prefill(opts: &Opts) {
    let paths: Vec<&str> = kernels::kernel_paths()
        .into_iter()
        .filter(|p| ["avx512bf16", "avx512", "avx2"].contains(p))
        .collect();
    println!(
        "\nbf16 prefill (bf16-dot path from {} rows), paths {paths:?}",
        kernels::BF16_DOT_MIN_ROWS
    );
    println!(
        "{:<10} {:>5} {:>6} {:>4} {:<11} {:>8} {:>8} {:>8} {:>7}",
        "shape", "k", "n", "m", "path", "ms", "GFLOP/s", "best", "speed"
    );
    let shapes: Vec<(usize, usize, &str)> = match opts.shape {
        Some((k, n)) => vec![(k, n, "custom")],
        None => PREFILL_SHAPES.to_vec(),
    };
    for &(k, n, label) in &shapes {
        let bytes = n * k * 2;
        let copies = if opts.hot {
            1
        } else {
            TOTAL_BYTES.div_ceil(bytes) + 1
        };
        let ws: Vec<Vec<bf16>> = (0..copies)
            .map(|c| {
                values(n * k, c as u64 + 1)
                    .into_iter()
                    .map(bf16::from_f32)
                    .collect()
            })
            .collect();
        for &m in &opts.prefill_ms {
            let x = values(m * k, 1000 + m as u64);
            let mut y = vec![0f32; m * n];
            let mut times = vec![Vec::new(); paths.len()];
            for round in 0..=PREFILL_ROUNDS {
                for (path, t) in paths.iter().zip(times.iter_mut()) {
                    for w in &ws {
                        let start = Instant::now();
                        kernels::matmul_bf16_nt_on(path, &x, w, &mut y, m, k, n)
                            .expect("shapes match");
                        if round > 0 {
                            t.push(start.elapsed().as_secs_f64());
                        }
                    }
                }
            }
            // (median, best): the best shows what the kernel can do when the machine is quiet.
            let stats: Vec<(f64, f64)> = times
                .into_iter()
                .map(|mut t| {
                    t.sort_by(f64::total_cmp);
                    (t[t.len() / 2], t[0])
                })
                .collect();
            let gflops = |s: f64| 2.0 * (m * k * n) as f64 / s / 1e9;
            for (path, &(median, best)) in paths.iter().zip(&stats) {
                println!(
                    "{label:<10} {k:>5} {n:>6} {m:>4} {path:<11} {:>8.3} {:>8.1} {:>8.1} {:>6.2}x",
                    median * 1e3,
                    gflops(median),
                    gflops(best),
                    stats[0].0 / median
                );
            }
        }
    }
}

struct Opts {
    ours_only: bool,
    hot: bool,
    /// `shape=KxN`: bench this prefill shape instead of the d20 ones.
    shape: Option<(usize, usize)>,
    /// Prefill row counts (`ms=…`, default [`PREFILL_MS`]).
    prefill_ms: Vec<usize>,
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts {
        ours_only: args.iter().any(|a| a == "ours"),
        hot: args.iter().any(|a| a == "hot"),
        shape: args.iter().find_map(|a| {
            let (k, n) = a.strip_prefix("shape=")?.split_once('x')?;
            Some((k.parse().ok()?, n.parse().ok()?))
        }),
        prefill_ms: args
            .iter()
            .find_map(|a| a.strip_prefix("ms="))
            .map(|list| list.split(',').filter_map(|m| m.parse().ok()).collect())
            .filter(|ms: &Vec<usize>| !ms.is_empty())
            .unwrap_or_else(|| PREFILL_MS.to_vec()),
    };
    let (decode, prefill) = (
        !args.iter().any(|a| a == "prefill"),
        !args.iter().any(|a| a == "decode"),
    );
    println!(
        "kernel path {}, {} rayon threads, weights cycled over ≥ {} MB{}",
        kernels::kernel_path(),
        rayon::current_num_threads(),
        TOTAL_BYTES >> 20,
        if opts.hot { " (hot: one copy)" } else { "" }
    );
    if decode {
        println!("\ndecode, w ({N}, {K})");
        println!(
            "{:<22} {:>3} {:>9} {:>8} {:>10}",
            "impl", "m", "ms", "GB/s", "vs m=1"
        );
        bench::<bf16>(&opts, "bf16", bf16::from_f32, kernels::matmul_bf16_nt)?;
        bench::<f32>(&opts, "f32", |v| v, kernels::matmul_f32_nt)?;
    }
    if prefill {
        bench_prefill(&opts);
    }
    Ok(())
}
