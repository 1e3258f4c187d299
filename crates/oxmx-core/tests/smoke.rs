//! End-to-end checks of the array machinery: laziness, views, eval, errors, streams, memory.

use oxmx_core::prelude::*;
use oxmx_core::{memory, ops::*, ErrorKind};

#[test]
fn arithmetic_and_views() {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let t = transpose(&a, &[]);
    assert_eq!(t.shape(), &[3, 2]);
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let b = &t * 2.0 + 1.0;
    assert_eq!(b.to_vec::<f32>().unwrap(), vec![3.0, 9.0, 5.0, 11.0, 7.0, 13.0]);
    let s = sum(&a, 1isize, false);
    assert_eq!(s.to_vec::<f32>().unwrap(), vec![6.0, 15.0]);
    let s0 = sum(&a, 0isize, true);
    assert_eq!(s0.shape(), &[1, 3]);
    assert_eq!(s0.to_vec::<f32>().unwrap(), vec![5.0, 7.0, 9.0]);
    let sl = slice(&a, &[SliceSpec::FULL, SliceSpec::new(None, None, -1)]);
    assert_eq!(sl.to_vec::<f32>().unwrap(), vec![3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
}

#[test]
fn weak_scalar_typing() {
    let a = Array::vec(&[1i8, 2, 3]);
    assert_eq!((&a + 1).dtype(), Dtype::Int8);
    assert_eq!((&a + 0.5).dtype(), Dtype::Float32);
    let h = Array::vec(&[half::f16::from_f32(1.0)]);
    assert_eq!((&h * 2.0).dtype(), Dtype::Float16);
    assert_eq!(divide(&a, &a).dtype(), Dtype::Float32);
}

#[test]
fn errors_are_carried_with_location() {
    let a = zeros(&[2, 3], Dtype::Float32);
    let b = zeros(&[4], Dtype::Float32);
    let c = add(&a, &b);
    let err = c.check().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.location().unwrap().file().ends_with("smoke.rs"), "{err}");
    // Propagates through later ops and surfaces at eval.
    let d = exp(&c);
    assert!(d.eval().is_err());
    let bad_axis = sum(&a, 5isize, false);
    assert_eq!(bad_axis.check().unwrap_err().kind(), ErrorKind::IndexOutOfRange);
}

#[test]
fn deep_chain_drops_without_recursion() {
    let mut x = zeros(&[4], Dtype::Float32);
    for _ in 0..200_000 {
        x = &x + 1.0;
    }
    drop(x);
    let mut y = zeros(&[2], Dtype::Float32);
    for _ in 0..20_000 {
        y = &y + 1.0;
    }
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![20000.0, 20000.0]);
}

#[test]
fn streams_run_and_depend_on_each_other() {
    let s1 = oxmx_core::new_stream(oxmx_core::Device::Cpu);
    let s2 = oxmx_core::new_stream(oxmx_core::Device::Cpu);
    let a = oxmx_core::with_stream(s1, || arange(0.0, 1000.0, 1.0, Some(Dtype::Float32)) * 2.0);
    let b = oxmx_core::with_stream(s2, || sum(&a, None, false));
    assert_eq!(b.item::<f32>().unwrap(), 999000.0);
}

#[test]
fn memory_limit_is_an_error() {
    let old = memory::set_memory_limit(memory::active_memory() + (1 << 20));
    let big = zeros(&[1 << 22], Dtype::Float32) + 1.0;
    let r = big.eval();
    memory::set_memory_limit(old);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::OutOfMemory);
}

#[test]
fn printing_matches_mlx() {
    assert_eq!(format!("{}", Array::vec(&[1.5f32, 2.0, 3.0])), "array([1.5, 2, 3], dtype=float32)");
    assert_eq!(format!("{}", Array::from_slice(&[1i32, 2, 3, 4], &[2, 2])), "array([[1, 2],\n       [3, 4]], dtype=int32)");
    assert_eq!(format!("{}", Array::scalar(true)), "array(True, dtype=bool)");
}

#[test]
fn printing_summarises_long_dims_like_mlx() {
    // Expected strings printed by mlx 0.32.4 for the same arrays.
    assert_eq!(format!("{}", arange(0.0, 10.0, 1.0, None)), "array([0, 1, 2, ..., 7, 8, 9], dtype=int32)");
    assert_eq!(
        format!("{}", reshape(&arange(0.0, 30.0, 1.0, None), &[10, 3])),
        "array([[0, 1, 2],\n       [3, 4, 5],\n       [6, 7, 8],\n       ...,\n       [21, 22, 23],\n       [24, 25, 26],\n       [27, 28, 29]], dtype=int32)"
    );
    assert_eq!(format!("{}", Array::vec(&[1e-5f32, 1.0])), "array([1e-05, 1], dtype=float32)");
    assert_eq!(format!("{}", Array::vec(&[123456789.0f32])), "array([1.23457e+08], dtype=float32)");
    assert_eq!(format!("{}", zeros(&[2, 0], Dtype::Float32)), "array([[],\n       []], dtype=float32)");
    // %g picks the notation from the rounded value: 0.0001f32 prints as 0.0001 (as MLX).
    assert_eq!(format!("{}", Array::vec(&[0.0001f32, 1.0, 1e-5, 99999.95])), "array([0.0001, 1, 1e-05, 100000], dtype=float32)");
    // 3-d and 4-d: MLX 0.32.4 separates blocks with a single line break (no blank lines).
    assert_eq!(
        format!("{}", Array::from_slice(&[1i32, 2, 3, 4], &[2, 2, 1])),
        "array([[[1],\n        [2]],\n       [[3],\n        [4]]], dtype=int32)"
    );
    assert_eq!(
        format!("{}", Array::from_slice(&(0..16i64).collect::<Vec<_>>(), &[2, 2, 2, 2])),
        "array([[[[0, 1],\n         [2, 3]],\n        [[4, 5],\n         [6, 7]]],\n       [[[8, 9],\n         [10, 11]],\n        [[12, 13],\n         [14, 15]]]], dtype=int64)"
    );
    assert_eq!(format!("{}", Array::scalar(3.5f32)), "array(3.5, dtype=float32)");
}
