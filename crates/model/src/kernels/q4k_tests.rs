//! Tests of the q4k kernel: every path this CPU supports against a reference in f64 (the
//! dequantised weight times the exact f32 x), within the bound set by quantising x to int8 per
//! 256 values, on random raw blocks and on weights quantised by candle; against candle's own
//! quantised matmul; the ggml round trip, stacking and row slicing; shape errors.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use super::*;

/// Deterministic pseudo-random u64s.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Random ggml Q4_K bytes (n, k): every quant and scale bit random, `d` and `dmin` of mixed
/// magnitude and sign, some zero.
fn random_ggml(n: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut bytes = Vec::with_capacity(n * k / QK * GGML_BLOCK_BYTES);
    for b in 0..n * k / QK {
        let mut half = |zero: bool| {
            let v = if zero {
                0.0
            } else {
                rng.unit() * 1e-3 * (1 + b % 5) as f32
            };
            f16::from_f32(v).to_le_bytes()
        };
        let (d, dmin) = (half(b % 13 == 5), half(b % 7 == 3));
        bytes.extend_from_slice(&d);
        bytes.extend_from_slice(&dmin);
        bytes.extend((0..GGML_BLOCK_BYTES - 4).map(|_| rng.next() as u8));
    }
    bytes
}

/// Weights as candle's Q4K quantiser makes them from random f32 (n, k), a few rows scaled up.
fn candle_ggml(n: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let w: Vec<f32> = (0..n * k)
        .map(|i| rng.unit() * 0.05 * if (i / k) % 7 == 2 { 8.0 } else { 1.0 })
        .collect();
    let t = Tensor::from_vec(w, (n, k), &Device::Cpu).expect("shape");
    let q = QTensor::quantize(&t, GgmlDType::Q4K).expect("quantise");
    q.data().expect("cpu data").into_owned()
}

/// ggml's unpacking of sub-block j's (scale, min).
fn scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The dequantised weight (n, k) as f64, and per element the magnitudes |d·sc·q| + |dmin·m| of
/// the two terms it is the difference of.
fn dequantise(bytes: &[u8], n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut w, mut mag) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
    for block in bytes.chunks_exact(GGML_BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f64();
        let dmin = f16::from_le_bytes([block[2], block[3]]).to_f64();
        let (scales, qs) = (&block[4..16], &block[16..]);
        for j in 0..8 {
            let (sc, m) = scale_min(j, scales);
            let chunk = &qs[j / 2 * 32..][..32];
            for &byte in chunk {
                let q = if j % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                let (a, b) = (d * sc as f64 * q as f64, dmin * m as f64);
                w.push(a - b);
                mag.push(a.abs() + b.abs());
            }
        }
    }
    (w, mag)
}

/// Largest |y − x·wᵀ| / bound over the outputs, asserting each is within the x-quantisation
/// bound Σ_b (amax_b/254)·Σ_{i∈b} |w_i| plus f32 rounding of the scaled terms.
#[allow(clippy::too_many_arguments)]
fn check_against_reference(
    x: &[f32],
    (w, mag): &(Vec<f64>, Vec<f64>),
    y: &[f32],
    m: usize,
    k: usize,
    n: usize,
    what: &str,
) -> f64 {
    let mut worst = 0f64;
    for i in 0..m {
        let xr = &x[i * k..][..k];
        for j in 0..n {
            let (wr, mr) = (&w[j * k..][..k], &mag[j * k..][..k]);
            let (mut exact, mut quant_bound, mut magnitude) = (0f64, 0f64, 0f64);
            for b in 0..k / QK {
                let amax = xr[b * QK..][..QK]
                    .iter()
                    .fold(0f64, |a, v| a.max(v.abs() as f64));
                let wsum: f64 = wr[b * QK..][..QK].iter().map(|v| v.abs()).sum();
                quant_bound += amax / 254.0 * wsum;
                magnitude += amax * mr[b * QK..][..QK].iter().sum::<f64>();
            }
            for (a, b) in xr.iter().zip(wr) {
                exact += *a as f64 * b;
            }
            let bound = quant_bound * (1.0 + 1e-6) + magnitude * 1e-6 * (k / QK) as f64 + 1e-30;
            let got = y[i * n + j] as f64;
            assert!(
                (got - exact).abs() <= bound,
                "{what}: y[{i}][{j}] = {got}, exact {exact}, bound {bound} (m={m}, k={k}, n={n})"
            );
            worst = worst.max((got - exact).abs() / bound);
        }
    }
    worst
}

