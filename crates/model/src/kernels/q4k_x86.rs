//! x86 tile kernels for [`super::q4k`]: one 16-row weight tile (layout described there) against
//! up to `MR` quantised x rows, all accumulators in registers.
//!
//! * AVX-512 VNNI: a quant line (16 rows × 4 bytes) gives two u8 vectors — low nibbles (4 values
//!   of sub-block 2c) and high nibbles (4 values of sub-block 2c + 1) — each going into one
//!   `vpdpbusd` per x row with the matching 4 x quants broadcast, so each line feeds two
//!   independent accumulators. After the 8 lines of a chunk the two sub-block sums are scaled by
//!   their 6-bit scales (`vpmulld`) into the super-block's i32 total; the mins term is four
//!   `vpdpwssd` of the 16 rows' mins (i16 pairs) with the x sub-block sums. The scale and min
//!   unpacking is ggml's, on 16 rows at once, once per super-block whatever `MR` is. From two
//!   x rows up the tile is prefetched a few super-blocks ahead ([`PREFETCH_SBS`]).
//! * AVX2 (no VNNI): `vpmaddubsw` (u8 nibble × i8 x, pairs ≤ 2·15·127, no saturation) summed in
//!   i16 over a sub-block's 8 lines (≤ 30480), then one `vpmaddwd` with the scale in both i16
//!   halves both widens the pairs and applies the scale. Rows 0–7 and 8–15 are the two 256-bit
//!   halves of a line, done one after the other.

use std::arch::x86_64::*;

use super::q4k::{XRows, D_LINE, QK, SB_BYTES, SB_LINES, SCALE_LINE};

/// Calls [`tile_vnni`] for `mr` rows (1..=8).
///
/// # Safety
/// As `q4k::tile_kernel`; the CPU has AVX-512 F+BW+VNNI.
pub(super) unsafe fn tile_vnni_dispatch(
    tile: *const u8,
    sbs: usize,
    x: XRows,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    match mr {
        1 => tile_vnni::<1>(tile, sbs, x, y, ldy, cols),
        2 => tile_vnni::<2>(tile, sbs, x, y, ldy, cols),
        3 => tile_vnni::<3>(tile, sbs, x, y, ldy, cols),
        4 => tile_vnni::<4>(tile, sbs, x, y, ldy, cols),
        5 => tile_vnni::<5>(tile, sbs, x, y, ldy, cols),
        6 => tile_vnni::<6>(tile, sbs, x, y, ldy, cols),
        7 => tile_vnni::<7>(tile, sbs, x, y, ldy, cols),
        _ => tile_vnni::<8>(tile, sbs, x, y, ldy, cols),
    }
}

/// Super-blocks ahead (4 × 2304 B ≈ 9 KB) to prefetch into L2, one line per line processed,
/// for two x rows or more. Measured single-threaded from DRAM (Zen 4, d20 qkv shape): without
/// software prefetch m = 1 streams ≈ 25 GB/s (the hardware prefetchers keep up, and adding
/// prefetches *lowered* it to ≈ 18), but m = 8 only ≈ 8 (compute and memory barely overlap);
/// prefetching 2 or 5 super-blocks ahead raised m = 2..8 by 10–50% (line by line, interleaved
/// with the loads, slightly better than 36 at once; T0 instead of T1 was worse).
const PREFETCH_SBS: usize = 4;

