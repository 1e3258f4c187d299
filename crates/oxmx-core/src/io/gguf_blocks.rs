//! Exact decoding of ggml tensor blocks to floats.
//!
//! Every supported type decodes bit-identically to the `gguf` Python package's
//! `gguf.quants.dequantize` (the reference the tests compare against): each block's f16 scales are
//! widened to f32 and the arithmetic is done in f32 in the same order, one rounding per operation
//! (Rust never contracts `a * b + c` into an FMA, which would round differently).
//!
//! A tensor's data is a plain sequence of blocks (rows are whole numbers of blocks), so decoding
//! runs over block ranges split across threads, each range decoded by a branch-free per-block
//! kernel compiled for the widest SIMD level the CPU has.
//!
//! Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K and
//! MXFP4. The IQ*/TQ* codebook types and Q8_1 (an activation-only type) give an "unsupported ggml
//! type" error.

use super::checked_nbytes;
use super::gguf::{ggml_block_size, GgufFile, GgufTensorInfo};
use crate::array::Array;
use crate::backend::cpu::simd::vectorized;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Data;
use crate::memory::Buffer;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use rayon::prelude::*;

/// The ggml name of a tensor type id (`"Q4_0"`, `"IQ2_XXS"`, …), `"unknown"` for ids ggml lacks.
pub fn ggml_type_name(ggml_type: u32) -> &'static str {
    match ggml_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

/// Whether [`dequantize_ggml`] decodes this ggml type.
pub fn ggml_can_dequantize(ggml_type: u32) -> bool {
    matches!(ggml_type, 0 | 1 | 2 | 3 | 6 | 7 | 8 | 10 | 11 | 12 | 13 | 14 | 15 | 30 | 39)
}

