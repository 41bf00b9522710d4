//! The AVX512_BF16 path of the bf16 matmul for a few x rows (batched decode, from
//! [`super::BF16_DOT_FEW_MIN_ROWS`] to 15 rows): x rounded to bf16 once per call, then each
//! 64-byte line of a weight row (32 bf16) meets the same 32 columns of each x row in one
//! `vdpbf16ps` (32 products summed pairwise into 16 f32 lanes), reduced horizontally at the end.
//!
//! Why: at 8 rows the exact kernel ([`super::x86`]) is bound by its f32 FMAs and the widening
//! of every weight vector (1.6–1.8× the time of one row, measured), while one `vdpbf16ps` does
//! the work of two FMAs and reads the weights as they are stored. The panel kernel
//! ([`super::x86_bf16dot`]) computes whole 16-row panels, so below 16 rows it pays for rows
//! that are not there; here every lane does real work at any row count. Numerically it is the
//! panel kernel's bargain: x rounded to bf16 (relative error ≤ 2⁻⁸ per element, what a PyTorch
//! bf16 model does to its activations), exact products, f32 sums.
//!
//! Tiling and streaming as in [`super::x86`]: a tile is `MR` x rows × `NR` = 4 weight rows taken
//! from four lanes of the block (four long sequential streams for the hardware prefetcher), the
//! first x tile over those rows prefetching each row 2 KB ahead into L2.
//!
//! Safety: every `unsafe fn` needs AVX-512 F+BW+VL and AVX512_BF16 (checked by the dispatcher
//! with `is_x86_feature_detected!`) and buffers of the lengths stated.

use std::arch::x86_64::*;

use half::bf16;
use rayon::prelude::*;

use super::{split_rows, OutPtr, Tuning};

/// x rows per register tile: MR × NR accumulators (16) + NR weight vectors + one x vector.
const MR: usize = 4;
/// Weight rows per register tile (one per lane).
const NR: usize = 4;
/// bf16 values per 64-byte line (one `vdpbf16ps` operand).
const LINE: usize = 32;
/// How far ahead of the loads the weight rows are prefetched (into L2).
const PREFETCH_BYTES: usize = 2048;

/// The whole matmul: x rounded to bf16 rows padded with zeros to whole lines, then weight-row
/// blocks in parallel, each against every x row.
///
/// # Safety
/// The CPU has the features above. Lengths as checked by [`super::matmul_on`]: `x.len() == m·k`,
/// `w.len() == n·k`, `y.len() == m·n`, all of `m, k, n` > 0.
pub(super) unsafe fn matmul(
    tuning: Tuning,
    x: &[f32],
    w: &[bf16],
    y: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    let stride = k.next_multiple_of(LINE);
    let mut xb = vec![0u16; m * stride];
    let pack = |(i, row): (usize, &mut [u16])| {
        // SAFETY: row i of x has k values, `row` holds `stride` ≥ k; CPU features as above.
        unsafe { round_row(&x[i * k..(i + 1) * k], row) };
    };
    if m * k >= tuning.par_min_elems {
        xb.par_chunks_mut(stride).enumerate().for_each(pack);
    } else {
        xb.chunks_mut(stride).enumerate().for_each(pack);
    }
    let out = OutPtr(y.as_mut_ptr());
    let run = |n0: usize, n1: usize| {
        // SAFETY: rows [n0, n1) of w; outputs (i, j) for i < m, j in [n0, n1) lie in y and only
        // this block writes them; the caller vouches for the CPU features.
        unsafe {
            block(
                &xb,
                stride,
                &w[n0 * k..n1 * k],
                out.at(n0),
                m,
                k,
                n,
                n1 - n0,
            )
        };
    };
    split_rows(tuning, n, k, 16, run);
}

/// Rounds one row of x to bf16 (nearest-even, as `vcvtneps2bf16` does) into `out`, whose
/// elements past `x.len()` must be zero and stay so.
///
/// # Safety
/// `out.len() ≥ x.len()`; CPU features as above.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn round_row(x: &[f32], out: &mut [u16]) {
    debug_assert!(out.len() >= x.len());
    let (k, src, dst) = (x.len(), x.as_ptr(), out.as_mut_ptr());
    let mut p = 0;
    while p < k {
        let mask: __mmask16 = if p + 16 <= k {
            !0
        } else {
            (1u16 << (k - p)) - 1
        };
        let v = _mm512_maskz_loadu_ps(mask, src.add(p));
        let packed: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
        _mm256_mask_storeu_epi16(dst.add(p) as *mut i16, mask, packed);
        p += 16;
    }
}

