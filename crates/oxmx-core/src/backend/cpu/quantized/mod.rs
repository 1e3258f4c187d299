//! CPU kernels of the quantized family (see primitives/quantized.rs for the layout):
//! `pack` quantizes/dequantizes bit-exactly as MLX, `qmm` multiplies by packed matrices.

/// Calls `$rows!(bits, scales, biases)` with the affine matrix `$w`'s bit width (2, 4 or 8, a
/// literal for const generics) and its scales and biases in their dtype: the dispatch every
/// few-row mat-vec kernel starts with.
macro_rules! by_bits_and_scales {
    ($w:expr, $rows:ident) => {
        match (&$w.sc, $w.bits) {
            (Scales::F32(s, b), 2) => $rows!(2, s, b),
            (Scales::F32(s, b), 4) => $rows!(4, s, b),
            (Scales::F32(s, b), _) => $rows!(8, s, b),
            (Scales::F16(s, b), 2) => $rows!(2, s, b),
            (Scales::F16(s, b), 4) => $rows!(4, s, b),
            (Scales::F16(s, b), _) => $rows!(8, s, b),
            (Scales::Bf16(s, b), 2) => $rows!(2, s, b),
            (Scales::Bf16(s, b), 4) => $rows!(4, s, b),
            (Scales::Bf16(s, b), _) => $rows!(8, s, b),
            // The callers run affine matrices only, whose scales are floats.
            _ => unreachable!("affine scales are f32, f16 or bf16"),
        }
    };
}

pub mod pack;
pub mod qmm;
#[cfg(target_arch = "x86_64")]
mod qmv512;
#[cfg(target_arch = "x86_64")]
mod qmv_bf16;
#[cfg(target_arch = "x86_64")]
mod qmv_i16;
#[cfg(target_arch = "x86_64")]
mod qmv_vnni;

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::{QuantMode, QuantParams, QuantizedOp};
use half::{bf16, f16};
use rayon::prelude::*;

/// The float element types the quantized kernels take (f32, f16, bf16), through f32.
pub trait QF: Element {
    fn to_f32(self) -> f32;
    /// Rounds to nearest even (what storing an f32 result in this dtype does).
    fn from_f32(v: f32) -> Self;
}
impl QF for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl QF for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}
impl QF for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// Runs `$body` with `$T` bound to the float type of `$dt` (f32, f16 or bf16).
macro_rules! float_dispatch {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            Dtype::Float32 => {
                type $T = f32;
                $body
            }
            Dtype::Float16 => {
                type $T = half::f16;
                $body
            }
            Dtype::Bfloat16 => {
                type $T = half::bf16;
                $body
            }
            d => Err(Error::invalid(format!("[quantized] unsupported dtype {d}"))),
        }
    };
}
pub(crate) use float_dispatch;

/// A dense row-major copy's elements (borrowed when already dense).
fn rows<T: Element>(d: &Data) -> std::borrow::Cow<'_, [T]> {
    d.row_major::<T>()
}

/// The bytes of a u32 slice (the packed bit streams are little-endian byte streams).
pub fn as_bytes(w: &[u32]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirements; the length covers the same memory.
    unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 4) }
}

fn as_bytes_mut(w: &mut [u32]) -> &mut [u8] {
    // SAFETY: as above, with the exclusive borrow carried over.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 4) }
}

/// Groups per parallel task (keeps small inputs on one thread).
const GROUPS_PER_TASK: usize = 256;

fn quantize(p: &QuantParams, w: &Data, specs: &[Spec]) -> Result<Vec<Data>> {
    float_dispatch!(w.dtype, T => {
        let v = rows::<T>(w);
        let gs = p.group_size;
        let gb = gs * p.bits / 8;
        let ng = v.len() / gs;
        let mut sc = vec![0f32; ng];
        let mut bi = vec![0f32; ng];
        let mut codes = vec![0u8; ng];
        let wq = Data::build::<u32>(specs[0].0.clone(), |out| {
            let bytes = as_bytes_mut(out);
            bytes
                .par_chunks_mut(gb * GROUPS_PER_TASK)
                .zip(sc.par_chunks_mut(GROUPS_PER_TASK))
                .zip(bi.par_chunks_mut(GROUPS_PER_TASK))
                .zip(codes.par_chunks_mut(GROUPS_PER_TASK))
                .enumerate()
                .for_each(|(t, (((ob, s), b), c))| {
                    for (j, o) in ob.chunks_mut(gb).enumerate() {
                        let g = t * GROUPS_PER_TASK + j;
                        let grp = &v[g * gs..(g + 1) * gs];
                        if p.mode == QuantMode::Affine {
                            (s[j], b[j]) = pack::affine_group::<T>(grp, p.bits, o);
                        } else {
                            c[j] = pack::fp_group::<T>(grp, p.bits, o);
                        }
                    }
                });
        })?;
        if p.mode == QuantMode::Affine {
            let s = Data::build::<T>(specs[1].0.clone(), |o| o.iter_mut().zip(&sc).for_each(|(o, &v)| *o = T::from_f32(v)))?;
            let b = Data::build::<T>(specs[2].0.clone(), |o| o.iter_mut().zip(&bi).for_each(|(o, &v)| *o = T::from_f32(v)))?;
            Ok(vec![wq, s, b])
        } else {
            Ok(vec![wq, Data::from_slice::<u8>(&codes, specs[1].0.clone())?])
        }
    })
}

