//! Branch-free f32 transcendentals that vectorise.
//!
//! libm's scalar `expf`/`logf`/`tanhf` are accurate but contain branches and table lookups the
//! compiler cannot turn into SIMD, which made `exp` 5x and `tanh` 20x slower than NumPy. These
//! versions use only arithmetic, bit casts and selects, so inside `simd::map_slice` they compile
//! to 16-lane AVX-512 code. Each reduces the argument exactly (Cody–Waite split of ln 2) and
//! evaluates a short Taylor/atanh series; errors stay within ~2 ulp over the whole range, and
//! the special values (±inf, NaN, ±0, overflow, underflow to subnormals) follow IEEE/libm.
//! The tests at the bottom compare against f64 libm over dense sweeps.

use super::simd::slice_kernel;

pub(crate) const LN2_HI: f32 = 0.693_145_75; // ln 2 rounded so that n * LN2_HI is exact for |n| <= 2^9
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;

/// Adding and subtracting 1.5 * 2^23 rounds any |x| < 2^22 to an integer in the FPU.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// The Taylor coefficients of `expm1_reduced`, highest order first.
pub(crate) const EXPM1_C: [f32; 7] = [1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5];
/// `exp`'s clamp: beyond it the result is inf / 0.
pub(crate) const EXP_LO: f32 = -104.0;
pub(crate) const EXP_HI: f32 = 89.0;

/// Rounds to the nearest integer (ties away are fine here) without a libm call.
#[inline(always)]
fn round_fast(x: f32) -> f32 {
    (x + ROUND_MAGIC) - ROUND_MAGIC
}

/// 2^n for integral n in [-126, 127] as a bit pattern.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// exp(r) - 1 for |r| <= ln(2)/2: Taylor series to r^8 (truncation error < 2e-9 relative).
/// `mul_add` is one vfmadd in the AVX2/AVX-512 kernels and the correctly rounded libm `fmaf`
/// elsewhere, so every host computes the same bits.
#[inline(always)]
fn expm1_reduced(r: f32) -> f32 {
    let mut p: f32 = EXPM1_C[0];
    for &c in &EXPM1_C[1..] {
        p = p.mul_add(r, c);
    }
    (p * r).mul_add(r, r)
}

/// Splits x = n ln2 + r with integral n and |r| <= ln(2)/2 (x already clamped to a safe range).
#[inline(always)]
fn reduce_ln2(x: f32) -> (f32, f32) {
    let n = round_fast(x * LOG2E);
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    (n, r)
}

#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Beyond these limits the result is inf / 0; clamping keeps the integer part representable.
    // NaN is replaced here (and restored at the end) so the integer conversion below is defined.
    let xc = if x.is_nan() { 0.0 } else { x.clamp(EXP_LO, EXP_HI) };
    let (n, r) = reduce_ln2(xc);
    let p = expm1_reduced(r) + 1.0;
    // Scale by 2^n in two halves so that results in the subnormal range and up to 2^128 work.
    // n is integral and within +-150 after clamping: the unchecked conversion is exact, and
    // unlike the saturating `as` it vectorises.
    // SAFETY: n is finite and in i32 range.
    let ni: i32 = unsafe { n.to_int_unchecked() };
    let n1 = ni >> 1;
    let y = p * pow2i(n1) * pow2i(ni - n1);
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Where exp(x) is a normal float (n = round(x / ln 2) within [-124, 127]): there 2^n can go
/// straight into the exponent bits, one integer add, instead of `exp`'s clamps, two-step scaling
/// and NaN select, which exist for the subnormal, overflow and NaN ends.
const EXP_NORMAL_LO: f32 = -86.0;
const EXP_NORMAL_HI: f32 = 88.0;

/// `exp` for x in [EXP_NORMAL_LO, EXP_NORMAL_HI], with the same bits: p·2^n is exact whichever
/// way the power of two is applied while the result is normal.
#[inline(always)]
fn exp_normal(x: f32) -> f32 {
    let (n, r) = reduce_ln2(x);
    let p = expm1_reduced(r) + 1.0;
    // SAFETY: n is integral and within [-124, 127] in this range.
    let ni: i32 = unsafe { n.to_int_unchecked() };
    f32::from_bits(p.to_bits().wrapping_add((ni as u32) << 23))
}

