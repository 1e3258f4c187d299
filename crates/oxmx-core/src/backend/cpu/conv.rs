//! Convolution on the CPU: im2col tiles fed to the `gemm` crate (the matmul kernel's engine).
//!
//! Rows of the output (one per batch entry and output position) are cut into tiles; each rayon
//! task gathers the input patches of its tile into a small cache-resident buffer ("im2col") and
//! multiplies it by the weight matrix of each group, writing straight into its rows of the
//! output. A 1x1, stride-1, unpadded conv skips the gather: the input already is the matrix.
//! Spatial ranks 1 and 2 are run as rank 3 with leading singleton axes, so there is one kernel.
//! f16/bf16 go through f32 (accumulating in f32), f64 runs natively. On AVX2 hosts without
//! AVX-512 the f32 tile products run on `sgemm`, like matmul, and single-group undilated f32
//! convs skip the patch matrix altogether (`conv_direct.rs`).

use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::conv::{ConvOp, ConvParams};
use gemm::Parallelism;
use half::{bf16, f16};
use rayon::prelude::*;

/// Geometry normalised to three spatial axes.
pub(super) struct Geo {
    pub(super) n: usize,
    pub(super) ins: [usize; 3],
    pub(super) c_in: usize,
    pub(super) outs: [usize; 3],
    pub(super) c_out: usize,
    pub(super) ks: [usize; 3],
    pub(super) stride: [usize; 3],
    pub(super) lo: [isize; 3],
    pub(super) kdil: [usize; 3],
    pub(super) idil: [usize; 3],
    pub(super) groups: usize,
}

impl Geo {
    fn new(input: &[usize], weight: &[usize], out: &[usize], p: &ConvParams) -> Geo {
        let sp = input.len() - 2;
        let lift = |v: &[usize], fill: usize| -> [usize; 3] {
            let mut a = [fill; 3];
            a[3 - sp..].copy_from_slice(v);
            a
        };
        let mut lo = [0isize; 3];
        lo[3 - sp..].copy_from_slice(&p.pad_lo);
        Geo {
            n: input[0],
            ins: lift(&input[1..=sp], 1),
            c_in: input[sp + 1],
            outs: lift(&out[1..=sp], 1),
            c_out: weight[0],
            ks: lift(&weight[1..=sp], 1),
            stride: lift(&p.stride, 1),
            lo,
            kdil: lift(&p.kernel_dilation, 1),
            idil: lift(&p.input_dilation, 1),
            groups: p.groups,
        }
    }
    fn cg(&self) -> usize {
        self.c_in / self.groups
    }
    fn og(&self) -> usize {
        self.c_out / self.groups
    }
    pub(super) fn kvol(&self) -> usize {
        self.ks.iter().product()
    }
    pub(super) fn out_positions(&self) -> usize {
        self.outs.iter().product()
    }
    /// The input already is the patch matrix: 1x1 kernel, unit strides, no padding or dilation.
    pub(super) fn is_pointwise(&self) -> bool {
        self.kvol() == 1 && self.stride == [1; 3] && self.lo == [0; 3] && self.idil == [1; 3] && self.outs == self.ins
    }
    /// Input index along axis `d` read by output index `o` and kernel tap `k`, if inside the
    /// (dilated) input rather than in padding or between dilated samples.
    #[inline(always)]
    fn src(&self, d: usize, o: usize, k: usize) -> Option<usize> {
        let v = (o * self.stride[d] + k * self.kdil[d]) as isize - self.lo[d];
        if v < 0 {
            return None;
        }
        let v = v as usize;
        let s = self.idil[d];
        if v % s != 0 || v / s >= self.ins[d] {
            return None;
        }
        Some(v / s)
    }
}

/// A read-only pointer shared by a conv's rayon tasks (each reads, none writes through it).
#[derive(Clone, Copy)]
pub(super) struct Ptr<T>(pub(super) *const T);
unsafe impl<T> Send for Ptr<T> {}
unsafe impl<T> Sync for Ptr<T> {}

