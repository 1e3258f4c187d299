//! `vmap(f)` equals a loop over the batch for every primitive family, with several in/out axes;
//! nesting with itself and with grad; error cases.

mod common;
use common::gradcheck::Rng;
use oxmx_core::ops::*;
use oxmx_core::prelude::*;
use oxmx_core::transforms::*;

type F = Box<dyn Fn(&[Array]) -> Array>;

/// vmap(f) over `axes` (one per input, None = shared) vs stacking f on each batch element.
fn check(name: &str, f: &F, xs: &[Array], axes: &[Option<isize>], out_axis: isize) {
    let b = xs.iter().zip(axes).find_map(|(x, a)| a.map(|a| x.shape()[a.rem_euclid(x.ndim() as isize) as usize])).unwrap();
    let got = vmap(|v: Vec<Array>| f(&v), axes, &[out_axis])(xs.to_vec());
    let mut parts = Vec::new();
    for k in 0..b {
        let idx = Array::scalar(k as i32);
        let v: Vec<Array> = xs.iter().zip(axes).map(|(x, a)| a.map_or(x.clone(), |a| take(x, &idx, Some(a)))).collect();
        parts.push(f(&v));
    }
    let want = stack(&parts, out_axis);
    got.check().unwrap_or_else(|e| panic!("{name}: vmap fails: {e}"));
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{name}: dtype");
    let ok = allclose(&got.astype(Dtype::Float64), &want.astype(Dtype::Float64), 1e-5, 1e-6, true).item::<bool>().unwrap();
    assert!(ok, "{name}: vmap {got} vs loop {want}");
}

fn r(seed: u64, shape: &[usize]) -> Array {
    Rng::new(seed).uniform(shape, 0.1, 1.0).astype(Dtype::Float32)
}

#[test]
fn every_family_matches_a_loop() {
    let cases: Vec<(&str, F, Vec<Vec<usize>>)> = vec![
        ("exp", Box::new(|x| exp(&x[0])), vec![vec![3, 4]]),
        ("add_bcast", Box::new(|x| &x[0] + &x[1]), vec![vec![3, 4], vec![3, 1]]),
        ("where", Box::new(|x| where_(greater(&x[0], 0.5), &x[0], &x[1])), vec![vec![3, 4], vec![3, 4]]),
        ("astype", Box::new(|x| x[0].astype(Dtype::Float16)), vec![vec![3, 4]]),
        ("sum", Box::new(|x| sum(&x[0], 0, false)), vec![vec![3, 4]]),
        ("max_keep", Box::new(|x| max(&x[0], -1, true)), vec![vec![3, 4]]),
        ("argmax", Box::new(|x| argmax(&x[0], Some(0), false)), vec![vec![3, 4]]),
        ("cumsum", Box::new(|x| cumsum(&x[0], Some(0), true, false)), vec![vec![3, 4]]),
        ("softmax", Box::new(|x| softmax(&x[0], 0, false)), vec![vec![3, 4]]),
        ("logsumexp", Box::new(|x| logsumexp(&x[0], -1, false)), vec![vec![3, 4]]),
        ("var", Box::new(|x| var(&x[0], 0, false, 1)), vec![vec![3, 4]]),
        ("reshape", Box::new(|x| reshape(&x[0], &[2, -1])), vec![vec![3, 4]]),
        ("transpose", Box::new(|x| transpose(&x[0], &[1, 0])), vec![vec![3, 4]]),
        ("broadcast", Box::new(|x| broadcast_to(&x[0], &[2, 3, 4])), vec![vec![4]]),
        ("slice", Box::new(|x| slice(&x[0], &[SliceSpec::new(Some(2), None, -2)])), vec![vec![3, 4]]),
        ("as_strided", Box::new(|x| as_strided(&x[0], &[2, 3], &[1, 2], 1)), vec![vec![8]]),
        ("concatenate", Box::new(|x| concatenate(&[x[0].clone(), x[1].clone()], 0)), vec![vec![3, 4], vec![2, 4]]),
        ("pad", Box::new(|x| pad_constant(&x[0], &[(1, 0), (0, 2)], 0.5)), vec![vec![3, 4]]),
        ("take", Box::new(|x| take(&x[0], &Array::vec(&[2i32, 0, 0]), Some(1))), vec![vec![3, 4]]),
        ("take_batched_idx", Box::new(|x| take(&x[0], &x[1].astype(Dtype::Int32), Some(0))), vec![vec![3, 4], vec![2]]),
        (
            "scatter_add",
            Box::new(|x| scatter_add(&x[0], &[Array::vec(&[0i32, 2])], &expand_dims(&x[1], &[1]), &[0])),
            vec![vec![3, 4], vec![2, 4]],
        ),
        ("slice_update", Box::new(|x| slice_update(&x[0], &x[1], &[SliceSpec::new(Some(1), Some(3), 1)])), vec![vec![3, 4], vec![2, 4]]),
        ("matmul", Box::new(|x| matmul(&x[0], &x[1])), vec![vec![3, 4], vec![4, 2]]),
        ("matvec", Box::new(|x| matmul(&x[0], &x[1])), vec![vec![3, 4], vec![4]]),
        ("conv1d", Box::new(|x| conv1d(&x[0], &x[1], 1, 1, 1, 1)), vec![vec![2, 5, 3], vec![4, 3, 3]]),
        ("sort", Box::new(|x| sort(&x[0], Some(0))), vec![vec![3, 4]]),
        ("argsort", Box::new(|x| argsort(&x[0], Some(-1))), vec![vec![3, 4]]),
        ("fft", Box::new(|x| abs(&fft::rfft(&x[0], None, 0))), vec![vec![4, 3]]),
        ("inv", Box::new(|x| linalg::inv(&(&x[0] + eye(3, None, 0, Dtype::Float32) * 3.0))), vec![vec![3, 3]]),
        ("solve", Box::new(|x| linalg::solve(&(&x[0] + eye(3, None, 0, Dtype::Float32) * 3.0), &x[1])), vec![vec![3, 3], vec![3]]),
        ("constant_output", Box::new(|x| &x[0] * 0.0 + ones(&[3, 4], Dtype::Float32)), vec![vec![3, 4]]),
    ];
    let b = 3;
    for (i, (name, f, shapes)) in cases.iter().enumerate() {
        // Batch every input on axis 0, then on the last axis with out_axes = -1, then only the
        // first input (others shared).
        let batched = |ax: usize| -> Vec<Array> {
            shapes
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let mut s = s.clone();
                    s.insert(ax.min(s.len()), b);
                    r((i * 10 + k) as u64, &s)
                })
                .collect()
        };
        let n = shapes.len();
        check(name, f, &batched(0), &vec![Some(0); n], 0);
        let last: Vec<Array> = batched(99);
        check(name, f, &last, &vec![Some(-1); n], -1);
        if n > 1 {
            let mut xs = batched(0);
            for (k, x) in xs.iter_mut().enumerate().skip(1) {
                *x = r((i * 10 + k) as u64 + 5, &shapes[k]);
            }
            let mut axes = vec![None; n];
            axes[0] = Some(0);
            check(name, f, &xs, &axes, 1.min(0));
        }
    }
}

