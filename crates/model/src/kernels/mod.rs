//! CPU matmul kernels for decode: `y = x · wᵀ` with few rows of f32 activations `x` and a
//! row-major `(n, k)` weight `w` in bf16 or f32 (nn.Linear's layout).
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
//! `NANOCHAT_KERNEL=avx2` (or `portable`) forces a slower path, for comparisons.
//! The weight rows are split into blocks run on rayon's global pool (its size is the caller's
//! choice), each thread writing disjoint columns of `y`.

#[cfg(target_arch = "x86_64")]
mod x86;

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

/// Which path runs on this CPU: "avx512", "avx2" or "portable" (for the bench's printout).
pub fn kernel_path() -> &'static str {
    detect().name()
}

/// An implementation of the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Avx512,
    Avx2,
    Portable,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
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

/// The path to run (decided once): `NANOCHAT_KERNEL=avx512|avx2|portable` if set and supported
/// (for benchmarking and debugging), else the fastest one this CPU supports.
fn detect() -> Path {
    static PATH: OnceLock<Path> = OnceLock::new();
    *PATH.get_or_init(|| {
        let all = [Path::Avx512, Path::Avx2, Path::Portable];
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
    x_bytes: usize,
}

impl Tuning {
    const DEFAULT: Tuning = Tuning {
        par_min_elems: 1 << 17,
        min_block_rows: 64,
        blocks_per_thread: 8,
        x_bytes: 512 << 10,
    };

    fn x_rows(&self, k: usize) -> usize {
        (self.x_bytes / (4 * k)).max(32)
    }
}

/// A weight element type: f32 or bf16.
#[cfg(target_arch = "x86_64")]
trait Weight: Copy + Send + Sync + x86::W512 + x86::W256 {
    /// One weight row as f32: itself, or widened into `buf`.
    fn row_f32<'a>(row: &'a [Self], buf: &'a mut Vec<f32>) -> &'a [f32];
}
/// A weight element type: f32 or bf16.
#[cfg(not(target_arch = "x86_64"))]
trait Weight: Copy + Send + Sync {
    /// One weight row as f32: itself, or widened into `buf`.
    fn row_f32<'a>(row: &'a [Self], buf: &'a mut Vec<f32>) -> &'a [f32];
}

impl Weight for f32 {
    fn row_f32<'a>(row: &'a [f32], _buf: &'a mut Vec<f32>) -> &'a [f32] {
        row
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
}

/// The output pointer shared by the threads; each writes only its own columns.
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
    let threads = rayon::current_num_threads();
    if threads <= 1 || n * k < tuning.par_min_elems || n < 2 * tuning.min_block_rows {
        run(0, n);
    } else {
        let rows = n
            .div_ceil(threads * tuning.blocks_per_thread)
            .max(tuning.min_block_rows)
            .next_multiple_of(16);
        (0..n.div_ceil(rows))
            .into_par_iter()
            .for_each(|b| run(b * rows, n.min((b + 1) * rows)));
    }
    Ok(())
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
        Path::Avx512 => x86::block_avx512(x, w, y, m, k, ldy, rows),
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
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) (xorshift64*).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
                2.0 * u - 1.0
            })
            .collect()
    }

    fn paths() -> Vec<Path> {
        let p: Vec<Path> = [Path::Avx512, Path::Avx2, Path::Portable]
            .into_iter()
            .filter(|p| p.supported())
            .collect();
        eprintln!("kernel paths tested: {p:?} (detected: {})", kernel_path());
        p
    }

    /// Tunings: the real one, and one where tiny shapes go parallel in 16-row blocks and x is
    /// processed in groups of 32 rows whatever k.
    const TUNINGS: [Tuning; 2] = [
        Tuning::DEFAULT,
        Tuning {
            par_min_elems: 0,
            min_block_rows: 16,
            blocks_per_thread: 8,
            x_bytes: 0,
        },
    ];

    /// Checks every path and tuning against an f64 reference. Tolerance: the error of an f32
    /// dot product summed in L ≤ 16 lanes is at most about (k/L + log2 L + tail) · 2⁻²⁴ · Σ|x·w|;
    /// we allow (k/8 + 16) · 2⁻²⁴ · Σ|x·w| per output (f32 rounding only).
    fn check_all<W: Weight>(to_w: fn(f32) -> W, from_w: fn(W) -> f64) {
        let mut worst = 0f64;
        for path in paths() {
            for (t, tuning) in TUNINGS.into_iter().enumerate() {
                for &(m, k, n) in &[
                    (1, 37, 5),
                    (3, 37, 130),
                    (8, 1281, 130),
                    (17, 64, 130),
                    (1, 1280, 1),
                    (17, 16, 5),
                    (5, 8, 33),
                    (2, 7, 3),
                    (4, 300, 260),
                ] {
                    let x = values(m * k, (m * 1000 + k) as u64);
                    let w: Vec<W> = values(n * k, (n * 7 + k) as u64)
                        .into_iter()
                        .map(to_w)
                        .collect();
                    let mut y = vec![f32::NAN; m * n];
                    matmul_on(path, tuning, &x, &w, &mut y, m, k, n).unwrap();
                    for i in 0..m {
                        for j in 0..n {
                            let (mut exact, mut scale) = (0f64, 0f64);
                            for p in 0..k {
                                let t = x[i * k + p] as f64 * from_w(w[j * k + p]);
                                exact += t;
                                scale += t.abs();
                            }
                            let err = (y[i * n + j] as f64 - exact).abs();
                            let tol = (k as f64 / 8.0 + 16.0) * 2f64.powi(-24) * scale;
                            assert!(
                                err <= tol,
                                "{path:?} tuning {t} m={m} k={k} n={n} y[{i},{j}]={} exact={exact} err={err:e} tol={tol:e}",
                                y[i * n + j]
                            );
                            worst = worst.max(err / scale.max(f64::MIN_POSITIVE));
                        }
                    }
                }
            }
        }
        eprintln!("worst |err| / Σ|x·w| = {worst:e}");
    }

    #[test]
    fn kernels_bf16_match_reference() {
        check_all::<bf16>(bf16::from_f32, |v| v.to_f32() as f64);
    }

    #[test]
    fn kernels_f32_match_reference() {
        check_all::<f32>(|v| v, |v| v as f64);
    }

    /// The x-row grouping really splits (x_rows floors at 32, so use m > 32).
    #[test]
    fn kernels_split_x_rows() {
        let (m, k, n) = (70, 19, 40);
        let x = values(m * k, 1);
        let w = values(n * k, 2);
        let mut want = vec![0f32; m * n];
        matmul_on(Path::Portable, Tuning::DEFAULT, &x, &w, &mut want, m, k, n).unwrap();
        for path in paths() {
            for tuning in TUNINGS {
                let mut y = vec![f32::NAN; m * n];
                matmul_on(path, tuning, &x, &w, &mut y, m, k, n).unwrap();
                for (a, b) in y.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-5, "{path:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn kernels_degenerate_shapes() {
        let mut y = vec![1f32; 6];
        matmul_f32_nt(&[], &[], &mut y, 2, 0, 3).unwrap();
        assert_eq!(y, vec![0.0; 6]);
        matmul_bf16_nt(&[], &[bf16::ONE; 4], &mut [], 0, 2, 2).unwrap();
        matmul_f32_nt(&[1.0; 4], &[], &mut [], 2, 2, 0).unwrap();
        assert!(["avx512", "avx2", "portable"].contains(&kernel_path()));
    }

    #[test]
    fn kernels_reject_bad_lengths() {
        let (x, w, mut y) = (vec![0f32; 6], vec![bf16::ZERO; 12], vec![0f32; 8]);
        let (wf, mut yf) = (vec![0f32; 12], vec![0f32; 8]);
        // m=2, k=3, n=4 is consistent.
        matmul_bf16_nt(&x, &w, &mut y, 2, 3, 4).unwrap();
        let e = matmul_bf16_nt(&x[..5], &w, &mut y, 2, 3, 4).unwrap_err();
        assert_eq!((e.arg, e.got, e.expected), ("x", 5, 6));
        assert!(e.to_string().contains("x has length 5, expected 6"), "{e}");
        let e = matmul_bf16_nt(&x, &w[..11], &mut y, 2, 3, 4).unwrap_err();
        assert_eq!(e.arg, "w");
        let e = matmul_bf16_nt(&x, &w, &mut y[..7], 2, 3, 4).unwrap_err();
        assert_eq!(e.arg, "y");
        let e = matmul_f32_nt(&x, &wf[..3], &mut yf, 2, 3, 4).unwrap_err();
        assert_eq!(e.arg, "w");
        let e = matmul_f32_nt(&x, &wf, &mut yf, usize::MAX, 3, 4).unwrap_err();
        assert_eq!(e.arg, "shape");
    }
}
