//! Runtime SIMD dispatch.
//!
//! The crate is built for baseline x86-64 (binaries move between machines: CI, the GPU hosts), so
//! ordinary code may only use SSE2. `vectorized(|| body())` runs `body` inside a function compiled
//! for AVX-512 (or AVX2+FMA) when the CPU has it. The closure and everything it calls that is
//! `#[inline(always)]` is inlined into that function, so loops over branch-free kernels (see
//! `fastmath`) vectorise 16 lanes wide. Detection is cached by `is_x86_feature_detected!`.

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Level {
    Avx512,
    Avx2,
    Baseline,
}

/// The widest instruction set `vectorized` may use on this CPU.
#[inline]
pub fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// Runs `f` compiled for the widest instruction set the CPU has. Keep `f` a thin call of
/// `#[inline(always)]` code: only what is inlined into it gets the wider instructions.
#[inline]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
        unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn mid<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match level() {
            // SAFETY: `level` checked that the CPU has these features.
            Level::Avx512 => return unsafe { wide(f) },
            Level::Avx2 => return unsafe { mid(f) },
            Level::Baseline => {}
        }
    }
    f()
}

/// `dst[i] = f(src[i])`.
#[inline]
pub fn map_slice<A: Copy, B>(src: &[A], dst: &mut [B], f: &impl Fn(A) -> B) {
    #[inline(always)]
    fn body<A: Copy, B>(src: &[A], dst: &mut [B], f: &impl Fn(A) -> B) {
        for (o, &x) in dst.iter_mut().zip(src) {
            *o = f(x);
        }
    }
    vectorized(|| body(src, dst, f))
}

/// `dst[i] = f(a[i], b[i])`.
#[inline]
pub fn zip_slice<A: Copy, B: Copy, C>(a: &[A], b: &[B], dst: &mut [C], f: &impl Fn(A, B) -> C) {
    #[inline(always)]
    fn body<A: Copy, B: Copy, C>(a: &[A], b: &[B], dst: &mut [C], f: &impl Fn(A, B) -> C) {
        for (o, (&x, &y)) in dst.iter_mut().zip(a.iter().zip(b)) {
            *o = f(x, y);
        }
    }
    vectorized(|| body(a, b, dst, f))
}
