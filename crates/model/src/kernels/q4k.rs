//! q4k matmul for few rows (decode, batched decode) and many (prefill): `y = x · wᵀ` with f32
//! activations `x (m, k)` and a weight `w (n, k)` in ggml's Q4_K format: super-blocks of 256
//! values, 144 bytes each — f16 `d` and `dmin`, 12 bytes packing eight 6-bit scales `sc_j` and
//! eight 6-bit mins `m_j` (one per 32-value sub-block `j`), and 128 bytes of 4-bit quants `q`;
//! value = d·sc_j·q − dmin·m_j.
//!
//! Why our own: as for [`super::Q8_0Weight`]: candle's quantised matmul runs on its own spinning
//! thread pool (which fights rayon's pool for the cores) and its repacked x86 layout widens the
//! scales to f32 (a third more bytes to stream than ggml's). This kernel runs on rayon's global
//! pool, streams exactly the ggml bytes, and reads each weight byte once per call for up to
//! [`MAX_MR`] rows (beyond that a tile is re-read from cache, not DRAM).
//!
//! Layout ([`Q4KWeight`]), built once at load: the rows are cut into tiles of 16 rows (the last
//! one padded with zero rows), each tile one contiguous, 64-byte aligned run of super-blocks of
//! 36 cache lines (2304 bytes, the 16 ggml blocks' bytes reordered, so the size is ggml's):
//! * lines `8c + g` (c < 4, g < 8): for each of the 16 rows, ggml's quant bytes `32c + 4g..+4`.
//!   Their low nibbles are the values at columns `64c + 4g..+4` (sub-block `2c`), their high
//!   nibbles those at `64c + 32 + 4g..+4` (sub-block `2c + 1`). `and 0x0F` and `shift, and`
//!   give two u8 vectors (16 rows × 4 values), each one `vpdpbusd` against 4 broadcast x values
//!   into 16 per-row i32 sums — no horizontal reductions, no offset (nibbles are unsigned).
//! * lines 32, 33, 34: the row's packed scale bytes `0..4`, `4..8`, `8..12` (one u32 per row), so
//!   ggml's own bit tricks unpack all 16 rows' scales and mins at once, in 32-bit lanes.
//! * line 35: the 16 rows' `d` (f16), then their `dmin`.
//!
//! Per super-block and row the kernel forms `Σ_j sc_j·Σ_{i∈j} q_i·xq_i` in i32 (exact: at most
//! 8·63·32·15·127 < 2³¹) and the mins term `Σ_j m_j·bsum_j` (`bsum_j` = Σ of x's quants over
//! sub-block j, an x-only i16 computed with the quantisation) with `vpdpwssd`, then scales both
//! in f32: `y += d·dx·Σsc − dmin·dx·Σm`.
//!
//! Activations are quantised per row and 256-block (as ggml's Q8_K, so one i32 sum per
//! super-block): `dx = amax/127`, `xq = round(x/dx)` (ties to even), `|x − dx·xq| ≤ dx/2`. The
//! mins term uses the quantised sums too, so the error is exactly Σ w_i·(dx·xq_i − x_i) with `w`
//! the dequantised weight: an output differs from the exact product of the dequantised weight and
//! x by at most `Σ_blocks (amax_b/254)·Σ_{i∈b}|w_i|`, plus f32 rounding of the two scaled terms
//! (relative to `Σ_b amax_b·Σ_{i∈b}(d·sc·q_i + dmin·m)`, as they may cancel). This is candle's
//! error too (its Q8_K step is also amax/127). Per-32 x blocks would tighten `amax_b` for rows
//! with outliers, at three or four f32 ops per sub-block and x row instead of two integer ops
//! (not measured; replacing the two by two f32 ops cost nothing at m = 8, bound by `vpdpbusd`).
//!
//! Dispatch at run time: AVX-512 VNNI (F+BW+VNNI), else AVX2 (+FMA, F16C), else portable Rust.
//! `NANOCHAT_KERNEL` (see [`super::kernel_path`]) picks slower paths: `avx2` or `portable`.