/// Elements a block of `by_blocks` takes together: one AVX-512 vector, two AVX2 vectors.
const BLOCK: usize = 16;

/// `dst[i] = slow(src[i])`, except that a block whose every element passes `fast_ok` takes
/// `fast` (which must give the same bits there). The test is a compare and a mask per vector;
/// for exp it drops ~11 of ~28 vector instructions (a Zen 2 core: 11.1 -> 8.7 cycles per 8
/// elements). Inline into a `slice_kernel!` body.
#[inline(always)]
fn by_blocks(src: &[f32], dst: &mut [f32], fast_ok: impl Fn(f32) -> bool, fast: impl Fn(f32) -> f32, slow: impl Fn(f32) -> f32) {
    let mut s = src.chunks_exact(BLOCK);
    let mut d = dst.chunks_exact_mut(BLOCK);
    for (s, d) in (&mut s).zip(&mut d) {
        let s: &[f32; BLOCK] = s.try_into().expect("chunks_exact");
        if s.iter().fold(true, |ok, &x| ok & fast_ok(x)) {
            for (o, &x) in d.iter_mut().zip(s) {
                *o = fast(x);
            }
        } else {
            for (o, &x) in d.iter_mut().zip(s) {
                *o = slow(x);
            }
        }
    }
    for (o, &x) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *o = slow(x);
    }
}

slice_kernel! {
    /// `dst[i] = exp(src[i])` with the bits of `exp`, faster where whole blocks are in the
    /// normal range.
    pub fn exp_slice(src: &[f32], dst: &mut [f32]) {
        by_blocks(src, dst, |x| (EXP_NORMAL_LO..=EXP_NORMAL_HI).contains(&x), exp_normal, exp);
    }
}

slice_kernel! {
    /// `dst[i] = sigmoid(src[i])` with the bits of `sigmoid` (see `exp_slice`).
    pub fn sigmoid_slice(src: &[f32], dst: &mut [f32]) {
        by_blocks(src, dst, |x| x.abs() <= -EXP_NORMAL_LO, |x| sigmoid_from(x, exp_normal(-x.abs())), sigmoid);
    }
}

#[inline(always)]
pub fn exp_m1(x: f32) -> f32 {
    let xc = if x.is_nan() { 0.0 } else { x.clamp(-30.0, 89.0) };
    let (n, r) = reduce_ln2(xc);
    let pm = expm1_reduced(r);
    // SAFETY: as in `exp`.
    let ni: i32 = unsafe { n.to_int_unchecked() };
    // 2^n * (pm + 1) - 1 = 2^n * pm + (2^n - 1); n is 0 for small x, so no cancellation there.
    let n1 = ni >> 1;
    let (s1, s2) = (pow2i(n1), pow2i(ni - n1));
    let s = s1 * s2;
    // Near overflow 2^n itself is inf, but there the -1 no longer matters.
    let y = if ni > 64 { (pm + 1.0) * s1 * s2 } else { pm * s + (s - 1.0) };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// Natural log. Subnormals are scaled up first; negatives give NaN, ±0 gives -inf.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let tiny = x < f32::MIN_POSITIVE;
    let xs = if tiny { x * 8_388_608.0 } else { x }; // * 2^23
    let bits = xs.to_bits() as i32;
    // Mantissa in [sqrt(1/2), sqrt(2)): subtract the bits of sqrt(1/2) before splitting.
    const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
    let t = bits.wrapping_sub(SQRT_HALF_BITS);
    let e = (t >> 23) - if tiny { 23 } else { 0 };
    let m = f32::from_bits(((t & 0x007f_ffff) + SQRT_HALF_BITS) as u32);
    // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.1716.
    let f = m - 1.0;
    let s = f / (m + 1.0);
    let s2 = s * s;
    let mut q = 1.0 / 13.0;
    q = q * s2 + 1.0 / 11.0;
    q = q * s2 + 1.0 / 9.0;
    q = q * s2 + 1.0 / 7.0;
    q = q * s2 + 1.0 / 5.0;
    q = q * s2 + 1.0 / 3.0;
    // ln(1 + f) = 2s + 2 s^3 q; since 2s = f - hfsq + s hfsq (hfsq = f^2 / 2), this is
    // f - (hfsq - s (hfsq + 2 s^2 q)), which keeps the large terms exact.
    let hfsq = 0.5 * f * f;
    let lnm = f - (hfsq - s * (hfsq + 2.0 * s2 * q));
    let ef = e as f32;
    let y = ef * LN2_HI + (lnm + ef * LN2_LO);
    if x.is_nan() || x == f32::INFINITY {
        x
    } else if x == 0.0 {
        f32::NEG_INFINITY
    } else if x < 0.0 {
        f32::NAN
    } else {
        y
    }
}

