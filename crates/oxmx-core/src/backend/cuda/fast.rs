//! mx.fast on the GPU (kernels/fast.cu): rms_norm and layer_norm (one block per row), rope,
//! and attention. Attention with at most `VECTOR_ROWS` query positions (decoding) runs a
//! split-key vector kernel reading the KV cache in place; longer half-precision queries with
//! head size 64 or 128 and no array mask run flash attention (tensor cores); the rest run as
//! two cuBLAS products around a masked-softmax kernel (scores in float32, probabilities in the
//! input dtype, as an op-built attention does). float32, float16 and bfloat16 inputs.

use super::compiler::{template_function, Args, Family};
use super::device::Gpu;
use super::elementwise::{contiguous, storage};
use super::matmul::gemm;
use super::memory::alloc;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::memory::Buffer;
use crate::primitives::fast::MaskKind;
use crate::primitives::FastOp;
use crate::shape::{row_major_strides, size_of};

pub(crate) const FAST: Family = Family { file: "fast.cu", text: include_str!("kernels/fast.cu") };

/// Query positions up to which attention runs the vector (decoding) kernel.
const VECTOR_ROWS: usize = 4;
/// Warps per vector-attention block (SDPA_WARPS in fast.cu).
const SDPA_WARPS: u32 = 4;

/// The element code of a float dtype for templated kernels (Elem<DT> in common.cuh).
pub(crate) fn dt_code(d: Dtype) -> Option<u32> {
    match d {
        Dtype::Float32 => Some(0),
        Dtype::Float16 => Some(1),
        Dtype::Bfloat16 => Some(2),
        _ => None,
    }
}

/// The device address of `d`'s first element.
pub(crate) fn dptr(g: &Gpu, d: &Data) -> Result<u64> {
    Ok(d.buffer.device_block(g.ordinal)?.ptr().wrapping_add((d.offset as i64 * d.dtype.size() as i64) as u64))
}

/// A fresh dense output of `shape` and `dtype` on the GPU, with its device address.
pub(crate) fn output(g: &Gpu, shape: &[usize], dtype: Dtype) -> Result<(Data, u64)> {
    let bytes = size_of(shape) * dtype.size();
    let block = alloc(g.ordinal, bytes)?;
    let ptr = block.ptr();
    Ok((Data::dense(Buffer::on_device(block, bytes), shape.to_vec(), dtype), ptr))
}