fn dequantize(p: &QuantParams, inputs: &[Data], spec: &Spec) -> Result<Vec<Data>> {
    let w = rows::<u32>(&inputs[0]);
    let bytes = as_bytes(&w);
    let gs = p.group_size;
    let gb = gs * p.bits / 8;
    let out_dt = spec.1;
    float_dispatch!(out_dt, O => {
        let out = if p.mode == QuantMode::Affine {
            let s = rows::<O>(&inputs[1]);
            let b = rows::<O>(&inputs[2]);
            Data::build::<O>(spec.0.clone(), |out| {
                out.par_chunks_mut(gs * GROUPS_PER_TASK).enumerate().for_each(|(t, o)| {
                    for (j, og) in o.chunks_mut(gs).enumerate() {
                        let g = t * GROUPS_PER_TASK + j;
                        pack::affine_dequant_group::<O>(&bytes[g * gb..(g + 1) * gb], p.bits, s[g], b[g], og);
                    }
                })
            })?
        } else {
            let s = rows::<u8>(&inputs[1]);
            let nv = p.mode == QuantMode::Nvfp4;
            Data::build::<O>(spec.0.clone(), |out| {
                out.par_chunks_mut(gs * GROUPS_PER_TASK).enumerate().for_each(|(t, o)| {
                    for (j, og) in o.chunks_mut(gs).enumerate() {
                        let g = t * GROUPS_PER_TASK + j;
                        pack::fp_dequant_group::<O>(&bytes[g * gb..(g + 1) * gb], p.bits, s[g], nv, og);
                    }
                })
            })?
        };
        Ok(vec![out])
    })
}

pub fn eval(op: &QuantizedOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    #[cfg(not(target_endian = "little"))]
    return Err(Error::runtime("[quantized] packed weights need a little-endian CPU"));
    match op {
        QuantizedOp::Quantize(p) => quantize(p, &inputs[0], specs),
        QuantizedOp::Dequantize { p, .. } => dequantize(p, inputs, &specs[0]),
        QuantizedOp::Matmul { p, transpose } => Ok(vec![qmm::matmul(p, *transpose, inputs, &specs[0])?]),
        QuantizedOp::GatherMatmul { p, transpose } => Ok(vec![qmm::gather(p, *transpose, inputs, &specs[0])?]),
        QuantizedOp::NormMatmul { p, eps } => {
            // The two kernels back to back: the same results as the two nodes.
            let norm = crate::primitives::fast::FastOp::RmsNorm { eps: *eps, has_weight: true };
            let normed = super::fast::eval(&norm, &inputs[..2], &[])?.remove(0);
            let ins = [normed, inputs[2].clone(), inputs[3].clone(), inputs[4].clone()];
            Ok(vec![qmm::matmul(p, true, &ins, &specs[0])?])
        }
        QuantizedOp::SwigluMatmul { p } => {
            let h = match inputs[0].dtype {
                Dtype::Float32 => swiglu::<f32>(&inputs[0], &inputs[1])?,
                Dtype::Float16 => swiglu::<f16>(&inputs[0], &inputs[1])?,
                Dtype::Bfloat16 => swiglu::<bf16>(&inputs[0], &inputs[1])?,
                dt => return Err(Error::runtime(format!("internal: [{}] no CPU kernel for {dt}", op.name()))),
            };
            let ins = [h, inputs[2].clone(), inputs[3].clone(), inputs[4].clone()];
            Ok(vec![qmm::matmul(p, true, &ins, &specs[0])?])
        }
    }
}

/// `silu(g) * u` in float32, rounded once (the compiled SwiGLU's arithmetic).
fn swiglu<T: super::kfloat::KFloat>(g: &Data, u: &Data) -> Result<Data> {
    let (gr, ur) = (g.row_major::<T>(), u.row_major::<T>());
    Data::build::<T>(g.shape.clone(), |out| {
        let (mut a, mut b) = (vec![0f32; out.len()], vec![0f32; out.len()]);
        T::load(&gr, &mut a);
        T::load(&ur, &mut b);
        for (x, &y) in a.iter_mut().zip(&b) {
            *x = *x * (1.0 / (1.0 + (-*x).exp())) * y;
        }
        T::store(&a, out);
    })
}

#[allow(dead_code)]
fn _unused(_: Dtype) {}