/// x (m, k) in ±3 with a zero 256-block (if k allows) and an outlier.
fn test_x(m: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut x: Vec<f32> = (0..m * k).map(|_| rng.unit() * 3.0).collect();
    if k >= 2 * QK {
        x[..QK].fill(0.0);
        x[QK + 3] = 50.0;
    }
    x
}

#[test]
fn every_path_matches_the_reference() {
    // Partial tiles (n % 16), one to twenty super-blocks, serial and parallel calls, every row
    // count up to past two kernel calls and a prefill-sized one.
    let shapes = [(17, 256), (40, 512), (1, 1280), (300, 1280), (33, 5120)];
    let mut worst = 0f64;
    for (s, &(n, k)) in shapes.iter().enumerate() {
        for raw in [true, false] {
            let bytes = if raw {
                random_ggml(n, k, 11 + s as u64)
            } else {
                candle_ggml(n, k, 11 + s as u64)
            };
            let w = dequantise(&bytes, n, k);
            let weight = Q4KWeight::from_ggml(&bytes, n, k).unwrap();
            let ms: &[usize] = if n * k > 100_000 {
                &[1, 3, 8, 9, 11, 40]
            } else {
                &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 40]
            };
            for &m in ms {
                let x = test_x(m, k, 1000 + m as u64);
                for path in q4k_paths() {
                    let mut y = vec![f32::NAN; m * n];
                    weight.matmul_path(path, &x, &mut y, m).unwrap();
                    let what = format!("{path}, raw={raw}");
                    worst = worst.max(check_against_reference(&x, &w, &y, m, k, n, &what));
                }
            }
        }
    }
    println!("largest error / bound: {worst:.3}");
}

#[test]
fn dequantisation_matches_candle() {
    let (n, k) = (5, 512);
    for bytes in [random_ggml(n, k, 3), candle_ggml(n, k, 3)] {
        let storage = candle_core::quantized::QStorage::from_data(
            std::borrow::Cow::Borrowed(&bytes),
            &Device::Cpu,
            GgmlDType::Q4K,
        )
        .unwrap();
        let q = QTensor::new(storage, (n, k)).unwrap();
        let theirs: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (ours, _) = dequantise(&bytes, n, k);
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (a - *b as f64).abs() <= 1e-6 * (1.0 + a.abs()),
                "{a} vs {b}"
            );
        }
    }
}

#[test]
fn error_is_no_worse_than_candles() {
    let (n, k) = (64, 1280);
    let bytes = candle_ggml(n, k, 9);
    let w = dequantise(&bytes, n, k);
    let weight = Q4KWeight::from_ggml(&bytes, n, k).unwrap();
    let storage = candle_core::quantized::QStorage::from_data(
        std::borrow::Cow::Borrowed(&bytes),
        &Device::Cpu,
        GgmlDType::Q4K,
    )
    .unwrap();
    let theirs = QMatMul::from_arc(Arc::new(QTensor::new(storage, (n, k)).unwrap())).unwrap();
    for m in [1, 8, 33] {
        let x = test_x(m, k, 70 + m as u64);
        let xt = Tensor::from_slice(&x, (m, k), &Device::Cpu).unwrap();
        let yc: Vec<f32> = theirs
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut y = vec![0f32; m * n];
        weight.matmul(&x, &mut y, m).unwrap();
        let (mut ours_sq, mut theirs_sq, mut ours_max, mut theirs_max) = (0f64, 0f64, 0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k).map(|c| x[i * k + c] as f64 * w.0[j * k + c]).sum();
                let (eo, et) = (y[i * n + j] as f64 - exact, yc[i * n + j] as f64 - exact);
                ours_sq += eo * eo;
                theirs_sq += et * et;
                ours_max = ours_max.max(eo.abs());
                theirs_max = theirs_max.max(et.abs());
            }
        }
        let cnt = (m * n) as f64;
        let (ours_rms, theirs_rms) = ((ours_sq / cnt).sqrt(), (theirs_sq / cnt).sqrt());
        println!(
            "m={m}: rms error ours {ours_rms:.3e} candle {theirs_rms:.3e}, \
             max ours {ours_max:.3e} candle {theirs_max:.3e}"
        );
        // Both quantise x per 256 with step amax/127 (candle rounds ties away from zero).
        assert!(ours_rms <= 1.25 * theirs_rms, "{ours_rms} vs {theirs_rms}");
        assert!(ours_max <= 1.5 * theirs_max, "{ours_max} vs {theirs_max}");
    }
}