use half::f16;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::q4k_x86;
use super::quant_tiles::{check_lengths, run_tiles, Line, QuantPath, MAX_MR};
use super::{KernelError, OutPtr};

/// Values per Q4_K super-block.
pub const QK: usize = 256;
/// Bytes per ggml Q4_K block: d, dmin (f16), 12 scale bytes, 128 quant bytes.
const GGML_BLOCK_BYTES: usize = 144;
/// Weight rows per tile.
pub(super) const TILE_ROWS: usize = 16;
/// Cache lines per super-block in a tile: 32 quant lines, 3 scale lines, 1 line of d and dmin.
pub(super) const SB_LINES: usize = 36;
/// Bytes per super-block in a tile.
pub(super) const SB_BYTES: usize = SB_LINES * 64;
/// Line of the first packed-scale word (then the second, third); line of d / dmin.
pub(super) const SCALE_LINE: usize = 32;
pub(super) const D_LINE: usize = 35;

/// A Q4_K weight `(n, k)` in the tiled layout described at the top of this file.
#[derive(Clone)]
pub struct Q4KWeight {
    n: usize,
    k: usize,
    /// Super-blocks per row: `k / 256`.
    sbs: usize,
    /// (ceil(n / 16) tiles, sbs, 36 lines).
    lines: Vec<Line>,
}

/// A [`KernelError`] for shape `(m, k, n)`.
fn error(
    arg: &'static str,
    got: usize,
    expected: usize,
    (m, k, n): (usize, usize, usize),
) -> KernelError {
    KernelError {
        arg,
        got,
        expected,
        m,
        k,
        n,
    }
}

/// Where byte `i` of a row's ggml block lives in its tile's super-block, for lane `lane`:
/// (line, byte within the line).
fn place(i: usize, lane: usize) -> (usize, usize) {
    match i {
        0..2 => (D_LINE, lane * 2 + i),
        2..4 => (D_LINE, 32 + lane * 2 + i - 2),
        4..16 => (SCALE_LINE + (i - 4) / 4, lane * 4 + (i - 4) % 4),
        _ => ((i - 16) / 4, lane * 4 + (i - 16) % 4),
    }
}

