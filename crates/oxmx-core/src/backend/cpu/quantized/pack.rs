//! Quantize and dequantize, bit-identical to MLX 0.32.4 on the CPU.
//!
//! Affine follows MLX's CPU kernel: min/max of the group in f32, `scale = max((max - min) /
//! (2^b - 1), 1e-7)` signed towards the edge of larger magnitude, then the edge is snapped to an
//! exact multiple (`scale = edge / round(edge / scale)`, `bias = edge`) so that the edge value
//! dequantizes exactly; elements are `clamp(rint((w - bias) / scale))` with the f32 scale, and
//! only the stored scale and bias are rounded to the input dtype. Dequantize is MLX's op
//! fallback: `q * scale` then `+ bias`, each rounded to the scales' dtype (no fused multiply-add).
//!
//! The float modes compute in the input dtype (every step rounded to `T`, see `r`): group scale
//! `amax / max_element`, encoded as E4M3 (`nvfp4`) or as the E8M0 power of two rounded *up*
//! (`mx`, found by experiment against MLX 0.32.4: rounding to nearest would let the largest
//! element overflow); elements are divided by the decoded scale and E2M1 codes are chosen by
//! nearest value with ties to the lower code (0.75 -> 0.5, -0.01 -> +0), E4M3 by RNE.

use super::QF;
use half::f16;

/// E2M1 code -> value (sign in bit 3).
pub const FP4_LUT: [f32; 16] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0];

/// Rounds an f32 result to `T`'s precision (what an op computed in `T` stores).
#[inline(always)]
fn r<T: QF>(v: f32) -> f32 {
    T::from_f32(v).to_f32()
}

/// E4M3 (fn, saturating) encoding with round-to-nearest-even, as MLX's `to_fp8`: magnitudes
/// from 480 up (and inf/NaN) saturate to 448; subnormals are rounded by adding a power of two
/// that aligns their last kept bit with the f32 mantissa's last bit.
pub fn to_fp8(f: f32) -> u8 {
    let bits = f.to_bits();
    let sign = ((bits >> 24) & 0x80) as u8;
    let a = bits & 0x7fff_ffff;
    let code = if a >= 0x43f0_0000 {
        0x7e
    } else if a < (121 << 23) {
        // Below 2^-6: subnormal in E4M3. Adding 2^(141-127) = 16384 leaves the subnormal code
        // in the low mantissa bits, rounded by the f32 addition itself.
        let magic = f32::from_bits(141 << 23);
        (f32::from_bits(a) + magic).to_bits().wrapping_sub(141 << 23) as u8
    } else {
        // Normal: rebias the exponent (127 -> 7) and round the 20 dropped mantissa bits to even.
        let odd = (a >> 20) & 1;
        let r = a.wrapping_add(((7u32.wrapping_sub(127)) << 23).wrapping_add(0x7ffff)).wrapping_add(odd);
        (r >> 20) as u8
    };
    code | sign
}

/// E4M3 decoding: the 7 magnitude bits placed in an f16's exponent/mantissa give the value
/// scaled by 2^-8 (the biases differ by 8), so one f16 conversion and a multiply decode it.
/// Code 0x7f decodes to 480 (MLX does not special-case NaN).
#[inline]
pub fn from_fp8(x: u8) -> f32 {
    let v = f16::from_bits(((x & 0x7f) as u16) << 7).to_f32() * 256.0;
    if x & 0x80 != 0 {
        -v
    } else {
        v
    }
}

/// The E8M0 exponent of an `mx` group scale: the smallest `e` with `2^e >= s` (so the group's
/// largest magnitude never exceeds the element format's maximum), found exactly from the bits
/// (MLX 0.32.4 rounds up; a float `log2` would misround just above powers of two). Zero gives 0
/// and infinity/NaN give -127 (code 0), as MLX.
fn ceil_log2(s: f32) -> i32 {
    if s == 0.0 {
        return 0;
    }
    if !s.is_finite() {
        return -127;
    }
    let b = (s as f64).to_bits();
    let exp = ((b >> 52) & 0x7ff) as i32 - 1023;
    exp + i32::from(b & ((1u64 << 52) - 1) != 0)
}

/// Writes `vals` (each < 2^bits) as a little-endian bit stream.
#[inline]
fn put_bits(out: &mut [u8], vals: impl Iterator<Item = u32>, bits: usize) {
    let (mut acc, mut n, mut o) = (0u64, 0usize, 0usize);
    for v in vals {
        acc |= (v as u64) << n;
        n += bits;
        while n >= 8 {
            out[o] = acc as u8;
            acc >>= 8;
            n -= 8;
            o += 1;
        }
    }
}