#[inline(always)]
fn h(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

// One kernel per block type: `b` is one block (exactly its byte size), `o` its elements.

#[inline(always)]
fn q4_0(b: &[u8], o: &mut [f32]) {
    let d = h(b, 0);
    let (qs, o) = (&b[2..18], &mut o[..32]);
    for j in 0..16 {
        o[j] = d * ((qs[j] & 15) as i32 - 8) as f32;
        o[j + 16] = d * ((qs[j] >> 4) as i32 - 8) as f32;
    }
}

#[inline(always)]
fn q4_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (h(b, 0), h(b, 2));
    let (qs, o) = (&b[4..20], &mut o[..32]);
    for j in 0..16 {
        o[j] = d * (qs[j] & 15) as f32 + m;
        o[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

#[inline(always)]
fn q5_0(b: &[u8], o: &mut [f32]) {
    let d = h(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let (qs, o) = (&b[6..22], &mut o[..32]);
    for j in 0..16 {
        let lo = (qs[j] & 15) as u32 | ((qh >> j) & 1) << 4;
        let hi = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        o[j] = d * (lo as i32 - 16) as f32;
        o[j + 16] = d * (hi as i32 - 16) as f32;
    }
}

#[inline(always)]
fn q5_1(b: &[u8], o: &mut [f32]) {
    let (d, m) = (h(b, 0), h(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let (qs, o) = (&b[8..24], &mut o[..32]);
    for j in 0..16 {
        let lo = (qs[j] & 15) as u32 | ((qh >> j) & 1) << 4;
        let hi = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        o[j] = d * lo as f32 + m;
        o[j + 16] = d * hi as f32 + m;
    }
}

#[inline(always)]
fn q8_0(b: &[u8], o: &mut [f32]) {
    let d = h(b, 0);
    let (qs, o) = (&b[2..34], &mut o[..32]);
    for j in 0..32 {
        o[j] = (qs[j] as i8) as f32 * d;
    }
}

/// Q2_K: 16 groups of 16, 2-bit values; `scales[i]` holds the group's scale (low nibble) and
/// min (high nibble); values of 4 consecutive 32-element runs share a byte (shifts 0, 2, 4, 6).
#[inline(always)]
fn q2_k(b: &[u8], o: &mut [f32]) {
    let (sc, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (h(b, 80), h(b, 82));
    let o = &mut o[..256];
    for half in 0..2 {
        for s in 0..4 {
            let e0 = half * 128 + s * 32;
            for k in 0..2 {
                let g = (e0 + k * 16) / 16;
                let dl = d * (sc[g] & 15) as f32;
                let ml = dmin * (sc[g] >> 4) as f32;
                for l in 0..16 {
                    let q = (qs[half * 32 + k * 16 + l] >> (2 * s)) & 3;
                    o[e0 + k * 16 + l] = dl * q as f32 - ml;
                }
            }
        }
    }
}

/// Q3_K: 16 groups of 16; 2 low bits like Q2_K plus a high bit from `hmask` (bit set = no
/// offset, clear = minus 4); 6-bit signed group scales packed as 4+2 bits.
#[inline(always)]
fn q3_k(b: &[u8], o: &mut [f32]) {
    let (hmask, qs, s) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = h(b, 108);
    let mut dl = [0f32; 16];
    for j in 0..16 {
        let low = (s[j % 8] >> (4 * (j / 8))) & 15;
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        dl[j] = d * ((low | high << 4) as i32 - 32) as f32;
    }
    let o = &mut o[..256];
    for half in 0..2 {
        for sh in 0..4 {
            let e0 = half * 128 + sh * 32;
            let bit = e0 / 32;
            for l in 0..32 {
                let e = e0 + l;
                let ql = ((qs[half * 32 + l] >> (2 * sh)) & 3) as i32;
                let qh = (((hmask[l] >> bit) & 1) ^ 1) as i32;
                o[e] = dl[e / 16] * (ql - (qh << 2)) as f32;
            }
        }
    }
}

/// The 8 six-bit scales and mins of Q4_K/Q5_K, packed into 12 bytes.
#[inline(always)]
fn k_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for i in 0..4 {
        sc[i] = s[i] & 63;
        mn[i] = s[4 + i] & 63;
        sc[4 + i] = (s[8 + i] & 15) | ((s[i] >> 2) & 0x30);
        mn[4 + i] = (s[8 + i] >> 4) | ((s[4 + i] >> 2) & 0x30);
    }
    (sc, mn)
}

#[inline(always)]
fn q4_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (h(b, 0), h(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let qs = &b[16..144];
    let o = &mut o[..256];
    for c in 0..4 {
        for k in 0..2 {
            let j = 2 * c + k;
            let (dj, mj) = (d * sc[j] as f32, dmin * mn[j] as f32);
            for l in 0..32 {
                let q = (qs[c * 32 + l] >> (4 * k)) & 15;
                o[j * 32 + l] = dj * q as f32 - mj;
            }
        }
    }
}

#[inline(always)]
fn q5_k(b: &[u8], o: &mut [f32]) {
    let (d, dmin) = (h(b, 0), h(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    let o = &mut o[..256];
    for c in 0..4 {
        for k in 0..2 {
            let j = 2 * c + k;
            let (dj, mj) = (d * sc[j] as f32, dmin * mn[j] as f32);
            for l in 0..32 {
                let q = ((qs[c * 32 + l] >> (4 * k)) & 15) | ((qh[l] >> j) & 1) << 4;
                o[j * 32 + l] = dj * q as f32 - mj;
            }
        }
    }
}

/// Q6_K: 4 low bits in `ql` (two 64-byte halves, nibbles), 2 high bits in `qh`, signed 8-bit
/// scales per group of 16, values offset by -32.
#[inline(always)]
fn q6_k(b: &[u8], o: &mut [f32]) {
    let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = h(b, 208);
    let mut dl = [0f32; 16];
    for g in 0..16 {
        dl[g] = d * (sc[g] as i8) as f32;
    }
    let o = &mut o[..256];
    for half in 0..2 {
        for e in 0..128 {
            let lo = (ql[half * 64 + e % 64] >> (4 * (e / 64))) & 15;
            let hi = (qh[half * 32 + e % 32] >> (2 * (e / 32))) & 3;
            let q = (lo | hi << 4) as i32 - 32;
            let idx = half * 128 + e;
            o[idx] = dl[idx / 16] * q as f32;
        }
    }
}

/// Q8_K: an f32 scale, 256 signed bytes, then 16 block sums (not needed to decode).
#[inline(always)]
fn q8_k(b: &[u8], o: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (qs, o) = (&b[4..260], &mut o[..256]);
    for j in 0..256 {
        o[j] = d * (qs[j] as i8) as f32;
    }
}

/// MXFP4: an E8M0 exponent (as half its power of two, like ggml) and 32 E2M1 values stored doubled.
#[inline(always)]
fn mxfp4(b: &[u8], o: &mut [f32]) {
    const KV: [f32; 16] = [0., 1., 2., 3., 4., 6., 8., 12., 0., -1., -2., -3., -4., -6., -8., -12.];
    let e = b[0] as u32;
    let d = f32::from_bits(if e < 2 { 0x0020_0000 << e } else { (e - 1) << 23 });
    let (qs, o) = (&b[1..17], &mut o[..32]);
    for j in 0..16 {
        o[j] = d * KV[(qs[j] & 15) as usize];
        o[j + 16] = d * KV[(qs[j] >> 4) as usize];
    }
}

#[inline(always)]
fn f32_el(b: &[u8], o: &mut [f32]) {
    o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

#[inline(always)]
fn f16_el(b: &[u8], o: &mut [f32]) {
    o[0] = h(b, 0);
}

#[inline(always)]
fn bf16_el(b: &[u8], o: &mut [f32]) {
    o[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
}

type Kernel = fn(&[u8], &mut [f32]);

fn kernel(ggml_type: u32) -> Option<Kernel> {
    Some(match ggml_type {
        0 => f32_el,
        1 => f16_el,
        2 => q4_0,
        3 => q4_1,
        6 => q5_0,
        7 => q5_1,
        8 => q8_0,
        10 => q2_k,
        11 => q3_k,
        12 => q4_k,
        13 => q5_k,
        14 => q6_k,
        15 => q8_k,
        30 => bf16_el,
        39 => mxfp4,
        _ => return None,
    })
}

/// Decodes a run of whole blocks with `k` inlined into one SIMD-compiled loop.
macro_rules! run_blocks {
    ($k:expr, $data:expr, $out:expr, $bsz:expr, $blk:expr) => {{
        let (data, out): (&[u8], &mut [f32]) = ($data, $out);
        vectorized(|| {
            for (b, o) in data.chunks_exact($bsz).zip(out.chunks_exact_mut($blk)) {
                $k(b, o);
            }
        })
    }};
}

fn decode_run(ggml_type: u32, data: &[u8], out: &mut [f32], bsz: usize, blk: usize) {
    // A `match` (not a function pointer) so each kernel is inlined into its own vectorised loop.
    match ggml_type {
        0 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        1 => run_blocks!(f16_el, data, out, bsz, blk),
        2 => run_blocks!(q4_0, data, out, bsz, blk),
        3 => run_blocks!(q4_1, data, out, bsz, blk),
        6 => run_blocks!(q5_0, data, out, bsz, blk),
        7 => run_blocks!(q5_1, data, out, bsz, blk),
        8 => run_blocks!(q8_0, data, out, bsz, blk),
        10 => run_blocks!(q2_k, data, out, bsz, blk),
        11 => run_blocks!(q3_k, data, out, bsz, blk),
        12 => run_blocks!(q4_k, data, out, bsz, blk),
        13 => run_blocks!(q5_k, data, out, bsz, blk),
        14 => run_blocks!(q6_k, data, out, bsz, blk),
        15 => run_blocks!(q8_k, data, out, bsz, blk),
        30 => run_blocks!(bf16_el, data, out, bsz, blk),
        39 => run_blocks!(mxfp4, data, out, bsz, blk),
        t => {
            // Unreachable through the public functions (they check `kernel` first); kept total.
            if let Some(k) = kernel(t) {
                for (b, o) in data.chunks_exact(bsz).zip(out.chunks_exact_mut(blk)) {
                    k(b, o);
                }
            }
        }
    }
}

/// Elements decoded per parallel task: large enough to amortise scheduling, small enough to
/// balance a tensor across the threads.
const TASK_ELEMS: usize = 1 << 15;

/// `(elements per block, bytes per block)` of a decodable type, or the "unsupported" error.
fn decodable(ggml_type: u32, what: &str) -> Result<(usize, usize)> {
    let name = ggml_type_name(ggml_type);
    if ggml_type == 9 {
        return Err(Error::invalid(format!("unsupported ggml type Q8_1 in {what} (an activation-only type that files do not store)")));
    }
    let (blk, bsz) = match (kernel(ggml_type), ggml_block_size(ggml_type)) {
        (Some(_), Some(s)) => s,
        _ if name == "unknown" => return Err(Error::invalid(format!("unknown ggml type id {ggml_type} in {what}"))),
        _ => return Err(Error::invalid(format!("unsupported ggml type {name} in {what} (no exact decoder for this type)"))),
    };
    Ok((blk as usize, bsz as usize))
}

/// Checks `data` holds exactly the blocks of `n` elements of `ggml_type` whose rows are `row`
/// elements long; returns `(elements per block, bytes per block)`.
fn check_layout(ggml_type: u32, data_len: usize, n: usize, row: usize, what: &str) -> Result<(usize, usize)> {
    let (blk, bsz) = decodable(ggml_type, what)?;
    let name = ggml_type_name(ggml_type);
    if row % blk != 0 {
        return Err(Error::invalid(format!(
            "{what}: row length {row} is not a multiple of the {name} block size {blk} (wrong row length)"
        )));
    }
    let need = (n / blk).checked_mul(bsz).ok_or_else(|| Error::invalid(format!("{what}: {n} elements are too many")))?;
    if data_len != need {
        let why = if data_len < need { "truncated data" } else { "trailing data" };
        return Err(Error::invalid(format!("{what}: {n} elements of {name} need {need} bytes, found {data_len} ({why})")));
    }
    Ok((blk, bsz))
}

/// Decodes `data` (whole blocks of `ggml_type`) into `out` as f32, in parallel.
/// `out.len()` is the element count; rows are assumed to be whole blocks (the caller checks).
/// Errors on unsupported types and when `data` is not exactly `out.len()` elements of blocks.
pub fn dequantize_ggml_into(ggml_type: u32, data: &[u8], out: &mut [f32]) -> Result<()> {
    let n = out.len();
    // The whole output as one row: checks it is whole blocks and `data` is exactly their bytes.
    let (blk, bsz) = check_layout(ggml_type, data.len(), n, n, "ggml data")?;
    decode_par(ggml_type, data, out, blk, bsz);
    Ok(())
}

fn decode_par(ggml_type: u32, data: &[u8], out: &mut [f32], blk: usize, bsz: usize) {
    let blocks_per_task = (TASK_ELEMS / blk).max(1);
    out.par_chunks_mut(blocks_per_task * blk)
        .zip(data.par_chunks(blocks_per_task * bsz))
        .for_each(|(o, d)| decode_run(ggml_type, d, o, bsz, blk));
}

/// Decodes ggml blocks into an array of `shape` (NumPy order: the last axis is ggml's `ne[0]`,
/// the axis the blocks run along) and `dtype` (float32, float16 or bfloat16; the f32 values are
/// rounded to nearest-even for the narrower types, as `astype` does).
///
/// Errors: unsupported or unknown type, a last axis that is not whole blocks, data that is not
/// exactly the blocks of `shape` (truncated or trailing bytes), a non-float `dtype`.
pub fn dequantize_ggml(ggml_type: u32, data: &[u8], shape: &[usize], dtype: Dtype) -> Result<Array> {
    dequantize_named(ggml_type, data, shape, dtype, "ggml data")
}

fn dequantize_named(ggml_type: u32, data: &[u8], shape: &[usize], dtype: Dtype, what: &str) -> Result<Array> {
    if !matches!(dtype, Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
        return Err(Error::invalid(format!("{what}: cannot dequantize to {dtype} (float32, float16 or bfloat16 only)")));
    }
    let nbytes = checked_nbytes(shape, dtype).ok_or_else(|| Error::invalid(format!("{what}: shape {shape:?} is too large")))?;
    let n = nbytes / dtype.size();
    let row = shape.last().copied().unwrap_or(1);
    let (blk, bsz) = check_layout(ggml_type, data.len(), n, row, what)?;
    let mut buf = Buffer::alloc(nbytes)?;
    if n > 0 {
        match dtype {
            Dtype::Float32 => {
                let out: &mut [f32] = bytemuck::cast_slice_mut(buf.bytes_mut());
                decode_par(ggml_type, data, out, blk, bsz);
            }
            _ => {
                // Decode each task's blocks to f32 scratch, then round into the narrow output.
                let blocks_per_task = (TASK_ELEMS / blk).max(1);
                let out: &mut [u16] = bytemuck::cast_slice_mut(buf.bytes_mut());
                out.par_chunks_mut(blocks_per_task * blk).zip(data.par_chunks(blocks_per_task * bsz)).for_each(|(o, d)| {
                    let mut tmp = vec![0f32; o.len()];
                    decode_run(ggml_type, d, &mut tmp, bsz, blk);
                    if dtype == Dtype::Float16 {
                        bytemuck::cast_slice_mut::<u16, f16>(o).convert_from_f32_slice(&tmp);
                    } else {
                        bytemuck::cast_slice_mut::<u16, bf16>(o).convert_from_f32_slice(&tmp);
                    }
                });
            }
        }
    }
    Ok(Array::from_data(Data::dense(buf, shape.to_vec(), dtype)))
}

impl GgufFile {
    /// One tensor decoded to floats: shape `info.shape()` (NumPy order, as [`GgufFile::tensor`]),
    /// `dtype` float32, float16 or bfloat16. Quantized and F32/F16/BF16 tensors decode exactly
    /// like `gguf.quants.dequantize` (then round once to `dtype`); integer and F64 tensors are
    /// cast with `astype`. Errors name the tensor.
    pub fn dequantize(&self, info: &GgufTensorInfo, dtype: Dtype) -> Result<Array> {
        let what = format!("tensor '{}'", info.name);
        if matches!(info.ggml_type, 24..=28) {
            let a = self.tensor(info)?.astype(dtype);
            a.eval().map_err(|e| e.context(&what))?;
            return Ok(a);
        }
        let data = self.tensor_bytes(info)?;
        dequantize_named(info.ggml_type, data, &info.shape(), dtype, &what)
    }

    /// Every tensor decoded with [`GgufFile::dequantize`], in file order.
    pub fn dequantize_all(&self, dtype: Dtype) -> Result<Vec<(String, Array)>> {
        self.tensors.iter().map(|t| Ok((t.name.clone(), self.dequantize(t, dtype)?))).collect()
    }
}