#[test]
fn paths_agree_closely() {
    let (n, k, m) = (48, 768, 9);
    let bytes = random_ggml(n, k, 5);
    let weight = Q4KWeight::from_ggml(&bytes, n, k).unwrap();
    let mut rng = Rng(77);
    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
    let mut reference = vec![0f32; m * n];
    weight
        .matmul_path("portable", &x, &mut reference, m)
        .unwrap();
    let scale = reference.iter().fold(0f32, |a, v| a.max(v.abs()));
    for path in q4k_paths() {
        let mut y = vec![0f32; m * n];
        weight.matmul_path(path, &x, &mut y, m).unwrap();
        for (a, b) in y.iter().zip(&reference) {
            assert!(
                (a - b).abs() <= 1e-5 * (scale + b.abs()),
                "{path}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn ggml_bytes_round_trip_exactly() {
    for (n, k) in [(17, 256), (32, 512), (1, 1280), (0, 256), (3, 0)] {
        let bytes = random_ggml(n, k, 3);
        let weight = Q4KWeight::from_ggml(&bytes, n, k).unwrap();
        assert_eq!(weight.to_ggml(), bytes);
        assert_eq!((weight.n(), weight.k()), (n, k));
        assert_eq!(
            weight.size_in_bytes(),
            n.next_multiple_of(16) * k / QK * GGML_BLOCK_BYTES
        );
    }
    // k = 0: the output is zeros.
    let w = Q4KWeight::from_ggml(&[], 3, 0).unwrap();
    let mut y = vec![f32::NAN; 6];
    w.matmul(&[], &mut y, 2).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}

#[test]
fn stack_and_rows_match_the_ggml_bytes() {
    let k = 512;
    let row_bytes = k / QK * GGML_BLOCK_BYTES;
    // Whole tiles (concatenated) and a partial tile in the middle (rebuilt).
    for sizes in [[32usize, 16, 16], [20, 7, 16]] {
        let parts: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| random_ggml(n, k, 40 + i as u64))
            .collect();
        let weights: Vec<Q4KWeight> = parts
            .iter()
            .zip(sizes)
            .map(|(b, n)| Q4KWeight::from_ggml(b, n, k).unwrap())
            .collect();
        let refs: Vec<&Q4KWeight> = weights.iter().collect();
        let stacked = Q4KWeight::stack(&refs).unwrap();
        let all = parts.concat();
        assert_eq!(stacked.to_ggml(), all);
        let n: usize = sizes.iter().sum();
        let x = test_x(3, k, 8);
        let (mut ys, mut yr) = (vec![0f32; 3 * n], vec![0f32; 3 * n]);
        stacked.matmul(&x, &mut ys, 3).unwrap();
        Q4KWeight::from_ggml(&all, n, k)
            .unwrap()
            .matmul(&x, &mut yr, 3)
            .unwrap();
        assert_eq!(ys, yr);
        let mut start = 0;
        for n in sizes {
            let part = stacked.rows(start, n).unwrap();
            assert_eq!(
                part.to_ggml(),
                &all[start * row_bytes..(start + n) * row_bytes]
            );
            start += n;
        }
        let part = stacked.rows(3, 30).unwrap();
        assert_eq!(part.to_ggml(), &all[3 * row_bytes..33 * row_bytes]);
    }
    let w = Q4KWeight::from_ggml(&random_ggml(16, k, 1), 16, k).unwrap();
    assert!(w.rows(10, 7).is_err());
    assert!(w.rows(usize::MAX, 2).is_err());
    let other = Q4KWeight::from_ggml(&random_ggml(16, 256, 1), 16, 256).unwrap();
    assert!(Q4KWeight::stack(&[&w, &other]).is_err());
    assert_eq!(Q4KWeight::stack(&[]).unwrap().n(), 0);
}

#[test]
fn bad_shapes_are_errors() {
    assert!(Q4KWeight::from_ggml(&[0; 144], 1, 255).is_err());
    assert!(Q4KWeight::from_ggml(&[0; 143], 1, 256).is_err());
    assert!(Q4KWeight::from_ggml(&[0; 144], usize::MAX, 256).is_err());
    let w = Q4KWeight::from_ggml(&random_ggml(4, 256, 2), 4, 256).unwrap();
    let mut y = vec![0f32; 8];
    assert!(w.matmul(&[0.0; 255], &mut y[..4], 1).is_err());
    assert!(w.matmul(&[0.0; 256], &mut y, 1).is_err());
    assert!(w.matmul(&[0.0; 256], &mut y[..4], usize::MAX).is_err());
    assert!(w.matmul(&[0.0; 256], &mut y[..4], 1).is_ok());
    assert!(w
        .matmul_path("nonsense", &[0.0; 256], &mut y[..4], 1)
        .is_ok());
}
