//! The AVX512_BF16 prefill path of the bf16 matmul: `y = x · wᵀ` with x rounded to bf16 once per
//! call and multiplied by the bf16 weights with `vdpbf16ps` (32 bf16 products into 16 f32 lanes
//! per instruction, twice the FLOPs of an f32 FMA), accumulating in f32.
//!
//! Why: with many x rows (prefill) the widening kernel in [`super::x86`] is bound by f32 FMA
//! throughput, not by memory; `vdpbf16ps` doubles the arithmetic per instruction. The price is
//! that x is rounded to bf16 (relative error ≤ 2⁻⁸ per element), exactly what a PyTorch bf16
//! model does to its activations; products of two bf16 are exact in f32, and the sums are f32.
//! (`vcvtneps2bf16` and `vdpbf16ps` treat subnormal inputs as zero and flush subnormal results:
//! an absolute error below 2⁻¹²⁶ per term, irrelevant next to the rounding.)
//! The dispatcher ([`super`]) uses this only above a row threshold; decode keeps exact x.
//!
//! Layout, chosen so that no horizontal sums are needed: x is packed into *panels* of 16 rows;
//! panel word `q·16 + i` holds the bf16 pair (x[i][2q], x[i][2q+1]) as one u32. One
//! `vdpbf16ps` takes a panel vector (16 rows × one k-pair) and a weight pair broadcast to all
//! lanes (one `vbroadcastss` from memory, shared by the tile's panels), so accumulator lane i is
//! row i's partial dot product with that weight row. A register tile is `MB` panels × `NR` weight rows
//! (2 × 12 = 24 accumulators); the weights need no packing (row-major (n, k) bf16 as loaded).
//! Rows past `m` in the last panel are zero and their outputs are not stored.
//!
//! Safety: every `unsafe fn` needs AVX-512 F+BW+VL and AVX512_BF16 (checked by the dispatcher
//! with `is_x86_feature_detected!`) and buffers of the lengths stated.

use std::arch::x86_64::*;

use half::bf16;
use rayon::prelude::*;

use super::{split_rows, OutPtr, Tuning};

/// Rows of x per panel (one per f32 lane).
const PANEL: usize = 16;

/// Weight rows per register tile (with 2 panels: 24 accumulators of the 32 zmm registers).
const TILE_ROWS: usize = 12;

/// The whole bf16-dot matmul: x packed into bf16 panels once, then weight-row blocks in
/// parallel (as the other paths), each against the panels in groups of `x_rows_bf16` rows.
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
    let pstride = k.div_ceil(2) * PANEL;
    let mut xp = vec![0u32; m.div_ceil(PANEL) * pstride];
    // Panels are independent: pack them in parallel when there are several (and enough work).
    let pack = |(b, panel): (usize, &mut [u32])| {
        let rows = PANEL.min(m - b * PANEL);
        // SAFETY: the panel holds `rows` rows of x; the caller vouches for the CPU features.
        unsafe { pack_x(&x[b * PANEL * k..(b * PANEL + rows) * k], rows, k, panel) };
    };
    if m * k >= tuning.par_min_elems {
        xp.par_chunks_mut(pstride).enumerate().for_each(pack);
    } else {
        xp.chunks_mut(pstride).enumerate().for_each(pack);
    }
    let out = OutPtr(y.as_mut_ptr());
    let x_rows = tuning.x_rows_bf16(k);
    let run = |n0: usize, n1: usize| {
        let wb = &w[n0 * k..n1 * k];
        let mut i0 = 0;
        while i0 < m {
            let i1 = m.min(i0 + x_rows);
            let panels = &xp[i0 / PANEL * pstride..i1.div_ceil(PANEL) * pstride];
            // SAFETY: as in `super::matmul_on` (i0 is a multiple of PANEL, so `panels` holds rows
            // [i0, i1)); the caller vouches for the CPU features.
            unsafe { block(panels, wb, out.at(i0 * n + n0), i1 - i0, k, n, n1 - n0) };
            i0 = i1;
        }
    };
    // Blocks of whole register tiles (a 4-row tile runs at about half the speed).
    split_rows(tuning, n, k, TILE_ROWS, run);
}