#[inline(always)]
pub fn ln_1p(x: f32) -> f32 {
    // u = 1 + x rounds; the correction ((u - 1) - x) / u restores the lost low bits of x.
    let u = 1.0 + x;
    let y = ln(u) - ((u - 1.0) - x) / u;
    if u == 1.0 || x.is_nan() || x == f32::INFINITY {
        x
    } else if x == -1.0 {
        f32::NEG_INFINITY
    } else {
        y
    }
}

/// Coefficients of tanh(x) ~ x P(x^2) / Q(x^2) on |x| <= `TANH_CLAMP` (P from degree 0 up, Q
/// likewise with Q(0) = 1), fitted for relative error by `scripts/fit_tanh_rational.py`.
pub(crate) const TANH_P: [f32; 7] = [1.0, 0.130_831_58, 0.003_103_002_4, 1.114_425e-5, -2.018_386_3e-8, 5.257_69e-11, -8.435_729e-14];
pub(crate) const TANH_Q: [f32; 4] = [1.0, 0.464_164_85, 0.024_491_386, 2.544_751_6e-4];
/// tanh(x) rounds to 1 in f32 from x = 9.0109 on.
pub(crate) const TANH_CLAMP: f32 = 9.02;

#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // One rational function over the whole range: ~10 fused multiply-adds and a division, a
    // third of the work of going through expm1 (within 5 ulp; `mul_add` is a single vfmadd where
    // the caller is compiled for FMA and the correctly rounded libm fma elsewhere, so every host
    // computes the same bits).
    let a = x.abs().min(TANH_CLAMP);
    let s = a * a;
    let mut p = TANH_P[6];
    for &c in TANH_P[..6].iter().rev() {
        p = p.mul_add(s, c);
    }
    let mut q = TANH_Q[3];
    for &c in TANH_Q[..3].iter().rev() {
        q = q.mul_add(s, c);
    }
    // The fit overshoots 1 by a few ulp near the clamp; |tanh| <= 1 must hold exactly.
    let t = (a * p / q).min(1.0);
    let y = f32::from_bits(t.to_bits() | (x.to_bits() & 0x8000_0000));
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    // With e = exp(-|x|) <= 1 nothing overflows: 1/(1+e) for x >= 0, e/(1+e) for x < 0
    // (which keeps the subnormal results far in the negative tail).
    sigmoid_from(x, exp(-x.abs()))
}

