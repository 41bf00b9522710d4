//! CPU matmul kernels: `y = x · wᵀ` with f32 activations `x` and a row-major `(n, k)` weight `w`
//! in bf16 or f32 (nn.Linear's layout). Built for decode (few rows); bf16 prefill (many rows)
//! has its own compute-bound path where the CPU has AVX512_BF16 (below).
//!
//! Why our own: at decode the work is memory-bound, so the time is the time to stream the weight
//! from DRAM once. candle's bf16 matmul widens the *whole* weight to f32 on every call (≈5 GB/s),
//! and its f32 matmul packs the weight on each call, so 8 rows cost ≈3× one row. These kernels
//! read each weight element once per call whatever `m` is, and widen bf16 to f32 in registers
//! (exact: a bf16 is the top half of an f32). The weight is widened rather than x narrowed to
//! bf16 so activations keep full precision; the result differs from an exact dot product only
//! by f32 rounding of the accumulation.
//!
//! Dispatch is at run time (no `target-cpu` flags): AVX-512 (F+BW+VL) if present, else AVX2+FMA,
//! else a portable loop that the compiler auto-vectorises (also the path on non-x86 targets);
//! `NANOCHAT_KERNEL=avx512` (or `avx2`, `portable`) forces a slower path, for comparisons.
//! The weight rows are split into blocks run on rayon's global pool (its size is the caller's
//! choice), each thread writing disjoint columns of `y`.
//!
//! bf16 batched decode and prefill (`avx512bf16`, the default where the CPU has AVX512_BF16):
//! from [`BF16_DOT_FEW_MIN_ROWS`] rows up, x is rounded to bf16 once per call and multiplied
//! with `vdpbf16ps` ([`x86_bf16dot_rows`] below [`BF16_DOT_MIN_ROWS`] rows, [`x86_bf16dot`]'s
//! 16-row panels from there), twice the arithmetic per instruction of the f32 FMAs the
//! widening kernel is bound by there. This is what PyTorch does in a bf16 model (activations are
//! bf16 tensors): each x element gets a relative error ≤ 2⁻⁸, so an output is off by at most
//! about 2⁻⁸·Σ|x·w| (products and sums are exact / f32) — the precision of the bf16 weights
//! themselves. Fewer rows (one-row decode, batches up to 4) are bandwidth-bound, gain nothing
//! from it, and keep the exact-x widening kernel. `NANOCHAT_KERNEL=avx512` turns the bf16 path
//! off.

mod q4k;
#[cfg(target_arch = "x86_64")]
mod q4k_x86;
mod q8_0;
#[cfg(target_arch = "x86_64")]
mod q8_0_x86;
mod quant_tiles;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_bf16dot;
#[cfg(target_arch = "x86_64")]
mod x86_bf16dot_rows;
pub use q4k::{q4k_path, q4k_paths, Q4KWeight};
pub use q8_0::{q8_0_path, q8_0_paths, Q8_0Weight};

use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