/// Packs `m` rows of x (row-major, `k` columns) into `m.div_ceil(16)` panels of
/// `k.div_ceil(2)·16` words each, rounding to bf16 (nearest-even). `out` must have that length
/// and be zero on entry: padding rows and the odd column of an odd `k` stay zero.
///
/// # Safety
/// `x.len() ≥ m·k`, `out.len() == m.div_ceil(16)·k.div_ceil(2)·16`, CPU features as above.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack_x(x: &[f32], m: usize, k: usize, out: &mut [u32]) {
    debug_assert!(x.len() >= m * k && out.len() == m.div_ceil(PANEL) * k.div_ceil(2) * PANEL);
    let pairs = k.div_ceil(2);
    let out = out.as_mut_ptr();
    let mut words = [0u32; 8];
    for i in 0..m {
        let row = x.as_ptr().add(i * k);
        let dst = out.add((i / PANEL) * pairs * PANEL + i % PANEL);
        let mut p = 0;
        while p < k {
            // 16 columns (the last chunk masked, reading zeros) → 8 pairs.
            let v = if p + 16 <= k {
                _mm512_loadu_ps(row.add(p))
            } else {
                _mm512_maskz_loadu_ps((1u16 << (k - p)) - 1, row.add(p))
            };
            let packed: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_storeu_si256(words.as_mut_ptr() as *mut __m256i, packed);
            let q0 = p / 2;
            for (u, &word) in words.iter().enumerate().take(pairs - q0) {
                *dst.add((q0 + u) * PANEL) = word;
            }
            p += 16;
        }
    }
}

/// The `MB` panels' words at pair `q` (panels `pstride` words apart), as bf16 pairs.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn load_x<const MB: usize>(xp: *const u32, pstride: usize, q: usize) -> [__m512bh; MB] {
    let mut xv = [_mm512_setzero_si512(); MB];
    for (b, v) in xv.iter_mut().enumerate() {
        *v = _mm512_loadu_si512(xp.add(b * pstride + q * PANEL) as *const _);
    }
    std::mem::transmute_copy::<[__m512i; MB], [__m512bh; MB]>(&xv)
}

/// `acc[r][b] += panel b · word(r)` broadcast: 16 lanes of two bf16 products each.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn dot<const MB: usize, const NR: usize>(
    acc: &mut [[__m512; MB]; NR],
    xv: &[__m512bh; MB],
    word: impl Fn(usize) -> i32,
) {
    for (r, row) in acc.iter_mut().enumerate() {
        let wv = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(word(r)));
        for (a, x) in row.iter_mut().zip(xv) {
            *a = _mm512_dpbf16_ps(*a, *x, wv);
        }
    }
}