impl Q4KWeight {
    /// From ggml Q4_K bytes of an `(n, k)` tensor (row-major blocks); `k` a multiple of 256.
    pub fn from_ggml(bytes: &[u8], n: usize, k: usize) -> Result<Self, KernelError> {
        let err = |arg, got, expected| error(arg, got, expected, (0, k, n));
        if !k.is_multiple_of(QK) {
            return Err(err("k (a multiple of 256)", k, k.next_multiple_of(QK)));
        }
        let sbs = k / QK;
        let expected = n
            .checked_mul(sbs)
            .and_then(|b| b.checked_mul(GGML_BLOCK_BYTES))
            .ok_or_else(|| err("shape", usize::MAX, usize::MAX))?;
        if bytes.len() != expected {
            return Err(err("q4k bytes", bytes.len(), expected));
        }
        let tile_lines = sbs * SB_LINES;
        let mut lines = vec![Line([0; 64]); n.div_ceil(TILE_ROWS) * tile_lines];
        let row_bytes = sbs * GGML_BLOCK_BYTES;
        let fill = |(t, tile): (usize, &mut [Line])| {
            for lane in 0..TILE_ROWS.min(n - t * TILE_ROWS) {
                let row = &bytes[(t * TILE_ROWS + lane) * row_bytes..][..row_bytes];
                for (b, block) in row.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
                    let sb = &mut tile[b * SB_LINES..][..SB_LINES];
                    for (i, &v) in block.iter().enumerate() {
                        let (l, o) = place(i, lane);
                        sb[l].0[o] = v;
                    }
                }
            }
        };
        if tile_lines > 0 {
            lines.par_chunks_mut(tile_lines).enumerate().for_each(fill);
        }
        Ok(Self { n, k, sbs, lines })
    }

    /// The ggml Q4_K bytes (row-major blocks) this weight was built from.
    pub fn to_ggml(&self) -> Vec<u8> {
        let row_bytes = self.sbs * GGML_BLOCK_BYTES;
        let mut bytes = vec![0u8; self.n * row_bytes];
        for (r, row) in bytes.chunks_exact_mut(row_bytes.max(1)).enumerate() {
            let (tile, lane) = (self.tile(r / TILE_ROWS), r % TILE_ROWS);
            for (b, block) in row.chunks_exact_mut(GGML_BLOCK_BYTES).enumerate() {
                let sb = &tile[b * SB_LINES..][..SB_LINES];
                for (i, v) in block.iter_mut().enumerate() {
                    let (l, o) = place(i, lane);
                    *v = sb[l].0[o];
                }
            }
        }
        bytes
    }

    /// Output rows (the weight's first dimension).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input width (the weight's second dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held (and read by one matmul call): ggml's size, rounded up to whole tiles.
    pub fn size_in_bytes(&self) -> usize {
        self.lines.len() * 64
    }

    fn tile_lines(&self) -> usize {
        self.sbs * SB_LINES
    }

    fn tile(&self, t: usize) -> &[Line] {
        &self.lines[t * self.tile_lines()..][..self.tile_lines()]
    }

    /// The weights stacked along the rows; all must have the same `k`.
    pub fn stack(parts: &[&Q4KWeight]) -> Result<Self, KernelError> {
        let k = parts.first().map_or(0, |p| p.k);
        let n: usize = parts.iter().map(|p| p.n).sum();
        if let Some(p) = parts.iter().find(|p| p.k != k) {
            return Err(error("k of a stacked part", p.k, k, (0, k, n)));
        }
        let last = parts.len().saturating_sub(1);
        if parts[..last].iter().all(|p| p.n % TILE_ROWS == 0) {
            // Whole tiles: concatenate them.
            let mut lines = Vec::with_capacity(parts.iter().map(|p| p.lines.len()).sum());
            for p in parts {
                lines.extend_from_slice(&p.lines);
            }
            return Ok(Self {
                n,
                k,
                sbs: k / QK,
                lines,
            });
        }
        let mut bytes = Vec::new();
        for p in parts {
            bytes.extend(p.to_ggml());
        }
        Self::from_ggml(&bytes, n, k)
    }

    /// Rows `start..start + len` as a weight of their own.
    pub fn rows(&self, start: usize, len: usize) -> Result<Self, KernelError> {
        let end = start.checked_add(len).filter(|&e| e <= self.n);
        let Some(end) = end else {
            let got = start.saturating_add(len);
            return Err(error("rows end", got, self.n, (0, self.k, self.n)));
        };
        if start.is_multiple_of(TILE_ROWS) && (len.is_multiple_of(TILE_ROWS) || end == self.n) {
            let t0 = start / TILE_ROWS * self.tile_lines();
            let t1 = end.div_ceil(TILE_ROWS) * self.tile_lines();
            return Ok(Self {
                n: len,
                k: self.k,
                sbs: self.sbs,
                lines: self.lines[t0..t1].to_vec(),
            });
        }
        let row_bytes = self.sbs * GGML_BLOCK_BYTES;
        let bytes = self.to_ggml();
        Self::from_ggml(&bytes[start * row_bytes..end * row_bytes], len, self.k)
    }

    /// y (m, n) = x (m, k) · wᵀ, all f32.
    pub fn matmul(&self, x: &[f32], y: &mut [f32], m: usize) -> Result<(), KernelError> {
        self.matmul_on(QuantPath::detect(), x, y, m)
    }

    /// As [`Self::matmul`] on the named path (one of [`q4k_paths`]); an unknown or unsupported
    /// name runs the detected path. For benchmarks and tests.
    pub fn matmul_path(
        &self,
        path: &str,
        x: &[f32],
        y: &mut [f32],
        m: usize,
    ) -> Result<(), KernelError> {
        self.matmul_on(QuantPath::named(path), x, y, m)
    }

    fn matmul_on(
        &self,
        path: QuantPath,
        x: &[f32],
        y: &mut [f32],
        m: usize,
    ) -> Result<(), KernelError> {
        let (k, n) = (self.k, self.n);
        check_lengths(x.len(), y.len(), (m, k, n))?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let xq = QuantX::new(path, x, m, k);
        let out = OutPtr(y.as_mut_ptr());
        let run = |t0: usize, t1: usize| {
            for t in t0..t1 {
                let cols = TILE_ROWS.min(n - t * TILE_ROWS);
                let tile = self.tile(t);
                let mut i0 = 0;
                while i0 < m {
                    let mr = path.max_mr().min(m - i0);
                    // SAFETY: the tile holds `sbs` super-blocks; xq holds rows i0..i0 + mr;
                    // output (i, t·16 + c) for i < m, c < cols lies in y and only this tile
                    // writes it; the path is supported (matmul_path and detect check).
                    unsafe {
                        tile_kernel(
                            path,
                            tile,
                            self.sbs,
                            &xq,
                            i0,
                            mr,
                            out.at(i0 * n + t * TILE_ROWS),
                            n,
                            cols,
                        )
                    };
                    i0 += mr;
                }
            }
        };
        run_tiles(n.div_ceil(TILE_ROWS), self.size_in_bytes(), m, run);
        Ok(())
    }
}

