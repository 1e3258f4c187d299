//! Lossless mapping of ggml's 32-element block types onto MLX's affine quantization.
//!
//! MLX's affine format stores, per group of `group_size` elements along the last axis, a scale
//! and a bias, and unsigned `bits`-bit codes `q` with value `scale * q + bias`. The codes of a row
//! form one little-endian bit stream (code `i` at bit `bits * i`) stored as `uint32` words, so a
//! row of `n` elements packs into `n * bits / 32` words; scales and biases are `[..., n / 32]`.
//! (Found by experiment with `mx.quantize`/`mx.dequantize`, also for 5 bits.)
//!
//! ggml's Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 blocks are 32 elements with an f16 scale `d` (and for the
//! `_1` types an f16 offset `m`), so they map one block to one group:
//!
//! | type | bits | code `q`            | scale | bias     |
//! |------|------|---------------------|-------|----------|
//! | Q4_0 | 4    | nibble              | `d`   | `-8 d`   |
//! | Q4_1 | 4    | nibble              | `d`   | `m`      |
//! | Q5_0 | 5    | nibble + high bit   | `d`   | `-16 d`  |
//! | Q5_1 | 5    | nibble + high bit   | `d`   | `m`      |
//! | Q8_0 | 8    | `int8 + 128`        | `d`   | `-128 d` |
//!
//! Exactness: in f32, `d * q` is exact (an 11-bit f16 mantissa times an integer of at most 8
//! bits), `-8 d`/`-16 d`/`-128 d` are exact, so `d * q + bias` is rounded at most once, exactly
//! where ggml rounds (`d * q + m`), and is exact where ggml's `d * (q - 8)` is exact. So f32
//! scales/biases always reproduce ggml's floats (`mx.dequantize` computes `scale * q + bias`
//! without an FMA, checked by the fixture script). f16 scales/biases are chosen for a tensor only
//! when every scale, bias, product `scale * q` and result is representable in f16, so any
//! evaluation order or rounding of MLX's f16 arithmetic gives the same values.
//! One difference is inherent: where ggml computes `d * 0` with `d < 0` it gets -0.0; a sum
//! `x + (-x)` is +0.0, so such elements compare equal but are not the same bits.

use super::gguf::{GgufFile, GgufTensorInfo};
use super::gguf_blocks::ggml_type_name;
use crate::array::Array;
use crate::error::{Error, Result};
use half::f16;
use rayon::prelude::*;

/// MLX affine-quantized weights (`mx.quantize(w, group_size, bits)`'s three arrays).
#[derive(Clone, Debug)]
pub struct AffineWeights {
    /// `uint32`, shape `[..., n * bits / 32]`.
    pub wq: Array,
    /// `float16` or `float32`, shape `[..., n / group_size]`.
    pub scales: Array,
    /// Same dtype and shape as `scales`.
    pub biases: Array,
    pub bits: u32,
    pub group_size: usize,
}

/// The affine bit width a ggml type maps onto losslessly, `None` for types without such a
/// mapping (K-quants and others: decode them with `dequantize_ggml`).
pub fn ggml_affine_bits(ggml_type: u32) -> Option<u32> {
    Some(match ggml_type {
        2 | 3 => 4,
        6 | 7 => 5,
        8 => 8,
        _ => return None,
    })
}

#[inline(always)]
fn h(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// One block's 32 codes, scale and bias.
#[inline(always)]
fn block_codes(ggml_type: u32, b: &[u8], q: &mut [u8; 32]) -> (f32, f32) {
    let nibbles = |qs: &[u8], q: &mut [u8; 32]| {
        for j in 0..16 {
            q[j] = qs[j] & 15;
            q[j + 16] = qs[j] >> 4;
        }
    };
    let high = |qh: u32, q: &mut [u8; 32]| {
        for (j, v) in q.iter_mut().enumerate() {
            *v |= (((qh >> j) & 1) as u8) << 4;
        }
    };
    let d = h(b, 0);
    match ggml_type {
        2 => {
            nibbles(&b[2..18], q);
            (d, -8.0 * d)
        }
        3 => {
            nibbles(&b[4..20], q);
            (d, h(b, 2))
        }
        6 => {
            nibbles(&b[6..22], q);
            high(u32::from_le_bytes([b[2], b[3], b[4], b[5]]), q);
            (d, -16.0 * d)
        }
        7 => {
            nibbles(&b[8..24], q);
            high(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), q);
            (d, h(b, 2))
        }
        _ => {
            for j in 0..32 {
                q[j] = b[2 + j] ^ 0x80;
            }
            (d, -128.0 * d)
        }
    }
}

fn f16_exact(x: f32) -> bool {
    let r = f16::from_f32(x).to_f32();
    r == x || (x.is_nan() && r.is_nan())
}