/// One tile: `MB` panels (`xp`, `pstride` words apart) × `NR` weight rows (`w`, `k` apart).
/// Writes `y[i·ldy + j]` for the first `valid` rows of the panels and `j < NR`.
/// `PF` (the first pass over these rows): prefetch the next tile's weight rows into L2, so a
/// block's weights stream in one tile ahead (measured +10–15 % at k = 1280 with weights in DRAM).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const MB: usize, const NR: usize, const PF: bool>(
    xp: *const u32,
    pstride: usize,
    w: *const bf16,
    k: usize,
    y: *mut f32,
    ldy: usize,
    valid: usize,
) {
    // acc[r][b]: weight row r against panel b.
    let mut acc = [[_mm512_setzero_ps(); MB]; NR];
    let full = k / 2;
    // One k-pair: each weight row's pair at 2q.
    let step = |q: usize, acc: &mut [[__m512; MB]; NR]| {
        let pair = |r: usize| (w.add(r * k + 2 * q) as *const i32).read_unaligned();
        dot(acc, &load_x(xp, pstride, q), pair);
    };
    // 16 pairs = one 64-byte line of each weight row per iteration.
    let mut q = 0;
    while q + 16 <= full {
        if PF {
            // The next tile's rows are the NR·k weights after these: one iteration here reads
            // NR lines, so fetching NR lines of the next tile per iteration covers it exactly.
            let next = (w.add(NR * k) as *const i8).wrapping_add(q / 16 * NR * 64);
            for r in 0..NR {
                _mm_prefetch::<_MM_HINT_T1>(next.wrapping_add(r * 64));
            }
        }
        for u in 0..16 {
            step(q + u, &mut acc);
        }
        q += 16;
    }
    while q < full {
        step(q, &mut acc);
        q += 1;
    }
    if k % 2 == 1 {
        // The last column alone: its pair's high half is zero in x; load only the one weight.
        let last = |r: usize| (*w.add(r * k + k - 1)).to_bits() as i32;
        dot(&mut acc, &load_x(xp, pstride, full), last);
    }
    // Accumulator (b, r) holds column r of rows b·16.. of y: spill the panel's NR vectors, then
    // write y row by row (NR adjacent floats each, so the stores stay within a line or two).
    let mut cols = [[0f32; PANEL]; NR];
    for b in 0..MB {
        let rows = valid.saturating_sub(b * PANEL).min(PANEL);
        for (col, row) in cols.iter_mut().zip(&acc) {
            _mm512_storeu_ps(col.as_mut_ptr(), row[b]);
        }
        for i in 0..rows {
            let yrow = y.add((b * PANEL + i) * ldy);
            for (r, col) in cols.iter().enumerate() {
                *yrow.add(r) = col[i];
            }
        }
    }
}

/// All panels against `NR` weight rows: pairs of panels, then a last single one. The first
/// pass prefetches the next tile's weight rows; the later ones find these in cache.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn rows<const NR: usize>(
    xp: *const u32,
    pstride: usize,
    w: *const bf16,
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
) {
    const MB: usize = 2;
    let panels = m.div_ceil(PANEL);
    let mut b = 0;
    while b < panels {
        let (x, yb, valid) = (xp.add(b * pstride), y.add(b * PANEL * ldy), m - b * PANEL);
        match (panels - b >= MB, b == 0) {
            (true, true) => tile::<MB, NR, true>(x, pstride, w, k, yb, ldy, valid),
            (true, false) => tile::<MB, NR, false>(x, pstride, w, k, yb, ldy, valid),
            (false, true) => tile::<1, NR, true>(x, pstride, w, k, yb, ldy, valid),
            (false, false) => tile::<1, NR, false>(x, pstride, w, k, yb, ldy, valid),
        }
        b += MB;
    }
}

/// Block kernel: `y[i·ldy + r] = x̃_i · w_r` for `i < m`, `r < rows`, where `xp` holds the
/// `m.div_ceil(16)` packed panels of x̃ (see [`pack_x`]) and `w` the block's `rows` weight rows.
/// Weight rows go 12 at a time (then 4, then 1), each group against every panel.
///
/// # Safety
/// `xp.len() == m.div_ceil(16)·k.div_ceil(2)·16`, `w.len() == rows·k`, `y` valid for writes at
/// `i·ldy + r` (`i < m`, `r < rows`) with no other thread touching those elements; CPU features
/// as above.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    xp: &[u32],
    w: &[bf16],
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    rows_total: usize,
) {
    let pstride = k.div_ceil(2) * PANEL;
    debug_assert!(xp.len() == m.div_ceil(PANEL) * pstride && w.len() == rows_total * k);
    let (xp, wp) = (xp.as_ptr(), w.as_ptr());
    let mut r = 0;
    while r + TILE_ROWS <= rows_total {
        rows::<TILE_ROWS>(xp, pstride, wp.add(r * k), y.add(r), m, k, ldy);
        r += TILE_ROWS;
    }
    while r + 4 <= rows_total {
        rows::<4>(xp, pstride, wp.add(r * k), y.add(r), m, k, ldy);
        r += 4;
    }
    while r < rows_total {
        rows::<1>(xp, pstride, wp.add(r * k), y.add(r), m, k, ldy);
        r += 1;
    }
}