/// Broadcasts the 4 bytes at `p` to every 32-bit lane.
#[inline(always)]
unsafe fn bcast4_512(p: *const i8) -> __m512i {
    _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// Broadcasts the 4 bytes at `p` to every 32-bit lane.
#[inline(always)]
unsafe fn bcast4_256(p: *const i8) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// The AVX-512 VNNI tile kernel for `MR` x rows.
///
/// # Safety
/// As [`tile_vnni_dispatch`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni<const MR: usize>(
    tile: *const u8,
    sbs: usize,
    x: XRows,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let nib = _mm512_set1_epi8(0x0F);
    let m6 = _mm512_set1_epi32(0x3F3F_3F3F);
    let m4 = _mm512_set1_epi32(0x0F0F_0F0F);
    let m2 = _mm512_set1_epi32(0x3030_3030);
    let low8 = _mm512_set1_epi32(0xFF);
    let low8x2 = _mm512_set1_epi32(0x00FF_00FF);
    let mut res = [_mm512_setzero_ps(); MR];
    for b in 0..sbs {
        let base = tile.add(b * SB_BYTES);
        // Past the tile's end this prefetches the next tile (or nothing: prefetches never fault).
        let ahead = base.wrapping_add(PREFETCH_SBS * SB_BYTES);
        let prefetch = |l: usize| {
            if MR > 1 {
                _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(l * 64) as *const i8);
            }
        };
        for l in SCALE_LINE..SB_LINES {
            prefetch(l);
        }
        let word = |i: usize| _mm512_load_si512(base.add((SCALE_LINE + i) * 64) as *const _);
        let (w0, w1, w2) = (word(0), word(1), word(2));
        // Bytes j of each lane: sc_j (s03) and sc_{4+j} (s47), ggml's unpacking.
        let s03 = _mm512_and_si512(w0, m6);
        let s47 = _mm512_or_si512(
            _mm512_and_si512(w2, m4),
            _mm512_and_si512(_mm512_srli_epi32::<2>(w0), m2),
        );
        let sc = [
            _mm512_and_si512(s03, low8),
            _mm512_and_si512(_mm512_srli_epi32::<8>(s03), low8),
            _mm512_and_si512(_mm512_srli_epi32::<16>(s03), low8),
            _mm512_srli_epi32::<24>(s03),
            _mm512_and_si512(s47, low8),
            _mm512_and_si512(_mm512_srli_epi32::<8>(s47), low8),
            _mm512_and_si512(_mm512_srli_epi32::<16>(s47), low8),
            _mm512_srli_epi32::<24>(s47),
        ];
        let xb = x.q.add(b * QK);
        let mut tot = [_mm512_setzero_si512(); MR];
        for c in 0..4 {
            let mut lo = [_mm512_setzero_si512(); MR];
            let mut hi = [_mm512_setzero_si512(); MR];
            for g in 0..8 {
                prefetch(8 * c + g);
                let w = _mm512_load_si512(base.add((8 * c + g) * 64) as *const _);
                let wl = _mm512_and_si512(w, nib);
                let wh = _mm512_and_si512(_mm512_srli_epi16::<4>(w), nib);
                for r in 0..MR {
                    let xr = xb.add(r * x.k + 64 * c + 4 * g);
                    lo[r] = _mm512_dpbusd_epi32(lo[r], wl, bcast4_512(xr));
                    hi[r] = _mm512_dpbusd_epi32(hi[r], wh, bcast4_512(xr.add(32)));
                }
            }
            for r in 0..MR {
                let s = _mm512_add_epi32(
                    _mm512_mullo_epi32(lo[r], sc[2 * c]),
                    _mm512_mullo_epi32(hi[r], sc[2 * c + 1]),
                );
                tot[r] = _mm512_add_epi32(tot[r], s);
            }
        }
        // Mins as i16 pairs (m0, m2), (m1, m3), (m4, m6), (m5, m7), as QuantX pairs the sums.
        let m03 = _mm512_and_si512(w1, m6);
        let m47 = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi32::<4>(w2), m4),
            _mm512_and_si512(_mm512_srli_epi32::<2>(w1), m2),
        );
        let e = [
            _mm512_and_si512(m03, low8x2),
            _mm512_and_si512(_mm512_srli_epi32::<8>(m03), low8x2),
            _mm512_and_si512(m47, low8x2),
            _mm512_and_si512(_mm512_srli_epi32::<8>(m47), low8x2),
        ];
        let dd = _mm512_cvtph_ps(_mm256_load_si256(base.add(D_LINE * 64) as *const __m256i));
        let dm = _mm512_cvtph_ps(_mm256_load_si256(
            base.add(D_LINE * 64 + 32) as *const __m256i
        ));
        for r in 0..MR {
            let bs = x.bsums.add((r * sbs + b) * 4);
            let mut mt = _mm512_setzero_si512();
            for (p, ep) in e.iter().enumerate() {
                mt = _mm512_dpwssd_epi32(mt, *ep, _mm512_set1_epi32(*bs.add(p) as i32));
            }
            let dx = _mm512_set1_ps(*x.d.add(r * sbs + b));
            res[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot[r]), _mm512_mul_ps(dd, dx), res[r]);
            res[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mt), _mm512_mul_ps(dm, dx), res[r]);
        }
    }
    let mask: __mmask16 = if cols >= 16 {
        0xFFFF
    } else {
        (1u16 << cols) - 1
    };
    for (r, v) in res.iter().enumerate() {
        _mm512_mask_storeu_ps(y.add(r * ldy), mask, *v);
    }
}

/// Calls [`tile_avx2`] for `mr` rows (1..=2).
///
/// # Safety
/// As `q4k::tile_kernel`; the CPU has AVX2, FMA and F16C.
pub(super) unsafe fn tile_avx2_dispatch(
    tile: *const u8,
    sbs: usize,
    x: XRows,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    match mr {
        1 => tile_avx2::<1>(tile, sbs, x, y, ldy, cols),
        _ => tile_avx2::<2>(tile, sbs, x, y, ldy, cols),
    }
}

/// `(v >> 8j) & 0xFF` in each 32-bit lane, copied into both i16 halves (for `vpmaddwd`).
#[inline(always)]
unsafe fn byte_pair<const SHIFT: i32>(v: __m256i) -> __m256i {
    let b = _mm256_and_si256(_mm256_srli_epi32::<SHIFT>(v), _mm256_set1_epi32(0xFF));
    _mm256_or_si256(b, _mm256_slli_epi32::<16>(b))
}

