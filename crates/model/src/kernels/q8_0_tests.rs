//! Tests of the q8_0 kernel: every path this CPU supports against a reference in f64 (the
//! dequantised weight times the exact f32 x), within the bound set by quantising x to int8;
//! the ggml round trip, stacking and row slicing.

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

/// Random ggml q8_0 bytes (n, k): quants over the whole i8 range (−128 included, which ggml's
/// own quantiser never writes), scales of mixed magnitude, some zero.
fn random_ggml(n: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut bytes = Vec::with_capacity(n * k / BLOCK * GGML_BLOCK_BYTES);
    for b in 0..n * k / BLOCK {
        let d = if b % 13 == 5 {
            0.0
        } else {
            rng.unit() * 0.01 * (1 + b % 5) as f32
        };
        bytes.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        bytes.extend((0..BLOCK).map(|_| rng.next() as u8));
    }
    bytes
}

/// The dequantised weight (n, k) as f64.
fn dequantise(bytes: &[u8], n: usize, k: usize) -> Vec<f64> {
    let mut w = Vec::with_capacity(n * k);
    for block in bytes.chunks_exact(GGML_BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f64();
        w.extend(block[2..].iter().map(|&q| d * (q as i8) as f64));
    }
    w
}

/// Checks `y` against x · wᵀ: each output within the x-quantisation bound
/// Σ_b (amax_b/254)·Σ_{j∈b} |w_j|, plus f32 rounding of the block scaling and sum.
fn check_against_reference(x: &[f32], w: &[f64], y: &[f32], m: usize, k: usize, n: usize) {
    for i in 0..m {
        let xr = &x[i * k..][..k];
        for j in 0..n {
            let wr = &w[j * k..][..k];
            let (mut exact, mut quant_bound, mut magnitude) = (0f64, 0f64, 0f64);
            for b in 0..k / BLOCK {
                let amax = xr[b * BLOCK..][..BLOCK]
                    .iter()
                    .fold(0f64, |a, v| a.max(v.abs() as f64));
                let wsum: f64 = wr[b * BLOCK..][..BLOCK].iter().map(|v| v.abs()).sum();
                quant_bound += amax / 254.0 * wsum;
                magnitude += amax * wsum;
            }
            for (a, b) in xr.iter().zip(wr) {
                exact += *a as f64 * b;
            }
            let bound = quant_bound * (1.0 + 1e-6) + magnitude * 1e-6 * (k / BLOCK) as f64 + 1e-30;
            let got = y[i * n + j] as f64;
            assert!(
                (got - exact).abs() <= bound,
                "y[{i}][{j}] = {got}, exact {exact}, bound {bound} (m={m}, k={k}, n={n})"
            );
        }
    }
}

#[test]
fn every_path_matches_the_reference() {
    // Partial tiles (n % 16), odd block counts (k / 32), serial and parallel calls, every
    // row count up to past two kernel calls.
    let shapes = [(17, 96), (16, 32), (300, 320), (40, 1280), (5, 64)];
    for (s, &(n, k)) in shapes.iter().enumerate() {
        let bytes = random_ggml(n, k, 11 + s as u64);
        let w = dequantise(&bytes, n, k);
        let weight = Q8_0Weight::from_ggml(&bytes, n, k).unwrap();
        for m in [1, 2, 3, 4, 5, 7, 8, 9, 16, 19] {
            let mut rng = Rng(1000 + m as u64);
            let mut x: Vec<f32> = (0..m * k).map(|_| rng.unit() * 3.0).collect();
            // A zero block and a block with one outlier.
            x[..BLOCK.min(k)].fill(0.0);
            if k >= 2 * BLOCK {
                x[BLOCK + 3] = 50.0;
            }
            for path in q8_0_paths() {
                let mut y = vec![f32::NAN; m * n];
                weight.matmul_path(path, &x, &mut y, m).unwrap();
                check_against_reference(&x, &w, &y, m, k, n);
            }
        }
    }
}

#[test]
fn paths_agree_closely() {
    let (n, k, m) = (48, 640, 9);
    let bytes = random_ggml(n, k, 5);
    let weight = Q8_0Weight::from_ggml(&bytes, n, k).unwrap();
    let mut rng = Rng(77);
    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
    let mut reference = vec![0f32; m * n];
    weight
        .matmul_path("portable", &x, &mut reference, m)
        .unwrap();
    for path in q8_0_paths() {
        let mut y = vec![0f32; m * n];
        weight.matmul_path(path, &x, &mut y, m).unwrap();
        for (a, b) in y.iter().zip(&reference) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{path}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn ggml_bytes_round_trip_exactly() {
    for (n, k) in [(17, 96), (32, 64), (1, 32), (0, 64)] {
        let bytes = random_ggml(n, k, 3);
        let weight = Q8_0Weight::from_ggml(&bytes, n, k).unwrap();
        assert_eq!(weight.to_ggml(), bytes);
        assert_eq!((weight.n(), weight.k()), (n, k));
    }
}

#[test]
fn stack_and_rows_match_the_ggml_bytes() {
    let k = 96;
    let row_bytes = k / BLOCK * GGML_BLOCK_BYTES;
    // Whole tiles (concatenated) and a partial tile in the middle (rebuilt).
    for sizes in [[32usize, 16, 16], [20, 7, 16]] {
        let parts: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| random_ggml(n, k, 40 + i as u64))
            .collect();
        let weights: Vec<Q8_0Weight> = parts
            .iter()
            .zip(sizes)
            .map(|(b, n)| Q8_0Weight::from_ggml(b, n, k).unwrap())
            .collect();
        let refs: Vec<&Q8_0Weight> = weights.iter().collect();
        let stacked = Q8_0Weight::stack(&refs).unwrap();
        let all = parts.concat();
        assert_eq!(stacked.to_ggml(), all);
        let mut start = 0;
        for n in sizes {
            let part = stacked.rows(start, n).unwrap();
            assert_eq!(
                part.to_ggml(),
                &all[start * row_bytes..(start + n) * row_bytes]
            );
            start += n;
        }
    }
    let w = Q8_0Weight::from_ggml(&random_ggml(16, k, 1), 16, k).unwrap();
    assert!(w.rows(10, 7).is_err());
    let other = Q8_0Weight::from_ggml(&random_ggml(16, 64, 1), 16, 64).unwrap();
    assert!(Q8_0Weight::stack(&[&w, &other]).is_err());
}

#[test]
fn bad_shapes_are_errors() {
    assert!(Q8_0Weight::from_ggml(&[0; 34], 1, 33).is_err());
    assert!(Q8_0Weight::from_ggml(&[0; 33], 1, 32).is_err());
    let w = Q8_0Weight::from_ggml(&random_ggml(4, 64, 2), 4, 64).unwrap();
    let mut y = vec![0f32; 8];
    assert!(w.matmul(&[0.0; 63], &mut y[..4], 1).is_err());
    assert!(w.matmul(&[0.0; 64], &mut y, 1).is_err());
    assert!(w.matmul(&[0.0; 64], &mut y[..4], 1).is_ok());
}
