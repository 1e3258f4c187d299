//! Derivatives of every differentiable primitive against float64 finite differences (vjp and
//! jvp), on several shapes including broadcasting and views; higher-order and nested transforms;
//! custom functions, checkpoint and the error cases.

mod common;
use common::gradcheck::{check, check_f32, Rng};
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::*;

fn r(seed: u64, shape: &[usize], lo: f64, hi: f64) -> Array {
    Rng::new(seed).uniform(shape, lo, hi)
}

#[test]
fn unary_ops() {
    type U = fn(&Array) -> Array;
    let cases: Vec<(&str, U, f64, f64)> = vec![
        ("abs", abs, 0.2, 2.0),
        ("negative", negative, -2.0, 2.0),
        ("square", square, -2.0, 2.0),
        ("sqrt", sqrt, 0.3, 3.0),
        ("rsqrt", rsqrt, 0.3, 3.0),
        ("reciprocal", reciprocal, 0.3, 3.0),
        ("exp", exp, -2.0, 2.0),
        ("expm1", expm1, -2.0, 2.0),
        ("log", log, 0.3, 3.0),
        ("log1p", log1p, 0.3, 3.0),
        ("log2", log2, 0.3, 3.0),
        ("log10", log10, 0.3, 3.0),
        ("sin", sin, -3.0, 3.0),
        ("cos", cos, -3.0, 3.0),
        ("tan", tan, -1.0, 1.0),
        ("arcsin", arcsin, -0.9, 0.9),
        ("arccos", arccos, -0.9, 0.9),
        ("arctan", arctan, -3.0, 3.0),
        ("sinh", sinh, -2.0, 2.0),
        ("cosh", cosh, -2.0, 2.0),
        ("tanh", tanh, -2.0, 2.0),
        ("arcsinh", arcsinh, -2.0, 2.0),
        ("arccosh", arccosh, 1.2, 3.0),
        ("arctanh", arctanh, -0.9, 0.9),
        ("erf", erf, -2.0, 2.0),
        ("erfinv", erfinv, -0.9, 0.9),
        ("sigmoid", sigmoid, -3.0, 3.0),
        ("floor", floor, 0.1, 0.9),
        ("ceil", ceil, 0.1, 0.9),
        ("sign", sign, 0.1, 0.9),
    ];
    for (i, (name, f, lo, hi)) in cases.into_iter().enumerate() {
        for shape in [vec![], vec![5], vec![2, 3]] {
            check(name, &move |x: &[Array]| f(&x[0]), &[r(i as u64, &shape, lo, hi)]);
        }
        // Through a transposed view.
        check(name, &move |x: &[Array]| f(&transpose(&x[0], &[1, 0])), &[r(i as u64 + 99, &[3, 2], lo, hi)]);
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    type B = fn(&Array, &Array) -> Array;
    let cases: Vec<(&str, B, f64, f64)> = vec![
        ("add", |a, b| add(a, b), -2.0, 2.0),
        ("subtract", |a, b| subtract(a, b), -2.0, 2.0),
        ("multiply", |a, b| multiply(a, b), -2.0, 2.0),
        ("divide", |a, b| divide(a, b), 0.5, 2.0),
        ("power", |a, b| power(a, b), 0.5, 2.0),
        ("maximum", |a, b| maximum(a, b), -2.0, 2.0),
        ("minimum", |a, b| minimum(a, b), -2.0, 2.0),
        ("remainder", |a, b| remainder(a, b), 0.6, 2.0),
        ("arctan2", |a, b| arctan2(a, b), 0.5, 2.0),
        ("logaddexp", |a, b| logaddexp(a, b), -2.0, 2.0),
    ];
    let shapes = [(vec![4], vec![4]), (vec![3, 1], vec![4]), (vec![2, 3], vec![]), (vec![1, 3], vec![2, 1])];
    for (i, (name, f, lo, hi)) in cases.into_iter().enumerate() {
        for (k, (sa, sb)) in shapes.iter().enumerate() {
            let s = (i * 10 + k) as u64;
            check(name, &move |x: &[Array]| f(&x[0], &x[1]), &[r(s, sa, lo, hi), r(s + 5, sb, lo, hi)]);
        }
    }
    // The same array on both sides, and a scalar operand.
    check("x*x", &|x: &[Array]| multiply(&x[0], &x[0]), &[r(1, &[3], -1.0, 1.0)]);
    check("x**2.5", &|x: &[Array]| power(&x[0], 2.5), &[r(2, &[3], 0.5, 2.0)]);
}

#[test]
fn select_clip_cast() {
    check("where", &|x: &[Array]| where_(greater(&x[0], 0.0), &x[0], &x[1]), &[r(1, &[2, 3], -1.0, 1.0), r(2, &[3], -1.0, 1.0)]);
    check("clip", &|x: &[Array]| clip(&x[0], Some((-0.5).into()), Some(0.5.into())), &[r(3, &[7], -1.0, 1.0)]);
    check("astype", &|x: &[Array]| x[0].astype(Dtype::Float64) * 3.0, &[r(4, &[3], -1.0, 1.0)]);
}

#[test]
fn reductions() {
    let x = || r(7, &[3, 4], 0.5, 2.0);
    type R = Box<dyn Fn(&[Array]) -> Array>;
    let cases: Vec<(&str, R)> = vec![
        ("sum", Box::new(|x| sum(&x[0], 1, false))),
        ("sum_all", Box::new(|x| sum(&x[0], None, false))),
        ("sum_keep", Box::new(|x| sum(&x[0], 0, true))),
        ("prod", Box::new(|x| prod(&x[0], 1, false))),
        ("max", Box::new(|x| max(&x[0], 0, false))),
        ("min", Box::new(|x| min(&x[0], vec![0, 1], false))),
        ("mean", Box::new(|x| mean(&x[0], 1, false))),
        ("var", Box::new(|x| var(&x[0], 1, false, 0))),
        ("var_axis0_ddof1", Box::new(|x| var(&x[0], 0, false, 1))),
        ("std", Box::new(|x| std(&x[0], None, false, 0))),
        ("logsumexp", Box::new(|x| logsumexp(&x[0], 1, false))),
        ("logsumexp0", Box::new(|x| logsumexp(&x[0], 0, true))),
        ("softmax", Box::new(|x| softmax(&x[0], -1, false))),
        ("softmax0", Box::new(|x| softmax(&x[0], 0, false))),
        ("cumsum", Box::new(|x| cumsum(&x[0], Some(1), false, true))),
        ("cumsum_rev_excl", Box::new(|x| cumsum(&x[0], Some(0), true, false))),
        ("cumprod", Box::new(|x| cumprod(&x[0], Some(1), false, true))),
        ("cumprod_rev_excl", Box::new(|x| cumprod(&x[0], Some(1), true, false))),
        ("cummax", Box::new(|x| cummax(&x[0], Some(1), false, true))),
        ("cummin_rev", Box::new(|x| cummin(&x[0], Some(0), true, true))),
        ("logcumsumexp", Box::new(|x| logcumsumexp(&x[0], Some(1), false, true))),
        // The exclusive scan's empty end is -inf: drop it.
        (
            "logcumsumexp_rev_excl",
            Box::new(|x| slice(&logcumsumexp(&x[0], Some(1), true, false), &[SliceSpec::FULL, SliceSpec::new(None, Some(-1), 1)])),
        ),
        ("median", Box::new(|x| median(&x[0], 1, false))),
        ("norm", Box::new(|x| linalg::norm(&x[0], None, None, false))),
    ];
    for (name, f) in &cases {
        check(name, f.as_ref(), &[x()]);
    }
}

#[test]
fn shape_and_layout_ops() {
    type R = Box<dyn Fn(&[Array]) -> Array>;
    let cases: Vec<(&str, R, Vec<usize>)> = vec![
        ("reshape", Box::new(|x| reshape(&x[0], &[6, 2]) * 2.0), vec![3, 4]),
        ("transpose", Box::new(|x| transpose(&x[0], &[1, 0]) * 2.0), vec![3, 4]),
        ("broadcast_to", Box::new(|x| broadcast_to(&x[0], &[2, 3, 4])), vec![3, 1]),
        ("slice_step", Box::new(|x| slice(&x[0], &[SliceSpec::new(Some(2), None, -1), SliceSpec::new(Some(1), None, 2)])), vec![3, 4]),
        ("flip", Box::new(|x| flip(&x[0], &[1])), vec![3, 4]),
        ("as_strided", Box::new(|x| as_strided(&x[0], &[3, 3], &[1, 1], 0)), vec![5]),
        ("concatenate", Box::new(|x| concatenate(&[x[0].clone(), square(&x[0])], 1)), vec![2, 3]),
        ("stack_split", Box::new(|x| stack(&split_equal(&x[0], 2, 1), 0)), vec![3, 4]),
        ("pad", Box::new(|x| pad_constant(&x[0], &[(1, 2), (0, 1)], 0.0)), vec![2, 3]),
        ("pad_edge", Box::new(|x| pad(&x[0], &[(2, 1)], PadMode::Edge)), vec![4]),
        ("squeeze_expand", Box::new(|x| expand_dims(&squeeze(&x[0], &[1]), &[0, 2])), vec![3, 1]),
        ("contiguous", Box::new(|x| contiguous(&transpose(&x[0], &[1, 0]))), vec![3, 4]),
        ("tile", Box::new(|x| tile(&x[0], &[2, 1])), vec![2, 3]),
        ("repeat", Box::new(|x| repeat(&x[0], 2, Some(0))), vec![2, 3]),
        ("roll", Box::new(|x| roll(&x[0], 1, Some(1))), vec![2, 3]),
        ("diagonal", Box::new(|x| diagonal(&x[0], 0, 0, 1)), vec![3, 3]),
        ("tril", Box::new(|x| tril(&x[0], 0)), vec![3, 3]),
    ];
    for (i, (name, f, shape)) in cases.iter().enumerate() {
        check(name, f.as_ref(), &[r(i as u64, shape, -1.0, 1.0)]);
    }
    // Pad value as a differentiated input.
    check(
        "pad_value",
        &|x: &[Array]| pad_constant(&x[0], &[(1, 1)], sum(&x[1], None, false)),
        &[r(1, &[3], -1.0, 1.0), r(2, &[2], -1.0, 1.0)],
    );
}

#[test]
fn indexing_ops() {
    let idx = Array::vec(&[2i32, 0, 2, 1]);
    let i2 = idx.clone();
    check("take", &move |x: &[Array]| take(&x[0], &i2, Some(1)), &[r(1, &[3, 4], -1.0, 1.0)]);
    let i3 = idx.clone();
    check("take_flat", &move |x: &[Array]| take(&x[0], &i3, None), &[r(2, &[3, 4], -1.0, 1.0)]);
    let ia = Array::from_slice(&[0i32, 2, 1, 1, 0, 0], &[3, 2]);
    let ia2 = ia.clone();
    check("take_along_axis", &move |x: &[Array]| take_along_axis(&x[0], &ia2, Some(1)), &[r(3, &[3, 4], -1.0, 1.0)]);
    // Unique per row: with repeated indices which write wins is unspecified.
    let ia3 = Array::from_slice(&[0i32, 2, 3, 1, 1, 0], &[3, 2]);
    check(
        "put_along_axis",
        &move |x: &[Array]| put_along_axis(&x[0], &ia3, &x[1], Some(1)),
        &[r(4, &[3, 4], -1.0, 1.0), r(5, &[3, 2], -1.0, 1.0)],
    );
    let rows = Array::vec(&[0i32, 2, 0]);
    let r2 = rows.clone();
    check(
        "scatter_add",
        &move |x: &[Array]| scatter_add(&x[0], &[r2.clone()], &x[1], &[0]),
        &[r(6, &[3, 2], -1.0, 1.0), r(7, &[3, 1, 2], -1.0, 1.0)],
    );
    let r3 = Array::vec(&[2i32, 0]);
    check(
        "scatter",
        &move |x: &[Array]| scatter(&x[0], &[r3.clone()], &x[1], &[0]),
        &[r(8, &[3, 2], -1.0, 1.0), r(9, &[2, 1, 2], -1.0, 1.0)],
    );
    check(
        "slice_update",
        &|x: &[Array]| slice_update(&x[0], &x[1], &[SliceSpec::new(Some(1), Some(3), 1), SliceSpec::new(None, None, 2)]),
        &[r(10, &[4, 4], -1.0, 1.0), r(11, &[2, 2], -1.0, 1.0)],
    );
    check(
        "index_adv",
        &|x: &[Array]| x[0].index(&[Idx::Array(Array::vec(&[1i32, 1])), Idx::Slice(SliceSpec::new(None, None, -1))]),
        &[r(12, &[3, 4], -1.0, 1.0)],
    );
    check("dynamic_slice", &|x: &[Array]| slice_dynamic(&x[0], &Array::vec(&[1i32]), &[0], &[2, 3]), &[r(13, &[4, 3], -1.0, 1.0)]);
}

#[test]
fn matmul_and_conv() {
    check("matmul", &|x: &[Array]| matmul(&x[0], &x[1]), &[r(1, &[3, 4], -1.0, 1.0), r(2, &[4, 2], -1.0, 1.0)]);
    check("matmul_batch_bcast", &|x: &[Array]| matmul(&x[0], &x[1]), &[r(3, &[2, 3, 4], -1.0, 1.0), r(4, &[4, 2], -1.0, 1.0)]);
    check("matvec", &|x: &[Array]| matmul(&x[0], &x[1]), &[r(5, &[3, 4], -1.0, 1.0), r(6, &[4], -1.0, 1.0)]);
    // A batch against one matrix or vector is one product with the batch folded into the rows.
    check("batched_matvec", &|x: &[Array]| matmul(&x[0], &x[1]), &[r(7, &[2, 3, 4], -1.0, 1.0), r(8, &[4], -1.0, 1.0)]);
    check("matmul_4d_by_2d", &|x: &[Array]| matmul(&x[0], &x[1]), &[r(9, &[2, 2, 3, 4], -1.0, 1.0), r(10, &[4, 2], -1.0, 1.0)]);
    check(
        "einsum",
        &|x: &[Array]| einsum("ij,jk->ik", &[x[0].clone(), x[1].clone()]),
        &[r(7, &[2, 3], -1.0, 1.0), r(8, &[3, 2], -1.0, 1.0)],
    );
    check(
        "addmm",
        &|x: &[Array]| addmm(&x[2], &x[0], &x[1], 0.5, 2.0),
        &[r(9, &[2, 3], -1.0, 1.0), r(10, &[3, 2], -1.0, 1.0), r(11, &[2, 2], -1.0, 1.0)],
    );
    let conv_cases: Vec<(&str, Box<dyn Fn(&[Array]) -> Array>, Vec<usize>, Vec<usize>)> = vec![
        ("conv1d", Box::new(|x| conv1d(&x[0], &x[1], 1, 0, 1, 1)), vec![2, 7, 3], vec![4, 3, 3]),
        ("conv1d_s2_p1_d2", Box::new(|x| conv1d(&x[0], &x[1], 2, 1, 2, 1)), vec![2, 9, 2], vec![3, 3, 2]),
        ("conv1d_groups", Box::new(|x| conv1d(&x[0], &x[1], 1, 1, 1, 2)), vec![1, 6, 4], vec![4, 3, 2]),
        ("conv2d", Box::new(|x| conv2d(&x[0], &x[1], [2, 1], [1, 0], [1, 2], 1)), vec![1, 6, 7, 2], vec![3, 3, 2, 2]),
        ("conv2d_depthwise", Box::new(|x| conv2d(&x[0], &x[1], [1, 1], [1, 1], [1, 1], 3)), vec![1, 5, 5, 3], vec![3, 3, 3, 1]),
        (
            "conv_general_flip_idil",
            Box::new(|x| conv_general(&x[0], &x[1], &[1], &[1], &[2], &[1], &[2], 1, true)),
            vec![1, 5, 2],
            vec![2, 3, 2],
        ),
        ("conv_transpose1d", Box::new(|x| conv_transpose1d(&x[0], &x[1], 2, 1, 1, 0, 1)), vec![1, 5, 2], vec![3, 3, 2]),
    ];
    for (i, (name, f, sx, sw)) in conv_cases.iter().enumerate() {
        check(name, f.as_ref(), &[r(20 + i as u64, sx, -1.0, 1.0), r(40 + i as u64, sw, -1.0, 1.0)]);
    }
}

#[test]
fn sort_and_linalg() {
    check("sort", &|x: &[Array]| sort(&x[0], Some(1)), &[r(1, &[3, 5], -1.0, 1.0)]);
    check("topk", &|x: &[Array]| topk(&x[0], 2, Some(-1)), &[r(2, &[3, 5], -1.0, 1.0)]);
    let spd = |seed: u64| {
        let a = r(seed, &[3, 3], -1.0, 1.0);
        matmul(&a, &transpose(&a, &[1, 0])) + eye(3, None, 0, Dtype::Float64) * 3.0
    };
    check("inv", &|x: &[Array]| linalg::inv(&x[0]), &[spd(3)]);
    check("solve", &|x: &[Array]| linalg::solve(&x[0], &x[1]), &[spd(4), r(5, &[3, 2], -1.0, 1.0)]);
    check("solve_vec", &|x: &[Array]| linalg::solve(&x[0], &x[1]), &[spd(6), r(7, &[3], -1.0, 1.0)]);
    check("solve_triangular", &|x: &[Array]| linalg::solve_triangular(&x[0], &x[1], false), &[spd(8), r(9, &[3, 2], -1.0, 1.0)]);
    check("tri_inv", &|x: &[Array]| linalg::tri_inv(&x[0], true), &[spd(10)]);
    // Factorisations of symmetric inputs: differentiate through the symmetrised input, as the
    // symmetrised cotangent is the derivative on the space of symmetric matrices.
    let symm = |a: &Array| (a + transpose(a, &[1, 0])) * 0.5;
    check("cholesky", &move |x: &[Array]| linalg::cholesky(&symm(&x[0]), false), &[spd(11)]);
    check("cholesky_upper", &move |x: &[Array]| linalg::cholesky(&symm(&x[0]), true), &[spd(12)]);
    check("eigvalsh", &move |x: &[Array]| linalg::eigvalsh(&symm(&x[0]), "L"), &[spd(13)]);
    // Eigenvectors are defined up to sign: the loss uses sign-invariant products.
    check(
        "eigh_vectors",
        &move |x: &[Array]| {
            let (w, v) = linalg::eigh(&symm(&x[0]), "L");
            matmul(&(&v * expand_dims(&w, &[0])), &transpose(&v, &[1, 0])) + square(&v)
        },
        &[spd(14)],
    );
}

#[test]
fn fft_and_complex() {
    let c = |x: &Array| x.astype(Dtype::Complex64);
    let cases: Vec<(&str, Box<dyn Fn(&[Array]) -> Array>, Vec<usize>)> = vec![
        ("fft_real", Box::new(move |x| real(&fft::fft(&c(&x[0]), None, -1))), vec![2, 6]),
        ("fft_abs", Box::new(move |x| abs(&fft::fft(&c(&x[0]), None, 0))), vec![5, 2]),
        ("ifft_imag", Box::new(move |x| imag(&fft::ifft(&(c(&x[0]) * num_complex::Complex32::new(0.5, 1.0)), None, -1))), vec![6]),
        ("fft_padded", Box::new(move |x| real(&fft::fft(&c(&x[0]), Some(8), -1))), vec![5]),
        ("rfft", Box::new(|x| abs(&fft::rfft(&x[0].astype(Dtype::Float32), None, -1))), vec![2, 7]),
        ("rfft_even", Box::new(|x| real(&fft::rfft(&x[0].astype(Dtype::Float32), None, -1))), vec![8]),
        ("irfft", Box::new(move |x| fft::irfft(&(c(&x[0]) * num_complex::Complex32::new(1.0, -0.5)), Some(8), -1)), vec![5]),
        ("irfft_odd", Box::new(move |x| fft::irfft(&(c(&x[0]) * num_complex::Complex32::new(0.3, 1.0)), Some(7), -1)), vec![4]),
        ("fft2_roundtrip", Box::new(move |x| real(&fft::ifft2(&square(&fft::fft2(&c(&x[0]), None, &[0, 1])), None, &[0, 1]))), vec![3, 4]),
        ("complex_mul_exp", Box::new(move |x| abs(&(exp(&(c(&x[0]) * num_complex::Complex32::new(0.2, 0.7))) * c(&x[1])))), vec![4]),
    ];
    for (i, (name, f, shape)) in cases.iter().enumerate() {
        let n = if *name == "complex_mul_exp" { 2 } else { 1 };
        let xs: Vec<Array> = (0..n).map(|k| r(50 + i as u64 + 7 * k, shape, 0.2, 1.0)).collect();
        check_f32(name, f.as_ref(), &xs);
    }
}

#[test]
fn higher_order_and_nesting() {
    let x = Array::from_slice(&[0.3f64, -1.2, 2.0], &[3]);
    // d²/dx² sin = -sin, d³ = -cos.
    let d2 = grad(grad(|x: Array| sum(&sin(&x), None, false)).pipe_sum());
    let got = d2(x.clone()).to_vec::<f64>().unwrap();
    for (g, v) in got.iter().zip(x.to_vec::<f64>().unwrap()) {
        assert!((g + v.sin()).abs() < 1e-12, "{g} vs {}", -v.sin());
    }
    let s = Array::scalar(0.7f64);
    let d3 = grad(grad(grad(|x: Array| sin(&x))));
    assert!((d3(s.clone()).item::<f64>().unwrap() + 0.7f64.cos()).abs() < 1e-12);
    // jvp of vjp: the Hessian-vector product of f(x) = Σ x³ is 6·x·v.
    let v = Array::from_slice(&[1.0f64, 2.0, -1.0], &[3]);
    let f_grad = |x: Array| vjp(|x: Array| sum(&power(&x, 3.0), None, false), &x, &Array::scalar(1.0f64)).unwrap().1;
    let (_, hv) = jvp(f_grad, &x, &v).unwrap();
    let want = (&x * &v * 6.0).to_vec::<f64>().unwrap();
    assert_eq!(hv.to_vec::<f64>().unwrap().len(), 3);
    for (a, b) in hv.to_vec::<f64>().unwrap().iter().zip(want) {
        assert!((a - b).abs() < 1e-10, "{a} vs {b}");
    }
    // vjp of jvp agrees too (forward-over-reverse vs reverse-over-forward).
    let g_jvp = |x: Array| jvp(|x: Array| sum(&power(&x, 3.0), None, false), &x, &v).unwrap().1;
    let (_, hv2) = vjp(g_jvp, &x, &Array::scalar(1.0f64)).unwrap();
    for (a, b) in hv2.to_vec::<f64>().unwrap().iter().zip(hv.to_vec::<f64>().unwrap()) {
        assert!((a - b).abs() < 1e-10);
    }
}

trait PipeSum {
    fn pipe_sum(self) -> Box<dyn Fn(Array) -> Array>;
}
impl<F: Fn(Array) -> Array + 'static> PipeSum for F {
    fn pipe_sum(self) -> Box<dyn Fn(Array) -> Array> {
        Box::new(move |x| sum(&self(x), None, false))
    }
}