/// The AVX2 tile kernel for `MR` x rows.
///
/// # Safety
/// As [`tile_avx2_dispatch`].
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // the indices name rows and halves of the tile
unsafe fn tile_avx2<const MR: usize>(
    tile: *const u8,
    sbs: usize,
    x: XRows,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let nib = _mm256_set1_epi8(0x0F);
    let m6 = _mm256_set1_epi32(0x3F3F_3F3F);
    let m4 = _mm256_set1_epi32(0x0F0F_0F0F);
    let m2 = _mm256_set1_epi32(0x3030_3030);
    let low8x2 = _mm256_set1_epi32(0x00FF_00FF);
    let mut res = [[_mm256_setzero_ps(); 2]; MR];
    for b in 0..sbs {
        let base = tile.add(b * SB_BYTES);
        let xb = x.q.add(b * QK);
        for h in 0..2 {
            let word =
                |i: usize| _mm256_load_si256(base.add((SCALE_LINE + i) * 64 + 32 * h) as *const _);
            let (w0, w1, w2) = (word(0), word(1), word(2));
            let s03 = _mm256_and_si256(w0, m6);
            let s47 = _mm256_or_si256(
                _mm256_and_si256(w2, m4),
                _mm256_and_si256(_mm256_srli_epi32::<2>(w0), m2),
            );
            let sc = [
                byte_pair::<0>(s03),
                byte_pair::<8>(s03),
                byte_pair::<16>(s03),
                byte_pair::<24>(s03),
                byte_pair::<0>(s47),
                byte_pair::<8>(s47),
                byte_pair::<16>(s47),
                byte_pair::<24>(s47),
            ];
            let mut tot = [_mm256_setzero_si256(); MR];
            for c in 0..4 {
                let mut lo = [_mm256_setzero_si256(); MR];
                let mut hi = [_mm256_setzero_si256(); MR];
                for g in 0..8 {
                    let w = _mm256_load_si256(base.add((8 * c + g) * 64 + 32 * h) as *const _);
                    let wl = _mm256_and_si256(w, nib);
                    let wh = _mm256_and_si256(_mm256_srli_epi16::<4>(w), nib);
                    for r in 0..MR {
                        let xr = xb.add(r * x.k + 64 * c + 4 * g);
                        lo[r] = _mm256_add_epi16(lo[r], _mm256_maddubs_epi16(wl, bcast4_256(xr)));
                        let xh = bcast4_256(xr.add(32));
                        hi[r] = _mm256_add_epi16(hi[r], _mm256_maddubs_epi16(wh, xh));
                    }
                }
                for r in 0..MR {
                    let s = _mm256_add_epi32(
                        _mm256_madd_epi16(lo[r], sc[2 * c]),
                        _mm256_madd_epi16(hi[r], sc[2 * c + 1]),
                    );
                    tot[r] = _mm256_add_epi32(tot[r], s);
                }
            }
            let m03 = _mm256_and_si256(w1, m6);
            let m47 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi32::<4>(w2), m4),
                _mm256_and_si256(_mm256_srli_epi32::<2>(w1), m2),
            );
            let e = [
                _mm256_and_si256(m03, low8x2),
                _mm256_and_si256(_mm256_srli_epi32::<8>(m03), low8x2),
                _mm256_and_si256(m47, low8x2),
                _mm256_and_si256(_mm256_srli_epi32::<8>(m47), low8x2),
            ];
            let dl = base.add(D_LINE * 64 + 16 * h);
            let dd = _mm256_cvtph_ps(_mm_load_si128(dl as *const __m128i));
            let dm = _mm256_cvtph_ps(_mm_load_si128(dl.add(32) as *const __m128i));
            for r in 0..MR {
                let bs = x.bsums.add((r * sbs + b) * 4);
                let mut mt = _mm256_setzero_si256();
                for (p, ep) in e.iter().enumerate() {
                    let bp = _mm256_set1_epi32(*bs.add(p) as i32);
                    mt = _mm256_add_epi32(mt, _mm256_madd_epi16(*ep, bp));
                }
                let dx = _mm256_set1_ps(*x.d.add(r * sbs + b));
                let t = _mm256_cvtepi32_ps(tot[r]);
                res[r][h] = _mm256_fmadd_ps(t, _mm256_mul_ps(dd, dx), res[r][h]);
                let t = _mm256_cvtepi32_ps(mt);
                res[r][h] = _mm256_fnmadd_ps(t, _mm256_mul_ps(dm, dx), res[r][h]);
            }
        }
    }
    for (r, halves) in res.iter().enumerate() {
        let out = y.add(r * ldy);
        if cols >= 16 {
            _mm256_storeu_ps(out, halves[0]);
            _mm256_storeu_ps(out.add(8), halves[1]);
        } else {
            let mut tmp = [0f32; 16];
            _mm256_storeu_ps(tmp.as_mut_ptr(), halves[0]);
            _mm256_storeu_ps(tmp.as_mut_ptr().add(8), halves[1]);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), out, cols);
        }
    }
}
