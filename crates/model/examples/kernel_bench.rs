//! Throughput of the decode matmul kernels (`nanochat_model::kernels`) against candle's
//! `Tensor::matmul`, for y = x · wᵀ with w (5120, 1280) — a d20 MLP up-projection.
//!
//! Decode is memory-bound, so the figure that matters is GB/s of weights read. To measure DRAM
//! rather than the 32 MB L3, every call uses the next of enough distinct weight copies to total
//! ≥ 300 MB. Prints the median ms per call, GB/s, and the time relative to m = 1.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo run --release -p nanochat-model --example kernel_bench`
//! (add `-- ours` to skip candle, `-- hot` to reuse one weight copy, i.e. measure from L3).

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

struct Opts {
    ours_only: bool,
    hot: bool,
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts {
        ours_only: args.iter().any(|a| a == "ours"),
        hot: args.iter().any(|a| a == "hot"),
    };
    println!(
        "kernel path {}, {} rayon threads, w ({N}, {K}), weights cycled over ≥ {} MB{}",
        kernels::kernel_path(),
        rayon::current_num_threads(),
        TOTAL_BYTES >> 20,
        if opts.hot { " (hot: one copy)" } else { "" }
    );
    println!(
        "{:<22} {:>3} {:>9} {:>8} {:>10}",
        "impl", "m", "ms", "GB/s", "vs m=1"
    );
    bench::<bf16>(&opts, "bf16", bf16::from_f32, kernels::matmul_bf16_nt)?;
    bench::<f32>(&opts, "f32", |v| v, kernels::matmul_f32_nt)?;
    Ok(())
}