pub(crate) fn eval(g: &Gpu, op: &FastOp, inputs: &[Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    let Some(dt) = dt_code(inputs[0].dtype) else { return Ok(None) };
    let out = match *op {
        FastOp::RmsNorm { eps, has_weight } => norm(g, dt, inputs, eps, false, has_weight, false)?,
        FastOp::LayerNorm { eps, has_weight, has_bias } => norm(g, dt, inputs, eps, true, has_weight, has_bias)?,
        FastOp::Rope { dims, traditional, base, scale } => rope(g, dt, inputs, dims, traditional, base, scale)?,
        FastOp::Sdpa { scale, mask, has_sinks } => sdpa(g, dt, inputs, scale, mask, has_sinks, &specs[0])?,
    };
    Ok(out.map(|d| vec![d]))
}

pub(crate) fn norm(g: &Gpu, dt: u32, inputs: &[Data], eps: f32, layer: bool, has_w: bool, has_b: bool) -> Result<Option<Data>> {
    let Some(x) = contiguous(g, &inputs[0])? else { return Ok(None) };
    let d = *x.shape.last().unwrap_or(&1);
    let rows = if d == 0 { 0 } else { x.size() / d };
    if rows > i32::MAX as usize {
        return Ok(None);
    }
    // Weight and bias as contiguous device arrays, kept alive until the launch is queued (a
    // copy dropped earlier would hand its block to the output).
    let mut extra = inputs[1..].iter();
    let mut operand = |present: bool| -> Result<Option<Option<Data>>> {
        if !present {
            return Ok(Some(None));
        }
        let Some(v) = extra.next() else { return Ok(None) };
        Ok(contiguous(g, v)?.map(Some))
    };
    let (Some(wd), Some(bd)) = (operand(has_w)?, operand(has_b)?) else { return Ok(None) };
    let ptr = |v: &Option<Data>| -> Result<u64> { v.as_ref().map_or(Ok(0), |v| dptr(g, v)) };
    let (xp, w, b) = (dptr(g, &x)?, ptr(&wd)?, ptr(&bd)?);
    let t = storage(x.dtype).unwrap_or("float");
    // Rows of whole 16-byte chunks, up to 4 per thread of 512, run from registers (norm_rows8).
    let chunks = d / 8;
    let vec_threads = if chunks >= 512 { 512 } else { chunks.div_ceil(32).max(1) * 32 };
    let per = chunks.div_ceil(vec_threads).next_power_of_two();
    let vec = d % 8 == 0 && per <= 4 && [xp, w, b].iter().all(|p| p % 16 == 0);
    let threads = match (vec, d >= 4096) {
        (true, _) => vec_threads,
        (false, true) => 512,
        (false, false) => 256,
    };
    let (name, call) = if vec {
        (
            format!("norm8_{dt}_{}_{}_{}_{per}", layer as u8, has_w as u8, has_b as u8),
            format!("norm_rows8<{dt}, {layer}, {has_w}, {has_b}, {per}>"),
        )
    } else {
        (format!("norm_{dt}_{}_{}_{}", layer as u8, has_w as u8, has_b as u8), format!("norm_rows<{dt}, {layer}, {has_w}, {has_b}>"))
    };
    let f = template_function(
        g,
        FAST,
        &name,
        || format!("{t}* out, const {t}* x, const {t}* w, const {t}* b, long long d, float eps"),
        || format!("{call}(out, x, w, b, d, eps)"),
    )?;
    let (out, optr) = output(g, &x.shape, x.dtype)?;
    if rows > 0 {
        Args::new().arg(optr).arg(xp).arg(w).arg(b).arg(d as i64).arg(eps).launch(g, &f, (rows as u32, 1), threads as u32)?;
    }
    drop((wd, bd));
    Ok(Some(out))
}

fn rope(g: &Gpu, dt: u32, inputs: &[Data], dims: usize, traditional: bool, base: Option<f32>, scale: f32) -> Result<Option<Data>> {
    let Some(x) = contiguous(g, &inputs[0])? else { return Ok(None) };
    // A scalar offset still on the host (decoding's position) goes by value: uploading it
    // would cost a copy per call, two per layer per token.
    let host_off =
        (inputs[1].size() == 1 && inputs[1].buffer.is_on_host() && !inputs[1].buffer.is_on_device()).then(|| inputs[1].get_as::<i64>(0));
    let offs = match host_off {
        Some(_) => None,
        None => match contiguous(g, &inputs[1])? {
            Some(o) => Some(o),
            None => return Ok(None),
        },
    };
    let freqs = match base {
        Some(_) => None,
        None => match contiguous(g, &inputs[2])? {
            Some(f) => Some(f),
            None => return Ok(None),
        },
    };
    let nd = x.ndim();
    let (t, d, half) = (x.shape[nd - 2], x.shape[nd - 1], dims / 2);
    let size = x.size();
    let rows = if d == 0 { 0 } else { size / d };
    let rows_per_batch = if x.shape[0] == 0 || d == 0 { 1 } else { size / (x.shape[0] * d) };
    let c = base.map_or(0.0, |b| (-(b as f64).ln() / half.max(1) as f64) as f32);
    let ty = storage(x.dtype).unwrap_or("float");
    let name = format!("rope_{dt}_{}_{}", traditional as u8, freqs.is_some() as u8);
    let f = template_function(
        g,
        FAST,
        &name,
        || {
            format!(
                "{ty}* out, const {ty}* x, const int* offs, const float* freqs, long long rows, long long t, long long d, \
             long long half, long long rows_per_batch, int per_offset, int off0, float c, float scale"
            )
        },
        || {
            format!(
                "rope_rows<{dt}, {traditional}, {}>(out, x, offs, freqs, rows, t, d, half, rows_per_batch, per_offset, off0, c, scale)",
                freqs.is_some()
            )
        },
    )?;
    let (out, optr) = output(g, &x.shape, x.dtype)?;
    let work = rows * (d - half);
    if work > 0 {
        let fptr = match &freqs {
            Some(f) => dptr(g, f)?,
            None => 0,
        };
        let blocks = work.div_ceil(256).clamp(1, g.sm_count as usize * 32) as u32;
        Args::new()
            .arg(optr)
            .arg(dptr(g, &x)?)
            .arg(match &offs {
                Some(o) => dptr(g, o)?,
                None => 0,
            })
            .arg(fptr)
            .arg(rows as i64)
            .arg(t.max(1) as i64)
            .arg(d as i64)
            .arg(half as i64)
            .arg(rows_per_batch.max(1) as i64)
            .arg(offs.as_ref().is_some_and(|o| o.size() > 1) as i32)
            .arg(host_off.unwrap_or(0) as i32)
            .arg(c)
            .arg(scale)
            .launch(g, &f, (blocks, 1), 256)?;
    }
    Ok(Some(out))
}

/// A 4-D operand's element offset and batch, head and row strides (Rows4 in common.cuh).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Rows4 {
    off: i64,
    b: i64,
    h: i64,
    l: i64,
}

