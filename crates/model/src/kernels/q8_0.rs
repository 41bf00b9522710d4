//! q8_0 matmul for few rows (decode, batched decode) and many (prefill): `y = x · wᵀ` with f32
//! activations `x (m, k)` and a weight `w (n, k)` in ggml's q8_0 format (blocks of 32 values:
//! an f16 scale `d` and 32 i8 `q`, value = d·q).
//!
//! Why our own: candle's quantised matmul runs on its own spinning thread pool, which fights
//! rayon's pool (used by everything else here) for the cores, and at `m > 4` it reads the weight
//! once per 4 rows. This kernel runs on rayon's global pool and reads each weight byte once per
//! call for up to 8 rows ([`super::quant_tiles::MAX_MR`]; beyond that a tile is re-read from
//! cache, not DRAM).
//!
//! Layout ([`Q8_0Weight`]), built once at load: the rows are cut into tiles of 16 rows (the last
//! one padded with zero rows), and each tile is stored as one contiguous, 64-byte aligned run of
//! *pairs* of 32-column blocks (an odd block count is padded with a zero block). A pair is 17
//! cache lines: for each of its two blocks 8 lines of quants, line `g` holding, for each of the
//! 16 rows, the 4 values `4g..4g+4` of the block; then one line with the 2 × 16 f16 scales. One
//! pass over a tile streams it sequentially, and one AVX-512 VNNI `vpdpbusd` multiplies a line
//! with 4 broadcast x values into 16 per-row sums — no horizontal reductions. The bytes are the
//! ggml bytes reordered (same size, 34 per 32 values), so the ggml blocks are rebuilt on demand
//! ([`Q8_0Weight::to_ggml`]) rather than kept.
//!
//! Quants are stored as `u8 = q + 128` (a relabelling, undone exactly) because `vpdpbusd`
//! multiplies unsigned by signed bytes: Σ(q+128)·xq = Σq·xq + 128·Σxq, and the correction
//! −128·Σxq is a property of x alone, computed once per call and used as the accumulator's
//! initial value. The AVX2 path (`vpmaddubsw`, which would saturate on u8 up to 255) flips the
//! bytes back to signed and uses ggml's sign trick instead.
//!
//! Activations are quantised per row and 32-block as ggml's q8_0 does: `dx = amax/127`,
//! `xq = round(x/dx)` (ties to even), so `|x − dx·xq| ≤ dx/2`. Integer dot products are exact;
//! an output is therefore off the exact product of the dequantised weight and x by at most
//! `Σ_blocks (amax_b/254)·Σ_{j∈b}|w_j|` plus f32 rounding of the per-block scaling and sum.
//!
//! Dispatch at run time: AVX-512 VNNI (F+BW+VNNI), else AVX2 (+FMA, F16C), else portable Rust.
//! `NANOCHAT_KERNEL` (see [`super::kernel_path`]) picks slower paths: `avx2` or `portable`.

use half::f16;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::q8_0_x86;
use super::quant_tiles::{check_lengths, run_tiles, Line, QuantPath};
use super::{KernelError, OutPtr};

/// Values per q8_0 block.
pub const BLOCK: usize = 32;
/// Bytes per ggml q8_0 block: f16 scale + 32 i8.
const GGML_BLOCK_BYTES: usize = 34;
/// Weight rows per tile.
pub(super) const TILE_ROWS: usize = 16;
/// Cache lines per pair of blocks in a tile: 2 × 8 quant lines, 1 scale line.
pub(super) const PAIR_LINES: usize = 17;
/// Bytes per pair of blocks in a tile.
pub(super) const PAIR_BYTES: usize = PAIR_LINES * 64;

/// A q8_0 weight `(n, k)` in the tiled layout described at the top of this file.
#[derive(Clone)]
pub struct Q8_0Weight {
    n: usize,
    k: usize,
    /// Block pairs per row: `ceil(k / 64)`.
    pairs: usize,
    /// (ceil(n / 16) tiles, pairs, 17 lines).
    lines: Vec<Line>,
}

