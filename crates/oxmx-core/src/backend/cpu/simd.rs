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

/// The widest instruction set `vectorized` may use on this CPU, capped by `OXMX_SIMD=avx2` or
/// `OXMX_SIMD=baseline` (so the AVX2 and scalar paths can be tested and timed on AVX-512 hosts).
/// Detected once per process.
#[inline]
pub fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        let found = detect_level();
        let cap = match std::env::var("OXMX_SIMD").map(|v| v.to_ascii_lowercase()).as_deref() {
            Ok("avx2") => Level::Avx2,
            Ok("baseline") | Ok("sse2") => Level::Baseline,
            _ => Level::Avx512,
        };
        let rank = |l: Level| match l {
            Level::Avx512 => 2,
            Level::Avx2 => 1,
            Level::Baseline => 0,
        };
        if rank(cap) < rank(found) {
            cap
        } else {
            found
        }
    })
}

fn detect_level() -> Level {
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

/// Whether the CPU has AVX2, FMA and F16C (the `multiversion!` twin's features).
#[inline]
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Defines a function whose body is compiled twice: for baseline x86-64, and for AVX2+FMA+F16C,
/// the latter called when the CPU has them. Unlike `vectorized`, this reaches every closure in
/// the body (closures take the target features of the function they are written in, whether or
/// not they are inlined), so a kernel may keep its rayon tasks and helper closures and still get
/// the wide instructions and hardware `mul_add` (a baseline `mul_add` is a libm call).
/// One generic type parameter with one bound; arguments are plain identifiers.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$T:ident: $B:path>($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$m])*
        $vis fn $name<$T: $B>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma,f16c")]
                fn wide<$T: $B>($($arg: $ty),*) -> $ret $body
                if $crate::backend::cpu::simd::avx2_fma() {
                    // SAFETY: the CPU has the features `wide` was compiled for.
                    return unsafe { wide::<$T>($($arg),*) };
                }
            }
            $body
        }
    };
}
pub(crate) use multiversion;

/// The sum of the lanes of an accumulator, as a tree (`N` a power of two): log2(N) dependent
/// adds instead of the N - 1 of `iter().sum()`, whose latency dominated short dot products
/// (one per key of an attention row).
#[inline(always)]
pub fn hsum<const N: usize>(mut a: [f32; N]) -> f32 {
    let mut w = N / 2;
    while w > 0 {
        for i in 0..w {
            a[i] += a[i + w];
        }
        w /= 2;
    }
    a[0]
}

/// `dst[i] = f(src[i])`.
#[inline]
pub fn map_slice<A: Copy, B>(src: &[A], dst: &mut [B], f: &(impl Fn(A) -> B + Copy)) {
    #[inline(always)]
    fn body<A: Copy, B>(src: &[A], dst: &mut [B], f: &(impl Fn(A) -> B + Copy)) {
        // A local copy of the closure: what it captured (a broadcast operand's value) is then
        // a register, not memory that every store to `dst` might change. Read through the
        // reference, the value was loaded again per element and the loop stayed scalar (a
        // [128, 128] times a scalar ran at 2-4 GB/s, thirty-fourth session).
        let f = *f;
        for (o, &x) in dst.iter_mut().zip(src) {
            *o = f(x);
        }
    }
    vectorized(|| body(src, dst, f))
}