/// sigmoid(x) given e = exp(-|x|).
#[inline(always)]
fn sigmoid_from(x: f32, e: f32) -> f32 {
    let r = 1.0 / (1.0 + e);
    if x < 0.0 {
        e * r
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        if a.is_nan() && b.is_nan() {
            return 0.0;
        }
        if a as f64 == b {
            return 0.0;
        }
        let bf = b as f32;
        if bf.is_infinite() || a.is_infinite() {
            return if a == bf { 0.0 } else { f64::INFINITY };
        }
        let ulp = (f32::from_bits(bf.abs().to_bits() + 1) - bf.abs()).max(f32::from_bits(1)) as f64;
        (a as f64 - b).abs() / ulp
    }

    /// Checks `n` points spread evenly over [lo, hi], or over the bit patterns of [lo, hi] when
    /// both are positive (so a sweep over 1e-30..1e30 visits every binade).
    fn sweep(name: &str, f: fn(f32) -> f32, r: fn(f64) -> f64, lo: f32, hi: f32, max_ulps: f64) {
        let n = 200_000;
        let mut worst = (0.0, 0.0f32);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let x = if lo > 0.0 {
                f32::from_bits((lo.to_bits() as f64 + (hi.to_bits() - lo.to_bits()) as f64 * t) as u32)
            } else {
                lo + (hi - lo) * t as f32
            };
            let u = ulps(f(x), r(x as f64));
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= max_ulps, "{name}: {} ulps at x = {:e} (got {:e}, want {:e})", worst.0, worst.1, f(worst.1), r(worst.1 as f64));
    }

    #[test]
    fn accuracy_against_f64_libm() {
        sweep("exp", exp, f64::exp, -110.0, 90.0, 2.0);
        sweep("exp small", exp, f64::exp, -1.0, 1.0, 2.0);
        sweep("expm1", exp_m1, f64::exp_m1, -40.0, 90.0, 2.0);
        sweep("expm1 small", exp_m1, f64::exp_m1, -1e-3, 1e-3, 2.0);
        sweep("ln", ln, f64::ln, 1e-30, 1e30, 2.0);
        sweep("ln near 1", ln, f64::ln, 0.5, 2.0, 2.0);
        sweep("ln subnormal", ln, f64::ln, 1e-45, 1e-38, 2.0);
        sweep("ln_1p", ln_1p, f64::ln_1p, -0.999, 10.0, 2.0);
        sweep("ln_1p small", ln_1p, f64::ln_1p, -1e-4, 1e-4, 2.0);
        sweep("tanh", tanh, f64::tanh, -20.0, 20.0, 5.0);
        sweep("tanh small", tanh, f64::tanh, -1e-3, 1e-3, 3.0);
        sweep("tanh tiny", tanh, f64::tanh, 1e-30, 1e-3, 3.0);
        sweep("sigmoid", sigmoid, |x| 1.0 / (1.0 + (-x).exp()), -100.0, 100.0, 3.0);
    }

    #[test]
    fn special_values() {
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(-0.0), f32::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln_1p(-1.0), f32::NEG_INFINITY);
        assert_eq!(ln_1p(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_m1(f32::NEG_INFINITY), -1.0);
        assert_eq!(exp_m1(f32::INFINITY), f32::INFINITY);
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert!(tanh(f32::NAN).is_nan());
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
    }

    /// The block kernels give `exp`'s / `sigmoid`'s bits for every element: blocks wholly inside
    /// the fast range, blocks with one element outside it (each of the 16 lanes in turn), the
    /// range's edges and the values next to them, NaN, ±inf, and ragged tails.
    #[test]
    fn slices_have_the_elementwise_bits() {
        let edges = [EXP_NORMAL_LO, EXP_NORMAL_HI, -EXP_NORMAL_HI, -EXP_NORMAL_LO];
        let mut odd: Vec<f32> = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -104.5, -95.0, 88.8, 100.0, 0.0, -0.0];
        for e in edges {
            odd.extend([e, f32::from_bits(e.to_bits() + 1), f32::from_bits(e.to_bits() - 1)]);
        }
        // A cheap LCG: values across [-90, 90] and across [-2, 2].
        let mut seed = 0x2545_f491u32;
        let mut next = move |scale: f32| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 * scale - scale
        };
        let mut x: Vec<f32> = (0..4096).map(|i| next(if i % 2 == 0 { 2.0 } else { 90.0 })).collect();
        for (lane, &v) in odd.iter().cycle().take(16 * 8).enumerate() {
            // One odd value in block 8 + lane / 16, at lane % 16.
            x[(8 + lane / 16) * 16 + lane % 16] = v;
        }
        x.extend(edges);
        for len in [x.len(), x.len() - 3, 15, 1, 0] {
            for start in [0, 5] {
                let src = &x[start.min(len)..len];
                let mut got = vec![0.0f32; src.len()];
                for (name, slice, one) in
                    [("exp", exp_slice as fn(&[f32], &mut [f32]), exp as fn(f32) -> f32), ("sigmoid", sigmoid_slice, sigmoid)]
                {
                    slice(src, &mut got);
                    for (i, (&g, &v)) in got.iter().zip(src).enumerate() {
                        let want = one(v);
                        assert!(g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()), "{name}({v:e}) at {i}: {g:e} != {want:e}");
                    }
                }
            }
        }
    }
}