impl Q8_0Weight {
    /// From ggml q8_0 bytes of an `(n, k)` tensor (row-major blocks); `k` a multiple of 32.
    pub fn from_ggml(bytes: &[u8], n: usize, k: usize) -> Result<Self, KernelError> {
        let err = |arg, got, expected| KernelError {
            arg,
            got,
            expected,
            m: 0,
            k,
            n,
        };
        if !k.is_multiple_of(BLOCK) {
            return Err(err("k (a multiple of 32)", k, k.next_multiple_of(BLOCK)));
        }
        let blocks = k / BLOCK;
        let expected = n
            .checked_mul(blocks)
            .and_then(|b| b.checked_mul(GGML_BLOCK_BYTES))
            .ok_or_else(|| err("shape", usize::MAX, usize::MAX))?;
        if bytes.len() != expected {
            return Err(err("q8_0 bytes", bytes.len(), expected));
        }
        let pairs = blocks.div_ceil(2);
        let tile_lines = pairs * PAIR_LINES;
        let mut lines = vec![Line([128; 64]); n.div_ceil(TILE_ROWS) * tile_lines];
        let row_bytes = blocks * GGML_BLOCK_BYTES;
        let fill = |(t, tile): (usize, &mut [Line])| {
            for pair in tile.chunks_exact_mut(PAIR_LINES) {
                pair[PAIR_LINES - 1] = Line([0; 64]);
            }
            for lane in 0..TILE_ROWS.min(n - t * TILE_ROWS) {
                let row = &bytes[(t * TILE_ROWS + lane) * row_bytes..][..row_bytes];
                for (b, block) in row.chunks_exact(GGML_BLOCK_BYTES).enumerate() {
                    let pair = &mut tile[b / 2 * PAIR_LINES..][..PAIR_LINES];
                    let half = b % 2;
                    pair[16].0[half * 32 + lane * 2..][..2].copy_from_slice(&block[..2]);
                    for (g, quad) in block[2..].chunks_exact(4).enumerate() {
                        for (dst, &q) in pair[half * 8 + g].0[lane * 4..][..4].iter_mut().zip(quad)
                        {
                            *dst = q ^ 0x80; // i8 q → u8 q + 128
                        }
                    }
                }
            }
        };
        if tile_lines > 0 {
            lines.par_chunks_mut(tile_lines).enumerate().for_each(fill);
        }
        Ok(Self { n, k, pairs, lines })
    }