/// A length argument that does not match the shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("matmul kernel: {arg} has length {got}, expected {expected} for m={m}, k={k}, n={n}")]
pub struct KernelError {
    /// Which argument: `"x"`, `"w"` or `"y"` (or `"shape"` if `m·k`, `n·k` or `m·n` overflows).
    pub arg: &'static str,
    pub got: usize,
    pub expected: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// y (m, n) = x (m, k) · wᵀ with w (n, k) row-major — nn.Linear's layout. x and y are f32.
pub fn matmul_bf16_nt(
    x: &[f32],
    w: &[bf16],
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(), KernelError> {
    matmul_on(detect(), Tuning::DEFAULT, x, w, y, m, k, n)
}

/// y (m, n) = x (m, k) · wᵀ with w (n, k) row-major, all f32.
pub fn matmul_f32_nt(
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(), KernelError> {
    matmul_on(detect(), Tuning::DEFAULT, x, w, y, m, k, n)
}

/// bf16 weights from this many x rows up take the bf16-dot panel kernel (where the CPU has it).
///
/// The panel kernel computes whole 16-row panels, so it costs the same from 1 to 16 rows.
/// Measured on Zen 4 (`kernel_bench prefill ms=…`, d20 MLP shapes, weights from DRAM) against
/// the widening kernel: 1.15–1.2× faster at 12 rows, 1.4–1.7× at 16 and 1.7–2× from 32; below
/// 16 the few-rows kernel ([`BF16_DOT_FEW_MIN_ROWS`]) does better, so the switch is where a
/// panel is full.
pub const BF16_DOT_MIN_ROWS: usize = 16;

/// bf16 weights with this many x rows up to [`BF16_DOT_MIN_ROWS`] take the few-rows bf16-dot
/// kernel ([`x86_bf16dot_rows`]) where the CPU has AVX512_BF16: x rounded to bf16 as in the
/// panel kernel, every lane doing real work. Measured on Zen 4 (`kernel_bench prefill
/// ms=1,2,4,6,8,12`, MLP up-projection, weights from DRAM) against the exact widening kernel:
/// the same at 2 rows (both bandwidth-bound), 1.04× faster at 4, 1.3× at 6, 1.35× at 8, 1.45×
/// at 12. Up to 4 rows nothing is gained, so those keep exact activations.
pub const BF16_DOT_FEW_MIN_ROWS: usize = 5;

/// As [`matmul_bf16_nt`] on the named path (one of [`kernel_paths`]), for benchmarks; a name
/// that is unknown or unsupported here runs the detected path.
pub fn matmul_bf16_nt_on(
    path: &str,
    x: &[f32],
    w: &[bf16],
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(), KernelError> {
    let path = Path::ALL
        .into_iter()
        .find(|p| p.name() == path && p.supported())
        .unwrap_or_else(detect);
    matmul_on(path, Tuning::DEFAULT, x, w, y, m, k, n)
}

/// Which path runs on this CPU: "avx512bf16", "avx512", "avx2" or "portable" (for printouts).
pub fn kernel_path() -> &'static str {
    detect().name()
}

/// The paths this CPU supports, fastest first.
pub fn kernel_paths() -> Vec<&'static str> {
    Path::ALL
        .into_iter()
        .filter(|p| p.supported())
        .map(Path::name)
        .collect()
}

/// An implementation of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// [`Path::Avx512`], plus the bf16-dot kernel for bf16 weights from
    /// [`Tuning::bf16_dot_min_rows`] rows up.
    Avx512Bf16,
    Avx512,
    Avx2,
    Portable,
}

impl Path {
    /// Every path, fastest first.
    const ALL: [Path; 4] = [Path::Avx512Bf16, Path::Avx512, Path::Avx2, Path::Portable];

    fn name(self) -> &'static str {
        match self {
            Path::Avx512Bf16 => "avx512bf16",
            Path::Avx512 => "avx512",
            Path::Avx2 => "avx2",
            Path::Portable => "portable",
        }
    }