/// x quantised per row and 256-block.
pub(super) struct QuantX {
    /// (m, k) i8 values.
    q: Vec<i8>,
    /// (m, k/256) scales dx.
    d: Vec<f32>,
    /// (m, k/256, 4) sums of q over the 32-blocks j, as i16 pairs: (b0, b2), (b1, b3), (b4, b6),
    /// (b5, b7) (low half first), matching the kernels' unpacking of the mins.
    bsums: Vec<u32>,
    k: usize,
}

impl QuantX {
    fn new(path: QuantPath, x: &[f32], m: usize, k: usize) -> Self {
        let sbs = k / QK;
        let mut xq = QuantX {
            q: vec![0; m * k],
            d: vec![0.0; m * sbs],
            bsums: vec![0; m * sbs * 4],
            k,
        };
        if k == 0 {
            return xq;
        }
        let rows =
            xq.q.chunks_exact_mut(k)
                .zip(xq.d.chunks_exact_mut(sbs))
                .zip(xq.bsums.chunks_exact_mut(sbs * 4))
                .zip(x.chunks_exact(k));
        let quantise = |(((q, d), bsums), x): XRow| {
            #[cfg(target_arch = "x86_64")]
            if path == QuantPath::Vnni512 {
                // SAFETY: the path is only selected where the CPU has AVX-512 F+BW.
                return unsafe { quantise_row_avx512(x, q, d, bsums) };
            }
            let _ = path;
            quantise_row(x, q, d, bsums)
        };
        if m * k >= 1 << 16 {
            rows.par_bridge().for_each(quantise);
        } else {
            rows.for_each(quantise);
        }
        xq
    }
}

/// One row of [`QuantX`] (q, d, bsums) with its row of x, as zipped in [`QuantX::new`].
type XRow<'a> = (((&'a mut [i8], &'a mut [f32]), &'a mut [u32]), &'a [f32]);

/// [`quantise_row`] compiled for AVX-512 (the generic one only gets SSE2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantise_row_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], bsums: &mut [u32]) {
    quantise_row(x, q, d, bsums)
}