impl Rows4 {
    pub(crate) fn of(d: &Data) -> Rows4 {
        Rows4 { off: d.offset as i64, b: d.strides[0] as i64, h: d.strides[1] as i64, l: d.strides[2] as i64 }
    }
}

/// `d` itself when its rows ([.., .., L, D]) are dense and its strides non-negative (a KV
/// cache's prefix view), else a dense copy.
fn rows_in_place(g: &Gpu, d: &Data) -> Result<Option<Data>> {
    let ok = d.offset >= 0 && d.strides.iter().all(|&s| s >= 0) && (d.shape[3] <= 1 || d.strides[3] == 1);
    if ok {
        return Ok(Some(d.clone()));
    }
    contiguous(g, d)
}

/// Whether the decoding kernel can give each lane a whole key row (`sdpa_keys`): rows of
/// `d = 8 c` elements, every row 16-byte aligned (the base, offset and strides multiples of 16
/// bytes), and not switched off by `OXMX_SDPA_KEYS=0`.
fn lane_per_key(g: &Gpu, k: &Data, d: usize) -> Result<bool> {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *OFF.get_or_init(|| std::env::var("OXMX_SDPA_KEYS").is_ok_and(|v| v == "0")) || d % 8 != 0 || d > 256 {
        return Ok(false);
    }
    let es = k.dtype.size() as u64;
    let base = k.buffer.device_block(g.ordinal)?.ptr();
    let aligned = |elems: i64| (elems as u64).wrapping_mul(es) % 16 == 0;
    Ok(base % 16 == 0 && aligned(k.offset as i64) && (0..3).all(|a| k.shape[a] <= 1 || aligned(k.strides[a] as i64)))
}

fn mask_code(kind: MaskKind) -> u32 {
    match kind {
        MaskKind::None => 0,
        MaskKind::Causal => 1,
        MaskKind::Bool => 2,
        MaskKind::Additive => 3,
    }
}