    /// Whether this CPU can run the path.
    fn supported(self) -> bool {
        match self {
            Path::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512Bf16 => Path::Avx512.supported() && is_x86_feature_detected!("avx512bf16"),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
            }
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

/// The path to run (decided once): `NANOCHAT_KERNEL=avx512bf16|avx512|avx2|portable` if set and
/// supported (for benchmarking and debugging), else the fastest one this CPU supports.
fn detect() -> Path {
    static PATH: OnceLock<Path> = OnceLock::new();
    *PATH.get_or_init(|| {
        let all = Path::ALL;
        let forced = std::env::var("NANOCHAT_KERNEL").ok();
        forced
            .and_then(|name| all.into_iter().find(|p| p.name() == name.trim()))
            .filter(|p| p.supported())
            .or_else(|| all.into_iter().find(|p| p.supported()))
            .unwrap_or(Path::Portable)
    })
}

/// Blocking parameters (fixed in release; the tests shrink them to reach every branch).
#[derive(Clone, Copy, Debug)]
struct Tuning {
    /// Below this many weight elements (n·k) the call runs on the calling thread alone:
    /// waking the pool costs more than it saves.
    par_min_elems: usize,
    /// Fewest weight rows per parallel block.
    min_block_rows: usize,
    /// Parallel blocks per pool thread (more balance the load, fewer cost less overhead).
    blocks_per_thread: usize,
    /// Bytes of x kept hot per pass over a weight block: x rows are processed in groups of
    /// `max(32, x_bytes / (4k))`, so up to 32 rows the weights are read exactly once.
    /// (The bf16-dot path holds x as bf16: groups of `max(32, x_bytes / (2k))` rows, rounded
    /// down to whole 16-row panels.)
    x_bytes: usize,
    /// bf16 weights with at least this many x rows take the bf16-dot panel kernel, if selected.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    bf16_dot_min_rows: usize,
    /// … and from this many up to that, the few-rows bf16-dot kernel.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    bf16_dot_few_min_rows: usize,
}

impl Tuning {
    const DEFAULT: Tuning = Tuning {
        par_min_elems: 1 << 17,
        min_block_rows: 64,
        blocks_per_thread: 8,
        x_bytes: 512 << 10,
        bf16_dot_min_rows: BF16_DOT_MIN_ROWS,
        bf16_dot_few_min_rows: BF16_DOT_FEW_MIN_ROWS,
    };

    fn x_rows(&self, k: usize) -> usize {
        (self.x_bytes / (4 * k)).max(32)
    }

    /// Rows per x group on the bf16-dot path: a multiple of the 16-row panel, ≥ 32.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn x_rows_bf16(&self, k: usize) -> usize {
        (self.x_bytes / (2 * k)).max(32) / 16 * 16
    }
}

/// A weight element type: f32 or bf16.
#[cfg(target_arch = "x86_64")]
trait Weight: Copy + Send + Sync + x86::W512 + x86::W256 {
    /// One weight row as f32: itself, or widened into `buf`.
    fn row_f32<'a>(row: &'a [Self], buf: &'a mut Vec<f32>) -> &'a [f32];
    /// The weights as bf16, if that is their type (for the bf16-dot path).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn as_bf16(w: &[Self]) -> Option<&[bf16]>;
}
/// A weight element type: f32 or bf16.
#[cfg(not(target_arch = "x86_64"))]
trait Weight: Copy + Send + Sync {
    /// One weight row as f32: itself, or widened into `buf`.
    fn row_f32<'a>(row: &'a [Self], buf: &'a mut Vec<f32>) -> &'a [f32];
    /// The weights as bf16, if that is their type (for the bf16-dot path).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn as_bf16(w: &[Self]) -> Option<&[bf16]>;
}

impl Weight for f32 {
    fn row_f32<'a>(row: &'a [f32], _buf: &'a mut Vec<f32>) -> &'a [f32] {
        row
    }
    fn as_bf16(_w: &[f32]) -> Option<&[bf16]> {
        None
    }
}

impl Weight for bf16 {
    fn row_f32<'a>(row: &'a [bf16], buf: &'a mut Vec<f32>) -> &'a [f32] {
        buf.clear();
        // bf16 → f32 is a 16-bit shift; written out so it vectorises.
        buf.extend(
            row.iter()
                .map(|v| f32::from_bits((v.to_bits() as u32) << 16)),
        );
        buf
    }
    fn as_bf16(w: &[bf16]) -> Option<&[bf16]> {
        Some(w)
    }
}

/// The output pointer shared by the threads (of every kernel here); each writes only its own
/// elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: blocks write disjoint elements of y, and y outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// Pointer to element `offset` (a method, so closures capture the whole `Send` wrapper).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

fn check(
    arg: &'static str,
    got: usize,
    a: usize,
    b: usize,
    (m, k, n): (usize, usize, usize),
) -> Result<(), KernelError> {
    let err = |arg, expected| KernelError {
        arg,
        got,
        expected,
        m,
        k,
        n,
    };
    match a.checked_mul(b) {
        None => Err(err("shape", usize::MAX)),
        Some(expected) if expected != got => Err(err(arg, expected)),
        Some(_) => Ok(()),
    }
}

/// The kernels on a given path (the public functions pass the detected one).
#[allow(clippy::too_many_arguments)]
fn matmul_on<W: Weight>(
    path: Path,
    tuning: Tuning,
    x: &[f32],
    w: &[W],
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) -> Result<(), KernelError> {
    let shape = (m, k, n);
    check("x", x.len(), m, k, shape)?;
    check("w", w.len(), n, k, shape)?;
    check("y", y.len(), m, n, shape)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let path = if path.supported() {
        path
    } else {
        Path::Portable
    };
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512Bf16 && m >= tuning.bf16_dot_few_min_rows {
        if let Some(w) = W::as_bf16(w) {
            // SAFETY: the path is supported (checked above), so the CPU has AVX512_BF16; the
            // lengths were checked and m, k, n > 0.
            unsafe {
                if m >= tuning.bf16_dot_min_rows {
                    x86_bf16dot::matmul(tuning, x, w, y, m, k, n)
                } else {
                    x86_bf16dot_rows::matmul(tuning, x, w, y, m, k, n)
                }
            };
            return Ok(());
        }
    }
    let out = OutPtr(y.as_mut_ptr());
    let x_rows = tuning.x_rows(k);
    // Weight rows [n0, n1) against every x row, x in groups of `x_rows`.
    let run = |n0: usize, n1: usize| {
        let wb = &w[n0 * k..n1 * k];
        let mut i0 = 0;
        while i0 < m {
            let i1 = m.min(i0 + x_rows);
            let yb = out.at(i0 * n + n0);
            // SAFETY: lengths were checked; (i, j) for i in [i0, i1), j in [n0, n1) lie in y and
            // no other block writes them; the path is supported by this CPU.
            unsafe { block(path, &x[i0 * k..i1 * k], wb, yb, i1 - i0, k, n, n1 - n0) };
            i0 = i1;
        }
    };
    split_rows(tuning, n, k, 16, run);
    Ok(())
}

/// Runs `run(n0, n1)` over blocks of weight rows covering `[0, n)`: on the calling thread if the
/// weight is small (or the pool has one thread), else in parallel blocks on rayon's pool, each a
/// multiple of `align` rows (but the last).
fn split_rows(tuning: Tuning, n: usize, k: usize, align: usize, run: impl Fn(usize, usize) + Sync) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || n * k < tuning.par_min_elems || n < 2 * tuning.min_block_rows {
        run(0, n);
    } else {
        let rows = n
            .div_ceil(threads * tuning.blocks_per_thread)
            .max(tuning.min_block_rows)
            .next_multiple_of(align);
        (0..n.div_ceil(rows))
            .into_par_iter()
            .for_each(|b| run(b * rows, n.min((b + 1) * rows)));
    }
}

