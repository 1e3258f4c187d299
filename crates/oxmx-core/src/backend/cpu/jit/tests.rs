//! The JIT against the interpreter: every region below runs compiled with the JIT on and off,
//! and the results must agree bit for bit (NaNs: both NaN), over lengths that exercise whole
//! vectors, the masked tail, several blocks and the parallel path, on inputs that include the
//! special values (±0, ±inf, NaN, subnormals, huge, ties for rounding).

use crate::array::Array;
use crate::dtype::Dtype;
use crate::ops;
use crate::transforms::compile;
use std::sync::Mutex;

/// The switch is process-wide: the cases take turns.
static SWITCH: Mutex<()> = Mutex::new(());

fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let special = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        1e-40,
        -1e-40,
        f32::MIN_POSITIVE,
        3.0e38,
        -3.0e38,
        88.8,
        -103.5,
        9.1,
        -9.1,
        1.000_000_1,
        65504.0,
        65520.0,
        1.001_953_1, // a bf16 tie
        1.005_859_4,
    ];
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match s % 8 {
                0 => special[(s >> 8) as usize % special.len()],
                1 => f32::from_bits((s >> 16) as u32), // any bit pattern
                2 => ((s >> 11) as f64 / (1u64 << 53) as f64 * 200.0 - 100.0) as f32,
                _ => ((s >> 11) as f64 / (1u64 << 53) as f64 * 8.0 - 4.0) as f32 + (i % 3) as f32 * 1e-3,
            }
        })
        .collect()
}

fn same(a: &[f32], b: &[f32]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| !(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())))
}

type Case = (&'static str, fn(Vec<Array>) -> Vec<Array>);

fn cases() -> Vec<Case> {
    vec![
        ("gelu_tanh", |v| {
            let x = &v[0];
            let c = (2.0f64 / std::f64::consts::PI).sqrt();
            vec![x * 0.5 * (ops::tanh(&((x + x * x * x * 0.044715) * c)) + 1.0)]
        }),
        ("silu_exp", |v| {
            let x = &v[0];
            vec![x * ops::sigmoid(x), ops::exp(&(x - &v[1])) * 2.0 - 1.0]
        }),
        // A lone op is not fused, so each op here sits in a chain with another.
        ("arith", |v| {
            let (x, y) = (&v[0], &v[1]);
            vec![
                (x + y) / (x - y) * 3.0,
                ops::subtract(2.0, x) * y,
                ops::floor_divide(x, y) + x,
                ops::maximum(x, y) * y,
                ops::minimum(x, y) + 1.0,
            ]
        }),
        ("unary", |v| {
            let (x, y) = (&v[0], &v[1]);
            vec![
                ops::abs(x) + ops::negative(y),
                ops::sign(x) + y,
                ops::square(x) - y,
                ops::sqrt(x) * y,
                ops::rsqrt(x) + y,
                ops::reciprocal(x) * y,
                ops::floor(x) + ops::ceil(y),
                ops::round(x, 0) - y,
            ]
        }),
        ("compare_select", |v| {
            let (x, y) = (&v[0], &v[1]);
            vec![
                ops::where_(&ops::less(x, y), x, y),
                ops::equal(x, y) + ops::not_equal(x, y) * 2.0,
                ops::greater_equal(x, y) + ops::less_equal(x, y) * 2.0 + ops::greater(x, y) * 4.0,
                ops::logical_and(x, y).astype(Dtype::Float32) + ops::logical_or(x, y).astype(Dtype::Float32),
                ops::logical_not(x).astype(Dtype::Float32) * 3.0,
                ops::isnan(x).astype(Dtype::Float32)
                    + ops::isinf(x).astype(Dtype::Float32) * 2.0
                    + ops::isfinite(x).astype(Dtype::Float32) * 4.0,
                ops::isposinf(x).astype(Dtype::Float32) + ops::isneginf(x).astype(Dtype::Float32) * 2.0,
            ]
        }),
        ("round_to_16_bit", |v| {
            let x = &v[0];
            vec![
                (x * 1.5).astype(Dtype::Float16).astype(Dtype::Float32) + 1.0,
                (x * 1.5).astype(Dtype::Bfloat16).astype(Dtype::Float32) - 1.0,
            ]
        }),
        ("scalar_and_broadcast", |v| {
            // v[2] is one element, v[3] a row broadcast over the columns.
            let (x, s, row) = (&v[0], &v[2], &v[3]);
            vec![ops::tanh(&(x * s + row)), ops::exp(&(s - x)) * row]
        }),
    ]
}

#[test]
fn jit_matches_the_interpreter() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    if !super::enabled() {
        eprintln!("jit_matches_the_interpreter: skipped (no AVX-512 here, or OXMX_CPU_JIT=0): the interpreter runs every region");
        return;
    }
    let mut failures = Vec::new();
    for (name, f) in cases() {
        // Columns of 37 so the row input broadcasts; lengths cover a partial vector, exact
        // vectors, several blocks and the parallel path.
        for rows in [1usize, 3, 29, 2000] {
            let n = rows * 37;
            let mk = |seed: u64, shape: &[usize]| Array::from_slice(&inputs(shape.iter().product(), seed), shape);
            let args = vec![mk(1, &[rows, 37]), mk(2, &[rows, 37]), mk(3, &[]), mk(4, &[37])];
            let run = |jit: bool| -> Vec<Vec<f32>> {
                super::set_enabled(jit);
                let g = compile(f);
                let out = g.call(args.clone());
                out.iter().map(|a| a.to_vec::<f32>().unwrap()).collect()
            };
            let before = super::blocks_run();
            let with = run(true);
            let ran = super::blocks_run() - before;
            let without = run(false);
            super::set_enabled(true);
            if ran == 0 {
                failures.push(format!("{name} ({n} elements): the JIT did not run"));
            }
            for (k, (a, b)) in with.iter().zip(&without).enumerate() {
                if let Some(i) = same(a, b) {
                    let x: Vec<f32> = args.iter().map(|a| a.to_vec::<f32>().unwrap()[i.min(a.size() - 1)]).collect();
                    failures.push(format!(
                        "{name} output {k} ({n} elements), element {i}: JIT {} ({:#x}) vs interpreter {} ({:#x}); inputs {x:?}",
                        a[i],
                        a[i].to_bits(),
                        b[i],
                        b[i].to_bits()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