/// One `ROWS × NR` tile: x rows at `x + i·stride` (bf16, zero past k), w rows at
/// `w + r·lane·k`, outputs at `y + i·ldy + r·lane`. `PF`: prefetch the w rows ahead.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const ROWS: usize, const NW: usize, const PF: bool>(
    x: *const u16,
    stride: usize,
    w: *const bf16,
    k: usize,
    y: *mut f32,
    ldy: usize,
    lane: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NW]; ROWS];
    let step = |p: usize, wv: &[__m512bh; NW], acc: &mut [[__m512; NW]; ROWS]| {
        for (i, a) in acc.iter_mut().enumerate() {
            let xv: __m512bh = std::mem::transmute(_mm512_loadu_si512(x.add(i * stride + p) as _));
            for (r, v) in a.iter_mut().enumerate() {
                *v = _mm512_dpbf16_ps(*v, xv, wv[r]);
            }
        }
    };
    let mut p = 0;
    while p + LINE <= k {
        let mut wv: [__m512bh; NW] = std::mem::zeroed();
        for (r, v) in wv.iter_mut().enumerate() {
            let row = w.add(r * lane * k + p);
            if PF {
                _mm_prefetch::<_MM_HINT_T1>((row as *const i8).wrapping_add(PREFETCH_BYTES));
            }
            *v = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(row as _));
        }
        step(p, &wv, &mut acc);
        p += LINE;
    }
    if p < k {
        // The last partial line: masked weights (zeros past k); x is already zero there.
        let mask: __mmask32 = ((1u64 << (k - p)) - 1) as u32;
        let mut wv: [__m512bh; NW] = std::mem::zeroed();
        for (r, v) in wv.iter_mut().enumerate() {
            let row = w.add(r * lane * k + p) as *const i16;
            *v = std::mem::transmute::<__m512i, __m512bh>(_mm512_maskz_loadu_epi16(mask, row));
        }
        step(p, &wv, &mut acc);
    }
    for (i, a) in acc.iter().enumerate() {
        for (r, v) in a.iter().enumerate() {
            *y.add(i * ldy + r * lane) = _mm512_reduce_add_ps(*v);
        }
    }
}

/// Every x row against `NW` w rows (`lane` rows apart): `MR`-row tiles, then the rest. The first
/// tile prefetches the w rows ahead; the later ones find them in cache.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows<const NW: usize>(
    x: *const u16,
    stride: usize,
    w: *const bf16,
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    lane: usize,
) {
    let mut i = 0;
    if m >= MR {
        tile::<MR, NW, true>(x, stride, w, k, y, ldy, lane);
        i = MR;
    }
    while i + MR <= m {
        tile::<MR, NW, false>(x.add(i * stride), stride, w, k, y.add(i * ldy), ldy, lane);
        i += MR;
    }
    let (x, y) = (x.add(i * stride), y.add(i * ldy));
    match (m - i, i == 0) {
        (0, _) => {}
        (1, true) => tile::<1, NW, true>(x, stride, w, k, y, ldy, lane),
        (2, true) => tile::<2, NW, true>(x, stride, w, k, y, ldy, lane),
        (_, true) => tile::<3, NW, true>(x, stride, w, k, y, ldy, lane),
        (1, false) => tile::<1, NW, false>(x, stride, w, k, y, ldy, lane),
        (2, false) => tile::<2, NW, false>(x, stride, w, k, y, ldy, lane),
        (_, false) => tile::<3, NW, false>(x, stride, w, k, y, ldy, lane),
    }
}

/// Block kernel: `y[i·ldy + r] = x̃_i · w_r` for `i < m`, `r < rows_total`, x̃ the rounded rows
/// in `xb` (`stride` apart). The rows are cut into `NR` equal lanes and a tile takes the j-th
/// row of each; rows left over go one at a time.
///
/// # Safety
/// `xb.len() == m·stride` with `stride ≥ k` a multiple of 32 and zeros past k in every row,
/// `w.len() == rows_total·k`, `y` valid for writes at `i·ldy + r` with no other thread touching
/// those elements; CPU features as above.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    xb: &[u16],
    stride: usize,
    w: &[bf16],
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    rows_total: usize,
) {
    debug_assert!(xb.len() == m * stride && w.len() == rows_total * k);
    let (xp, wp) = (xb.as_ptr(), w.as_ptr());
    let lane = rows_total / NR;
    for r in 0..lane {
        rows::<NR>(xp, stride, wp.add(r * k), y.add(r), m, k, ldy, lane);
    }
    for r in NR * lane..rows_total {
        rows::<1>(xp, stride, wp.add(r * k), y.add(r), m, k, ldy, 0);
    }
}
