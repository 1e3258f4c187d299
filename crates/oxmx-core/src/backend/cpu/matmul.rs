//! Matmul on the CPU: f32/f64/complex64 through `gemm` (reading strided views in place),
//! f16 through f32, bf16 on AMX tiles (or through f32), few-row 16-bit products in `gemv`,
//! integers with a plain loop. On AVX2 hosts without AVX-512, f32/f16/bf16 run on the hand-written
//! `sgemm` kernel instead of `gemm` (which trails OpenBLAS there), widening 16-bit inputs as it packs.

use super::kfloat::KFloat;
use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::MatmulOp;
use crate::shape::size_of;
use gemm::Parallelism;
use half::{bf16, f16};
use num_complex::Complex32;
use rayon::prelude::*;

/// Element offsets of each batch entry of a `[..batch, r, c]` view.
fn batch_offsets(d: &Data) -> Vec<isize> {
    let nd = d.ndim();
    let bshape = &d.shape[..nd - 2];
    let bstrides = &d.strides[..nd - 2];
    let mut offs = Vec::with_capacity(size_of(bshape));
    crate::graph::data::for_each_offset(bshape, bstrides, d.offset, |o| offs.push(o));
    if bshape.is_empty() {
        offs = vec![d.offset];
    }
    offs
}

/// Problem geometry shared by the kernels.
struct Geo {
    m: usize,
    n: usize,
    k: usize,
    a_rs: isize,
    a_cs: isize,
    b_rs: isize,
    b_cs: isize,
    a_offs: Vec<isize>,
    b_offs: Vec<isize>,
}

fn geometry(a: &Data, b: &Data) -> Geo {
    let nd = a.ndim();
    Geo {
        m: a.shape[nd - 2],
        k: a.shape[nd - 1],
        n: b.shape[nd - 1],
        a_rs: a.strides[nd - 2],
        a_cs: a.strides[nd - 1],
        b_rs: b.strides[nd - 2],
        b_cs: b.strides[nd - 1],
        a_offs: batch_offsets(a),
        b_offs: batch_offsets(b),
    }
}

/// Pointer wrapper to share a read-only buffer across rayon tasks.
#[derive(Clone, Copy)]
struct Ptr<T>(*const T);
unsafe impl<T> Send for Ptr<T> {}
unsafe impl<T> Sync for Ptr<T> {}

fn gemm_kernel<T: Element>(a: &Data, b: &Data, out_shape: Vec<usize>, zero: T, one: T) -> Result<Data> {
    let g = geometry(a, b);
    let (m, n, k) = (g.m, g.n, g.k);
    let pa = Ptr(a.raw::<T>().as_ptr());
    let pb = Ptr(b.raw::<T>().as_ptr());
    let batches = g.a_offs.len();
    let small = m * n * k < 64 * 64 * 64;
    Data::build::<T>(out_shape, |out| {
        if m * n == 0 {
            return;
        }
        if k == 0 {
            out.iter_mut().for_each(|x| *x = zero);
            return;
        }
        let run = |bi: usize, dst: &mut [T], par: Parallelism| {
            let (pa, pb) = (pa, pb);
            // SAFETY: offsets and strides describe in-bounds views of the input buffers; `dst`
            // is an exclusive dense [m, n] block.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    pa.0.offset(g.a_offs[bi]),
                    g.a_cs,
                    g.a_rs,
                    pb.0.offset(g.b_offs[bi]),
                    g.b_cs,
                    g.b_rs,
                    zero,
                    one,
                    false,
                    false,
                    false,
                    par,
                );
            }
        };
        if batches > 1 && small {
            out.par_chunks_mut(m * n).enumerate().for_each(|(bi, dst)| run(bi, dst, Parallelism::None));
        } else {
            let threads = rayon::current_num_threads();
            let par = if small || threads <= 1 { Parallelism::None } else { Parallelism::Rayon(threads) };
            out.chunks_mut(m * n).enumerate().for_each(|(bi, dst)| run(bi, dst, par));
        }
    })
}

