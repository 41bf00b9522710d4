//! What the two quantised kernels ([`super::Q8_0Weight`], [`super::Q4KWeight`]) share: the
//! implementation that runs (AVX-512 VNNI, AVX2 or portable, chosen once per process), the
//! 64-byte line their 16-row tiles are stored in, the length checks of a call, and how a call's
//! tiles are spread over rayon's pool.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::KernelError;

/// Most x rows one tile-kernel call handles (its accumulators live in registers); more rows
/// re-read the tile from cache, not DRAM.
pub(super) const MAX_MR: usize = 8;

/// One 64-byte aligned cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Line(pub(super) [u8; 64]);

/// An implementation of the quantised tile kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QuantPath {
    Vnni512,
    Avx2,
    Portable,
}

impl QuantPath {
    /// Every path, fastest first.
    const ALL: [QuantPath; 3] = [QuantPath::Vnni512, QuantPath::Avx2, QuantPath::Portable];

    pub(super) fn name(self) -> &'static str {
        match self {
            QuantPath::Vnni512 => "avx512vnni",
            QuantPath::Avx2 => "avx2",
            QuantPath::Portable => "portable",
        }
    }

    fn supported(self) -> bool {
        match self {
            QuantPath::Portable => true,
            #[cfg(target_arch = "x86_64")]
            QuantPath::Vnni512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            QuantPath::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Most x rows per tile-kernel call.
    pub(super) fn max_mr(self) -> usize {
        match self {
            QuantPath::Avx2 => 2,
            QuantPath::Vnni512 | QuantPath::Portable => MAX_MR,
        }
    }

    /// The path to run, decided once: the fastest this CPU supports, capped by
    /// `NANOCHAT_KERNEL` as read by the dense kernels ([`super::kernel_path`]): `avx2` or
    /// `portable` force those.
    pub(super) fn detect() -> QuantPath {
        static PATH: OnceLock<QuantPath> = OnceLock::new();
        *PATH.get_or_init(|| {
            let cap = match super::kernel_path() {
                "avx2" => QuantPath::Avx2,
                "portable" => QuantPath::Portable,
                _ => QuantPath::Vnni512,
            };
            QuantPath::ALL
                .into_iter()
                .skip_while(|&p| p != cap)
                .find(|p| p.supported())
                .unwrap_or(QuantPath::Portable)
        })
    }

    /// The named path if this CPU supports it, else the detected one (benchmarks and tests).
    pub(super) fn named(name: &str) -> QuantPath {
        QuantPath::ALL
            .into_iter()
            .find(|p| p.name() == name && p.supported())
            .unwrap_or_else(QuantPath::detect)
    }

    /// The names of the paths this CPU supports, fastest first.
    pub(super) fn supported_names() -> Vec<&'static str> {
        QuantPath::ALL
            .into_iter()
            .filter(|p| p.supported())
            .map(QuantPath::name)
            .collect()
    }
}

/// Checks that `x` holds `m·k` values and `y` `m·n`.
pub(super) fn check_lengths(
    x: usize,
    y: usize,
    (m, k, n): (usize, usize, usize),
) -> Result<(), KernelError> {
    let err = |arg, got, expected| KernelError {
        arg,
        got,
        expected,
        m,
        k,
        n,
    };
    let want_x = m
        .checked_mul(k)
        .ok_or_else(|| err("shape", 0, usize::MAX))?;
    let want_y = m
        .checked_mul(n)
        .ok_or_else(|| err("shape", 0, usize::MAX))?;
    if x != want_x {
        return Err(err("x", x, want_x));
    }
    if y != want_y {
        return Err(err("y", y, want_y));
    }
    Ok(())
}

/// Below this much work (weight bytes × min(m, 4)) a call stays on the calling thread.
const PAR_MIN_BYTES: usize = 128 << 10;
/// Parallel tasks per pool thread: several, so that a thread slowed by other load (the machine
/// may be shared) has its tasks taken over by the others.
const TASKS_PER_THREAD: usize = 4;

/// Runs `run(t0, t1)` over ranges of tiles covering `[0, tiles)`: on the calling thread when
/// the call is small (`weight_bytes` read for `m` x rows), else in parallel on rayon's pool.
pub(super) fn run_tiles(
    tiles: usize,
    weight_bytes: usize,
    m: usize,
    run: impl Fn(usize, usize) + Sync,
) {
    let threads = rayon::current_num_threads();
    if threads <= 1 || weight_bytes * m.min(4) < PAR_MIN_BYTES || tiles < 2 {
        run(0, tiles);
    } else {
        let per_task = tiles.div_ceil(threads * TASKS_PER_THREAD).max(1);
        (0..tiles.div_ceil(per_task))
            .into_par_iter()
            .for_each(|c| run(c * per_task, tiles.min((c + 1) * per_task)));
    }
}