#[test]
fn trees_aux_argnums_and_stop_gradient() {
    use std::collections::BTreeMap;
    let mut params = BTreeMap::new();
    params.insert("w".to_string(), Array::from_slice(&[1.0f32, 2.0], &[2]));
    params.insert("b".to_string(), Array::scalar(0.5f32));
    let x = Array::from_slice(&[3.0f32, -1.0], &[2]);
    let xc = x.clone();
    let vg = value_and_grad(move |p: BTreeMap<String, Array>| {
        let y = sum(&(&p["w"] * &xc), None, false) + &p["b"];
        (square(&y), y) // (loss, aux)
    });
    let ((loss, aux), g) = vg(params.clone());
    assert_eq!(aux.item::<f32>().unwrap(), 1.5);
    assert_eq!(loss.item::<f32>().unwrap(), 2.25);
    // dL/dw = 2y·x, dL/db = 2y.
    assert_eq!(g["w"].to_vec::<f32>().unwrap(), vec![9.0, -3.0]);
    assert_eq!(g["b"].item::<f32>().unwrap(), 3.0);

    let ga = grad_argnums(|v: Vec<Array>| sum(&(&v[0] * &v[1] * &v[2]), None, false), &[2, 0]);
    let v = vec![Array::scalar(2.0f32), Array::scalar(3.0f32), Array::scalar(5.0f32)];
    let g = ga(v);
    assert_eq!((g[0].item::<f32>().unwrap(), g[1].item::<f32>().unwrap()), (6.0, 15.0));

    let gs = grad(|x: Array| sum(&(&x * stop_gradient(&x)), None, false));
    assert_eq!(gs(Array::vec(&[3.0f32])).to_vec::<f32>().unwrap(), vec![3.0]);
    // Integer leaves get zero gradients.
    let gi = grad_argnums(|v: Vec<Array>| sum(&(&v[0] * v[1].astype(Dtype::Float32)), None, false), &[0, 1]);
    let g = gi(vec![Array::vec(&[1.0f32]), Array::vec(&[4i32])]);
    assert_eq!(g[0].to_vec::<f32>().unwrap(), vec![4.0]);
    assert_eq!(g[1].to_vec::<i32>().unwrap(), vec![0]);
}