/// Whether f32 and 16-bit float products run on `sgemm`: x86-64 hosts with AVX2 or AVX-512
/// (`OXMX_SGEMM=0` keeps them on the `gemm` crate, for A/B measurements).
pub(super) fn use_sgemm() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *USE.get_or_init(|| {
            super::simd::level() != super::simd::Level::Baseline
                && super::sgemm::available()
                && std::env::var("OXMX_SGEMM").map_or(true, |v| v != "0")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether an f32 product with `n` columns and B's strides `(b_rs, b_cs)` runs on `sgemm`
/// (given `use_sgemm()`). Always on AVX2 hosts. On AVX-512 hosts only the `x @ Wᵀ` layout (B's
/// columns contiguous) with at least 256 columns: there `gemm` trails `sgemm`'s 12×32 tile by
/// 20–30% (Sapphire Rapids, the MLP training step's products); on square products, on row-major
/// B and with 128 columns or fewer it is level or ahead (`oxmx-bench matmul_`, `conv2d`).
pub(super) fn f32_on_sgemm(n: usize, b_rs: isize, b_cs: isize) -> bool {
    static ALL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ALL.get_or_init(|| std::env::var("OXMX_SGEMM").is_ok_and(|v| v == "all")) {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    if super::simd::level() == super::simd::Level::Avx512 {
        return n >= 256 && b_rs == 1 && b_cs != 1;
    }
    let _ = (n, b_rs, b_cs);
    true
}

/// Below this many multiply-adds `gemm`'s small-matrix kernels beat `sgemm`'s packing on f32.
pub(super) const SGEMM_MIN_WORK: usize = 48 * 48 * 48;

/// A float32 product of f32/f16/bf16 operands on `sgemm`, widening 16-bit inputs while packing.
/// Large products are split across threads inside `sgemm`; batches of small ones run one per task.
#[cfg(target_arch = "x86_64")]
fn sgemm_kernel<T: Element + super::sgemm::Widen>(a: &Data, b: &Data, out_shape: Vec<usize>) -> Result<Data> {
    use super::sgemm::{sgemm, View};
    let g = geometry(a, b);
    let (m, n, k) = (g.m, g.n, g.k);
    let pa = Ptr(a.raw::<T>().as_ptr());
    let pb = Ptr(b.raw::<T>().as_ptr());
    let threads = rayon::current_num_threads();
    Data::build::<f32>(out_shape, |out| {
        if m * n == 0 {
            return;
        }
        let run = |bi: usize, dst: &mut [f32], threads: usize| {
            let (pa, pb) = (pa, pb);
            // SAFETY: offsets and strides describe in-bounds views of the input buffers; `dst`
            // is an exclusive dense [m, n] block; use_sgemm() implies sgemm::available().
            unsafe {
                let a = View { ptr: pa.0.offset(g.a_offs[bi]), rs: g.a_rs, cs: g.a_cs };
                let b = View { ptr: pb.0.offset(g.b_offs[bi]), rs: g.b_rs, cs: g.b_cs };
                sgemm(m, n, k, a, b, dst.as_mut_ptr(), n, threads);
            }
        };
        if g.a_offs.len() > 1 && m * n * k < 128 * 128 * 128 {
            out.par_chunks_mut(m * n).enumerate().for_each(|(bi, dst)| run(bi, dst, 1));
        } else {
            out.chunks_mut(m * n).enumerate().for_each(|(bi, dst)| run(bi, dst, threads));
        }
    })
}

/// A dense copy of the inputs when an inner stride is zero or negative (gemm wants real strides).
fn gemm_ready(d: &Data) -> Result<Data> {
    let nd = d.ndim();
    if d.strides[nd - 2] <= 0 || d.strides[nd - 1] <= 0 {
        if d.shape[nd - 2] > 1 || d.shape[nd - 1] > 1 {
            return d.to_row_contiguous();
        }
    }
    Ok(d.clone())
}

/// Integer (and bool) matmul: a plain loop with wrapping accumulation.
fn int_kernel<T: Element>(a: &Data, b: &Data, out_shape: Vec<usize>) -> Result<Data> {
    let g = geometry(a, b);
    let (m, n, k) = (g.m, g.n, g.k);
    let (ra, rb) = (a.raw::<T>(), b.raw::<T>());
    Data::build::<T>(out_shape, |out| {
        if m * n == 0 {
            return;
        }
        out.par_chunks_mut(n).enumerate().for_each(|(row, dst)| {
            let (bi, i) = (row / m, row % m);
            let ao = g.a_offs[bi] + i as isize * g.a_rs;
            for (j, slot) in dst.iter_mut().enumerate() {
                let bo = g.b_offs[bi] + j as isize * g.b_cs;
                let mut acc: i128 = 0;
                for p in 0..k as isize {
                    let x = ra[(ao + p * g.a_cs) as usize].to_i128();
                    let y = rb[(bo + p * g.b_rs) as usize].to_i128();
                    acc = acc.wrapping_add(x.wrapping_mul(y));
                }
                *slot = T::from_i128(acc);
            }
        });
    })
}

/// bfloat16: AMX tiles when the CPU has them and the product is big enough to pay for packing;
/// otherwise both operands are converted to float32, multiplied and rounded back.
fn bf16_kernel(a: &Data, b: &Data, out_shape: Vec<usize>) -> Result<Data> {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let g = geometry(a, b);
        if g.m * g.n * g.k >= 128 * 128 * 128 && super::amx::amx_available() {
            let (ra, rb) = (a.row_major::<bf16>(), b.row_major::<bf16>());
            let (sa, sb, sc) = (g.m * g.k, g.k * g.n, g.m * g.n);
            let mut acc = vec![0f32; sc];
            return Data::build::<bf16>(out_shape, |out| {
                for (bi, dst) in out.chunks_mut(sc.max(1)).enumerate() {
                    super::amx::matmul_bf16(&ra[bi * sa..(bi + 1) * sa], &rb[bi * sb..(bi + 1) * sb], g.m, g.k, g.n, &mut acc);
                    super::simd::map_slice(&acc, dst, &bf16::from_f32);
                }
            });
        }
    }
    through_f32::<bf16>(a, b, out_shape)
}

/// A 16-bit float product computed in float32 and rounded back once. On `sgemm` hosts the kernel
/// widens the operands as it packs them and `sgemm::narrow` rounds the result; elsewhere both are converted once (O(n²), vectorised and
/// parallel) and multiplied by the f32 gemm (O(n³)). For float16 this beats `gemm`'s own f16 path
/// by ~1.5x: this CPU has AVX-512 FP16 but no AMX-FP16, and f16 products must accumulate in f32 to
/// match MLX and PyTorch.
fn through_f32<T: Element + Widen16>(a: &Data, b: &Data, out_shape: Vec<usize>) -> Result<Data> {
    const CHUNK: usize = 1 << 15;
    let to_f32 = |d: &Data| -> Result<Data> {
        let src = d.row_major::<T>();
        Data::build::<f32>(d.shape.clone(), |out| out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| T::load(s, o)))
    };
    #[cfg(target_arch = "x86_64")]
    if use_sgemm() {
        let r = sgemm_kernel::<T>(a, b, out_shape.clone())?;
        let acc = r.raw::<f32>();
        return Data::build::<T>(out_shape, |out| {
            // SAFETY: use_sgemm() implies sgemm::available().
            out.par_chunks_mut(CHUNK).zip(acc.par_chunks(CHUNK)).for_each(|(o, s)| unsafe { super::sgemm::narrow(s, o) })
        });
    }
    let r = gemm_kernel::<f32>(&to_f32(a)?, &to_f32(b)?, out_shape.clone(), 0.0, 1.0)?;
    let acc = r.row_major::<f32>();
    Data::build::<T>(out_shape, |out| out.par_chunks_mut(CHUNK).zip(acc.par_chunks(CHUNK)).for_each(|(o, s)| T::store(s, o)))
}

/// The 16-bit float types of `through_f32`, converted by `KFloat`'s whole-slice conversions (F16C
/// for float16; a function pointer per element took longer than the f32 product at 1024²), and
/// on x86-64 the ones `sgemm` can widen.
#[cfg(target_arch = "x86_64")]
trait Widen16: super::sgemm::Widen + KFloat {}
#[cfg(not(target_arch = "x86_64"))]
trait Widen16: KFloat {}
impl Widen16 for f16 {}
impl Widen16 for bf16 {}

/// Float32 product: `sgemm` on AVX2 hosts (except tiny products) and for `f32_on_sgemm`'s
/// layouts on AVX-512 ones, `gemm` elsewhere.
fn f32_kernel(a: &Data, b: &Data, out_shape: Vec<usize>) -> Result<Data> {
    #[cfg(target_arch = "x86_64")]
    {
        let nd = a.ndim();
        let n = b.shape[nd - 1];
        if use_sgemm() && a.shape[nd - 2] * a.shape[nd - 1] * n >= SGEMM_MIN_WORK && f32_on_sgemm(n, b.strides[nd - 2], b.strides[nd - 1]) {
            return sgemm_kernel::<f32>(a, b, out_shape);
        }
    }
    gemm_kernel::<f32>(a, b, out_shape, 0.0, 1.0)
}

/// Decode-shaped bfloat16 products: the BF16 dot-product kernel where the CPU has it, the AVX2
/// one on AVX2 hosts, else the portable widening one.
fn bf16_few_rows(a: &Data, b: &Data, out_shape: &[usize]) -> Option<Result<Data>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = super::gemv_bf16::few_rows(a, b, out_shape.to_vec()) {
        return Some(r);
    }
    half_few_rows::<bf16>(a, b, out_shape)
}