#[allow(clippy::too_many_arguments)]
fn sdpa(g: &Gpu, dt: u32, inputs: &[Data], scale: f32, kind: MaskKind, has_sinks: bool, spec: &Spec) -> Result<Option<Data>> {
    let Some(q) = contiguous(g, &inputs[0])? else { return Ok(None) };
    let (Some(k), Some(v)) = (rows_in_place(g, &inputs[1])?, rows_in_place(g, &inputs[2])?) else { return Ok(None) };
    let has_mask = matches!(kind, MaskKind::Bool | MaskKind::Additive);
    let mask = if has_mask { Some(&inputs[3]) } else { None };
    let sinks = if has_sinks {
        match contiguous(g, &inputs[3 + has_mask as usize])? {
            Some(s) => Some(s),
            None => return Ok(None),
        }
    } else {
        None
    };
    let (b, hq, ql, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (hkv, kl, dv) = (k.shape[1], k.shape[2], v.shape[3]);
    if d > 256 || dv > 256 || hkv == 0 {
        return Ok(None);
    }
    let rows = b * hq * ql;
    if rows == 0 || dv == 0 || kl == 0 {
        return Ok(None); // empty attention: the CPU's definition
    }
    let (mptr, ms, ms_k) = match mask {
        Some(m) => (m.buffer.device_block(g.ordinal)?.ptr(), Rows4::of(m), m.strides[3] as i64),
        None => (0, Rows4::default(), 0),
    };
    let sptr = match &sinks {
        Some(s) => dptr(g, s)?,
        None => 0,
    };
    let ty = storage(q.dtype).unwrap_or("float");
    let mc = mask_code(kind);
    if ql <= VECTOR_ROWS {
        let (kpl, vpl) = (d.div_ceil(32), dv.div_ceil(32));
        // One lane per key where K's rows are whole 16-byte chunks (see sdpa_keys in fast.cu);
        // OXMX_SDPA_KEYS=0 keeps the warp-per-key kernel, for comparing.
        let (kernel, kt) = if lane_per_key(g, &k, d)? { ("sdpa_keys", d / 8) } else { ("sdpa_vector", kpl) };
        let name = format!("{kernel}_{dt}_{kt}_{vpl}_{mc}");
        let f = template_function(
            g,
            FAST,
            &name,
            || {
                format!(
                    "float* part, const {ty}* q, const {ty}* k, const {ty}* v, const void* mask, Rows4 ks, Rows4 vs, Rows4 ms, \
                 long long ms_k, int d, int dv, int hq, int hkv, int ql, long long kl, float scale, long long split_len"
                )
            },
            || {
                format!(
                    "{kernel}<{dt}, {kt}, {vpl}, {mc}>(part, q, k, v, mask, ks, vs, ms, ms_k, d, dv, hq, hkv, ql, kl, scale, split_len)"
                )
            },
        )?;
        // Key splits: enough blocks to cover the GPU (~8 per SM for the lane-per-key kernel,
        // whose warps each hold one 32-key chunk in flight; 2 for the warp-per-key one), at
        // least 128 keys each.
        let per_sm = if kernel == "sdpa_keys" { 8 } else { 2 };
        let want = (per_sm * g.sm_count as usize).div_ceil(rows);
        let n_split = want.clamp(1, kl.div_ceil(128)).min(65535);
        let split_len = kl.div_ceil(n_split);
        let n_split = kl.div_ceil(split_len);
        let part = alloc(g.ordinal, rows * n_split * (2 + dv) * 4)?;
        Args::new()
            .arg(part.ptr())
            .arg(dptr(g, &q)?)
            .arg(k.buffer.device_block(g.ordinal)?.ptr())
            .arg(v.buffer.device_block(g.ordinal)?.ptr())
            .arg(mptr)
            .arg(Rows4::of(&k))
            .arg(Rows4::of(&v))
            .arg(ms)
            .arg(ms_k)
            .arg(d as i32)
            .arg(dv as i32)
            .arg(hq as i32)
            .arg(hkv as i32)
            .arg(ql as i32)
            .arg(kl as i64)
            .arg(scale)
            .arg(split_len as i64)
            .launch(g, &f, (rows as u32, n_split as u32), 32 * SDPA_WARPS)?;
        let name = format!("sdpa_merge_{dt}_{}", has_sinks as u8);
        let f = template_function(
            g,
            FAST,
            &name,
            || format!("{ty}* out, const float* part, const float* sinks, int n_split, int dv, int hq, int ql"),
            || format!("sdpa_merge<{dt}, {has_sinks}>(out, part, sinks, n_split, dv, hq, ql)"),
        )?;
        let (out, optr) = output(g, &spec.0, q.dtype)?;
        Args::new().arg(optr).arg(part.ptr()).arg(sptr).arg(n_split as i32).arg(dv as i32).arg(hq as i32).arg(ql as i32).launch(
            g,
            &f,
            (rows as u32, 1),
            128,
        )?;
        return Ok(Some(out));
    }
    // Half-precision heads of 64 or 128 without an array mask: flash attention (tensor cores,
    // nothing of size L² in memory; flash.rs).
    if dt != 0 && d == dv && (d == 64 || d == 128) && !has_mask {
        let dims = super::flash::Dims { b, hq, hkv, ql, kl, d };
        if let Some(out) = super::flash::attention(g, dt, &q, &k, &v, sptr, dims, kind == MaskKind::Causal, has_sinks, scale, spec)? {
            return Ok(Some(out));
        }
    }
    // Scores = scale · Q Kᵀ per (batch, kv head) with the group's heads stacked as rows.
    let gq = hq / hkv;
    let qv = q.view(vec![b, hkv, gq * ql, d], row_major_strides(&[b, hkv, gq * ql, d]), q.offset);
    let kt = k.view(vec![b, hkv, d, kl], vec![k.strides[0], k.strides[1], k.strides[3], k.strides[2]], k.offset);
    let Some(scores) = gemm(g, &qv, &kt, &[b, hkv, gq * ql, kl], Dtype::Float32, scale)? else { return Ok(None) };
    let name = format!("sdpa_softmax_{dt}_{mc}_{}", has_sinks as u8);
    let f = template_function(
        g,
        FAST,
        &name,
        || {
            format!(
            "{ty}* p, const float* s, const void* mask, const float* sinks, Rows4 ms, long long ms_k, long long kl, int ql, int g, int hkv"
        )
        },
        || format!("sdpa_softmax<{dt}, {mc}, {has_sinks}>(p, s, mask, sinks, ms, ms_k, kl, ql, g, hkv)"),
    )?;
    let (probs, pptr) = output(g, &[b, hkv, gq * ql, kl], q.dtype)?;
    Args::new()
        .arg(pptr)
        .arg(dptr(g, &scores)?)
        .arg(mptr)
        .arg(sptr)
        .arg(ms)
        .arg(ms_k)
        .arg(kl as i64)
        .arg(ql as i32)
        .arg(gq as i32)
        .arg(hkv as i32)
        .launch(g, &f, (rows as u32, 1), 256)?;
    drop(scores);
    let Some(out) = gemm(g, &probs, &v, &[b, hkv, gq * ql, dv], q.dtype, 1.0)? else { return Ok(None) };
    Ok(Some(out.view(spec.0.clone(), row_major_strides(&spec.0), 0)))
}