/// Fills `buf` (`rows` x `kvol * cg`) with the patches of output rows `r0..r0 + rows` for group `gi`.
///
/// When one group spans every channel and the innermost axis has unit kernel and input dilation,
/// the `kw` taps of a kernel row read one contiguous run of `kw * c_in` input values: that run is
/// copied at once (the 7x7 stem on 3 channels made 49 copies of 3 values per patch otherwise).
fn im2col<T: Element>(x: &[T], g: &Geo, gi: usize, r0: usize, rows: usize, buf: &mut [T]) {
    let (cg, kc) = (g.cg(), g.kvol() * g.cg());
    let [od, oh, ow] = g.outs;
    let [id, ih, iw] = g.ins;
    let [kd, kh, kw] = g.ks;
    let p = od * oh * ow;
    let runs = g.groups == 1 && g.kdil[2] == 1 && g.idil[2] == 1;
    for (i, row) in buf[..rows * kc].chunks_mut(kc).enumerate() {
        let r = r0 + i;
        let (b, q) = (r / p, r % p);
        let (z, y, xw) = (q / (oh * ow), (q / ow) % oh, q % ow);
        let mut col = 0;
        for a in 0..kd {
            let sz = g.src(0, z, a);
            for bb in 0..kh {
                let sy = if sz.is_some() { g.src(1, y, bb) } else { None };
                let dst = &mut row[col..col + kw * cg];
                col += kw * cg;
                let (Some(iz), Some(iy)) = (sz, sy) else {
                    dst.fill(T::zero());
                    continue;
                };
                let line = ((b * id + iz) * ih + iy) * iw;
                if runs {
                    // Taps c in [c0, c1) land inside the input row; the rest read padding.
                    let x0 = (xw * g.stride[2]) as isize - g.lo[2];
                    let c0 = (-x0).clamp(0, kw as isize) as usize;
                    let c1 = (iw as isize - x0).clamp(c0 as isize, kw as isize) as usize;
                    dst[..c0 * cg].fill(T::zero());
                    if c1 > c0 {
                        let off = (line + (x0 + c0 as isize) as usize) * g.c_in;
                        dst[c0 * cg..c1 * cg].copy_from_slice(&x[off..off + (c1 - c0) * cg]);
                    }
                    dst[c1 * cg..].fill(T::zero());
                    continue;
                }
                for (c, tap) in dst.chunks_mut(cg).enumerate() {
                    match g.src(2, xw, c) {
                        Some(ix) => {
                            let off = (line + ix) * g.c_in + gi * cg;
                            tap.copy_from_slice(&x[off..off + cg]);
                        }
                        None => tap.fill(T::zero()),
                    }
                }
            }
        }
    }
}

/// Rows per tile: the patch buffer stays around 256 KiB of f32, and there are enough tiles to
/// keep every thread busy.
fn tile_rows(m: usize, kc: usize, threads: usize) -> usize {
    let by_cache = (65536 / kc.max(1)).clamp(16, 1024);
    let by_balance = m.div_ceil(4 * threads).max(8);
    by_cache.min(by_balance).max(1)
}

/// `x`: row-contiguous input; `w`: contiguous weight `(C_out, kvol, cg)`, already flipped if asked.
fn conv_gemm<T: Element>(x: &[T], w: &[T], g: &Geo, out: &mut [T]) {
    let (cg, og, kc) = (g.cg(), g.og(), g.kvol() * g.cg());
    let m = g.n * g.out_positions();
    if m == 0 || g.c_out == 0 {
        return;
    }
    if kc == 0 {
        out.fill(T::zero());
        return;
    }
    let threads = rayon::current_num_threads();
    let rows = tile_rows(m, kc, threads);
    let n_tiles = m.div_ceil(rows);
    let pointwise = g.is_pointwise();
    let (px, pw) = (Ptr(x.as_ptr()), Ptr(w.as_ptr()));
    // Few tiles (small images, large channel counts): let gemm split each product instead.
    let inner_par = n_tiles < threads && threads > 1;
    let par = if inner_par { Parallelism::Rayon(threads) } else { Parallelism::None };
    let run = |buf: &mut Vec<T>, ti: usize, dst: &mut [T]| {
        let (px, pw) = (px, pw);
        let r0 = ti * rows;
        let mr = dst.len() / g.c_out;
        for gi in 0..g.groups {
            let (a, a_rs) = if pointwise {
                // SAFETY: row r0 of the input matrix [m, c_in] starts at r0 * c_in; the tile's
                // columns gi*cg..(gi+1)*cg are in bounds.
                (unsafe { px.0.add(r0 * g.c_in + gi * cg) }, g.c_in as isize)
            } else {
                if buf.len() < mr * kc {
                    buf.resize(mr * kc, T::zero());
                }
                im2col(x, g, gi, r0, mr, buf);
                (buf.as_ptr(), kc as isize)
            };
            // SAFETY: `a` is an [mr, kc] matrix (row stride a_rs), the weight slice of group gi
            // is [og, kc] read transposed, and dst columns gi*og..(gi+1)*og of the tile's rows
            // are exclusively this task's.
            unsafe { tile_product(mr, og, kc, a, a_rs, pw.0.add(gi * og * kc), dst.as_mut_ptr().add(gi * og), g.c_out, par) };
        }
    };
    if inner_par {
        let mut buf = Vec::new();
        out.chunks_mut(rows * g.c_out).enumerate().for_each(|(ti, dst)| run(&mut buf, ti, dst));
    } else {
        out.par_chunks_mut(rows * g.c_out).enumerate().for_each_init(Vec::new, |buf, (ti, dst)| run(buf, ti, dst));
    }
}

