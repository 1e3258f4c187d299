//! CPU kernels of the fast family. Every kernel widens 16-bit data to f32 a row (or a tile) at a
//! time, computes in f32 and rounds once when storing; rows go to rayon tasks and the per-task
//! loops run inside `simd::vectorized` (AVX2+FMA or AVX-512 when the CPU has them, baseline
//! otherwise), with `#[inline(always)]` helpers written as independent lanes so they vectorise.
//!
//! - norms: one task reads a row once from memory, keeps it in cache for its statistics and
//!   writes it once;
//! - rope: a cos/sin table per (batch offset, position) is built once, then each row is rotated
//!   in one pass;
//! - attention: one kernel for decode and prefill. The query heads that share a key/value head
//!   are processed together (rows ordered position-major, head-minor), so each K/V tile is
//!   loaded (and widened) once for all of them; keys are walked in tiles with an online
//!   softmax, tiles a causal mask hides entirely are skipped, and when there are too few
//!   (batch, kv head, row tile) tasks to fill the threads the keys are split into ranges whose
//!   partial softmax states are merged at the end (split-K, as for decoding one query over a
//!   long cache).

use super::elementwise::CHUNK;
use super::kfloat::KFloat;
use super::{fastmath, simd};
use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::fast::{FastOp, MaskKind};
use half::{bf16, f16};
use rayon::prelude::*;

pub fn eval(op: &FastOp, inputs: &[Data], _specs: &[Spec]) -> Result<Vec<Data>> {
    let out = match inputs[0].dtype {
        Dtype::Float32 => eval_t::<f32>(op, inputs)?,
        Dtype::Float16 => eval_t::<f16>(op, inputs)?,
        Dtype::Bfloat16 => eval_t::<bf16>(op, inputs)?,
        dt => return Err(Error::runtime(format!("internal: [{}] no CPU kernel for {dt}", op.name()))),
    };
    Ok(vec![out])
}

fn eval_t<T: KFloat>(op: &FastOp, inputs: &[Data]) -> Result<Data> {
    match *op {
        FastOp::RmsNorm { eps, has_weight } => norm::<T>(&inputs[0], has_weight.then(|| &inputs[1]), None, eps, false),
        FastOp::LayerNorm { eps, has_weight, has_bias } => {
            let w = has_weight.then(|| &inputs[1]);
            let b = has_bias.then(|| &inputs[1 + has_weight as usize]);
            norm::<T>(&inputs[0], w, b, eps, true)
        }
        FastOp::Rope { dims, traditional, base, scale } => {
            rope::<T>(&inputs[0], &inputs[1], base.is_none().then(|| &inputs[2]), dims, traditional, base, scale)
        }
        FastOp::Sdpa { scale, mask, has_sinks } => {
            let m = matches!(mask, MaskKind::Bool | MaskKind::Additive).then(|| &inputs[3]);
            let sinks = has_sinks.then(|| &inputs[inputs.len() - 1]);
            sdpa::<T>(&inputs[0], &inputs[1], &inputs[2], scale, mask, m, sinks)
        }
    }
}

const LANES: usize = 16;

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut c = x.chunks_exact(LANES);
    for ch in &mut c {
        for l in 0..LANES {
            acc[l] += ch[l];
        }
    }
    simd::hsum(acc) + c.remainder().iter().sum::<f32>()
}

/// Σ (x - m)².
#[inline(always)]
fn sum_sq_dev(x: &[f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut c = x.chunks_exact(LANES);
    for ch in &mut c {
        for l in 0..LANES {
            let d = ch[l] - m;
            acc[l] = d.mul_add(d, acc[l]);
        }
    }
    simd::hsum(acc) + c.remainder().iter().map(|&v| (v - m) * (v - m)).sum::<f32>()
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    simd::hsum(acc) + ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum::<f32>()
}

/// `y += a * x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = a.mul_add(x, *y);
    }
}

/// A weight or bias vector as f32.
fn vector_f32<T: KFloat>(a: &Data) -> Vec<f32> {
    let r = a.row_major::<T>();
    let mut v = vec![0f32; r.len()];
    T::load(&r, &mut v);
    v
}

