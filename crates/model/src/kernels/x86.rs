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
//! bf16 → f32 is exact: zero-extend the 16 bits to 32 and shift left 16. x is never narrowed.
//!
//! Safety: every `unsafe fn` here needs the CPU features named in its `target_feature`
//! (the dispatcher checks them with `is_x86_feature_detected!`) and slices of the lengths stated.

use std::arch::x86_64::*;

use half::bf16;

/// A weight element the AVX-512 path can load as 16 f32 lanes.
pub(super) trait W512: Copy {
    /// Loads 16 elements from `p` as f32.
    unsafe fn load16(p: *const Self) -> __m512;
    /// Loads the elements of `p` selected by `mask` (the others read as 0.0, and are not touched).
    unsafe fn load16_mask(p: *const Self, mask: __mmask16) -> __m512;
}

impl W512 for f32 {
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

/// One `MR × NR` tile: x rows at `x + i·k`, w rows at `w + r·k`, outputs at `y + i·ldy + r`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn tile512<W: W512, const MR: usize, const NR: usize>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    k: usize,
    ldy: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NR]; MR];
    let kv = k & !15;
    let mut p = 0;
    while p < kv {
        let mut wv = [_mm512_setzero_ps(); NR];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = W::load16(w.add(r * k + p));
        }
        for (i, a) in acc.iter_mut().enumerate() {
            let xv = _mm512_loadu_ps(x.add(i * k + p));
            for r in 0..NR {
                a[r] = _mm512_fmadd_ps(xv, wv[r], a[r]);
            }
        }
        p += 16;
    }
    if kv < k {
        let mask: __mmask16 = (1u16 << (k - kv)) - 1;
        let mut wv = [_mm512_setzero_ps(); NR];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = W::load16_mask(w.add(r * k + kv), mask);
        }
        for (i, a) in acc.iter_mut().enumerate() {
            let xv = _mm512_maskz_loadu_ps(mask, x.add(i * k + kv));
            for r in 0..NR {
                a[r] = _mm512_fmadd_ps(xv, wv[r], a[r]);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        for (r, v) in a.iter().enumerate() {
            *y.add(i * ldy + r) = _mm512_reduce_add_ps(*v);
        }
    }
}

/// All x rows against `NR` w rows: full `MR`-row tiles, then one tile for the remaining rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn rows512<W: W512, const NR: usize>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
) {
    const MR: usize = 4;
    let mut i = 0;
    while i + MR <= m {
        tile512::<W, MR, NR>(x.add(i * k), w, y.add(i * ldy), k, ldy);
        i += MR;
    }
    let (x, y) = (x.add(i * k), y.add(i * ldy));
    match m - i {
        0 => {}
        1 => tile512::<W, 1, NR>(x, w, y, k, ldy),
        2 => tile512::<W, 2, NR>(x, w, y, k, ldy),
        _ => tile512::<W, 3, NR>(x, w, y, k, ldy),
    }
}

/// AVX-512 block kernel. Needs `x.len() ≥ m·k`, `w.len() == rows·k`, and `y` valid for writes
/// at `i·ldy + r` (`i < m`, `r < rows`), with no other thread touching those elements.
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
    const NR: usize = 4;
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut r = 0;
    while r + NR <= rows {
        rows512::<W, NR>(xp, wp.add(r * k), y.add(r), m, k, ldy);
        r += NR;
    }
    while r < rows {
        rows512::<W, 1>(xp, wp.add(r * k), y.add(r), m, k, ldy);
        r += 1;
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

/// One `MR × NR` tile on AVX2 (16 ymm registers: MR·NR accumulators + NR weights + 1 x).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<W: W256, const MR: usize, const NR: usize>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    k: usize,
    ldy: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); NR]; MR];
    let kv = k & !7;
    let mut p = 0;
    while p < kv {
        let mut wv = [_mm256_setzero_ps(); NR];
        for (r, v) in wv.iter_mut().enumerate() {
            *v = W::load8(w.add(r * k + p));
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
                s += *x.add(i * k + q) * (*w.add(r * k + q)).to_f32();
            }
            *y.add(i * ldy + r) = s;
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows256<W: W256, const NR: usize>(
    x: *const f32,
    w: *const W,
    y: *mut f32,
    m: usize,
    k: usize,
    ldy: usize,
) {
    const MR: usize = 2;
    let mut i = 0;
    while i + MR <= m {
        tile256::<W, MR, NR>(x.add(i * k), w, y.add(i * ldy), k, ldy);
        i += MR;
    }
    if i < m {
        tile256::<W, 1, NR>(x.add(i * k), w, y.add(i * ldy), k, ldy);
    }
}

/// AVX2+FMA block kernel; same contract as [`block_avx512`].
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
    const NR: usize = 4;
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut r = 0;
    while r + NR <= rows {
        rows256::<W, NR>(xp, wp.add(r * k), y.add(r), m, k, ldy);
        r += NR;
    }
    while r < rows {
        rows256::<W, 1>(xp, wp.add(r * k), y.add(r), m, k, ldy);
        r += 1;
    }
}
