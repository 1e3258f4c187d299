//! Float matmul against a float64 reference over edge shapes, layouts, dtypes and batches.
//!
//! On x86-64 hosts these products run on the hand-written `sgemm` kernel (on AVX2 f32 above a
//! small size, f16/bf16 at every size beyond the few-row mat-vec path; on AVX-512 f16/bf16 below
//! AMX's sizes and f32 with a transposed B of 256 columns or more); elsewhere on `gemm`. The
//! shapes straddle the kernel's blocking: 6×16 and 12×32 tiles, 256-deep and 4096-wide blocks,
//! 144- and 240-row blocks and the split of a product over threads.

use oxmx_core::ops::*;
use oxmx_core::prelude::*;

/// Uniform values in [-1, 1) from a xorshift generator.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// How an operand's [rows, cols] matrices sit in memory.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// Row-major and dense.
    Dense,
    /// The transpose of a dense [cols, rows] array (columns contiguous).
    Transposed,
    /// A window of a wider array: rows contiguous, row pitch cols + 3, offset 2.
    Window,
    /// The transpose of a window: columns contiguous with a pitch.
    WindowT,
    /// Every other row and column of a larger array: no unit stride.
    Strided,
}

/// A `[batch.., rows, cols]` operand of dtype `dt` (values rounded to it) in `layout`.
fn operand(batch: &[usize], rows: usize, cols: usize, layout: Layout, dt: Dtype, seed: u64) -> Array {
    let make = |r: usize, c: usize| {
        let shape: Vec<usize> = batch.iter().copied().chain([r, c]).collect();
        let n = shape.iter().product();
        Array::from_slice(&uniform(n, seed), &shape).astype(dt)
    };
    let lead = vec![SliceSpec::FULL; batch.len()];
    let window = |x: Array, r: usize, c: usize| {
        let specs: Vec<SliceSpec> = lead
            .iter()
            .copied()
            .chain([SliceSpec::new(Some(1), Some(1 + r as isize), 1), SliceSpec::new(Some(2), Some(2 + c as isize), 1)])
            .collect();
        slice(&x, &specs)
    };
    let a = match layout {
        Layout::Dense => make(rows, cols),
        Layout::Transposed => swapaxes(&make(cols, rows), -1, -2),
        Layout::Window => window(make(rows + 2, cols + 3), rows, cols),
        Layout::WindowT => swapaxes(&window(make(cols + 2, rows + 3), cols, rows), -1, -2),
        Layout::Strided => {
            let specs: Vec<SliceSpec> =
                lead.iter().copied().chain([SliceSpec::new(Some(1), None, 2), SliceSpec::new(None, None, 2)]).collect();
            slice(&make(2 * rows + 1, 2 * cols), &specs)
        }
    };
    assert_eq!(&a.shape()[batch.len()..], &[rows, cols]);
    a
}

/// Exact f64 values of `x` broadcast to `shape`.
fn values(x: &Array, shape: &[usize]) -> Vec<f64> {
    broadcast_to(x, shape).astype(Dtype::Float64).to_vec::<f64>().unwrap()
}

/// Checks `matmul(a, b)` element by element against sums in f64 of the (dtype-exact) inputs.
/// The result may differ by f32 accumulation (bounded relative to Σ|a·b|, loose enough for any
/// summation order over a 256-deep block yet far below one dropped or doubled term) and, for
/// 16-bit outputs, by the final rounding to the dtype.
fn check(a: &Array, b: &Array, what: &str) {
    let c = matmul(a, b);
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    let out_shape = c.shape().to_vec();
    let batch = &out_shape[..out_shape.len() - 2];
    assert_eq!(&out_shape[batch.len()..], &[m, n], "{what}");
    assert_eq!(c.dtype(), a.dtype(), "{what}");
    let av = values(a, &[batch, &[m, k]].concat());
    let bv = values(b, &[batch, &[k, n]].concat());
    let got = c.astype(Dtype::Float64).to_vec::<f64>().unwrap();
    let count: usize = batch.iter().product();
    let (mut want, mut mag) = (Vec::with_capacity(got.len()), Vec::with_capacity(got.len()));
    for bi in 0..count {
        let (ab, bb) = (&av[bi * m * k..(bi + 1) * m * k], &bv[bi * k * n..(bi + 1) * k * n]);
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut t) = (0.0, 0.0);
                for p in 0..k {
                    let x = ab[i * k + p] * bb[p * n + j];
                    s += x;
                    t += x.abs();
                }
                want.push(s);
                mag.push(t);
            }
        }
    }
    let eps = match a.dtype() {
        Dtype::Float16 => 2f64.powi(-10),
        Dtype::Bfloat16 => 2f64.powi(-7),
        _ => 0.0,
    };
    let rounded = Array::from_slice(&want, &[want.len()]).astype(a.dtype()).astype(Dtype::Float64).to_vec::<f64>().unwrap();
    for (i, ((&g, &w), (&r, &t))) in got.iter().zip(&want).zip(rounded.iter().zip(&mag)).enumerate() {
        let tol = 2e-6 * t + eps * w.abs() + 1e-7;
        assert!((g - r).abs() <= tol, "{what}: element {i} = {g}, want {r} (exact {w}, tol {tol})");
    }
}

