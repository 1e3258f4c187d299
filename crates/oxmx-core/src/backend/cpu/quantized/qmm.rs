//! Products with packed matrices, accumulated in f32.
//!
//! - Decode (`x @ Wᵀ` with few rows): one pass over the packed bytes, which is the floor
//!   (bytes / DRAM bandwidth). With AVX2 the affine 2/4/8-bit path loads 8 words at a time and
//!   extracts the fields with one shift+mask per 8 lanes, no shuffles: lane `i` of extract `j`
//!   holds element `i * (32 / bits) + j`, so `x` is permuted once per call into that order
//!   instead of permuting the weights. Per block, `Σ q·x` is scaled by a per-lane scale vector;
//!   the bias term is `bias · Σ x` over the group, from per-group sums of `x` computed once.
//! - Many rows, and `x @ W`: tiles of W are dequantized to f32 (fits in L2) and multiplied with
//!   the `gemm` crate's register-blocked kernel.

use super::pack::{from_fp8, get_bits, FP4_LUT};
use super::{as_bytes, float_dispatch, QF};
use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::{QuantMode, QuantParams};
use gemm::Parallelism;
use half::{bf16, f16};
use rayon::prelude::*;

/// Rows of `x` from which the tiled gemm path is used for `x @ Wᵀ`.
const QMV_MAX_ROWS: usize = 8;

/// Per-group scales (and biases) of one packed matrix, in their stored form.
#[derive(Clone, Copy)]
enum Scales<'a> {
    F32(&'a [f32], &'a [f32]),
    F16(&'a [f16], &'a [f16]),
    Bf16(&'a [bf16], &'a [bf16]),
    E8m0(&'a [u8]),
    E4m3(&'a [u8]),
}

impl Scales<'_> {
    /// (scale, bias) of flat group index `g`, in f32.
    #[inline(always)]
    fn get(&self, g: usize) -> (f32, f32) {
        match self {
            Scales::F32(s, b) => (s[g], b[g]),
            Scales::F16(s, b) => (s[g].to_f32(), b[g].to_f32()),
            Scales::Bf16(s, b) => (s[g].to_f32(), b[g].to_f32()),
            Scales::E8m0(s) => ((s[g] as f32 - 127.0).exp2(), 0.0),
            Scales::E4m3(s) => (from_fp8(s[g]), 0.0),
        }
    }
}

/// One packed matrix `[rows, k]` (a single batch element).
#[derive(Clone, Copy)]
struct Packed<'a> {
    bytes: &'a [u8],
    sc: Scales<'a>,
    k: usize,
    gs: usize,
    bits: usize,
    mode: QuantMode,
}