/// `y[i·ldy + r] = x_i · w_r` for `i < m`, `r < rows`.
///
/// # Safety
/// `x.len() == m·k`, `w.len() == rows·k`, those elements of `y` are valid and written by no
/// other thread, and `path` is supported by this CPU.
#[allow(clippy::too_many_arguments)]
unsafe fn block<W: Weight>(
    path: Path,
    x: &[f32],
    w: &[W],
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    rows: usize,
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 | Path::Avx512Bf16 => x86::block_avx512(x, w, y, m, k, ldy, rows),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => x86::block_avx2(x, w, y, m, k, ldy, rows),
        _ => block_portable(x, w, y, m, k, ldy, rows),
    }
}

/// Portable block: widen each weight row once, then dot it with every x row.
///
/// # Safety
/// As [`block`].
unsafe fn block_portable<W: Weight>(
    x: &[f32],
    w: &[W],
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    rows: usize,
) {
    let mut buf = Vec::with_capacity(k);
    for (r, wrow) in w.chunks_exact(k).take(rows).enumerate() {
        let wrow = W::row_f32(wrow, &mut buf);
        for (i, xrow) in x.chunks_exact(k).take(m).enumerate() {
            *y.add(i * ldy + r) = dot(xrow, wrow);
        }
    }
}

/// Dot product with 8 independent partial sums, which LLVM turns into SIMD lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 8;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(p, q)| p * q)
        .sum();
    for (pa, pb) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += pa[l] * pb[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
mod tests;