simd::multiversion! {
fn norm<T: KFloat>(x: &Data, w: Option<&Data>, b: Option<&Data>, eps: f32, layer: bool) -> Result<Data> {
    let d = x.shape.last().copied().unwrap_or(1);
    let src = x.row_major::<T>();
    let (wv, bv) = (w.map(vector_f32::<T>), b.map(vector_f32::<T>));
    Data::build::<T>(x.shape.clone(), |out| {
        if d == 0 || out.is_empty() {
            return;
        }
        let rows_per_task = (CHUNK / d).max(1);
        out.par_chunks_mut(rows_per_task * d).zip(src.par_chunks(rows_per_task * d)).for_each(|(o, s)| {
            let mut buf = vec![0f32; d];
            simd::vectorized(|| {
                for (orow, srow) in o.chunks_mut(d).zip(s.chunks(d)) {
                    T::load(srow, &mut buf);
                    let (mean, inv) = if layer {
                        let mean = sum(&buf) / d as f32;
                        (mean, 1.0 / (sum_sq_dev(&buf, mean) / d as f32 + eps).sqrt())
                    } else {
                        (0.0, 1.0 / (sum_sq_dev(&buf, 0.0) / d as f32 + eps).sqrt())
                    };
                    match (&wv, &bv) {
                        (None, None) => buf.iter_mut().for_each(|v| *v = (*v - mean) * inv),
                        (Some(w), None) => buf.iter_mut().zip(w).for_each(|(v, &w)| *v = (*v - mean) * inv * w),
                        (None, Some(b)) => buf.iter_mut().zip(b).for_each(|(v, &b)| *v = (*v - mean) * inv + b),
                        (Some(w), Some(b)) => buf.iter_mut().zip(w).zip(b).for_each(|((v, &w), &b)| *v = ((*v - mean) * inv).mul_add(w, b)),
                    }
                    T::store(&buf, orow);
                }
            })
        });
    })
}
}

simd::multiversion! {
fn rope<T: KFloat>(
    x: &Data,
    off: &Data,
    freqs: Option<&Data>,
    dims: usize,
    traditional: bool,
    base: Option<f32>,
    scale: f32,
) -> Result<Data> {
    let nd = x.ndim();
    let (t, d, half) = (x.shape[nd - 2], x.shape[nd - 1], dims / 2);
    let size = x.size();
    let src = x.row_major::<T>();
    // Inverse frequencies as the reference composes them (f32 throughout).
    let inv: Vec<f32> = match (base, freqs) {
        (Some(b), _) => {
            let c = (-(b as f64).ln() / half as f64) as f32;
            (0..half).map(|i| (i as f32 * c).exp()).collect()
        }
        (None, Some(f)) => f.row_major::<f32>().iter().map(|&f| 1.0 / f).collect(),
        (None, None) => return Err(Error::runtime("internal: [rope] neither base nor freqs")),
    };
    let offs: Vec<i32> = off.row_major::<i32>().to_vec();
    // cos/sin per (offset slot, position, frequency).
    let table_rows = offs.len() * t;
    let mut table = vec![0f32; table_rows * half * 2];
    if half > 0 {
        table.par_chunks_mut(half * 2).enumerate().for_each(|(r, row)| {
            let (bi, ti) = (r / t.max(1), r % t.max(1));
            let pos = (ti as f32 + offs[bi] as f32) * scale;
            for i in 0..half {
                let (s, c) = (pos * inv[i]).sin_cos();
                row[i] = c;
                row[half + i] = s;
            }
        });
    }
    let rows_per_batch = if x.shape[0] == 0 { 1 } else { size / (x.shape[0] * d.max(1)) };
    let per_offset = offs.len() > 1;
    Data::build::<T>(x.shape.clone(), |out| {
        if d == 0 || out.is_empty() {
            return;
        }
        let rows_per_task = (CHUNK / d).max(1);
        out.par_chunks_mut(rows_per_task * d).zip(src.par_chunks(rows_per_task * d)).enumerate().for_each(|(task, (o, s))| {
            let mut buf = vec![0f32; d];
            simd::vectorized(|| {
                for (k, (orow, srow)) in o.chunks_mut(d).zip(s.chunks(d)).enumerate() {
                    let r = task * rows_per_task + k;
                    let bi = if per_offset { r / rows_per_batch } else { 0 };
                    let tr = &table[(bi * t + r % t) * half * 2..][..half * 2];
                    let (cs, sn) = tr.split_at(half);
                    T::load(srow, &mut buf);
                    if traditional {
                        for i in 0..half {
                            let (x1, x2) = (buf[2 * i], buf[2 * i + 1]);
                            buf[2 * i] = x1 * cs[i] - x2 * sn[i];
                            buf[2 * i + 1] = x1 * sn[i] + x2 * cs[i];
                        }
                    } else {
                        let (a, rest) = buf.split_at_mut(half);
                        let bpart = &mut rest[..half];
                        for i in 0..half {
                            let (x1, x2) = (a[i], bpart[i]);
                            a[i] = x1 * cs[i] - x2 * sn[i];
                            bpart[i] = x1 * sn[i] + x2 * cs[i];
                        }
                    }
                    T::store(&buf, orow);
                }
            })
        });
    })
}
}

