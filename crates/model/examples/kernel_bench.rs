//! Throughput of the decode matmul kernels (`nanochat_model::kernels`) against candle's
//! `Tensor::matmul`, for y = x · wᵀ with w (5120, 1280) — a d20 MLP up-projection.
//!
//! Decode is memory-bound, so the figure that matters is GB/s of weights read. To measure DRAM
//! rather than the 32 MB L3, every call uses the next of enough distinct weight copies to total
//! ≥ 300 MB. Prints the median ms per call, GB/s, and the time relative to m = 1.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo run --release -p nanochat-model --example kernel_bench`

use std::time::Instant;

use candle_core::{Device, Tensor};
use half::bf16;
use nanochat_model::kernels;

const K: usize = 1280;
const N: usize = 5120;
const MS: [usize; 4] = [1, 4, 8, 16];
const TOTAL_BYTES: usize = 300 << 20;
const ROUNDS: usize = 5;

/// Deterministic values in [-1, 1).
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

/// Median seconds per call of `call(copy)`, cycling through `copies` weight copies: one warm-up
/// pass, then `ROUNDS` timed passes.
fn median_secs(copies: usize, mut call: impl FnMut(usize)) -> f64 {
    (0..copies).for_each(&mut call);
    let mut times = Vec::with_capacity(ROUNDS * copies);
    for _ in 0..ROUNDS {
        for c in 0..copies {
            let t = Instant::now();
            call(c);
            times.push(t.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
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

/// Our kernel and candle's matmul for one weight dtype.
fn bench<W: Copy + Send + Sync + candle_core::WithDType>(
    name: &str,
    from_f32: fn(f32) -> W,
    kernel: fn(&[f32], &[W], &mut [f32], usize, usize, usize) -> Result<(), kernels::KernelError>,
) -> candle_core::Result<()> {
    let bytes = N * K * std::mem::size_of::<W>();
    let copies = TOTAL_BYTES.div_ceil(bytes) + 1;
    let ws: Vec<Vec<W>> = (0..copies)
        .map(|c| {
            values(N * K, c as u64 + 1)
                .into_iter()
                .map(from_f32)
                .collect()
        })
        .collect();
    let xs: Vec<Vec<f32>> = MS.iter().map(|&m| values(m * K, 1000 + m as u64)).collect();

    let mut ours = Vec::new();
    for (&m, x) in MS.iter().zip(&xs) {
        let mut y = vec![0f32; m * N];
        ours.push(median_secs(copies, |c| {
            kernel(x, &ws[c], &mut y, m, K, N).unwrap()
        }));
    }
    report(&format!("ours {name}"), bytes, &ours);

    // candle: same weights as (N, K) tensors, x in the weight dtype (candle needs matching dtypes).
    let dev = Device::Cpu;
    let wt: Vec<Tensor> = ws
        .iter()
        .map(|w| Tensor::from_slice(w, (N, K), &dev))
        .collect::<candle_core::Result<_>>()?;
    drop(ws);
    let mut theirs = Vec::new();
    for (&m, x) in MS.iter().zip(&xs) {
        let x = Tensor::from_slice(x, (m, K), &dev)?.to_dtype(W::DTYPE)?;
        theirs.push(median_secs(copies, |c| {
            let y = x.matmul(&wt[c].t().unwrap()).unwrap();
            assert_eq!(y.dims(), &[m, N]);
        }));
    }
    report(&format!("candle {name}"), bytes, &theirs);
    Ok(())
}

fn main() -> candle_core::Result<()> {
    println!(
        "kernel path {}, {} rayon threads, w ({N}, {K}), weights cycled over ≥ {} MB",
        kernels::kernel_path(),
        rayon::current_num_threads(),
        TOTAL_BYTES >> 20
    );
    println!(
        "{:<22} {:>3} {:>9} {:>8} {:>10}",
        "impl", "m", "ms", "GB/s", "vs m=1"
    );
    bench::<bf16>("bf16", bf16::from_f32, kernels::matmul_bf16_nt)?;
    bench::<f32>("f32", |v| v, kernels::matmul_f32_nt)?;
    Ok(())
}