const FLOATS: [Dtype; 3] = [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16];

/// (m, k, n): empty, single, tile edges (6×16 on AVX2, 12×32 on AVX-512), block edges (144 and
/// 240 rows, 256 deep, 4096 wide) and long k.
const SHAPES: [(usize, usize, usize); 19] = [
    (0, 5, 7),
    (5, 0, 7),
    (5, 7, 0),
    (1, 1, 1),
    (1, 300, 1),
    (2, 64, 200),
    (200, 64, 1),
    (7, 13, 17),
    (6, 256, 16),
    (12, 512, 32),
    (61, 257, 47),
    (97, 300, 130),
    (145, 513, 161),
    (300, 40, 500),
    (13, 5000, 29),
    (20, 70, 4200),
    (25, 260, 289),
    (241, 300, 257),
    (12, 256, 32),
];

#[test]
fn dense_shapes_all_float_dtypes() {
    for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
        for dt in FLOATS {
            let a = operand(&[], m, k, Layout::Dense, dt, 2 * si as u64);
            let b = operand(&[], k, n, Layout::Dense, dt, 2 * si as u64 + 1);
            check(&a, &b, &format!("{dt:?} [{m},{k}]x[{k},{n}]"));
        }
    }
}

#[test]
fn transposed_windowed_and_strided_operands() {
    use Layout::*;
    let pairs = [
        (Transposed, Transposed),
        (Dense, Transposed),
        (Transposed, Dense),
        (Window, WindowT),
        (WindowT, Window),
        (Strided, Strided),
        (Strided, Dense),
    ];
    for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
        if m * k * n > 4_000_000 {
            continue;
        }
        for (pi, &(la, lb)) in pairs.iter().enumerate() {
            for dt in FLOATS {
                let seed = (100 * si + 10 * pi) as u64;
                let a = operand(&[], m, k, la, dt, seed);
                let b = operand(&[], k, n, lb, dt, seed + 1);
                check(&a, &b, &format!("{dt:?} {la:?}[{m},{k}] x {lb:?}[{k},{n}]"));
            }
        }
    }
    // Large enough to split over threads, with transposed and windowed operands.
    for dt in FLOATS {
        check(&operand(&[], 190, 300, WindowT, dt, 1), &operand(&[], 300, 170, Transposed, dt, 2), &format!("{dt:?} split"));
        check(&operand(&[], 100, 200, Dense, dt, 3), &operand(&[], 200, 290, Transposed, dt, 4), &format!("{dt:?} split, 290 columns"));
    }
}

#[test]
fn batched_and_broadcast_products() {
    use Layout::*;
    // (batch of a, batch of b, m, k, n, layouts)
    // The last three: attention-sized products (the unpacked small-product path on AVX2: B read
    // in place when dense in whole 16-column panels, packed otherwise; rows past a 6-row edge).
    let cases: [(&[usize], &[usize], usize, usize, usize, Layout, Layout); 8] = [
        (&[2, 1], &[3], 5, 7, 6, Dense, Dense),
        (&[3], &[], 70, 90, 50, Dense, Transposed),
        (&[4], &[4], 33, 260, 40, Window, Strided),
        (&[], &[3], 130, 150, 140, Transposed, Dense),
        (&[2], &[2], 150, 300, 170, Dense, Dense),
        (&[3, 2], &[3, 2], 64, 32, 64, Window, Transposed),
        (&[4], &[4], 64, 64, 32, Dense, Window),
        (&[2], &[2], 64, 64, 32, WindowT, Strided),
    ];
    for (ci, &(ba, bb, m, k, n, la, lb)) in cases.iter().enumerate() {
        for dt in FLOATS {
            let a = operand(ba, m, k, la, dt, 7 * ci as u64);
            let b = operand(bb, k, n, lb, dt, 7 * ci as u64 + 3);
            check(&a, &b, &format!("{dt:?} {ba:?}{la:?}[{m},{k}] x {bb:?}{lb:?}[{k},{n}]"));
        }
    }
}