    /// The ggml q8_0 bytes (row-major blocks) this weight was built from.
    pub fn to_ggml(&self) -> Vec<u8> {
        let blocks = self.k / BLOCK;
        let row_bytes = blocks * GGML_BLOCK_BYTES;
        let mut bytes = vec![0u8; self.n * row_bytes];
        for (r, row) in bytes.chunks_exact_mut(row_bytes.max(1)).enumerate() {
            let (tile, lane) = (self.tile(r / TILE_ROWS), r % TILE_ROWS);
            for (b, block) in row.chunks_exact_mut(GGML_BLOCK_BYTES).enumerate() {
                let pair = &tile[b / 2 * PAIR_LINES..][..PAIR_LINES];
                let half = b % 2;
                block[..2].copy_from_slice(&pair[16].0[half * 32 + lane * 2..][..2]);
                for (g, quad) in block[2..].chunks_exact_mut(4).enumerate() {
                    for (dst, &q) in quad.iter_mut().zip(&pair[half * 8 + g].0[lane * 4..][..4]) {
                        *dst = q ^ 0x80;
                    }
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

    /// Bytes held (and read by one matmul call).
    pub fn size_in_bytes(&self) -> usize {
        self.lines.len() * 64
    }

    fn tile_lines(&self) -> usize {
        self.pairs * PAIR_LINES
    }

    fn tile(&self, t: usize) -> &[Line] {
        &self.lines[t * self.tile_lines()..][..self.tile_lines()]
    }

    /// The weights stacked along the rows; all must have the same `k`.
    pub fn stack(parts: &[&Q8_0Weight]) -> Result<Self, KernelError> {
        let k = parts.first().map_or(0, |p| p.k);
        let n: usize = parts.iter().map(|p| p.n).sum();
        if let Some(p) = parts.iter().find(|p| p.k != k) {
            return Err(KernelError {
                arg: "k of a stacked part",
                got: p.k,
                expected: k,
                m: 0,
                k,
                n,
            });
        }
        let last = parts.len().saturating_sub(1);
        if parts[..last].iter().all(|p| p.n % TILE_ROWS == 0) {
            // Whole tiles: concatenate them.
            let mut lines = Vec::with_capacity(parts.iter().map(|p| p.lines.len()).sum());
            for p in parts {
                lines.extend_from_slice(&p.lines);
            }
            let pairs = (k / BLOCK).div_ceil(2);
            return Ok(Self { n, k, pairs, lines });
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
            return Err(KernelError {
                arg: "rows end",
                got: start.saturating_add(len),
                expected: self.n,
                m: 0,
                k: self.k,
                n: self.n,
            });
        };
        if start.is_multiple_of(TILE_ROWS) && (len.is_multiple_of(TILE_ROWS) || end == self.n) {
            let t0 = start / TILE_ROWS * self.tile_lines();
            let t1 = end.div_ceil(TILE_ROWS) * self.tile_lines();
            let lines = self.lines[t0..t1].to_vec();
            return Ok(Self {
                n: len,
                k: self.k,
                pairs: self.pairs,
                lines,
            });
        }
        let row_bytes = self.k / BLOCK * GGML_BLOCK_BYTES;
        let bytes = self.to_ggml();
        Self::from_ggml(&bytes[start * row_bytes..end * row_bytes], len, self.k)
    }

    /// y (m, n) = x (m, k) · wᵀ, all f32.
    pub fn matmul(&self, x: &[f32], y: &mut [f32], m: usize) -> Result<(), KernelError> {
        self.matmul_on(QuantPath::detect(), x, y, m)
    }

    /// As [`Self::matmul`] on the named path (one of [`q8_0_paths`]); an unknown or unsupported
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
        let xq = QuantX::new(path, x, m, k, self.pairs);
        let out = OutPtr(y.as_mut_ptr());
        let run = |t0: usize, t1: usize| {
            for t in t0..t1 {
                let cols = TILE_ROWS.min(n - t * TILE_ROWS);
                let tile = self.tile(t);
                let mut i0 = 0;
                while i0 < m {
                    let mr = path.max_mr().min(m - i0);
                    // SAFETY: the tile holds `pairs` pairs; xq holds rows i0..i0 + mr; output
                    // (i, t·16 + c) for i < m, c < cols lies in y and only this tile writes it.
                    unsafe {
                        tile_kernel(
                            path,
                            tile,
                            self.pairs,
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

/// x quantised per row and 32-block, padded to whole block pairs (zeros).
pub(super) struct QuantX {
    /// (m, 64·pairs) i8 values.
    pub(super) q: Vec<i8>,
    /// (m, 2·pairs) scales dx.
    pub(super) d: Vec<f32>,
    /// (m, 2·pairs) −128·Σ q over the block: the u8-offset correction.
    pub(super) corr: Vec<i32>,
    /// Elements per row of `q`.
    pub(super) q_stride: usize,
    /// Elements per row of `d` and `corr`.
    pub(super) b_stride: usize,
}

impl QuantX {
    fn new(path: QuantPath, x: &[f32], m: usize, k: usize, pairs: usize) -> Self {
        let (q_stride, b_stride) = (pairs * 64, pairs * 2);
        let mut xq = QuantX {
            q: vec![0; m * q_stride],
            d: vec![0.0; m * b_stride],
            corr: vec![0; m * b_stride],
            q_stride,
            b_stride,
        };
        let rows =
            xq.q.chunks_exact_mut(q_stride)
                .zip(xq.d.chunks_exact_mut(b_stride))
                .zip(xq.corr.chunks_exact_mut(b_stride))
                .zip(x.chunks_exact(k));
        let quantise = |(((q, d), corr), x): XRow| {
            #[cfg(target_arch = "x86_64")]
            if path == QuantPath::Vnni512 {
                // SAFETY: the path is only selected where the CPU has AVX-512 F+BW.
                return unsafe { quantise_row_avx512(x, q, d, corr) };
            }
            let _ = path;
            quantise_row(x, q, d, corr)
        };
        if m * k >= 1 << 16 {
            rows.par_bridge().for_each(quantise);
        } else {
            rows.for_each(quantise);
        }
        xq
    }
}

/// One row of [`QuantX`] (q, d, corr) with its row of x, as zipped in [`QuantX::new`].
type XRow<'a> = (((&'a mut [i8], &'a mut [f32]), &'a mut [i32]), &'a [f32]);

/// [`quantise_row`] compiled for AVX-512 (the generic one only gets SSE2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn quantise_row_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], corr: &mut [i32]) {
    quantise_row(x, q, d, corr)
}

/// One row of x (k) into 32-blocks: q (≥ k, the tail left zero), d and corr (one per block).
#[inline(always)]
fn quantise_row(x: &[f32], q: &mut [i8], d: &mut [f32], corr: &mut [i32]) {
    // Adding 1.5·2²³ rounds an f32 of magnitude < 2²² to an integer (ties to even) held in the
    // low mantissa bits: vectorises without SSE4.1's round instruction.
    const MAGIC: f32 = 12_582_912.0;
    for (((xb, qb), db), cb) in x
        .chunks_exact(BLOCK)
        .zip(q.chunks_exact_mut(BLOCK))
        .zip(d)
        .zip(corr)
    {
        let amax = xb
            .iter()
            .fold(0f32, |a, v| if v.abs() > a { v.abs() } else { a });
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (qv, &xv) in qb.iter_mut().zip(xb) {
            let v = ((xv * inv + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32) as i8;
            *qv = v;
            sum += v as i32;
        }
        *db = scale;
        *cb = -128 * sum;
    }
}

/// Multiplies one tile with x rows `i0..i0 + mr`, writing y (mr, cols) at `y` (row stride ldy).
///
/// # Safety
/// `tile` holds `pairs` pairs; `xq` holds the rows; `y` is valid for the writes; the path is
/// supported by this CPU; `mr ≤ path.max_mr()`, `cols ≤ 16`.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel(
    path: QuantPath,
    tile: &[Line],
    pairs: usize,
    xq: &QuantX,
    i0: usize,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let x = XRows {
        q: xq.q.as_ptr().add(i0 * xq.q_stride),
        d: xq.d.as_ptr().add(i0 * xq.b_stride),
        corr: xq.corr.as_ptr().add(i0 * xq.b_stride),
        q_stride: xq.q_stride,
        b_stride: xq.b_stride,
    };
    let t = tile.as_ptr() as *const u8;
    match path {
        #[cfg(target_arch = "x86_64")]
        QuantPath::Vnni512 => q8_0_x86::tile_vnni_dispatch(t, pairs, x, mr, y, ldy, cols),
        #[cfg(target_arch = "x86_64")]
        QuantPath::Avx2 => q8_0_x86::tile_avx2_dispatch(t, pairs, x, mr, y, ldy, cols),
        _ => tile_portable(t, pairs, x, mr, y, ldy, cols),
    }
}

/// Pointers into [`QuantX`] at a first row.
#[derive(Clone, Copy)]
pub(super) struct XRows {
    pub(super) q: *const i8,
    pub(super) d: *const f32,
    pub(super) corr: *const i32,
    pub(super) q_stride: usize,
    pub(super) b_stride: usize,
}

/// Portable tile kernel (any `mr`). Safety as [`tile_kernel`].
unsafe fn tile_portable(
    tile: *const u8,
    pairs: usize,
    x: XRows,
    mr: usize,
    y: *mut f32,
    ldy: usize,
    cols: usize,
) {
    let tile = std::slice::from_raw_parts(tile, pairs * PAIR_BYTES);
    for r in 0..mr {
        let xq = std::slice::from_raw_parts(x.q.add(r * x.q_stride), pairs * 64);
        let mut res = [0f32; TILE_ROWS];
        for p in 0..pairs {
            let pair = &tile[p * PAIR_BYTES..][..PAIR_BYTES];
            for half in 0..2 {
                let b = 2 * p + half;
                let mut acc = [0i32; TILE_ROWS];
                for g in 0..8 {
                    let line = &pair[(half * 8 + g) * 64..][..64];
                    let xs = &xq[b * BLOCK + g * 4..][..4];
                    for (lane, a) in acc.iter_mut().enumerate() {
                        let w = &line[lane * 4..][..4];
                        *a += (0..4)
                            .map(|j| (w[j] as i32 - 128) * xs[j] as i32)
                            .sum::<i32>();
                    }
                }
                let dx = *x.d.add(r * x.b_stride + b);
                let scales = &pair[16 * 64 + half * 32..][..32];
                for (lane, (rv, a)) in res.iter_mut().zip(acc).enumerate() {
                    let dw = f16::from_le_bytes([scales[lane * 2], scales[lane * 2 + 1]]).to_f32();
                    *rv += a as f32 * (dw * dx);
                }
            }
        }
        for (c, v) in res.iter().take(cols).enumerate() {
            *y.add(r * ldy + c) = *v;
        }
    }
}

/// Which q8_0 path runs here: "avx512vnni", "avx2" or "portable".
pub fn q8_0_path() -> &'static str {
    QuantPath::detect().name()
}

/// The q8_0 paths this CPU supports, fastest first.
pub fn q8_0_paths() -> Vec<&'static str> {
    QuantPath::supported_names()
}

#[cfg(test)]
#[path = "q8_0_tests.rs"]
mod tests;
