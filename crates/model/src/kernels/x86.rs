//! x86-64 paths of the decode matmul kernels: AVX-512 (16 f32 lanes) and AVX2+FMA (8 lanes).
//!
//! Each function computes one block of the output: `y[i·ldy + r] = x_i · w_r` for `i < m`,
//! `r < rows`, where `w` holds only the block's weight rows. The caller ([`super`]) splits the
//! weight rows across threads and checks lengths; these functions trust them.
//!
//! Register tiling: a tile is `MR` rows of x × `NR` rows of w, with one accumulator vector per
//! (x row, w row) pair, reduced horizontally at the end. Each weight vector is loaded (and, for
//! bf16, widened) once per tile and used for `MR` FMAs, so at batched decode (m = 8) the work
//! stays FMA-bound rather than conversion-bound; a w tile (a few KB per row) stays in L1/L2 while
//! the x tiles cycle over it, so each weight byte comes from DRAM once per call.
//!
//! Streaming: the NR = 4 rows of a tile come from four separate lanes of the block (row j of each
//! quarter), so DRAM sees four long sequential streams the hardware prefetcher follows, and the
//! first x tile also prefetches each w row 2 KB ahead into L2, which keeps enough lines in
//! flight when the FMAs slow the loop down (m ≥ 4). Measured on Zen 4: adjacent-row tiles
//! streamed at ~10 GB/s per core, lanes at ~24; the prefetch took m = 4 from ~2× to ~1.1× m = 1.
//!
//! bf16 → f32 is exact: zero-extend the 16 bits to 32 and shift left 16. x is never narrowed.
//!
//! Safety: every `unsafe fn` here needs the CPU features named in its `target_feature`
//! (the dispatcher checks them with `is_x86_feature_detected!`) and slices of the lengths stated.

use std::arch::x86_64::*;

use half::bf16;

/// A weight element the AVX-512 path can load as 16 f32 lanes.
pub(super) trait W512: Copy {
    /// 16-element vectors per 64-byte cache line.
    const VECS_PER_LINE: usize;
    /// Loads 16 elements from `p` as f32.
    unsafe fn load16(p: *const Self) -> __m512;
    /// Loads the elements of `p` selected by `mask` (the others read as 0.0, and are not touched).
    unsafe fn load16_mask(p: *const Self, mask: __mmask16) -> __m512;
}

impl W512 for f32 {
    const VECS_PER_LINE: usize = 1;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load16(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load16_mask(p: *const f32, mask: __mmask16) -> __m512 {
        _mm512_maskz_loadu_ps(mask, p)
    }
}

impl W512 for bf16 {
    const VECS_PER_LINE: usize = 2;
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load16(p: *const bf16) -> __m512 {
        let h = _mm256_loadu_si256(p as *const __m256i);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn load16_mask(p: *const bf16, mask: __mmask16) -> __m512 {
        let h = _mm256_maskz_loadu_epi16(mask, p as *const i16);
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }
}

/// How far ahead of the loads the weight rows are prefetched (into L2). The hardware
/// prefetcher alone keeps too few lines in flight once the FMAs slow the loop down (m ≥ 4).
const PREFETCH_BYTES: usize = 2048;

/// One `MR × NR` tile: x rows at `x + i·k`, w rows at `w + r·lane·k`, outputs at
/// `y + i·ldy + r·lane`. `PF`: prefetch the w rows ahead (the first x tile over these rows).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn tile512<W: W512, const MR: usize, const NR: usize, const PF: bool>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    k: usize,
    ldy: usize,
    lane: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let mut p = 0;
    // One step: 16 columns.
    let step = |p: usize, acc: &mut [[__m512; NR]; MR]| {
        let mut wv = [_mm512_setzero_ps(); NR];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = W::load16(w.add(r * lane * k + p));
        }
        for (i, a) in acc.iter_mut().enumerate() {
            let xv = _mm512_loadu_ps(x.add(i * k + p));
            for r in 0..NR {
                a[r] = _mm512_fmadd_ps(xv, wv[r], a[r]);
            }
        }
    };
    // A cache line of each w row per iteration, prefetching one line per row.
    let line = 16 * W::VECS_PER_LINE;
    while p + line <= k {
        if PF {
            for r in 0..NR {
                let ahead = (w.add(r * lane * k + p) as *const i8).wrapping_add(PREFETCH_BYTES);
                _mm_prefetch::<_MM_HINT_T1>(ahead);
            }
        }
        for u in 0..W::VECS_PER_LINE {
            step(p + 16 * u, &mut acc);
        }
        p += line;
    }
    while p + 16 <= k {
        step(p, &mut acc);
        p += 16;
    }
    if p < k {
        let mask: __mmask16 = (1u16 << (k - p)) - 1;
        let mut wv = [_mm512_setzero_ps(); NR];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = W::load16_mask(w.add(r * lane * k + p), mask);
        }
        for (i, a) in acc.iter_mut().enumerate() {
            let xv = _mm512_maskz_loadu_ps(mask, x.add(i * k + p));
            for r in 0..NR {
                a[r] = _mm512_fmadd_ps(xv, wv[r], a[r]);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        for (r, v) in a.iter().enumerate() {
            *y.add(i * ldy + r * lane) = _mm512_reduce_add_ps(*v);
        }
    }
}

/// All x rows against `NR` w rows (`lane` rows apart): full `MR`-row tiles, then the rest.
/// The first tile prefetches the w rows ahead; the later ones find them in cache.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn rows512<W: W512, const NR: usize>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    lane: usize,
) {
    const MR: usize = 4;
    let mut i = 0;
    if m >= MR {
        tile512::<W, MR, NR, true>(x, w, y, k, ldy, lane);
        i = MR;
    }
    while i + MR <= m {
        tile512::<W, MR, NR, false>(x.add(i * k), w, y.add(i * ldy), k, ldy, lane);
        i += MR;
    }
    let (x, y) = (x.add(i * k), y.add(i * ldy));
    match (m - i, i == 0) {
        (0, _) => {}
        (1, true) => tile512::<W, 1, NR, true>(x, w, y, k, ldy, lane),
        (2, true) => tile512::<W, 2, NR, true>(x, w, y, k, ldy, lane),
        (_, true) => tile512::<W, 3, NR, true>(x, w, y, k, ldy, lane),
        (1, false) => tile512::<W, 1, NR, false>(x, w, y, k, ldy, lane),
        (2, false) => tile512::<W, 2, NR, false>(x, w, y, k, ldy, lane),
        (_, false) => tile512::<W, 3, NR, false>(x, w, y, k, ldy, lane),
    }
}