/// One row of x (k) into 256-blocks: q (k), d (one per block) and bsums (4 per block).
#[inline(always)]
fn quantise_row(x: &[f32], q: &mut [i8], d: &mut [f32], bsums: &mut [u32]) {
    // Adding 1.5·2²³ rounds an f32 of magnitude < 2²² to an integer (ties to even) held in the
    // low mantissa bits: vectorises without SSE4.1's round instruction.
    const MAGIC: f32 = 12_582_912.0;
    for (((xb, qb), db), sb) in x
        .chunks_exact(QK)
        .zip(q.chunks_exact_mut(QK))
        .zip(d)
        .zip(bsums.chunks_exact_mut(4))
    {
        let amax = xb
            .iter()
            .fold(0f32, |a, v| if v.abs() > a { v.abs() } else { a });
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sums = [0i32; 8];
        for ((x32, q32), s) in xb
            .chunks_exact(32)
            .zip(qb.chunks_exact_mut(32))
            .zip(&mut sums)
        {
            for (qv, &xv) in q32.iter_mut().zip(x32) {
                let v = ((xv * inv + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32) as i8;
                *qv = v;
                *s += v as i32;
            }
        }
        *db = scale;
        // |sum| ≤ 32·127 fits an i16.
        let pair = |a: i32, b: i32| (a as u16 as u32) | ((b as u16 as u32) << 16);
        sb.copy_from_slice(&[
            pair(sums[0], sums[2]),
            pair(sums[1], sums[3]),
            pair(sums[4], sums[6]),
            pair(sums[5], sums[7]),
        ]);
    }
}

/// Pointers into [`QuantX`] at a first row.
#[derive(Clone, Copy)]
pub(super) struct XRows {
    /// Quants, row stride `k`.
    pub(super) q: *const i8,
    /// Scales, row stride `k / 256`.
    pub(super) d: *const f32,
    /// Packed sub-block sums, row stride `4·k/256`.
    pub(super) bsums: *const u32,
    pub(super) k: usize,
}

/// Multiplies one tile with x rows `i0..i0 + mr`, writing y (mr, cols) at `y` (row stride ldy).
///
/// # Safety
/// `tile` holds `sbs` super-blocks; `xq` holds the rows; `y` is valid for the writes; the path
/// is supported by this CPU; `mr ≤ path.max_mr()`, `cols ≤ 16`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel(
    path: QuantPath,
    tile: &[Line],
    sbs: usize,
    xq: &QuantX,
    i0: usize,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let x = XRows {
        q: xq.q.as_ptr().add(i0 * xq.k),
        d: xq.d.as_ptr().add(i0 * sbs),
        bsums: xq.bsums.as_ptr().add(i0 * sbs * 4),
        k: xq.k,
    };
    let t = tile.as_ptr() as *const u8;
    match path {
        #[cfg(target_arch = "x86_64")]
        QuantPath::Vnni512 => q4k_x86::tile_vnni_dispatch(t, sbs, x, mr, y, ldy, cols),
        #[cfg(target_arch = "x86_64")]
        QuantPath::Avx2 => q4k_x86::tile_avx2_dispatch(t, sbs, x, mr, y, ldy, cols),
        _ => tile_portable(t, sbs, x, mr, y, ldy, cols),
    }
}

/// Row `lane`'s (sc_j, m_j) for the 8 sub-blocks from a super-block's three scale lines.
pub(super) fn scales_mins(sb: &[u8], lane: usize) -> ([i32; 8], [i32; 8]) {
    let word = |i: usize| {
        let o = (SCALE_LINE + i) * 64 + lane * 4;
        u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]])
    };
    let (w0, w1, w2) = (word(0), word(1), word(2));
    // ggml's unpacking, four sub-blocks per u32.
    let s03 = w0 & 0x3F3F_3F3F;
    let m03 = w1 & 0x3F3F_3F3F;
    let s47 = (w2 & 0x0F0F_0F0F) | ((w0 >> 2) & 0x3030_3030);
    let m47 = ((w2 >> 4) & 0x0F0F_0F0F) | ((w1 >> 2) & 0x3030_3030);
    let byte = |w: u32, j: usize| ((w >> (8 * j)) & 0xFF) as i32;
    let mut sc = [0; 8];
    let mut mn = [0; 8];
    for j in 0..4 {
        sc[j] = byte(s03, j);
        sc[j + 4] = byte(s47, j);
        mn[j] = byte(m03, j);
        mn[j + 4] = byte(m47, j);
    }
    (sc, mn)
}