/// Reads `out.len()` values of `bits` bits from a little-endian bit stream.
#[inline]
pub fn get_bits(src: &[u8], bits: usize, out: &mut [u32]) {
    let mask = (1u64 << bits) - 1;
    let (mut acc, mut n, mut i) = (0u64, 0usize, 0usize);
    for v in out.iter_mut() {
        while n < bits {
            acc |= (src[i] as u64) << n;
            i += 1;
            n += 8;
        }
        *v = (acc & mask) as u32;
        acc >>= bits;
        n -= bits;
    }
}

/// Affine quantization of one group: packed bytes into `out`, returns (scale, bias) in f32
/// (the caller rounds them to `T`).
pub fn affine_group<T: QF>(w: &[T], bits: usize, out: &mut [u8]) -> (f32, f32) {
    let n_bins = ((1u32 << bits) - 1) as f32;
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for v in w {
        let v = v.to_f32();
        hi = hi.max(v);
        lo = lo.min(v);
    }
    let mask = lo.abs() > hi.abs();
    let mut scale = ((hi - lo) / n_bins).max(1e-7);
    if !mask {
        scale = -scale;
    }
    let edge = if mask { lo } else { hi };
    let q0 = (edge / scale).round_ties_even();
    let mut bias = 0.0;
    if q0 != 0.0 {
        scale = edge / q0;
        bias = edge;
    }
    put_bits(out, w.iter().map(|v| ((v.to_f32() - bias) / scale).round_ties_even().clamp(0.0, n_bins) as u32), bits);
    (scale, bias)
}

/// Float-mode quantization of one group (`mxfp4`/`mxfp8`: E8M0 scale; `nvfp4`: E4M3 scale);
/// returns the scale code.
pub fn fp_group<T: QF>(w: &[T], bits: usize, out: &mut [u8]) -> u8 {
    let maxval = if bits == 4 { 6.0 } else { 448.0 };
    let amax = w.iter().fold(0.0f32, |m, v| m.max(v.to_f32().abs()));
    let scale = r::<T>(amax / maxval);
    let nv = w.len() == 16;
    // The element values to encode, as the f32 value of what MLX computed (in T for mx, in f32
    // for nv, where multiplying by the f32 encode factor promotes).
    let (code, div) = if nv {
        let c = to_fp8(scale);
        (c, r::<T>(from_fp8(c)))
    } else {
        let e = ceil_log2(scale);
        (e.wrapping_add(127) as u8, r::<T>((e as f32).exp2()))
    };
    let vals = w.iter().map(|v| r::<T>(v.to_f32() / div));
    if bits == 8 {
        for (o, v) in out.iter_mut().zip(vals) {
            *o = to_fp8(v);
        }
    } else {
        let lut: [f32; 16] = std::array::from_fn(|i| r::<T>(FP4_LUT[i]));
        let idx = vals.map(|v| {
            let mut best = (0u32, f32::INFINITY);
            for (j, l) in lut.iter().enumerate() {
                let d = if nv { (v - l).abs() } else { r::<T>(v - l).abs() };
                if d < best.1 {
                    best = (j as u32, d);
                }
            }
            best.0
        });
        put_bits(out, idx, 4);
    }
    code
}

/// Dequantizes one affine group into `out` (values in `S`, the scales' dtype).
pub fn affine_dequant_group<S: QF>(src: &[u8], bits: usize, scale: S, bias: S, out: &mut [S]) {
    let mut q = [0u32; 128];
    let q = &mut q[..out.len()];
    get_bits(src, bits, q);
    let (s, b) = (scale.to_f32(), bias.to_f32());
    for (o, &v) in out.iter_mut().zip(q.iter()) {
        *o = S::from_f32(r::<S>(v as f32 * s) + b);
    }
}

/// Dequantizes one float-mode group into `out` (values in `O`).
pub fn fp_dequant_group<O: QF>(src: &[u8], bits: usize, scale: u8, nv: bool, out: &mut [O]) {
    let s = if nv { r::<O>(from_fp8(scale)) } else { r::<O>(r::<O>(scale as f32 - 127.0).exp2()) };
    if bits == 8 {
        for (o, &c) in out.iter_mut().zip(src) {
            *o = O::from_f32(r::<O>(from_fp8(c)) * s);
        }
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            let c = (src[i / 2] >> ((i & 1) * 4)) & 0xf;
            *o = O::from_f32(FP4_LUT[c as usize] * s);
        }
    }
}