/// AVX-512 block kernel. Needs `x.len() ≥ m·k`, `w.len() == rows·k`, and `y` valid for writes
/// at `i·ldy + r` (`i < m`, `r < rows`), with no other thread touching those elements.
///
/// The rows are cut into `LANES` equal lanes and a tile takes the j-th row of each lane, so the
/// weight is read as a few long sequential streams (adjacent rows would make many 2.5 KB
/// streams, too short for the hardware prefetcher). Rows left over go one at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn block_avx512<W: W512>(
    x: &[f32],
    w: &[W],
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    rows: usize,
) {
    debug_assert!(x.len() >= m * k && w.len() == rows * k);
    const LANES: usize = 4;
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let lane = rows / LANES;
    for r in 0..lane {
        rows512::<W, LANES>(xp, wp.add(r * k), y.add(r), m, k, ldy, lane);
    }
    for r in LANES * lane..rows {
        rows512::<W, 1>(xp, wp.add(r * k), y.add(r), m, k, ldy, 0);
    }
}

/// A weight element the AVX2 path can load as 8 f32 lanes.
pub(super) trait W256: Copy {
    /// Loads 8 elements from `p` as f32.
    unsafe fn load8(p: *const Self) -> __m256;
    /// One element as f32 (the tail when k is not a multiple of 8).
    fn to_f32(self) -> f32;
}

impl W256 for f32 {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load8(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
}

impl W256 for bf16 {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load8(p: *const bf16) -> __m256 {
        let h = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
    }
    #[inline]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// One `MR × NR` tile on AVX2 (16 ymm registers: MR·NR accumulators + NR weights + 1 x);
/// layout and `PF` as [`tile512`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<W: W256, const MR: usize, const NR: usize, const PF: bool>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    k: usize,
    ldy: usize,
    lane: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let kv = k & !7;
    let mut p = 0;
    let per_line = 64 / std::mem::size_of::<W>();
    while p < kv {
        if PF && p % per_line == 0 {
            for r in 0..NR {
                let ahead = (w.add(r * lane * k + p) as *const i8).wrapping_add(PREFETCH_BYTES);
                _mm_prefetch::<_MM_HINT_T1>(ahead);
            }
        }
        let mut wv = [_mm256_setzero_ps(); NR];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = W::load8(w.add(r * lane * k + p));
        }
        for (i, a) in acc.iter_mut().enumerate() {
            let xv = _mm256_loadu_ps(x.add(i * k + p));
            for r in 0..NR {
                a[r] = _mm256_fmadd_ps(xv, wv[r], a[r]);
            }
        }
        p += 8;
    }
    for (i, a) in acc.iter().enumerate() {
        for (r, v) in a.iter().enumerate() {
            let mut s = hsum256(*v);
            for q in kv..k {
                s += *x.add(i * k + q) * (*w.add(r * lane * k + q)).to_f32();
            }
            *y.add(i * ldy + r * lane) = s;
        }
    }
}

/// All x rows against `NR` w rows on AVX2; as [`rows512`] with 2-row x tiles.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows256<W: W256, const NR: usize>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    lane: usize,
) {
    const MR: usize = 2;
    let mut i = 0;
    if m >= MR {
        tile256::<W, MR, NR, true>(x, w, y, k, ldy, lane);
        i = MR;
    }
    while i + MR <= m {
        tile256::<W, MR, NR, false>(x.add(i * k), w, y.add(i * ldy), k, ldy, lane);
        i += MR;
    }
    if i < m {
        let (x, y) = (x.add(i * k), y.add(i * ldy));
        if i == 0 {
            tile256::<W, 1, NR, true>(x, w, y, k, ldy, lane);
        } else {
            tile256::<W, 1, NR, false>(x, w, y, k, ldy, lane);
        }
    }
}

/// AVX2+FMA block kernel; same contract and lane layout as [`block_avx512`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn block_avx2<W: W256>(
    x: &[f32],
    w: &[W],
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
    rows: usize,
) {
    debug_assert!(x.len() >= m * k && w.len() == rows * k);
    const LANES: usize = 4;
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let lane = rows / LANES;
    for r in 0..lane {
        rows256::<W, LANES>(xp, wp.add(r * k), y.add(r), m, k, ldy, lane);
    }
    for r in LANES * lane..rows {
        rows256::<W, 1>(xp, wp.add(r * k), y.add(r), m, k, ldy, 0);
    }
}