/// Portable tile kernel (`mr ≤ MAX_MR`). Safety as [`tile_kernel`]. The inner loops run over
/// the 16 rows of a line, which the compiler vectorises.
unsafe fn tile_portable(
    tile: *const u8,
    sbs: usize,
    x: XRows,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let tile = std::slice::from_raw_parts(tile, sbs * SB_BYTES);
    let mut res = [[0f32; TILE_ROWS]; MAX_MR];
    for b in 0..sbs {
        let sb = &tile[b * SB_BYTES..][..SB_BYTES];
        let (mut sc, mut mn) = ([[0i32; TILE_ROWS]; 8], [[0i32; TILE_ROWS]; 8]);
        let (mut d, mut dmin) = ([0f32; TILE_ROWS], [0f32; TILE_ROWS]);
        for lane in 0..TILE_ROWS {
            let (s, m) = scales_mins(sb, lane);
            for j in 0..8 {
                (sc[j][lane], mn[j][lane]) = (s[j], m[j]);
            }
            let o = D_LINE * 64 + lane * 2;
            d[lane] = f16::from_le_bytes([sb[o], sb[o + 1]]).to_f32();
            dmin[lane] = f16::from_le_bytes([sb[o + 32], sb[o + 33]]).to_f32();
        }
        for (r, res) in res.iter_mut().enumerate().take(mr) {
            let xb = std::slice::from_raw_parts(x.q.add(r * x.k + b * QK), QK);
            let (mut tot, mut mtot) = ([0i32; TILE_ROWS], [0i32; TILE_ROWS]);
            for c in 0..4 {
                let (mut lo, mut hi) = ([0i32; TILE_ROWS], [0i32; TILE_ROWS]);
                for g in 0..8 {
                    let line = &sb[(8 * c + g) * 64..][..64];
                    let xl: [i8; 4] = xb[64 * c + 4 * g..][..4].try_into().unwrap_or_default();
                    let xh: [i8; 4] = xb[64 * c + 32 + 4 * g..][..4]
                        .try_into()
                        .unwrap_or_default();
                    let (xl, xh) = (xl.map(i16::from), xh.map(i16::from));
                    for (lane, w) in line.chunks_exact(4).enumerate() {
                        // Four products of ≤ 15·127 each fit an i16.
                        let (mut l, mut h) = (0i16, 0i16);
                        for i in 0..4 {
                            l += (w[i] & 0x0F) as i16 * xl[i];
                            h += (w[i] >> 4) as i16 * xh[i];
                        }
                        lo[lane] += l as i32;
                        hi[lane] += h as i32;
                    }
                }
                for lane in 0..TILE_ROWS {
                    tot[lane] += sc[2 * c][lane] * lo[lane] + sc[2 * c + 1][lane] * hi[lane];
                }
            }
            for (j, mj) in mn.iter().enumerate() {
                let bsum: i32 = xb[j * 32..][..32].iter().map(|&v| v as i32).sum();
                for lane in 0..TILE_ROWS {
                    mtot[lane] += mj[lane] * bsum;
                }
            }
            let dx = *x.d.add(r * sbs + b);
            for lane in 0..TILE_ROWS {
                res[lane] +=
                    tot[lane] as f32 * (d[lane] * dx) - mtot[lane] as f32 * (dmin[lane] * dx);
            }
        }
    }
    for (r, row) in res.iter().take(mr).enumerate() {
        for (c, v) in row.iter().take(cols).enumerate() {
            *y.add(r * ldy + c) = *v;
        }
    }
}

/// Which q4k path runs here: "avx512vnni", "avx2" or "portable".
pub fn q4k_path() -> &'static str {
    QuantPath::detect().name()
}

/// The q4k paths this CPU supports, fastest first.
pub fn q4k_paths() -> Vec<&'static str> {
    QuantPath::supported_names()
}

#[cfg(test)]
#[path = "q4k_tests.rs"]
mod tests;