/// Packs 32 codes of `bits` bits as a little-endian bit stream into `bits` words.
#[inline(always)]
fn pack(q: &[u8; 32], bits: u32, out: &mut [u32]) {
    let mut acc: u64 = 0;
    let mut filled = 0u32;
    let mut w = 0;
    for &v in q {
        acc |= (v as u64) << filled;
        filled += bits;
        if filled >= 32 {
            out[w] = acc as u32;
            w += 1;
            acc >>= 32;
            filled -= 32;
        }
    }
}

/// Maps raw ggml blocks of a tensor of `shape` (NumPy order, blocks along the last axis) onto MLX
/// affine weights with group size 32. `Ok(None)` for types without an exact mapping.
/// Errors: a last axis that is not whole blocks, data that is not exactly the tensor's blocks.
pub fn ggml_to_affine(ggml_type: u32, data: &[u8], shape: &[usize]) -> Result<Option<AffineWeights>> {
    map_named(ggml_type, data, shape, "ggml data")
}

/// [`ggml_to_affine`] for a tensor described by `info` whose raw blocks are `blocks`.
pub fn gguf_affine(info: &GgufTensorInfo, blocks: &[u8]) -> Result<Option<AffineWeights>> {
    map_named(info.ggml_type, blocks, &info.shape(), &format!("tensor '{}'", info.name))
}

fn map_named(ggml_type: u32, data: &[u8], shape: &[usize], what: &str) -> Result<Option<AffineWeights>> {
    let Some(bits) = ggml_affine_bits(ggml_type) else { return Ok(None) };
    let name = ggml_type_name(ggml_type);
    let bsz = super::gguf::ggml_block_size(ggml_type).map(|s| s.1 as usize).unwrap_or(0);
    let Some((&cols, outer)) = shape.split_last() else {
        return Err(Error::invalid(format!("{what}: a 0-d tensor cannot hold {name} blocks")));
    };
    if cols % 32 != 0 {
        return Err(Error::invalid(format!("{what}: row length {cols} is not a multiple of the {name} block size 32 (wrong row length)")));
    }
    let rows = outer.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let nblocks = rows.and_then(|r| r.checked_mul(cols / 32));
    let need = nblocks.and_then(|n| n.checked_mul(bsz)).ok_or_else(|| Error::invalid(format!("{what}: shape {shape:?} is too large")))?;
    let nblocks = nblocks.unwrap_or(0);
    if data.len() != need {
        let why = if data.len() < need { "truncated data" } else { "trailing data" };
        return Err(Error::invalid(format!("{what}: shape {shape:?} of {name} needs {need} bytes, found {} ({why})", data.len())));
    }
    let wpb = bits as usize; // 32 codes of `bits` bits are `bits` words
    let mut wq = vec![0u32; nblocks * wpb];
    let mut scales = vec![0f32; nblocks];
    let mut biases = vec![0f32; nblocks];
    const TASK: usize = 1024; // blocks per parallel task
    let f16_ok = wq
        .par_chunks_mut(TASK * wpb)
        .zip(scales.par_chunks_mut(TASK).zip(biases.par_chunks_mut(TASK)))
        .zip(data.par_chunks(TASK * bsz))
        .map(|((w, (s, b)), d)| {
            let mut ok = true;
            let mut q = [0u8; 32];
            for (i, blk) in d.chunks_exact(bsz).enumerate() {
                let (sc, bi) = block_codes(ggml_type, blk, &mut q);
                pack(&q, bits, &mut w[i * wpb..(i + 1) * wpb]);
                s[i] = sc;
                b[i] = bi;
                if ok {
                    ok = f16_exact(sc)
                        && f16_exact(bi)
                        && q.iter().all(|&v| {
                            let p = sc * v as f32;
                            f16_exact(p) && f16_exact(p + bi)
                        });
                }
            }
            ok
        })
        .reduce(|| true, |a, b| a && b);
    let mut wshape = outer.to_vec();
    wshape.push(cols * wpb / 32);
    let mut gshape = outer.to_vec();
    gshape.push(cols / 32);
    let wq = Array::from_slice(&wq, &wshape);
    let (scales, biases) = if f16_ok {
        let s: Vec<f16> = scales.iter().map(|&x| f16::from_f32(x)).collect();
        let b: Vec<f16> = biases.iter().map(|&x| f16::from_f32(x)).collect();
        (Array::from_slice(&s, &gshape), Array::from_slice(&b, &gshape))
    } else {
        (Array::from_slice(&scales, &gshape), Array::from_slice(&biases, &gshape))
    };
    for a in [&wq, &scales, &biases] {
        a.check().map_err(|e| e.context(what))?;
    }
    Ok(Some(AffineWeights { wq, scales, biases, bits, group_size: 32 }))
}

impl GgufFile {
    /// The tensor as MLX affine weights (group size 32) when its type maps losslessly
    /// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), `Ok(None)` otherwise.
    pub fn affine(&self, info: &GgufTensorInfo) -> Result<Option<AffineWeights>> {
        if ggml_affine_bits(info.ggml_type).is_none() {
            return Ok(None);
        }
        gguf_affine(info, self.tensor_bytes(info)?)
    }
}