/// Defines `fn name(src: &[A], dst: &mut [B])` whose body is compiled three times (AVX-512,
/// AVX2+FMA, baseline) and picked by `level()`. For kernels too large for `vectorized`'s closure
/// to be inlined (a closure that is not inlined loses the target features, and every `mul_add`
/// in it becomes a libm call); closures written in the body keep them.
macro_rules! slice_kernel {
    ($(#[$m:meta])* $vis:vis fn $name:ident($src:ident: $a:ty, $dst:ident: $b:ty) $body:block) => {
        $(#[$m])*
        $vis fn $name($src: $a, $dst: $b) {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::backend::cpu::simd::{level, Level};
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
                unsafe fn wide($src: $a, $dst: $b) $body
                #[target_feature(enable = "avx2,fma,f16c")]
                unsafe fn mid($src: $a, $dst: $b) $body
                match level() {
                    // SAFETY: `level` checked that the CPU has these features.
                    Level::Avx512 => return unsafe { wide($src, $dst) },
                    Level::Avx2 => return unsafe { mid($src, $dst) },
                    Level::Baseline => {}
                }
            }
            $body
        }
    };
}
pub(crate) use slice_kernel;

/// `dst[i] = f(a[i], b[i])`.
#[inline]
pub fn zip_slice<A: Copy, B: Copy, C>(a: &[A], b: &[B], dst: &mut [C], f: &(impl Fn(A, B) -> C + Copy)) {
    #[inline(always)]
    fn body<A: Copy, B: Copy, C>(a: &[A], b: &[B], dst: &mut [C], f: &(impl Fn(A, B) -> C + Copy)) {
        let f = *f; // see map_slice
        for (o, (&x, &y)) in dst.iter_mut().zip(a.iter().zip(b)) {
            *o = f(x, y);
        }
    }
    vectorized(|| body(a, b, dst, f))
}

/// Output of at least this many bytes is written with non-temporal stores (see `fill_streaming`).
pub const STREAM_BYTES: usize = 8 << 20;

/// Fills `dst` block by block: `fill(start, block)` writes elements `start..` into a 4 KiB
/// buffer that stays in L1, which is then copied to `dst` with non-temporal (streaming) stores.
/// For outputs far larger than the caches this skips the read-for-ownership of every destination
/// line — a third of the traffic of a unary op — which is what a plain `memcpy` also does. Falls
/// back to filling `dst` directly where `streaming(work)` says no (CPUs without AVX2, heavy
/// kernels on AVX2).
/// `T` must be a plain numeric type (all-zero bytes valid).
pub fn fill_streaming<T: Copy>(dst: &mut [T], work: Work, fill: impl Fn(usize, &mut [T])) {
    let sz = std::mem::size_of::<T>();
    if streaming(work) && sz > 0 && 4096 % sz == 0 {
        #[repr(align(64))]
        struct Buf([u8; 4096]);
        let mut buf = Buf([0; 4096]);
        let per = 4096 / sz;
        // SAFETY: the buffer is 64-byte aligned, 4096 bytes, and zero bytes are a valid `T`.
        let stage = unsafe { std::slice::from_raw_parts_mut(buf.0.as_mut_ptr() as *mut T, per) };
        let mut start = 0;
        while start < dst.len() {
            let len = per.min(dst.len() - start);
            fill(start, &mut stage[..len]);
            // SAFETY: both ranges hold `len` elements and do not overlap.
            unsafe { stream_copy(stage.as_ptr() as *const u8, dst.as_mut_ptr().add(start) as *mut u8, len * sz) };
            start += len;
        }
        stream_fence();
        return;
    }
    fill(0, dst);
}

/// What an element-wise kernel does per element, which decides whether streaming stores pay.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A few instructions an element (binary arithmetic, comparisons, a scalar operand): bound
    /// by memory, so skipping the destination's read-for-ownership is a gain on any AVX2 host.
    Light,
    /// A polynomial or more an element (exp, tanh, fused regions): on Zen 2 the staging copy
    /// cost more than the read-for-ownership it saves.
    Heavy,
}

/// Whether outputs of `STREAM_BYTES` or more are written with streaming stores: on AVX-512
/// hosts (measured faster there) and for `Work::Light` kernels on AVX2 hosts too (Zen 2, 16M
/// f32, medians of six alternating runs: add 6.65 -> 5.63 ms, multiply by a scalar 5.22 -> 4.02;
/// exp 7.77 -> 8.82 and tanh 5.44 -> 5.85 were slower, so heavy kernels stay unstreamed there).
/// `OXMX_STREAM_STORES=1`/`0` turns it on or off for every kernel.
pub fn streaming(work: Work) -> bool {
    static FORCED: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    let forced = *FORCED.get_or_init(|| match std::env::var("OXMX_STREAM_STORES").as_deref() {
        Ok("1") => Some(true),
        Ok("0") => Some(false),
        _ => None,
    });
    match (forced, level()) {
        (_, Level::Baseline) | (Some(false), _) => false,
        (Some(true), _) | (None, Level::Avx512) => true,
        (None, Level::Avx2) => work == Work::Light,
    }
}