#[test]
fn eval_inside_the_traced_function() {
    // Evaluating (or reading) intermediates inside a transformed function keeps the graph.
    let g = grad(|x: Array| {
        let y = exp(&x);
        y.eval().unwrap();
        let _ = y.to_vec::<f64>().unwrap();
        sum(&(&y * 2.0), None, false)
    });
    let x = Array::vec(&[0.5f64, 1.0]);
    let got = g(x.clone()).to_vec::<f64>().unwrap();
    assert!((got[0] - 2.0 * 0.5f64.exp()).abs() < 1e-12 && (got[1] - 2.0 * 1f64.exp()).abs() < 1e-12);
}

#[test]
fn errors_are_clear() {
    let g = grad(|x: Array| &x * 2.0);
    let e = g(Array::vec(&[1.0f32, 2.0])).check().unwrap_err();
    assert!(e.to_string().contains("must be a scalar"), "{e}");
    let e = vjp(|x: Array| &x * 2.0, &Array::vec(&[1.0f32, 2.0]), &Array::vec(&[1.0f32])).unwrap_err();
    assert!(e.to_string().contains("shape [1]") && e.to_string().contains("[2]"), "{e}");
    let e = jvp(|x: Array| &x * 2.0, &Array::vec(&[1.0f32, 2.0]), &Array::vec(&[1.0f32, 2.0, 3.0])).unwrap_err();
    assert!(e.to_string().contains("tangents"), "{e}");
    let ga = grad_argnums(|v: Vec<Array>| sum(&v[0], None, false), &[3]);
    let e = ga(vec![Array::vec(&[1.0f32])])[0].check().unwrap_err();
    assert!(e.to_string().contains("argument index 3"), "{e}");
    let gf = grad(|x: Array| sum(&scatter_max(&x, &[Array::vec(&[0i32])], &Array::from_slice(&[5.0f32], &[1, 1]), &[0]), None, false));
    let e = gf(Array::vec(&[1.0f32, 2.0])).check().unwrap_err();
    assert!(e.to_string().contains("not implemented"), "{e}");
}

