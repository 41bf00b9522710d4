//! x86 tile kernels for [`super::q8_0`]: one 16-row weight tile (layout described there) against
//! up to `MR` quantised x rows, all accumulators in registers.
//!
//! * AVX-512 VNNI: a quant line (16 rows × 4 values, stored `q + 128` as u8) goes into one
//!   `vpdpbusd` per x row with those 4 x values broadcast (signed), giving 16 per-row partial sums.
//!   The accumulator starts at −128·Σxq of the block, which removes the +128. The two blocks of a
//!   pair use separate accumulators, so even one x row has two independent dependency chains.
//! * AVX2: `vpmaddubsw` would saturate on u8 values up to 255, so the quants are flipped back to
//!   i8 and multiplied as |w| (u8 ≤ 128) by sign(w)·x (ggml's trick; pairs sum to ≤ 2·128·127,
//!   no saturation); no correction term is needed. Rows 0–7 and 8–15 are the two 256-bit halves.

use std::arch::x86_64::*;

use super::q8_0::{XRows, PAIR_BYTES, PAIR_LINES};

/// Calls [`tile_vnni`] for `mr` rows (1..=8).
///
/// # Safety
/// As `q8_0::tile_kernel`; the CPU has AVX-512 F+BW+VNNI.
pub(super) unsafe fn tile_vnni_dispatch(
    tile: *const u8,
    pairs: usize,
    x: XRows,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    match mr {
        1 => tile_vnni::<1>(tile, pairs, x, y, ldy, cols),
        2 => tile_vnni::<2>(tile, pairs, x, y, ldy, cols),
        3 => tile_vnni::<3>(tile, pairs, x, y, ldy, cols),
        4 => tile_vnni::<4>(tile, pairs, x, y, ldy, cols),
        5 => tile_vnni::<5>(tile, pairs, x, y, ldy, cols),
        6 => tile_vnni::<6>(tile, pairs, x, y, ldy, cols),
        7 => tile_vnni::<7>(tile, pairs, x, y, ldy, cols),
        _ => tile_vnni::<8>(tile, pairs, x, y, ldy, cols),
    }
}

/// Pairs ahead (12 × 1088 B ≈ 13 KB) to prefetch into L2, at every row count. The hardware
/// prefetchers alone left DRAM reads at ≈ 20 GB/s for m = 1 and ≈ 12 GB/s for m = 8 (where
/// compute and memory barely overlapped); prefetching 12 pairs ahead measured ≈ 28–35 GB/s for
/// both (4 pairs into L1 gained little, 24 pairs no more than 12).
const PREFETCH_PAIRS: usize = 12;

/// Broadcasts the 4 bytes at `p` to every 32-bit lane.
#[inline(always)]
unsafe fn bcast4_512(p: *const i8) -> __m512i {
    _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_vnni<const MR: usize>(
    tile: *const u8,
    pairs: usize,
    x: XRows,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let mut res = [_mm512_setzero_ps(); MR];
    for p in 0..pairs {
        let base = tile.add(p * PAIR_BYTES);
        // Past the tile's end this prefetches the next tile (or nothing: prefetches never fault).
        let ahead = base.wrapping_add(PREFETCH_PAIRS * PAIR_BYTES);
        for l in 0..PAIR_LINES {
            _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(l * 64) as *const i8);
        }
        let mut acc0 = [_mm512_setzero_si512(); MR];
        let mut acc1 = [_mm512_setzero_si512(); MR];
        for r in 0..MR {
            acc0[r] = _mm512_set1_epi32(*x.corr.add(r * x.b_stride + 2 * p));
            acc1[r] = _mm512_set1_epi32(*x.corr.add(r * x.b_stride + 2 * p + 1));
        }
        for g in 0..8 {
            let w0 = _mm512_load_si512(base.add(g * 64) as *const _);
            let w1 = _mm512_load_si512(base.add(512 + g * 64) as *const _);
            for r in 0..MR {
                let xr = x.q.add(r * x.q_stride + p * 64 + g * 4);
                acc0[r] = _mm512_dpbusd_epi32(acc0[r], w0, bcast4_512(xr));
                acc1[r] = _mm512_dpbusd_epi32(acc1[r], w1, bcast4_512(xr.add(32)));
            }
        }
        let dw0 = _mm512_cvtph_ps(_mm256_load_si256(base.add(1024) as *const __m256i));
        let dw1 = _mm512_cvtph_ps(_mm256_load_si256(base.add(1056) as *const __m256i));
        for r in 0..MR {
            let d = x.d.add(r * x.b_stride + 2 * p);
            let s0 = _mm512_mul_ps(dw0, _mm512_set1_ps(*d));
            let s1 = _mm512_mul_ps(dw1, _mm512_set1_ps(*d.add(1)));
            res[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc0[r]), s0, res[r]);
            res[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc1[r]), s1, res[r]);
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
/// As `q8_0::tile_kernel`; the CPU has AVX2, FMA and F16C.
pub(super) unsafe fn tile_avx2_dispatch(
    tile: *const u8,
    pairs: usize,
    x: XRows,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    match mr {
        1 => tile_avx2::<1>(tile, pairs, x, y, ldy, cols),
        _ => tile_avx2::<2>(tile, pairs, x, y, ldy, cols),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // the indices name rows and halves of the tile
unsafe fn tile_avx2<const MR: usize>(
    tile: *const u8,
    pairs: usize,
    x: XRows,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(-128);
    let mut res = [[_mm256_setzero_ps(); 2]; MR];
    for b in 0..2 * pairs {
        let base = tile.add(b / 2 * PAIR_BYTES + b % 2 * 512);
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        for g in 0..8 {
            for h in 0..2 {
                let w = _mm256_load_si256(base.add(g * 64 + h * 32) as *const __m256i);
                let w = _mm256_xor_si256(w, flip);
                let aw = _mm256_abs_epi8(w);
                for r in 0..MR {
                    let xr = x.q.add(r * x.q_stride + b * 32 + g * 4);
                    let xv = _mm256_set1_epi32(std::ptr::read_unaligned(xr as *const i32));
                    let prod = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, w));
                    acc[r][h] = _mm256_add_epi32(acc[r][h], _mm256_madd_epi16(prod, ones));
                }
            }
        }
        let scales = tile.add(b / 2 * PAIR_BYTES + 1024 + b % 2 * 32);
        for h in 0..2 {
            let dw = _mm256_cvtph_ps(_mm_load_si128(scales.add(h * 16) as *const __m128i));
            for r in 0..MR {
                let s = _mm256_mul_ps(dw, _mm256_set1_ps(*x.d.add(r * x.b_stride + b)));
                res[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][h]), s, res[r][h]);
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