impl Packed<'_> {
    fn row_bytes(&self) -> usize {
        self.k * self.bits / 8
    }
    fn groups(&self) -> usize {
        self.k / self.gs
    }

    /// Dequantized values of groups `[g0, g1)` of `row` into `out` (f32).
    fn dequant(&self, row: usize, g0: usize, g1: usize, out: &mut [f32]) {
        let gb = self.gs * self.bits / 8;
        let base = row * self.row_bytes();
        let mut q = [0u32; 128];
        for g in g0..g1 {
            let src = &self.bytes[base + g * gb..base + (g + 1) * gb];
            let (s, b) = self.sc.get(row * self.groups() + g);
            let o = &mut out[(g - g0) * self.gs..(g - g0 + 1) * self.gs];
            match (self.mode, self.bits) {
                (QuantMode::Affine, 4) => {
                    for (i, &c) in src.iter().enumerate() {
                        o[2 * i] = s * (c & 15) as f32 + b;
                        o[2 * i + 1] = s * (c >> 4) as f32 + b;
                    }
                }
                (QuantMode::Affine, 8) => {
                    for (o, &c) in o.iter_mut().zip(src) {
                        *o = s * c as f32 + b;
                    }
                }
                (QuantMode::Affine, _) => {
                    let q = &mut q[..self.gs];
                    get_bits(src, self.bits, q);
                    for (o, &v) in o.iter_mut().zip(q.iter()) {
                        *o = s * v as f32 + b;
                    }
                }
                (QuantMode::Mxfp8, _) => {
                    for (o, &c) in o.iter_mut().zip(src) {
                        *o = s * from_fp8(c);
                    }
                }
                _ => {
                    for (i, &c) in src.iter().enumerate() {
                        o[2 * i] = s * FP4_LUT[(c & 15) as usize];
                        o[2 * i + 1] = s * FP4_LUT[(c >> 4) as usize];
                    }
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `y[m, n] (+)= Σ_k x[m, k] · W[n, k]`, W packed, for `m` rows of `x` (f32, dense `[m, k]`);
/// `y` dense `[m, n]`.
fn qmm_t(x: &[f32], m: usize, w: &Packed, n: usize, y: &mut [f32]) {
    if m == 0 || n == 0 {
        return;
    }
    if m <= QMV_MAX_ROWS {
        return qmv_t(x, m, w, n, y);
    }
    // Tiles of `NB` rows of W by `KB` columns, dequantized per task; tasks own column blocks of y.
    const NB: usize = 128;
    const KB: usize = 1024;
    let k = w.k;
    let kb = (KB / w.gs).max(1) * w.gs;
    let yp = SendPtr(y.as_mut_ptr());
    (0..n.div_ceil(NB)).into_par_iter().for_each(|t| {
        let yp = yp;
        let (n0, nn) = (t * NB, NB.min(n - t * NB));
        let mut tile = vec![0f32; nn * kb];
        let mut k0 = 0;
        while k0 < k {
            let kk = kb.min(k - k0);
            for r in 0..nn {
                w.dequant(n0 + r, k0 / w.gs, (k0 + kk) / w.gs, &mut tile[r * kk..(r + 1) * kk]);
            }
            // SAFETY: y is dense [m, n]; this task writes only columns [n0, n0 + nn). x is
            // dense [m, k]; the tile is dense [nn, kk] read as its transpose.
            unsafe {
                gemm::gemm(
                    m,
                    nn,
                    kk,
                    yp.0.add(n0),
                    1,
                    n as isize,
                    k0 > 0,
                    x.as_ptr().add(k0),
                    1,
                    k as isize,
                    tile.as_ptr(),
                    kk as isize,
                    1,
                    1.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
            k0 += kk;
        }
    });
}

/// `y = x @ W` with W packed `[k, n]` (groups along n): row tiles of W dequantized, gemm.
fn qmm_n(x: &[f32], m: usize, w: &Packed, kdim: usize, y: &mut [f32]) {
    let n = w.k;
    if m == 0 || n == 0 {
        return;
    }
    if kdim == 0 {
        y.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    const KB: usize = 256;
    let mut tile = vec![0f32; KB.min(kdim) * n];
    let mut k0 = 0;
    let threads = rayon::current_num_threads();
    let par = if m * n * KB < 1 << 18 || threads <= 1 { Parallelism::None } else { Parallelism::Rayon(threads) };
    while k0 < kdim {
        let kk = KB.min(kdim - k0);
        tile[..kk * n].par_chunks_mut(n).enumerate().for_each(|(r, o)| w.dequant(k0 + r, 0, w.groups(), o));
        // SAFETY: dense [m, kdim] x, dense [kk, n] tile, dense [m, n] y.
        unsafe {
            gemm::gemm(
                m,
                n,
                kk,
                y.as_mut_ptr(),
                1,
                n as isize,
                k0 > 0,
                x.as_ptr().add(k0),
                1,
                kdim as isize,
                tile.as_ptr(),
                1,
                n as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            );
        }
        k0 += kk;
    }
}

/// Few-row `x @ Wᵀ`: parallel over output rows of W, one pass over the packed bytes.
fn qmv_t(x: &[f32], m: usize, w: &Packed, n: usize, y: &mut [f32]) {
    let k = w.k;
    let ng = w.groups();
    // Per-group sums of x (the bias term).
    let xsum: Vec<f32> =
        (0..m).flat_map(|r| (0..ng).map(move |g| x[r * k + g * w.gs..r * k + (g + 1) * w.gs].iter().sum::<f32>())).collect();
    let fast = w.mode == QuantMode::Affine && matches!(w.bits, 2 | 4 | 8) && (k * w.bits) % 256 == 0 && avx2();
    let xp = if fast { permute_x(x, m, k, w.bits) } else { Vec::new() };
    // Output computed transposed ([n, m]) so tasks own contiguous chunks.
    let rows_per_task = (16384 / k.max(1)).clamp(1, 64);
    let mut yt = vec![0f32; n * m];
    yt.par_chunks_mut(rows_per_task * m).enumerate().for_each(|(t, out)| {
        let mut buf = if fast { Vec::new() } else { vec![0f32; k] };
        for (j, o) in out.chunks_mut(m).enumerate() {
            let row = t * rows_per_task + j;
            if fast {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `avx2()` checked the CPU; slices are sized by the caller's shapes.
                unsafe {
                    avx2_row(&xp, &xsum, m, w, row, o)
                };
            } else {
                w.dequant(row, 0, ng, &mut buf);
                for (r, ov) in o.iter_mut().enumerate() {
                    let xr = &x[r * k..(r + 1) * k];
                    *ov = dot(&buf, xr);
                }
            }
        }
    });
    let _ = xsum;
    for r in 0..m {
        for c in 0..n {
            y[r * n + c] = yt[c * m + r];
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (u, v) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += u[i] * v[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(u, v)| u * v).sum::<f32>()
}

fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `x` reordered per block of 8 words (`256 / bits` elements): position `j * 8 + i` of a block
/// holds element `i * (32 / bits) + j`.
fn permute_x(x: &[f32], m: usize, k: usize, bits: usize) -> Vec<f32> {
    let per = 32 / bits;
    let e = 8 * per;
    let mut out = vec![0f32; m * k];
    for r in 0..m {
        for b0 in (0..k).step_by(e) {
            for j in 0..per {
                for i in 0..8 {
                    out[r * k + b0 + j * 8 + i] = x[r * k + b0 + i * per + j];
                }
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_row(xp: &[f32], xsum: &[f32], m: usize, w: &Packed, row: usize, out: &mut [f32]) {
    match w.bits {
        2 => avx2_row_b::<2, 16>(xp, xsum, m, w, row, out),
        4 => avx2_row_b::<4, 8>(xp, xsum, m, w, row, out),
        _ => avx2_row_b::<8, 4>(xp, xsum, m, w, row, out),
    }
}

/// One output row `W[row] · x[r]` for every row `r < m` of x (affine, `B` bits, `PER = 32 / B`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_row_b<const B: i32, const PER: usize>(xp: &[f32], xsum: &[f32], m: usize, w: &Packed, row: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let k = w.k;
    let ng = w.groups();
    let words = w.bytes.as_ptr().add(row * w.row_bytes()) as *const i32;
    let nblocks = k * B as usize / 256;
    let words_per_group = w.gs * B as usize / 32;
    let mask = _mm256_set1_epi32((1 << B) - 1);
    // Biases: Σ_g b_g · Σ_{k∈g} x_k; scales gathered per group.
    let mut scales = [0f32; 512];
    let mut bias = [0f32; QMV_MAX_ROWS];
    let g0 = row * ng;
    for g in 0..ng {
        let (s, b) = w.sc.get(g0 + g);
        if g < 512 {
            scales[g] = s;
        }
        for r in 0..m {
            bias[r] += b * xsum[r * ng + g];
        }
    }
    let mut tot = [_mm256_setzero_ps(); QMV_MAX_ROWS];
    let mut lane_s = [0f32; 8];
    for blk in 0..nblocks {
        let v = _mm256_loadu_si256(words.add(blk * 8) as *const __m256i);
        let mut q = [_mm256_setzero_ps(); PER];
        for (j, qj) in q.iter_mut().enumerate() {
            let t = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_set1_epi32(j as i32 * B)), mask);
            *qj = _mm256_cvtepi32_ps(t);
        }
        let sv = if words_per_group >= 8 {
            let g = blk * 8 / words_per_group;
            _mm256_set1_ps(if g < 512 { scales[g] } else { w.sc.get(g0 + g).0 })
        } else {
            for (i, l) in lane_s.iter_mut().enumerate() {
                let g = (blk * 8 + i) / words_per_group;
                *l = if g < 512 { scales[g] } else { w.sc.get(g0 + g).0 };
            }
            _mm256_loadu_ps(lane_s.as_ptr())
        };
        let base = blk * 8 * PER;
        for r in 0..m {
            let xr = xp.as_ptr().add(r * k + base);
            let mut acc = _mm256_setzero_ps();
            for (j, qj) in q.iter().enumerate() {
                acc = _mm256_fmadd_ps(*qj, _mm256_loadu_ps(xr.add(j * 8)), acc);
            }
            tot[r] = _mm256_fmadd_ps(acc, sv, tot[r]);
        }
    }
    for r in 0..m {
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), tot[r]);
        out[r] = l.iter().sum::<f32>() + bias[r];
    }
}

/// The packed matrix `b` of a batch of `w`/scales/biases inputs (all dense row-major).
fn packed<'a>(p: &QuantParams, w: &'a [u32], sc: &'a ScaleData, b: usize, rows: usize, k: usize) -> Packed<'a> {
    let row_words = k * p.bits / 32;
    let ng = rows * k / p.group_size;
    let bytes = &as_bytes(w)[b * rows * row_words * 4..(b + 1) * rows * row_words * 4];
    let r = b * ng..(b + 1) * ng;
    let sc = match sc {
        ScaleData::F32(s, bb) => Scales::F32(&s[r.clone()], &bb[r]),
        ScaleData::F16(s, bb) => Scales::F16(&s[r.clone()], &bb[r]),
        ScaleData::Bf16(s, bb) => Scales::Bf16(&s[r.clone()], &bb[r]),
        ScaleData::U8(s) if p.mode == QuantMode::Nvfp4 => Scales::E4m3(&s[r]),
        ScaleData::U8(s) => Scales::E8m0(&s[r]),
    };
    Packed { bytes, sc, k, gs: p.group_size, bits: p.bits, mode: p.mode }
}

/// Owned dense copies of scales (and biases).
enum ScaleData {
    F32(Vec<f32>, Vec<f32>),
    F16(Vec<f16>, Vec<f16>),
    Bf16(Vec<bf16>, Vec<bf16>),
    U8(Vec<u8>),
}

fn scale_data(p: &QuantParams, s: &Data, b: Option<&Data>) -> Result<ScaleData> {
    if p.mode != QuantMode::Affine {
        return Ok(ScaleData::U8(s.row_major::<u8>().into_owned()));
    }
    let b = b.ok_or_else(|| Error::runtime("internal: affine quantized matmul without biases"))?;
    Ok(match s.dtype {
        Dtype::Float32 => ScaleData::F32(s.row_major::<f32>().into_owned(), b.row_major::<f32>().into_owned()),
        Dtype::Float16 => ScaleData::F16(s.row_major::<f16>().into_owned(), b.row_major::<f16>().into_owned()),
        Dtype::Bfloat16 => ScaleData::Bf16(s.row_major::<bf16>().into_owned(), b.row_major::<bf16>().into_owned()),
        d => return Err(Error::invalid(format!("[quantized_matmul] unsupported scales dtype {d}"))),
    })
}

fn x_f32(x: &Data) -> Result<Vec<f32>> {
    float_dispatch!(x.dtype, T => Ok(x.row_major::<T>().iter().map(|v| v.to_f32()).collect::<Vec<f32>>()))
}

fn store(y: Vec<f32>, spec: &Spec) -> Result<Data> {
    float_dispatch!(spec.1, T => Data::build::<T>(spec.0.clone(), |o| o.iter_mut().zip(&y).for_each(|(o, &v)| *o = T::from_f32(v))))
}

/// One product `x_b [m, kx] @ W_b(ᵀ)` into `y_b [m, out]`.
fn one(p: &QuantParams, transpose: bool, x: &[f32], m: usize, w: &Packed, wrows: usize, y: &mut [f32]) {
    if transpose {
        qmm_t(x, m, w, wrows, y)
    } else {
        qmm_n(x, m, w, wrows, y)
    }
    let _ = p;
}

pub fn matmul(p: &QuantParams, transpose: bool, inputs: &[Data], spec: &Spec) -> Result<Data> {
    let x = x_f32(&inputs[0])?;
    let w = inputs[1].row_major::<u32>();
    let sc = scale_data(p, &inputs[2], inputs.get(3))?;
    let ws = &inputs[1].shape;
    let wrows = ws[ws.len() - 2];
    let kw = ws[ws.len() - 1] * 32 / p.bits;
    let nbatch = inputs[1].size() / (wrows * ws[ws.len() - 1]).max(1);
    let out_cols = spec.0[spec.0.len() - 1];
    let kx = inputs[0].shape[inputs[0].ndim() - 1];
    let mut y = vec![0f32; spec.0.iter().product()];
    if kx == 0 || out_cols == 0 || y.is_empty() {
        return store(y, spec);
    }
    let m_total = x.len() / kx;
    let m = m_total / nbatch.max(1);
    for b in 0..nbatch.max(1) {
        let pk = packed(p, &w, &sc, b, wrows, kw);
        one(p, transpose, &x[b * m * kx..(b + 1) * m * kx], m, &pk, wrows, &mut y[b * m * out_cols..(b + 1) * m * out_cols]);
    }
    store(y, spec)
}

pub fn gather(p: &QuantParams, transpose: bool, inputs: &[Data], spec: &Spec) -> Result<Data> {
    let nb = usize::from(p.mode.has_biases());
    let x = x_f32(&inputs[0])?;
    let w = inputs[1].row_major::<u32>();
    let sc = scale_data(p, &inputs[2], if nb == 1 { Some(&inputs[3]) } else { None })?;
    let lhs = inputs[3 + nb].row_major::<u32>();
    let rhs = inputs[4 + nb].row_major::<u32>();
    let (bx, m, kx) = (inputs[0].shape[0], inputs[0].shape[1], inputs[0].shape[2]);
    let ws = &inputs[1].shape;
    let (bw, wrows) = (ws[0], ws[1]);
    let kw = ws[2] * 32 / p.bits;
    let out_cols = spec.0[spec.0.len() - 1];
    let mut y = vec![0f32; spec.0.iter().product()];
    for (i, (&li, &ri)) in lhs.iter().zip(rhs.iter()).enumerate() {
        let (li, ri) = (li as usize, ri as usize);
        if li >= bx || ri >= bw {
            return Err(Error::index(format!("[gather_qmm] index out of range: lhs {li} (of {bx}), rhs {ri} (of {bw})")));
        }
        let pk = packed(p, &w, &sc, ri, wrows, kw);
        one(p, transpose, &x[li * m * kx..(li + 1) * m * kx], m, &pk, wrows, &mut y[i * m * out_cols..(i + 1) * m * out_cols]);
    }
    store(y, spec)
}

#[allow(dead_code)]
fn _e<T: Element>() {}
