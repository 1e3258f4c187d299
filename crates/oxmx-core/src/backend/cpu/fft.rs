//! FFTs on the CPU through `rustfft` (a pure-Rust, well-maintained FFT library with mixed-radix,
//! Bluestein and Rader algorithms, so any length is O(n log n)). Every node is a batch of 1-d
//! transforms along one axis; the lanes of that axis are spread over rayon tasks, each with its
//! own gather buffer and scratch.

use crate::dtype::Element;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::FftOp;
use num_complex::Complex32;
use rayon::prelude::*;
use rustfft::FftPlanner;

#[derive(Clone, Copy)]
struct OutPtr<T>(*mut T);
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}

/// Runs `f(lane_in, lane_out, work)` for every lane along `axis` of a row-contiguous input,
/// where lanes have `len_in` input and `len_out` output elements.
fn for_lanes<I: Element, O: Element>(
    input: &[I],
    shape: &[usize],
    axis: usize,
    len_out: usize,
    f: impl Fn(&[I], &mut [O], &mut Vec<Complex32>) + Sync,
) -> Result<Data> {
    let len_in = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out_shape = shape.to_vec();
    out_shape[axis] = len_out;
    Data::build::<O>(out_shape, |out| {
        let lanes = outer * inner;
        if lanes == 0 || len_out == 0 {
            return;
        }
        let po = OutPtr(out.as_mut_ptr());
        (0..lanes).into_par_iter().with_min_len(8.max(4096 / len_in.max(1))).for_each_init(
            || (vec![I::default(); len_in], vec![O::default(); len_out], Vec::new()),
            |(lin, lout, work), l| {
                let po = po;
                let (o, i) = (l / inner, l % inner);
                let (bi, bo) = (o * len_in * inner + i, o * len_out * inner + i);
                for (k, v) in lin.iter_mut().enumerate() {
                    *v = input[bi + k * inner];
                }
                f(lin, lout, work);
                for (k, v) in lout.iter().enumerate() {
                    // SAFETY: lanes are disjoint, and bo + k * inner < out.len().
                    unsafe { *po.0.add(bo + k * inner) = *v };
                }
            },
        );
    })
}

pub fn eval(op: &FftOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let x = inputs[0].to_row_contiguous()?;
    let shape = x.shape.clone();
    let mut planner = FftPlanner::<f32>::new();
    let out = match *op {
        FftOp::Fft { axis, inverse } => {
            let n = shape[axis];
            let plan = if inverse { planner.plan_fft_inverse(n) } else { planner.plan_fft_forward(n) };
            let scale = if inverse && n > 0 { 1.0 / n as f32 } else { 1.0 };
            let data = x.row_major::<Complex32>();
            for_lanes::<Complex32, Complex32>(&data, &shape, axis, n, |lin, lout, work| {
                lout.copy_from_slice(lin);
                work.resize(plan.get_inplace_scratch_len(), Complex32::default());
                plan.process_with_scratch(lout, work);
                if scale != 1.0 {
                    lout.iter_mut().for_each(|v| *v *= scale);
                }
            })
        }
        FftOp::Rfft { axis } => {
            let n = shape[axis];
            let plan = planner.plan_fft_forward(n);
            let data = x.row_major::<f32>();
            for_lanes::<f32, Complex32>(&data, &shape, axis, n / 2 + 1, |lin, lout, work| {
                // The full complex transform of the real lane; its first n/2+1 bins are kept.
                let scratch = plan.get_inplace_scratch_len();
                work.resize(n + scratch, Complex32::default());
                let (buf, scr) = work.split_at_mut(n);
                for (b, &v) in buf.iter_mut().zip(lin) {
                    *b = Complex32::new(v, 0.0);
                }
                plan.process_with_scratch(buf, scr);
                lout.copy_from_slice(&buf[..lout.len()]);
            })
        }
        FftOp::Irfft { axis, n } => {
            let plan = planner.plan_fft_inverse(n);
            let scale = 1.0 / n as f32;
            let data = x.row_major::<Complex32>();
            for_lanes::<Complex32, f32>(&data, &shape, axis, n, |lin, lout, work| {
                // Rebuild the Hermitian spectrum X[n-k] = conj(X[k]); taking the real part of
                // the inverse ignores the imaginary parts of the DC and Nyquist bins, as numpy.
                let scratch = plan.get_inplace_scratch_len();
                work.resize(n + scratch, Complex32::default());
                let (buf, scr) = work.split_at_mut(n);
                let h = lin.len();
                for k in 0..n {
                    buf[k] = if k < h { lin[k] } else { lin[n - k].conj() };
                }
                plan.process_with_scratch(buf, scr);
                for (o, b) in lout.iter_mut().zip(buf.iter()) {
                    *o = b.re * scale;
                }
            })
        }
    }?;
    debug_assert_eq!(out.shape, specs[0].0);
    Ok(vec![out])
}