/// Copies `bytes` bytes from `src` to `dst` with non-temporal stores for the destination's whole
/// aligned vectors (the unaligned head and tail are copied plainly); a plain copy without AVX2.
/// End a run of these with [`stream_fence`] before another thread reads `dst`.
///
/// # Safety
/// `src` and `dst` are valid for `bytes` bytes and do not overlap.
pub unsafe fn stream_copy(src: *const u8, dst: *mut u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(src: *const u8, dst: *mut u8, bytes: usize) {
            use std::arch::x86_64::*;
            let head = dst.align_offset(64).min(bytes);
            std::ptr::copy_nonoverlapping(src, dst, head);
            let lines = (bytes - head) / 64;
            for i in 0..lines {
                let v = _mm512_loadu_si512(src.add(head + i * 64) as *const _);
                _mm512_stream_si512(dst.add(head + i * 64) as *mut _, v);
            }
            let done = head + lines * 64;
            std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), bytes - done);
        }
        #[target_feature(enable = "avx2")]
        unsafe fn mid(src: *const u8, dst: *mut u8, bytes: usize) {
            use std::arch::x86_64::*;
            let head = dst.align_offset(32).min(bytes);
            std::ptr::copy_nonoverlapping(src, dst, head);
            let vecs = (bytes - head) / 32;
            for i in 0..vecs {
                let v = _mm256_loadu_si256(src.add(head + i * 32) as *const _);
                _mm256_stream_si256(dst.add(head + i * 32) as *mut _, v);
            }
            let done = head + vecs * 32;
            std::ptr::copy_nonoverlapping(src.add(done), dst.add(done), bytes - done);
        }
        match level() {
            Level::Avx512 => return wide(src, dst, bytes),
            Level::Avx2 => return mid(src, dst, bytes),
            Level::Baseline => {}
        }
    }
    std::ptr::copy_nonoverlapping(src, dst, bytes);
}

/// Orders earlier streaming stores before later loads by other threads.
#[inline]
pub fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence is part of SSE, which every x86-64 CPU has.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// A hint to bring the line at `p` into L1 (never faults, whatever the address; a no-op off
/// x86-64).
#[inline(always)]
pub(crate) fn prefetch_l1<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches `bytes` from `p` into L2 (a hint: addresses past the buffer are not
/// dereferenced, so callers may run past their data's end). Streaming kernels use it `AHEAD`
/// of their reads: on Zen 4 the hardware prefetchers alone kept two threads reading at ~30% of
/// DRAM bandwidth in decode attention, prefetching into L1 at ~45%, into L2 at 70-80%.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_l2<T>(p: *const T, bytes: usize) {
    let p = p as *const i8;
    let mut o = 0;
    while o < bytes {
        // SAFETY: prefetch never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.wrapping_add(o)) };
        o += 64;
    }
}

/// Element types read sixteen at a time into a zmm register (`Load16`) or eight at a time into a
/// ymm register (`Load8`), widened to f32: quantized scales and biases, attention's keys and
/// values.
#[cfg(target_arch = "x86_64")]
pub(crate) use load16::{Load16, Load8};

#[cfg(target_arch = "x86_64")]
mod load16 {
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    pub(crate) trait Load16: Copy + Default {
        /// # Safety
        /// The CPU has AVX-512 F/BW; `p` is valid for 16 elements.
        unsafe fn load16(p: *const Self) -> __m512;
    }
    impl Load16 for f32 {
        #[inline(always)]
        unsafe fn load16(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
    }
    impl Load16 for f16 {
        #[inline(always)]
        unsafe fn load16(p: *const f16) -> __m512 {
            _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
        }
    }
    impl Load16 for bf16 {
        #[inline(always)]
        unsafe fn load16(p: *const bf16) -> __m512 {
            // bfloat16 is the top half of an f32.
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i))))
        }
    }

    pub(crate) trait Load8: Copy + Default {
        /// # Safety
        /// The CPU has AVX2 and F16C; `p` is valid for 8 elements.
        unsafe fn load8(p: *const Self) -> __m256;
    }
    impl Load8 for f32 {
        #[inline(always)]
        unsafe fn load8(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
    }
    impl Load8 for f16 {
        #[inline(always)]
        unsafe fn load8(p: *const f16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        }
    }
    impl Load8 for bf16 {
        #[inline(always)]
        unsafe fn load8(p: *const bf16) -> __m256 {
            // bfloat16 is the top half of an f32.
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i))))
        }
    }
}