/// `dst = a · wᵀ` for one tile and group: `a` is [m, k] with row stride `a_rs`, `w` a contiguous
/// [n, k] weight block, `dst` rows `ldc` apart. f32 runs on `sgemm` where matmul does.
///
/// # Safety
/// The views must be in bounds and `dst` exclusive to the caller.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_product<T: Element>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    a_rs: isize,
    w: *const T,
    dst: *mut T,
    ldc: usize,
    par: Parallelism,
) {
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == Dtype::Float32
        && m * n * k >= super::matmul::SGEMM_MIN_WORK
        && super::matmul::use_sgemm()
        && super::matmul::f32_on_sgemm(n, 1, k as isize)
    {
        use super::sgemm::{sgemm, View};
        let threads = match par {
            Parallelism::Rayon(t) => t,
            Parallelism::None => 1,
        };
        let (a, w) = (View { ptr: a as *const f32, rs: a_rs, cs: 1 }, View { ptr: w as *const f32, rs: 1, cs: k as isize });
        sgemm(m, n, k, a, w, dst as *mut f32, ldc, threads);
        return;
    }
    gemm::gemm(m, n, k, dst, 1, ldc as isize, false, a, 1, a_rs, w, k as isize, 1, T::zero(), T::one(), false, false, false, par);
}

/// The weight as a contiguous `(C_out, kvol, cg)` block, spatially reversed when `flip`.
fn weight_block<T: Element>(w: &Data, flip: bool) -> Vec<T> {
    let v = w.row_major::<T>();
    if !flip {
        return v.into_owned();
    }
    let nd = w.ndim();
    let (c_out, cg) = (w.shape[0], w.shape[nd - 1]);
    let kvol = v.len() / (c_out * cg).max(1);
    let mut out = Vec::with_capacity(v.len());
    for o in 0..c_out {
        for k in 0..kvol {
            // Reversing every spatial axis of a row-major kernel reverses its flat tap index.
            let src = (o * kvol + (kvol - 1 - k)) * cg;
            out.extend_from_slice(&v[src..src + cg]);
        }
    }
    out
}

fn run_typed<T: Element>(x: &Data, w: &Data, p: &ConvParams, out_shape: Vec<usize>) -> Result<Data> {
    let g = Geo::new(&x.shape, &w.shape, &out_shape, p);
    let xs = x.row_major::<T>();
    let ws = weight_block::<T>(w, p.flip);
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == Dtype::Float32 && super::conv_direct::takes(&g) {
        // SAFETY: T is f32 (same size and layout); `takes` held; the output is [rows, c_out].
        let f = |v: &[T]| unsafe { std::slice::from_raw_parts(v.as_ptr() as *const f32, v.len()) };
        let (xf, wf) = (f(&xs), f(&ws));
        return Data::build::<T>(out_shape, |out| unsafe {
            super::conv_direct::conv(xf, wf, &g, std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut f32, out.len()))
        });
    }
    Data::build::<T>(out_shape, |out| conv_gemm(&xs, &ws, &g, out))
}

/// Half types: widen both operands to f32, convolve, round the result back.
fn run_widened<H: Element>(
    x: &Data,
    w: &Data,
    p: &ConvParams,
    out_shape: Vec<usize>,
    to: fn(H) -> f32,
    from: fn(f32) -> H,
) -> Result<Data> {
    let widen = |d: &Data| -> Result<Data> {
        let v: Vec<f32> = d.row_major::<H>().iter().map(|&h| to(h)).collect();
        Data::from_slice(&v, d.shape.clone())
    };
    let r = run_typed::<f32>(&widen(x)?, &widen(w)?, p, out_shape.clone())?;
    let v: Vec<H> = r.row_major::<f32>().iter().map(|&f| from(f)).collect();
    Data::from_slice(&v, out_shape)
}

pub fn eval(op: &ConvOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let ConvOp::Conv(p) = op;
    let (x, w) = (&inputs[0], &inputs[1]);
    let out_shape = specs[0].0.clone();
    let out = match x.dtype {
        Dtype::Float32 => run_typed::<f32>(x, w, p, out_shape),
        Dtype::Float64 => run_typed::<f64>(x, w, p, out_shape),
        Dtype::Float16 => run_widened::<f16>(x, w, p, out_shape, f16::to_f32, f16::from_f32),
        Dtype::Bfloat16 => run_widened::<bf16>(x, w, p, out_shape, bf16::to_f32, bf16::from_f32),
        dt => Err(Error::invalid(format!("[conv] unsupported dtype {dt}"))),
    }?;
    Ok(vec![out])
}