#[test]
fn nesting_with_itself_and_grad() {
    let x = r(1, &[2, 3, 4]);
    // vmap(vmap(f)) over two axes equals f on everything (element-wise f).
    let inner = vmap(|x: Array| exp(&x) * 2.0, &[Some(0)], &[0]);
    let outer = vmap(inner, &[Some(1)], &[1]);
    assert!(allclose(&outer(x.clone()), &(exp(&x) * 2.0), 1e-6, 1e-6, false).item::<bool>().unwrap());
    // vmap(grad(f)) = per-example gradients.
    let g = grad(|x: Array| sum(&sin(&x), None, false));
    let per = vmap(g, &[Some(0)], &[0])(x.clone());
    assert!(allclose(&per, &cos(&x), 1e-6, 1e-6, false).item::<bool>().unwrap());
    // grad(vmap(f)).
    let gv = grad(|x: Array| sum(&vmap(|r: Array| sum(&square(&r), None, false), &[Some(0)], &[0])(x), None, false));
    assert!(allclose(&gv(x.clone()), &(&x * 2.0), 1e-6, 1e-6, false).item::<bool>().unwrap());
}

#[test]
fn trees_and_errors() {
    let f = vmap(|(a, b): (Array, Array)| (&a + &b, &a * 2.0), &[Some(0), None], &[0, 1]);
    let (s, d) = f((r(1, &[3, 2]), r(2, &[2])));
    assert_eq!(s.shape(), &[3, 2]);
    assert_eq!(d.shape(), &[2, 3]);
    let e = vmap(|v: Vec<Array>| &v[0] + &v[1], &[Some(0)], &[0])(vec![r(1, &[3, 2]), r(2, &[4, 2])]).check().unwrap_err();
    assert!(e.to_string().contains("Inconsistent axis sizes"), "{e}");
    let e = vmap(|x: Array| x, &[Some(0), Some(1)], &[0])(r(1, &[3])).check().unwrap_err();
    assert!(e.to_string().contains("in_axes has 2 entries"), "{e}");
    let e = vmap(|x: Array| x, &[Some(2)], &[0])(r(1, &[3])).check().unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = vmap(|x: Array| x, &[None], &[0])(r(1, &[3])).check().unwrap_err();
    assert!(e.to_string().contains("non-None"), "{e}");
    let e = vmap(|x: Array| x, &[Some(0)], &[3])(r(1, &[3])).check().unwrap_err();
    assert!(e.to_string().contains("out_axes"), "{e}");
}

#[test]
fn random_with_batched_keys_and_custom_functions() {
    let keys = random::split(&random::key(0), 3);
    let draw = vmap(|k: Array| random::uniform(0.0, 1.0, &[2], Dtype::Float32, Some(&k)), &[Some(0)], &[0]);
    let got = draw(keys.clone());
    for k in 0..3 {
        let one = random::uniform(0.0, 1.0, &[2], Dtype::Float32, Some(&take(&keys, &Array::scalar(k as i32), Some(0))));
        assert!(array_equal(&take(&got, &Array::scalar(k as i32), Some(0)), &one, false).item::<bool>().unwrap());
    }
    let cf = custom_function("sq", |x: &[Array]| Ok(vec![square(&x[0])]));
    let v = vmap(move |x: Array| cf.call(&[x]).unwrap().remove(0), &[Some(0)], &[0])(r(3, &[3, 2]));
    assert!(allclose(&v, &square(&r(3, &[3, 2])), 1e-6, 1e-6, false).item::<bool>().unwrap());
}
