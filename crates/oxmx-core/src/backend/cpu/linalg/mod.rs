//! CPU kernels of the linalg family. Every batch entry is read into an `f64` faer matrix, solved
//! on its own (rayon over the batch) and written back in the output dtype. float32 inputs are
//! computed in f64 too: the matrices here are small, and the extra precision keeps results at
//! least as accurate as MLX's LAPACK float32 path while one code path serves both dtypes.
//!
//! Decompositions with no single right answer (QR, SVD, eigen) come from `faer`, a maintained
//! pure-Rust dense linear-algebra crate (see `decomp.rs`); LU, Cholesky and triangular work
//! are written out in `dense.rs` because MLX exposes their exact LAPACK conventions (pivot
//! order, which triangle is read, what a zero pivot means).

mod decomp;
mod dense;

use crate::dtype::{cast, Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::data::for_each_offset;
use crate::graph::{Data, Spec};
use crate::primitives::LinalgOp;
use crate::shape::size_of;
use faer::Mat;
use num_complex::Complex32;
use rayon::prelude::*;

/// One output of one batch entry, flat row-major. Complex outputs hold (re, im) pairs.
pub(super) type Flat = Vec<f64>;

/// A row-major flat copy of a faer matrix.
pub(super) fn flat(m: &Mat<f64>) -> Flat {
    let mut v = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            v.push(m[(i, j)]);
        }
    }
    v
}

/// Reads every `[.., r, c]` batch entry of `d` as an f64 matrix (any strides, broadcast included).
fn read_matrices(d: &Data) -> Result<Vec<Mat<f64>>> {
    match d.dtype {
        Dtype::Float32 => Ok(read_typed::<f32>(d)),
        Dtype::Float64 => Ok(read_typed::<f64>(d)),
        dt => Err(Error::invalid(format!("[linalg] unsupported dtype {dt}"))),
    }
}

fn read_typed<T: Element>(d: &Data) -> Vec<Mat<f64>> {
    let nd = d.ndim();
    let (r, c) = (d.shape[nd - 2], d.shape[nd - 1]);
    let (rs, cs) = (d.strides[nd - 2], d.strides[nd - 1]);
    let raw = d.raw::<T>();
    let mut offs = Vec::new();
    if nd == 2 {
        offs.push(d.offset);
    } else {
        for_each_offset(&d.shape[..nd - 2], &d.strides[..nd - 2], d.offset, |o| offs.push(o));
    }
    offs.iter().map(|&o| Mat::from_fn(r, c, |i, j| cast::<T, f64>(raw[(o + i as isize * rs + j as isize * cs) as usize]))).collect()
}

/// Writes one output (the per-batch flats in order) as a dense array of `spec`.
fn write(spec: &Spec, parts: Vec<Flat>) -> Result<Data> {
    let (shape, dt) = (spec.0.clone(), spec.1);
    let all: Vec<f64> = parts.into_iter().flatten().collect();
    let n = size_of(&shape);
    let expect = if dt == Dtype::Complex64 { 2 * n } else { n };
    if all.len() != expect {
        return Err(Error::runtime(format!("internal: linalg kernel produced {} values for {shape:?} {dt}", all.len())));
    }
    match dt {
        Dtype::Float32 => Data::build::<f32>(shape, |o| o.iter_mut().zip(&all).for_each(|(o, &x)| *o = x as f32)),
        Dtype::Float64 => Data::build::<f64>(shape, |o| o.copy_from_slice(&all)),
        Dtype::Uint32 => Data::build::<u32>(shape, |o| o.iter_mut().zip(&all).for_each(|(o, &x)| *o = x as u32)),
        Dtype::Complex64 => Data::build::<Complex32>(shape, |o| {
            o.iter_mut().zip(all.chunks_exact(2)).for_each(|(o, p)| *o = Complex32::new(p[0] as f32, p[1] as f32))
        }),
        dt => Err(Error::runtime(format!("internal: linalg output dtype {dt}"))),
    }
}

/// The per-matrix kernel of `op`: its inputs (one matrix per input) to its outputs.
fn kernel(op: &LinalgOp, m: &[&Mat<f64>], dt: Dtype) -> Result<Vec<Flat>> {
    let a = m[0];
    match *op {
        LinalgOp::Inv => Ok(vec![flat(&dense::inv(a)?)]),
        LinalgOp::TriInv { upper } => Ok(vec![flat(&dense::tri_inv(a, upper, "tri_inv")?)]),
        LinalgOp::Cholesky { upper } => Ok(vec![flat(&dense::cholesky(a, upper))]),
        LinalgOp::CholeskyInv { upper } => Ok(vec![flat(&dense::cholesky_inv(a, upper)?)]),
        LinalgOp::Lu => dense::lu(a),
        LinalgOp::LuFactor => dense::lu_factor(a),
        LinalgOp::Solve => Ok(vec![flat(&dense::solve(a, m[1])?)]),
        LinalgOp::SolveTriangular { upper } => Ok(vec![flat(&dense::solve_triangular(a, m[1], upper)?)]),
        LinalgOp::Pinv => decomp::pinv(a, dt),
        LinalgOp::Qr => Ok(decomp::qr(a)),
        LinalgOp::Svd { compute_uv } => decomp::svd(a, compute_uv),
        LinalgOp::Eigh { upper, vectors } => decomp::eigh(a, upper, vectors),
        LinalgOp::Eig { vectors } => decomp::eig(a, vectors),
    }
}

pub fn eval(op: &LinalgOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let mats: Vec<Vec<Mat<f64>>> = inputs.iter().map(read_matrices).collect::<Result<_>>()?;
    let dt = inputs[0].dtype;
    let batches = mats[0].len();
    let per_batch: Vec<Vec<Flat>> = (0..batches)
        .into_par_iter()
        .map(|b| {
            let ms: Vec<&Mat<f64>> = mats.iter().map(|v| &v[b]).collect();
            kernel(op, &ms, dt)
        })
        .collect::<Result<_>>()?;
    // Transpose [batch][output] into [output][batch].
    let mut outs: Vec<Vec<Flat>> = (0..specs.len()).map(|_| Vec::with_capacity(batches)).collect();
    for parts in per_batch {
        if parts.len() != specs.len() {
            return Err(Error::runtime(format!("internal: {} produced {} outputs, expected {}", op.name(), parts.len(), specs.len())));
        }
        for (o, p) in outs.iter_mut().zip(parts) {
            o.push(p);
        }
    }
    specs.iter().zip(outs).map(|(s, parts)| write(s, parts)).collect()
}
