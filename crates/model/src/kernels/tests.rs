//! The dense (f32 / bf16) kernels on every path this CPU supports against an f64 reference.

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
    let p: Vec<Path> = Path::ALL.into_iter().filter(|p| p.supported()).collect();
    eprintln!("kernel paths tested: {p:?} (detected: {})", kernel_path());
    if !Path::Avx512Bf16.supported() {
        eprintln!("SKIPPED: the avx512bf16 path (this CPU lacks AVX512_BF16)");
    }
    p
}

/// Tunings: the real one; one where tiny shapes go parallel in 16-row blocks, x is
/// processed in groups of 32 rows whatever k, and the bf16-dot panel kernel (where tested)
/// takes every row count; one where the few-rows bf16-dot kernel takes every row count.
const TUNINGS: [Tuning; 3] = [
    Tuning::DEFAULT,
    Tuning {
        par_min_elems: 0,
        min_block_rows: 16,
        blocks_per_thread: 8,
        x_bytes: 0,
        bf16_dot_min_rows: 1,
        bf16_dot_few_min_rows: 1,
    },
    Tuning {
        par_min_elems: 0,
        min_block_rows: 16,
        blocks_per_thread: 8,
        x_bytes: 0,
        bf16_dot_min_rows: usize::MAX,
        bf16_dot_few_min_rows: 1,
    },
];

/// Shapes: k odd, not a multiple of 16 or 32; odd m, m across panel and x-group borders
/// (16, 32); n not a multiple of the 4- and 12-row tiles or the lanes.
const SHAPES: [(usize, usize, usize); 14] = [
    (1, 37, 5),
    (3, 37, 130),
    (8, 1281, 130),
    (17, 64, 130),
    (1, 1280, 1),
    (17, 16, 5),
    (5, 8, 33),
    (2, 7, 3),
    (4, 300, 260),
    (16, 33, 29),
    (33, 1, 17),
    (35, 95, 41),
    (48, 64, 12),
    (70, 130, 27),
];

/// Checks every path and tuning against an f64 reference of the exact product. Tolerance:
/// the error of an f32 dot product summed in L ≤ 16 lanes is at most about
/// (k/L + log2 L + tail) · 2⁻²⁴ · Σ|x·w|; we allow (k/8 + 16) · 2⁻²⁴ · Σ|x·w| per output
/// (f32 rounding only). Where the bf16-dot path runs, x is rounded to bf16 first, each
/// element by a relative 2⁻⁸ at most (8-bit significand, nearest-even), and a product of two
/// bf16 is exact in f32, so we add 2⁻⁸ · Σ|x·w|.
fn check_all<W: Weight>(to_w: fn(f32) -> W, from_w: fn(W) -> f64) {
    let mut worst = 0f64;
    for path in paths() {
        for (t, tuning) in TUNINGS.into_iter().enumerate() {
            for &(m, k, n) in &SHAPES {
                let dot = path == Path::Avx512Bf16
                    && m >= tuning.bf16_dot_few_min_rows
                    && W::as_bf16(&[]).is_some();
                let bf16_x = if dot { 2f64.powi(-8) } else { 0.0 };
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
                        let tol = ((k as f64 / 8.0 + 16.0) * 2f64.powi(-24) + bf16_x) * scale;
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

/// The bf16-dot kernels really run from the threshold up, and only there: x = 1 + 2⁻¹⁰ is not
/// a bf16 (it rounds to 1), so they give exactly 1·w where the exact path does not; below the
/// threshold `avx512bf16` must match `avx512` bit for bit (one-row decode keeps exact x).
#[test]
fn kernels_bf16dot_only_from_threshold() {
    if !Path::Avx512Bf16.supported() {
        eprintln!("SKIPPED: the avx512bf16 path (this CPU lacks AVX512_BF16)");
        return;
    }
    let (k, n) = (40, 70);
    let w: Vec<bf16> = values(n * k, 3).into_iter().map(bf16::from_f32).collect();
    let few = BF16_DOT_FEW_MIN_ROWS;
    for m in [
        1,
        few - 1,
        few,
        7,
        8,
        BF16_DOT_MIN_ROWS - 1,
        BF16_DOT_MIN_ROWS,
        33,
    ] {
        let x = vec![1.0 + 2f32.powi(-10); m * k];
        let mut y = vec![f32::NAN; m * n];
        let mut exact = vec![f32::NAN; m * n];
        let tuning = Tuning::DEFAULT;
        matmul_on(Path::Avx512Bf16, tuning, &x, &w, &mut y, m, k, n).unwrap();
        matmul_on(Path::Avx512, tuning, &x, &w, &mut exact, m, k, n).unwrap();
        for i in 0..m {
            for j in 0..n {
                let row_sum: f32 = w[j * k..(j + 1) * k].iter().map(|v| v.to_f32()).sum();
                let (got, ex) = (y[i * n + j], exact[i * n + j]);
                if m >= few {
                    assert!((got - row_sum).abs() <= 1e-5, "m={m}: {got} vs {row_sum}");
                    assert!(got != ex, "m={m}: x was not rounded to bf16");
                } else {
                    assert_eq!(got.to_bits(), ex.to_bits(), "m={m}: not the exact path");
                }
            }
        }
    }
}

/// NaN and infinity in x propagate through the bf16 rounding (they are not rounded away).
#[test]
fn kernels_bf16dot_propagates_nan_inf() {
    if !Path::Avx512Bf16.supported() {
        eprintln!("SKIPPED: the avx512bf16 path (this CPU lacks AVX512_BF16)");
        return;
    }
    // 8 rows: the few-rows kernel; 16: the panel kernel.
    for m in [8, 16] {
        let (k, n) = (33, 5);
        let mut x = vec![0.5f32; m * k];
        x[3 * k + 32] = f32::NAN;
        x[5 * k] = f32::INFINITY;
        let w = vec![bf16::ONE; n * k];
        let mut y = vec![0f32; m * n];
        matmul_on(Path::Avx512Bf16, Tuning::DEFAULT, &x, &w, &mut y, m, k, n).unwrap();
        for j in 0..n {
            assert!(y[3 * n + j].is_nan(), "m={m}");
            assert_eq!(y[5 * n + j], f32::INFINITY, "m={m}");
            assert_eq!(y[j], 16.5, "m={m}");
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
    assert!(["avx512bf16", "avx512", "avx2", "portable"].contains(&kernel_path()));
    assert!(kernel_paths().contains(&kernel_path()));
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
