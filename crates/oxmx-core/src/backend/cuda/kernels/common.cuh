// Shared by every oxmx kernel (prepended by compiler.rs). No CUDA headers are included, so
// NVRTC needs no include path: half and bfloat16 are 16-bit storage types converted with PTX.
typedef unsigned short f16_t;
typedef unsigned short bf16_t;
typedef unsigned char bool_t;

__device__ __forceinline__ float f16_to_f32(f16_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ f16_t f32_to_f16(float f) {
    f16_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float bf16_to_f32(bf16_t h) {
    return __uint_as_float(((unsigned int)h) << 16);
}
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
    bf16_t h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// Programmatic dependent launch (compute capability 9.0+; compiler.rs puts this call first in
// every kernel and launches kernels with the attribute that allows it). The driver may start a
// kernel's blocks while the kernel before it on the stream is still running; `wait` holds them
// until that kernel has finished and its writes are visible, so nothing is read or written
// early. `launch_dependents` then lets the next kernel's blocks be scheduled: it comes after
// the wait, so a kernel that starts early can only overlap a predecessor that has itself passed
// its wait, and every kernel before that one has finished. Without the attribute both are
// no-ops.
__device__ __forceinline__ void oxmx_grid_dependency() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#define OXMX_MAX_DIMS 8
#define OXMX_MAX_INPUTS 3

// Element offsets of up to three inputs for a flat output index: either contiguous (offset +
// i * step, step 0 for a scalar) or strided over the collapsed output shape.
struct Index {
    int ndim;
    int contiguous;
    long long shape[OXMX_MAX_DIMS];
    long long strides[OXMX_MAX_INPUTS][OXMX_MAX_DIMS];
    long long offset[OXMX_MAX_INPUTS];
    long long step[OXMX_MAX_INPUTS];
};

__device__ __forceinline__ long long oxmx_offset(const Index& ix, int k, long long i) {
    if (ix.contiguous) return ix.offset[k] + i * ix.step[k];
    long long o = ix.offset[k];
    for (int d = ix.ndim - 1; d >= 0; --d) {
        long long c = i % ix.shape[d];
        i /= ix.shape[d];
        o += c * ix.strides[k][d];
    }
    return o;
}

// Four consecutive elements, aligned as one access (16 bytes for 4-byte types): element-wise
// kernels read and write dense operands four elements per thread and instruction.
template <typename T> struct alignas(4 * sizeof(T)) V4 {
    T v[4];
};
// Elements 4i..4i+3 of a dense operand at p (step 1), or its one element four times (step 0).
template <typename T> __device__ __forceinline__ V4<T> v4_load(const T* p, long long step, long long i) {
    if (step == 0) {
        V4<T> r;
        T x = *p;
        r.v[0] = x;
        r.v[1] = x;
        r.v[2] = x;
        r.v[3] = x;
        return r;
    }
    return ((const V4<T>*)p)[i];
}

#define OXMX_INF_F __int_as_float(0x7f800000)
#define OXMX_INF_D __longlong_as_double(0x7ff0000000000000LL)
#define OXMX_FLT_MAX 3.402823466e+38f

// Float element types by code for templated kernels (f16_t and bf16_t are both 16-bit
// integers, so templates pick the conversion by this code, not by the C type): 0 float32,
// 1 float16, 2 bfloat16. Arithmetic is in float32.
template <int DT> struct Elem;
template <> struct Elem<0> {
    typedef float T;
    static __device__ __forceinline__ float load(float v) { return v; }
    static __device__ __forceinline__ float store(float v) { return v; }
};
template <> struct Elem<1> {
    typedef f16_t T;
    static __device__ __forceinline__ float load(f16_t v) { return f16_to_f32(v); }
    static __device__ __forceinline__ f16_t store(float v) { return f32_to_f16(v); }
};
template <> struct Elem<2> {
    typedef bf16_t T;
    static __device__ __forceinline__ float load(bf16_t v) { return bf16_to_f32(v); }
    static __device__ __forceinline__ bf16_t store(float v) { return f32_to_bf16(v); }
};

// Eight consecutive elements (16-byte aligned) held as raw bits: one 16-byte load for 16-bit
// types, two for float32. Mat-vec kernels keep weights raw while loads are in flight and
// convert once the data is there.
template <int DT> struct Chunk8 {
    uint4 v[DT == 0 ? 2 : 1];
};
template <int DT> __device__ __forceinline__ Chunk8<DT> chunk8_load(const typename Elem<DT>::T* p) {
    Chunk8<DT> c;
    const uint4* q = (const uint4*)p;
    for (int i = 0; i < (DT == 0 ? 2 : 1); ++i) c.v[i] = q[i];
    return c;
}
template <int DT> __device__ __forceinline__ Chunk8<DT> chunk8_zero() {
    Chunk8<DT> c;
    for (int i = 0; i < (DT == 0 ? 2 : 1); ++i) c.v[i] = make_uint4(0u, 0u, 0u, 0u);
    return c;
}
template <int DT> __device__ __forceinline__ void chunk8_f(const Chunk8<DT>& c, float* o);
template <> __device__ __forceinline__ void chunk8_f<0>(const Chunk8<0>& c, float* o) {
    for (int i = 0; i < 2; ++i) {
        o[4 * i] = __uint_as_float(c.v[i].x);
        o[4 * i + 1] = __uint_as_float(c.v[i].y);
        o[4 * i + 2] = __uint_as_float(c.v[i].z);
        o[4 * i + 3] = __uint_as_float(c.v[i].w);
    }
}
template <> __device__ __forceinline__ void chunk8_f<1>(const Chunk8<1>& c, float* o) {
    unsigned int w[4] = {c.v[0].x, c.v[0].y, c.v[0].z, c.v[0].w};
    for (int i = 0; i < 4; ++i) {
        o[2 * i] = f16_to_f32((f16_t)(w[i] & 0xffffu));
        o[2 * i + 1] = f16_to_f32((f16_t)(w[i] >> 16));
    }
}
template <> __device__ __forceinline__ void chunk8_f<2>(const Chunk8<2>& c, float* o) {
    unsigned int w[4] = {c.v[0].x, c.v[0].y, c.v[0].z, c.v[0].w};
    for (int i = 0; i < 4; ++i) {
        o[2 * i] = __uint_as_float(w[i] << 16);
        o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
// Eight consecutive elements at p (16-byte aligned) as float32.
template <int DT> __device__ __forceinline__ void load8(const typename Elem<DT>::T* p, float* o) {
    chunk8_f<DT>(chunk8_load<DT>(p), o);
}

// Stores eight float32 values at p (16-byte aligned) as element type DT: 16-byte stores.
template <int DT> __device__ __forceinline__ void store8(typename Elem<DT>::T* p, const float* v) {
    uint4* q = (uint4*)p;
    if (DT == 0) {
        q[0] = make_uint4(__float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]), __float_as_uint(v[3]));
        q[1] = make_uint4(__float_as_uint(v[4]), __float_as_uint(v[5]), __float_as_uint(v[6]), __float_as_uint(v[7]));
    } else {
        unsigned int w[4];
        for (int i = 0; i < 4; ++i)
            w[i] = (unsigned int)Elem<DT>::store(v[2 * i]) | ((unsigned int)Elem<DT>::store(v[2 * i + 1]) << 16);
        q[0] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Mat-vec blocks: BLOCK_WARPS warps in groups of W, each group owning R consecutive rows of
// the output and splitting k between its warps. Sums each thread's acc[m][r] over its warp,
// then over its group (through shared memory), and writes out[m * n + row] = scale * sum as
// element type E for the rows below n.
#ifndef BLOCK_WARPS
#define BLOCK_WARPS 8
#endif
template <typename E, int M, int R, int W>
__device__ __forceinline__ void group_reduce_store(float (&acc)[M][R], typename E::T* out, long long n, float scale) {
    __shared__ float red[BLOCK_WARPS][M][R];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int m = 0; m < M; ++m)
        for (int r = 0; r < R; ++r) {
            float v = warp_sum(acc[m][r]);
            if (lane == 0) red[warp][m][r] = v;
        }
    __syncthreads();
    if (threadIdx.x < (BLOCK_WARPS / W) * M * R) {
        int grp = threadIdx.x / (M * R), m = threadIdx.x % (M * R) / R, r = threadIdx.x % R;
        long long n0 = ((long long)blockIdx.x * (BLOCK_WARPS / W) + grp) * R;
        float v = 0.0f;
        for (int i = 0; i < W; ++i) v += red[grp * W + i][m][r];
        if (n0 + r < n) out[m * n + n0 + r] = E::store(scale * v);
    }
}

// The sum of `v` over the block (every thread gets it); `red` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    return warp_sum(t);
}

// ---- Helpers of the attention kernels ----

// A strided 4-D operand's element offset and batch, head and row strides (K, V, masks).
struct Rows4 {
    long long off, b, h, l;
};

// Two floats rounded into one register of two 16-bit elements (lo in the low half).
template <int DT> __device__ __forceinline__ unsigned int pack2(float lo, float hi);
template <> __device__ __forceinline__ unsigned int pack2<1>(float lo, float hi) {
    unsigned int d;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}
template <> __device__ __forceinline__ unsigned int pack2<2>(float lo, float hi) {
    unsigned int d;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
    return d;
}

// The shared-memory address of a generic pointer into shared memory.
__device__ __forceinline__ unsigned int smem_addr(const void* p) {
    unsigned int a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
// 16 bytes global -> shared without passing through registers; zero-filled when !ok.
__device__ __forceinline__ void cp_async16(unsigned int dst, const void* src, bool ok) {
    int n = ok ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// 2^x by the special-function unit (ex2.approx.ftz: -inf gives +0, ~2 ulp), without the
// range fix-ups exp2f adds.
__device__ __forceinline__ float fa_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