#[test]
fn custom_function_rules_are_used() {
    let f = custom_function("twice", |x: &[Array]| Ok(vec![&x[0] * 2.0]))
        .vjp(|_p, _o, cot| Ok(vec![&cot[0] * 10.0]))
        .jvp(|_p, t| Ok(vec![&t[0] * 100.0]));
    let x = Array::vec(&[1.0f32, 2.0]);
    let y = f.call(&[x.clone()]).unwrap();
    assert_eq!(y[0].to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
    let (_, g) = vjp(|x: Array| f.call(&[x]).unwrap().remove(0), &x, &Array::vec(&[1.0f32, 1.0])).unwrap();
    assert_eq!(g.to_vec::<f32>().unwrap(), vec![10.0, 10.0]);
    let (_, t) = jvp(|x: Array| f.call(&[x]).unwrap().remove(0), &x, &Array::vec(&[1.0f32, 1.0])).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![100.0, 100.0]);
    // Without a jvp, forward mode goes through the vjp.
    let f2 = custom_function("twice", |x: &[Array]| Ok(vec![&x[0] * 2.0])).vjp(|_p, _o, cot| Ok(vec![&cot[0] * 10.0]));
    let (_, t) = jvp(|x: Array| f2.call(&[x]).unwrap().remove(0), &x, &Array::vec(&[1.0f32, 1.0])).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![10.0, 10.0]);
}

#[test]
fn checkpoint_matches_and_recomputes() {
    let layer = |x: &[Array]| -> Result<Vec<Array>> { Ok(vec![tanh(&(sin(&x[0]) * 1.5))]) };
    let ck = checkpoint(layer);
    let x = r(3, &[4], -1.0, 1.0);
    let plain = grad(|x: Array| sum(&layer(&[x]).unwrap()[0], None, false))(x.clone());
    let ckg = grad(move |x: Array| sum(&ck(&[x]).unwrap()[0], None, false))(x.clone());
    assert!(allclose(&plain, &ckg, 1e-12, 1e-12, false).item::<bool>().unwrap());
}