/// Rows of one attention task share a key/value head: `R` rows ordered (position, head in group).
const ROW_TILE: usize = 32;
/// Keys per tile: widened K and V tiles stay in L1/L2.
const KEY_TILE: usize = 64;
/// The smallest key range a split-K task gets.
const MIN_SPLIT: usize = 512;

/// The state of an online softmax over one key range, per row: running max, denominator and
/// the (unnormalised) weighted sum of values.
struct Partial {
    m: Vec<f32>,
    l: Vec<f32>,
    acc: Vec<f32>,
}

simd::multiversion! {
#[allow(clippy::too_many_arguments)]
fn sdpa<T: KFloat>(q: &Data, k: &Data, v: &Data, scale: f32, kind: MaskKind, mask: Option<&Data>, sinks: Option<&Data>) -> Result<Data> {
    let (b, hq, ql, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (hkv, kl, dv) = (k.shape[1], k.shape[2], v.shape[3]);
    let g = hq / hkv;
    let out_shape = vec![b, hq, ql, dv];
    if b * hq * ql * dv == 0 {
        return Data::build::<T>(out_shape, |o| o.iter_mut().for_each(|v| *v = T::default()));
    }
    let qd = q.row_major::<T>();
    let (kr, vr) = (HeadRows::<T>::new(k), HeadRows::<T>::new(v));
    let sinks: Option<Vec<f32>> = sinks.map(|s| s.row_major::<f32>().to_vec());
    // Rows per (batch, kv head): every query position of every head in the group.
    let rows = g * ql;
    let row_tile = ROW_TILE.max(g).min(rows);
    let n_rt = rows.div_ceil(row_tile);
    let base_tasks = b * hkv * n_rt;
    let threads = rayon::current_num_threads();
    let max_split = kl.div_ceil(MIN_SPLIT).max(1);
    let n_split = (4 * threads).div_ceil(base_tasks).clamp(1, max_split);
    let split_len = kl.div_ceil(n_split).div_ceil(KEY_TILE) * KEY_TILE;
    let n_split = kl.div_ceil(split_len.max(1)).max(1);
    let causal_off = kl as isize - ql as isize;

    // The mask value at (batch, head, query, key), read through the broadcast view's strides.
    let mask_at = |bi: usize, h: usize, i: usize, j: usize| -> isize {
        let m = mask.unwrap();
        m.offset + bi as isize * m.strides[0] + h as isize * m.strides[1] + i as isize * m.strides[2] + j as isize * m.strides[3]
    };
    let bool_raw: Option<&[bool]> = (kind == MaskKind::Bool).then(|| mask.unwrap().raw::<bool>());
    let add_raw: Option<&[T]> = (kind == MaskKind::Additive).then(|| mask.unwrap().raw::<T>());

    let tasks: Vec<(usize, usize, usize, usize)> = (0..b)
        .flat_map(|bi| (0..hkv).flat_map(move |hk| (0..n_rt).flat_map(move |rt| (0..n_split).map(move |s| (bi, hk, rt, s)))))
        .collect();
    let partials: Vec<Partial> = tasks
        .par_iter()
        .map(|&(bi, hk, rt, sp)| {
            let r0 = rt * row_tile;
            let nr = row_tile.min(rows - r0);
            let (k0, k1) = (sp * split_len, ((sp + 1) * split_len).min(kl));
            // Row r of the tile: query position i = (r0 + r) / g, head h = hk * g + (r0 + r) % g.
            let pos = |r: usize| ((r0 + r) / g, hk * g + (r0 + r) % g);
            let mut qs = vec![0f32; nr * d];
            for r in 0..nr {
                let (i, h) = pos(r);
                let off = ((bi * hq + h) * ql + i) * d;
                T::load(&qd[off..off + d], &mut qs[r * d..(r + 1) * d]);
                qs[r * d..(r + 1) * d].iter_mut().for_each(|x| *x *= scale);
            }
            let mut part = Partial { m: vec![f32::NEG_INFINITY; nr], l: vec![0f32; nr], acc: vec![0f32; nr * dv] };
            let mut kt = vec![0f32; if T::as_f32(&kr.data).is_some() { 0 } else { KEY_TILE * d }];
            let mut vt = vec![0f32; if T::as_f32(&vr.data).is_some() { 0 } else { KEY_TILE * dv }];
            let mut s = vec![0f32; nr * KEY_TILE];
            let (kbase, vbase) = (kr.row(bi, hk, 0), vr.row(bi, hk, 0));
            // The last key any row of this tile may see (causal).
            let last_visible = (pos(nr - 1).0 as isize + causal_off).min(kl as isize - 1);
            let first_limit = pos(0).0 as isize + causal_off;
            // Keys every row of the tile sees unmasked go through the AVX-512 or AVX2 kernel.
            let unmasked_end = match kind {
                MaskKind::None => k1,
                MaskKind::Causal => (first_limit + 1).clamp(k0 as isize, k1 as isize) as usize,
                _ => k0,
            };
            let mut j0 = k0;
            if unmasked_end > k0 && fast_rows::<T>(d, dv) {
                for g0 in (0..nr).step_by(super::sdpa_rows::MAX_ROWS) {
                    let gn = super::sdpa_rows::MAX_ROWS.min(nr - g0);
                    let rows = super::sdpa_rows::Rows {
                        q: &qs[g0 * d..(g0 + gn) * d],
                        m: &mut part.m[g0..g0 + gn],
                        l: &mut part.l[g0..g0 + gn],
                        acc: &mut part.acc[g0 * dv..(g0 + gn) * dv],
                    };
                    let (kp, vp) = (kr.data[kbase + k0 * kr.row_stride..].as_ptr(), vr.data[vbase + k0 * vr.row_stride..].as_ptr());
                    // SAFETY: `fast_rows` checked the CPU, the dtype and the head sizes; keys
                    // k0..unmasked_end of this head lie in the buffers `HeadRows` described.
                    unsafe { attend_rows(rows, kp, kr.row_stride, vp, vr.row_stride, unmasked_end - k0, d, dv) };
                }
                j0 = unmasked_end;
            }
            simd::vectorized(|| {
                while j0 < k1 {
                    if kind == MaskKind::Causal && j0 as isize > last_visible {
                        break;
                    }
                    let nk = KEY_TILE.min(k1 - j0);
                    let key = tile_rows(&kr.data, kbase, kr.row_stride, j0, nk, d, &mut kt);
                    // Scores.
                    for r in 0..nr {
                        let qr = &qs[r * d..(r + 1) * d];
                        let sr = &mut s[r * KEY_TILE..r * KEY_TILE + nk];
                        for (j, sv) in sr.iter_mut().enumerate() {
                            *sv = dot(qr, key(j));
                        }
                    }
                    // Masks.
                    match kind {
                        MaskKind::None => {}
                        MaskKind::Causal => {
                            if (j0 + nk - 1) as isize > first_limit {
                                for r in 0..nr {
                                    let lim = pos(r).0 as isize + causal_off;
                                    for j in 0..nk {
                                        if (j0 + j) as isize > lim {
                                            s[r * KEY_TILE + j] = f32::MIN;
                                        }
                                    }
                                }
                            }
                        }
                        MaskKind::Bool => {
                            let raw = bool_raw.unwrap();
                            for r in 0..nr {
                                let (i, h) = pos(r);
                                for j in 0..nk {
                                    if !raw[mask_at(bi, h, i, j0 + j) as usize] {
                                        s[r * KEY_TILE + j] = f32::MIN;
                                    }
                                }
                            }
                        }
                        MaskKind::Additive => {
                            let raw = add_raw.unwrap();
                            let mut one = [0f32; 1];
                            for r in 0..nr {
                                let (i, h) = pos(r);
                                for j in 0..nk {
                                    T::load(&raw[mask_at(bi, h, i, j0 + j) as usize..][..1], &mut one);
                                    s[r * KEY_TILE + j] += one[0];
                                }
                            }
                        }
                    }
                    // Online softmax update.
                    for r in 0..nr {
                        let sr = &mut s[r * KEY_TILE..r * KEY_TILE + nk];
                        let mt = sr.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
                        let m_new = if mt > part.m[r] { mt } else { part.m[r] };
                        if m_new == f32::NEG_INFINITY {
                            // Every score so far is -inf (additive masks): no weight yet.
                            sr.iter_mut().for_each(|x| *x = 0.0);
                            continue;
                        }
                        let corr = fastmath::exp(part.m[r] - m_new);
                        for x in sr.iter_mut() {
                            *x = fastmath::exp(*x - m_new);
                        }
                        part.l[r] = part.l[r] * corr + sum(sr);
                        if corr != 1.0 {
                            part.acc[r * dv..(r + 1) * dv].iter_mut().for_each(|a| *a *= corr);
                        }
                        part.m[r] = m_new;
                    }
                    let value = tile_rows(&vr.data, vbase, vr.row_stride, j0, nk, dv, &mut vt);
                    for r in 0..nr {
                        let acc = &mut part.acc[r * dv..(r + 1) * dv];
                        for j in 0..nk {
                            axpy(acc, s[r * KEY_TILE + j], value(j));
                        }
                    }
                    j0 += nk;
                }
            });
            part
        })
        .collect();

    // Merge the key ranges (and the sink logit, a range with one zero value) per row.
    Data::build::<T>(out_shape, |out| {
        let out_ptr = SyncPtr(out.as_mut_ptr());
        (0..base_tasks).into_par_iter().for_each(|t| {
            let (bi, rest) = (t / (hkv * n_rt), t % (hkv * n_rt));
            let (hk, rt) = (rest / n_rt, rest % n_rt);
            let r0 = rt * row_tile;
            let nr = row_tile.min(rows - r0);
            let parts = &partials[t * n_split..(t + 1) * n_split];
            let mut o = vec![0f32; dv];
            for r in 0..nr {
                let (i, h) = ((r0 + r) / g, hk * g + (r0 + r) % g);
                let sink = sinks.as_ref().map(|s| s[h]);
                let mut m = sink.unwrap_or(f32::NEG_INFINITY);
                for p in parts {
                    m = m.max(p.m[r]);
                }
                let mut l = if let Some(sv) = sink { (sv - m).exp() } else { 0.0 };
                o.iter_mut().for_each(|x| *x = 0.0);
                for p in parts {
                    if p.m[r] == f32::NEG_INFINITY {
                        continue;
                    }
                    let c = (p.m[r] - m).exp();
                    l += p.l[r] * c;
                    axpy(&mut o, c, &p.acc[r * dv..(r + 1) * dv]);
                }
                let inv = 1.0 / l;
                o.iter_mut().for_each(|x| *x *= inv);
                let off = ((bi * hq + h) * ql + i) * dv;
                // SAFETY: each (batch, head, position) row is written by exactly one task.
                let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(off), dv) };
                T::store(&o, dst);
            }
        });
    })
}
}