/// Decode-shaped float16/bfloat16 products: the AVX2 kernel on AVX2 hosts, else the portable one.
fn half_few_rows<T: KFloat + super::simd::Load8>(a: &Data, b: &Data, out_shape: &[usize]) -> Option<Result<Data>> {
    #[cfg(target_arch = "x86_64")]
    if let Some(r) = super::gemv_avx2::few_rows::<T>(a, b, out_shape.to_vec()) {
        return Some(r);
    }
    super::gemv::few_rows::<T>(a, b, out_shape.to_vec())
}

pub fn eval(op: &MatmulOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    match op {
        MatmulOp::Matmul => {
            let out_shape = specs[0].0.clone();
            let (a, b) = (gemm_ready(&inputs[0])?, gemm_ready(&inputs[1])?);
            let out = match a.dtype {
                Dtype::Float32 => f32_kernel(&a, &b, out_shape),
                Dtype::Float64 => gemm_kernel::<f64>(&a, &b, out_shape, 0.0, 1.0),
                Dtype::Float16 => match half_few_rows::<f16>(&a, &b, &out_shape) {
                    Some(r) => r,
                    None => through_f32::<f16>(&a, &b, out_shape),
                },
                Dtype::Complex64 => gemm_kernel::<Complex32>(&a, &b, out_shape, Complex32::new(0.0, 0.0), Complex32::new(1.0, 0.0)),
                Dtype::Bfloat16 => match bf16_few_rows(&a, &b, &out_shape) {
                    Some(r) => r,
                    None => bf16_kernel(&a, &b, out_shape),
                },
                dt if dt.is_integer() => crate::dispatch!(dt, T => int_kernel::<T>(&a, &b, out_shape)),
                dt => Err(Error::invalid(format!("[matmul] unsupported dtype {dt}"))),
            }?;
            Ok(vec![out])
        }
    }
}