/// Whether `sdpa512` (AVX-512) or `sdpa_avx2` can take keys and values of this element type and
/// these head sizes on this CPU.
fn fast_rows<T: KFloat>(d: usize, dv: usize) -> bool {
    let lanes = match simd::level() {
        simd::Level::Avx512 => 16,
        simd::Level::Avx2 if simd::avx2_fma() => 8,
        _ => return false,
    };
    matches!(T::DTYPE, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) && d % lanes == 0 && dv % lanes == 0 && d > 0 && dv > 0
}

/// The attention kernel of `simd::level()` for `T`, one of the types `fast_rows` accepts.
///
/// # Safety
/// As `sdpa512::attend` / `sdpa_avx2::attend`; `fast_rows` held.
#[allow(clippy::too_many_arguments)]
unsafe fn attend_rows<T: KFloat>(
    rows: super::sdpa_rows::Rows,
    k: *const T,
    ks: usize,
    v: *const T,
    vs: usize,
    n: usize,
    d: usize,
    dv: usize,
) {
    use super::{sdpa512, sdpa_avx2};
    let wide = simd::level() == simd::Level::Avx512;
    match T::DTYPE {
        Dtype::Float32 if wide => sdpa512::attend(rows, k as *const f32, ks, v as *const f32, vs, n, d, dv),
        Dtype::Float16 if wide => sdpa512::attend(rows, k as *const f16, ks, v as *const f16, vs, n, d, dv),
        Dtype::Bfloat16 if wide => sdpa512::attend(rows, k as *const bf16, ks, v as *const bf16, vs, n, d, dv),
        Dtype::Float32 => sdpa_avx2::attend(rows, k as *const f32, ks, v as *const f32, vs, n, d, dv),
        Dtype::Float16 => sdpa_avx2::attend(rows, k as *const f16, ks, v as *const f16, vs, n, d, dv),
        Dtype::Bfloat16 => sdpa_avx2::attend(rows, k as *const bf16, ks, v as *const bf16, vs, n, d, dv),
        _ => unreachable!("fast_rows admits f32, f16 and bf16"),
    }
}

/// Rows `j0..j0 + nk` of one head (row j at `base + j * stride`, `width` wide) as f32 slices:
/// read in place when the data is f32, else widened into `tile` once for the whole tile.
fn tile_rows<'a, T: KFloat>(
    data: &'a [T],
    base: usize,
    stride: usize,
    j0: usize,
    nk: usize,
    width: usize,
    tile: &'a mut [f32],
) -> impl Fn(usize) -> &'a [f32] {
    let all = T::as_f32(data);
    if all.is_none() {
        for j in 0..nk {
            let o = base + (j0 + j) * stride;
            T::load(&data[o..o + width], &mut tile[j * width..(j + 1) * width]);
        }
    }
    let tile: &'a [f32] = tile;
    move |j| match all {
        Some(a) => &a[base + (j0 + j) * stride..][..width],
        None => &tile[j * width..(j + 1) * width],
    }
}

/// Keys or values `[B, H, L, D]` read in place when each row is contiguous: a KV cache's keys are
/// a prefix view of a longer preallocated buffer, and copying it to row-major order would cost
/// as much as the attention itself. Other layouts are copied once.
struct HeadRows<'a, T: Element> {
    data: std::borrow::Cow<'a, [T]>,
    offset: usize,
    batch_stride: usize,
    head_stride: usize,
    row_stride: usize,
}

impl<'a, T: Element> HeadRows<'a, T> {
    fn new(a: &'a Data) -> Self {
        let s = &a.strides;
        let rows_ok = a.offset >= 0 && s.iter().all(|&v| v >= 0) && (a.shape[3] <= 1 || s[3] == 1);
        if rows_ok {
            return HeadRows {
                data: std::borrow::Cow::Borrowed(a.raw::<T>()),
                offset: a.offset as usize,
                batch_stride: s[0] as usize,
                head_stride: s[1] as usize,
                row_stride: s[2] as usize,
            };
        }
        let (h, l, d) = (a.shape[1], a.shape[2], a.shape[3]);
        HeadRows { data: a.row_major::<T>(), offset: 0, batch_stride: h * l * d, head_stride: l * d, row_stride: d }
    }

    /// Element offset of row `l` of head `h` in batch `b`.
    fn row(&self, b: usize, h: usize, l: usize) -> usize {
        self.offset + b * self.batch_stride + h * self.head_stride + l * self.row_stride
    }
}

/// A raw output pointer shared by tasks that write disjoint rows.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}
