// Flash attention for Hopper (sm_90a): warpgroup tensor-core products (wgmma) read Q, K and V
// straight from shared memory, where the mma.sync kernel of fast.cu must first move every
// fragment through registers with ldmatrix (that traffic bound it at ~270 TFLOP/s on an H100).
// Needs the sm_90a target (compiler.rs compiles this family for it on compute capability 9.0).

// Shared-memory tiles (rows x D 16-bit elements) use wgmma's 128-byte-swizzled canonical layout:
// the columns are cut into atoms of 64 (128 bytes a row), each atom stores all rows, and the
// 16-byte chunk c of row r sits at chunk c ^ (r % 8) of its 128-byte line:
//   byte(r, c) = (c / 8) * rows * 128 + r * 128 + ((c % 8) ^ (r % 8)) * 16
// (the unswizzled core-matrix layout bound the kernel on shared-memory bandwidth: 0.64 against
// 0.51 ms on an H100, 35th session). Atoms start on 1024-byte boundaries. For Q and K (K-major:
// the head dimension is the product's K) a descriptor starts at an atom plus 32 bytes per
// 16-element step, with 1024 bytes between groups of 8 rows. V is read transposed (MN-major:
// N = the head dimension is contiguous): 1024 bytes between groups of 8 keys (K) and rows * 128
// bytes between atoms (N).
//
// That layout is exactly what the Tensor Memory Accelerator writes for a box of {64 elements,
// rows} with 128-byte swizzling into a 1024-byte-aligned destination: box row r lands at r * 128
// and its 16-byte chunk c at chunk c ^ (r % 8) (the swizzle XORs address bits 4-6 with bits 7-9,
// which are r % 8 from an aligned base), so one TMA copy fills one atom and the descriptors read
// TMA tiles and cp.async tiles alike.

#define FH_BR 128  // query rows a block
#define FH_BC 128  // keys a tile

// A shared-memory matrix descriptor with 128-byte swizzling (addresses and offsets in bytes).
__device__ __forceinline__ unsigned long long fh_desc(unsigned int addr, unsigned int lbo, unsigned int sbo) {
    return (unsigned long long)((addr & 0x3FFFFu) >> 4) | ((unsigned long long)(lbo >> 4) << 16) |
           ((unsigned long long)(sbo >> 4) << 32) | (1ull << 62);
}

// The accumulator operand lists of the wgmma wrappers: d[0..N/2) as read-write floats.
#define FH_F8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define FH_F32 FH_F8(0), FH_F8(8), FH_F8(16), FH_F8(24)
#define FH_F64 FH_F32, FH_F8(32), FH_F8(40), FH_F8(48), FH_F8(56)
#define FH_D32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define FH_D64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// d (+)= A B for a 64 x 128 tile, A and B both K-major in shared memory (descriptors a, b);
// `acc` = 0 overwrites d.
template <int DT> __device__ __forceinline__ void fh_ss128(float* d, unsigned long long a, unsigned long long b, int acc);
#define FH_SS128(DT, TY)                                                                                              \
    template <> __device__ __forceinline__ void fh_ss128<DT>(float* d, unsigned long long a, unsigned long long b, int acc) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                    \
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " FH_D64 ", %64, %65, p, 1, 1, 0, 0;\n}\n" \
                     : FH_F64                                                                                      \
                     : "l"(a), "l"(b), "r"(acc));                                                                  \
    }
FH_SS128(1, "f16")
FH_SS128(2, "bf16")

// d += A B for a 64 x N tile: A (64 x 16) in registers in mma.sync's m16n8k16 A-fragment
// layout per warp, B (16 x N) in shared memory read transposed (N-major).
template <int DT, int N> __device__ __forceinline__ void fh_rs(float* d, const unsigned int* a, unsigned long long b);
#define FH_RS(DT, TY, N, DREGS, FOPS, A, B, P)                                                                         \
    template <> __device__ __forceinline__ void fh_rs<DT, N>(float* d, const unsigned int* a, unsigned long long b) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " P ", 0;\n"                                                  \
                     "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " DREGS ", " A ", " B ", p, 1, 1, 1;\n}\n" \
                     : FOPS                                                                                        \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                                 \
    }
FH_RS(1, "f16", 128, FH_D64, FH_F64, "{%64, %65, %66, %67}", "%68", "%69")
FH_RS(2, "bf16", 128, FH_D64, FH_F64, "{%64, %65, %66, %67}", "%68", "%69")
FH_RS(1, "f16", 64, FH_D32, FH_F32, "{%32, %33, %34, %35}", "%36", "%37")
FH_RS(2, "bf16", 64, FH_D32, FH_F32, "{%32, %33, %34, %35}", "%36", "%37")

__device__ __forceinline__ void fh_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void fh_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N of this warpgroup's committed wgmma groups are still running.
template <int N> __device__ __forceinline__ void fh_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Makes this thread's shared-memory writes (cp.async) visible to the tensor cores' reads.
__device__ __forceinline__ void fh_proxy_fence() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving uses of wgmma operands across the wait.
template <int N> __device__ __forceinline__ void fh_pin(float* d) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N> __device__ __forceinline__ void fh_pin(unsigned int (*a)[4]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+r"(a[i][0]), "+r"(a[i][1]), "+r"(a[i][2]), "+r"(a[i][3])::"memory");
}

// ROWS rows of D elements (`src` is the first, rows `rstride` apart; rows from `rows` on are
// zeros) into the swizzled layout at shared address `dst`, asynchronously, by NT threads (`tid`
// counts them). Chunk i * NT + tid is the thread's i-th: eight consecutive threads copy one
// 128-byte line (conflict-free stores, whole sectors read), and the thread's chunk, row and
// swizzle are constants, so a copy costs an add and a compare.
template <int D, int ROWS, int NT>
__device__ __forceinline__ void fh_load(unsigned int dst, const unsigned short* src, long long rstride, int rows, int tid) {
    const int PASS = NT / 8, PER_ATOM = ROWS / PASS;  // rows a pass; passes an atom
    static_assert(PASS % 8 == 0, "a pass must cover whole groups of 8 rows (the swizzle is per row % 8)");
    int cl = tid & 7, r0 = tid >> 3;
    unsigned int sd = dst + r0 * 128 + ((cl ^ (r0 & 7)) << 4);
    const unsigned short* gs = src + r0 * rstride + cl * 8;
#pragma unroll 4
    for (int i = 0; i < ROWS * D / 8 / NT; ++i) {
        int atom = i / PER_ATOM, rr = PASS * (i % PER_ATOM);
        bool ok = r0 + rr < rows;
        cp_async16(sd + atom * ROWS * 128 + rr * 128, ok ? gs + rr * rstride + atom * 64 : src, ok);
    }
}

// mbarriers (shared-memory arrival counters with phases) between the producer and the
// consumer warpgroups.
__device__ __forceinline__ void fh_mb_init(unsigned int bar, int count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void fh_mb_arrive(unsigned int bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
// Waits until the phase of `bar` with this parity has completed.
__device__ __forceinline__ void fh_mb_wait(unsigned int bar, int parity) {
    unsigned int done = 0;
    while (!done)
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
}
// Sets the transaction count of `bar`'s current phase to `bytes` more and arrives (the phase
// completes when the arrivals are in and that many bytes of TMA copies have landed).
__device__ __forceinline__ void fh_mb_expect(unsigned int bar, unsigned int bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}

// A CUtensorMap (the driver's opaque 128-byte TMA descriptor; NVRTC has no cuda.h), taken by the
// kernel as a __grid_constant__ parameter so the copies can name it in parameter space. Hopper
// needs it 64-byte aligned; CUDA 13's cuda.h declares 128, and so does this.
struct __align__(128) TmaMap {
    unsigned long long v[16];
};
// The box of `map` at coordinates (c0, c1, c2, c3) (innermost first, in elements) into shared
// memory at `dst`, landing as transaction bytes on mbarrier `bar`. Box elements outside the
// tensor are written as zeros and count as transaction bytes like the others.
__device__ __forceinline__ void fh_tma4(unsigned int dst, const TmaMap* map, int c0, int c1, int c2, int c3, unsigned int bar) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];\n"
                 ::"r"(dst), "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
                 : "memory");
}

// Named barrier `id` over the 256 consumer threads: wait for the other warpgroup's arrival, or arrive.
__device__ __forceinline__ void fh_bar_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void fh_bar_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// S = Q K^T for a warpgroup's 64 rows (Q from `qdesc`) and the 128 keys of the tile at `kt`.
template <int DT, int D>
__device__ __forceinline__ void fh_scores(float* s, unsigned int qdesc, unsigned int kt) {
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
        fh_ss128<DT>(s, fh_desc(qdesc + (kk >> 2) * (FH_BR * 128) + (kk & 3) * 32, 16, 1024),
                     fh_desc(kt + (kk >> 2) * (FH_BC * 128) + (kk & 3) * 32, 16, 1024), kk);
}

// O += P V for the V tile at `vt` (P as A fragments, 16 keys each).
template <int DT, int D>
__device__ __forceinline__ void fh_pv(float* o, const unsigned int (*pa)[4], unsigned int vt) {
#pragma unroll
    for (int kk = 0; kk < FH_BC / 16; ++kk) fh_rs<DT, D>(o, pa[kk], fh_desc(vt + kk * 2048, FH_BC * 128, 1024));
}

// The online softmax of one tile's scores for this thread's two rows (`row`, `row` + 8): masks
// keys past kl or past the causal horizon, updates the running max m (of s * sc) and sum l,
// gives the factor `corr` that rescales the output so far, and leaves the probabilities in s.
template <bool CAUSAL>
__device__ __forceinline__ void fh_softmax(float* s, float* m, float* l, float* corr, int j0, int kl, int row,
                                           int shift, float sc, float masked) {
    const float NEG = -__int_as_float(0x7f800000);
    int tig = threadIdx.x & 3;
    // Masking only where the tile reaches past the keys or this warp's first row's horizon.
    if (j0 + FH_BC > kl || (CAUSAL && j0 + FH_BC - 1 > row - (row & 7) + shift)) {
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
            // The last visible key of this row, counted from this lane's first column.
            int lim = kl - 1;
            if (CAUSAL) lim = min(lim, row + hr * 8 + shift);
            lim -= j0 + tig * 2;
#pragma unroll
            for (int nt = 0; nt < FH_BC / 8; ++nt)
#pragma unroll
                for (int e = 2 * hr; e < 2 * hr + 2; ++e)
                    if (nt * 8 + (e & 1) > lim) s[4 * nt + e] = masked;
        }
    }
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        float mx = s[2 * rr];
        if (sc >= 0.0f) {
#pragma unroll
            for (int nt = 0; nt < FH_BC / 8; ++nt) mx = fmaxf(mx, fmaxf(s[4 * nt + 2 * rr], s[4 * nt + 2 * rr + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        } else {
#pragma unroll
            for (int nt = 0; nt < FH_BC / 8; ++nt) mx = fminf(mx, fminf(s[4 * nt + 2 * rr], s[4 * nt + 2 * rr + 1]));
            mx = fminf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fminf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        }
        float mn = fmaxf(m[rr], mx * sc);
        // A row with no visible key yet keeps m = -inf: its probabilities are 0.
        float base = mn == NEG ? 0.0f : mn;
        corr[rr] = fa_exp2(m[rr] - base);
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < FH_BC / 8; ++nt)
#pragma unroll
            for (int e = 2 * rr; e < 2 * rr + 2; ++e) {
                float p = fa_exp2(fmaf(s[4 * nt + e], sc, -base));
                s[4 * nt + e] = p;
                sum += p;
            }
        l[rr] = l[rr] * corr[rr] + sum;
        m[rr] = mn;
    }
}

// The probabilities in s as A fragments (keys 16 kk .. 16 kk + 15 are score tiles 2 kk and 2 kk + 1).
template <int DT> __device__ __forceinline__ void fh_pack(const float* s, unsigned int (*pa)[4]) {
#pragma unroll
    for (int kk = 0; kk < FH_BC / 16; ++kk) {
        pa[kk][0] = pack2<DT>(s[8 * kk], s[8 * kk + 1]);
        pa[kk][1] = pack2<DT>(s[8 * kk + 2], s[8 * kk + 3]);
        pa[kk][2] = pack2<DT>(s[8 * kk + 4], s[8 * kk + 5]);
        pa[kk][3] = pack2<DT>(s[8 * kk + 6], s[8 * kk + 7]);
    }
}

// FlashAttention-3's structure on wgmma: one block per (batch x head, 128 query rows) of two
// consumer warpgroups (64 rows each) and one producer warpgroup, which copies K and V tiles of
// 128 keys into a ring of FH_STAGES stages (mbarriers announce a stage full and release it
// empty), so no block-wide barrier holds the consumers in step, and they take turns to issue
// their products: one's softmax runs while the other's products do. The producer copies with
// TMA (flash_sm90_tma: one thread issues a tile's D / 64 box copies each of K and V, and K and V
// have their own full barriers, so the scores of tile j wait for K(j) only) or with cp.async
// (flash_sm90: all its 128 threads, one barrier for K and V; the host's fallback where TMA
// cannot describe K or V, and `OXMX_FLASH_TMA=0`). Q stays in shared
// memory (224 KB in all at D = 128; 384 threads). At tile j a warpgroup issues S = Q K(j)^T
// (D / 16 wgmma from shared memory) and O += P(j-1) V(j-1) (8 wgmma, A = the previous
// probabilities in registers), takes the online softmax of S (exp2 of score * scale * log2(e) -
// max) while the second product runs, then rescales O. Causal blocks run heaviest first.
// H100, causal 1 x 32 x 4096 x 128 bf16: with TMA 0.255-0.262 ms (36th session; PyTorch's SDPA
// 0.272-0.277 in the same call), with cp.async 0.326-0.331 (35th: 0.323 for the same loop with
// all 256 threads copying and a __syncthreads a tile, commit 62d3a9c; 0.343 without the turns).
// Arguments and layouts as flash_attention in fast.cu; with TMA, `km` and `vm` describe K and V
// as 4-D tensors (D, kl, hkv, b), innermost first, with boxes of {64, FH_BC, 1, 1} and 128-byte
// swizzling (flash.rs), and rows from kl on come as zeros as cp.async's do.
#define FH_STAGES 3
template <int DT, int D, bool CAUSAL, bool SINKS, bool TMA>
__device__ __forceinline__ void fh_attention(typename Elem<DT>::T* out, const typename Elem<DT>::T* q,
                                             const typename Elem<DT>::T* k, const typename Elem<DT>::T* v, const float* sinks,
                                             Rows4 ks, Rows4 vs, int hq, int hkv, int ql, long long kl64, float scale_log2,
                                             const TmaMap* km, const TmaMap* vm) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    typedef typename Elem<DT>::T T;
    extern __shared__ __align__(1024) unsigned char fh_smem[];
    const unsigned int TILE = FH_BC * D * 2;  // bytes of a K or V tile
    const float INF = __int_as_float(0x7f800000), NEG = -INF;
    unsigned int qs = smem_addr(fh_smem);
    if (qs & 1023) __trap();                          // swizzle atoms must be 1024-byte aligned
    unsigned int kv = qs + FH_BR * D * 2;             // stage s: K at kv + 2 s TILE, V after it
    unsigned int full = kv + 2 * FH_STAGES * TILE;    // mbarriers: full[s] (K; with cp.async K and V) at full + 8 s,
    unsigned int vfull = full + 8 * FH_STAGES;        // vfull[s] (V with TMA) at vfull + 8 s,
    unsigned int empty = vfull + 8 * FH_STAGES;       // empty[s] at empty + 8 s
    int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    int gid = lane >> 2, tig = lane & 3;
    long long bh = blockIdx.x;
    int h = (int)(bh % hq);
    long long bi = bh / hq;
    int hk = h / (hq / hkv);
    int kl = (int)kl64;  // the host keeps kl below 2^31
    int q0 = (CAUSAL ? gridDim.y - 1 - blockIdx.y : blockIdx.y) * FH_BR;
    const unsigned short* kb = (const unsigned short*)(k + ks.off + bi * ks.b + hk * ks.h);
    const unsigned short* vb = (const unsigned short*)(v + vs.off + bi * vs.b + hk * vs.h);
    int shift = kl - ql;  // key j is visible to query row i when j <= i + shift (causal)
    int kend = kl;
    if (CAUSAL) kend = min(kend, q0 + FH_BR + shift);
    // At least one tile (wholly masked when no key is visible), so both roles run the same count.
    int tiles = max(1, (kend + FH_BC - 1) / FH_BC);
    // The TMA thread fetches the two descriptors while the barriers are set up.
    if (TMA && threadIdx.x == 256) {
        asm volatile("prefetch.tensormap [%0];\n" ::"l"(km) : "memory");
        asm volatile("prefetch.tensormap [%0];\n" ::"l"(vm) : "memory");
    }
    if (threadIdx.x == 0) {
        for (int st = 0; st < FH_STAGES; ++st) {
            // TMA: the issuing thread's one arrival (with the bytes to expect); cp.async: one
            // arrival a producer thread.
            fh_mb_init(full + 8 * st, TMA ? 1 : 128);
            if (TMA) fh_mb_init(vfull + 8 * st, 1);
            fh_mb_init(empty + 8 * st, 8);  // one arrival a consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x >= 256) {
        // The producer warpgroup gives registers to the consumers and copies: tile j into stage
        // j % FH_STAGES once both consumers have released the tile that stage held.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (TMA) {
            // One thread issues the copies (a few instructions a 16 KB box); the rest of the
            // warpgroup leaves. A phase of full[s] (vfull[s]) completes when the thread's
            // arrival and a whole tile's bytes are in: TMA counts the zeros it writes past kl.
            // Nothing waits for the copies here: the consumers wait for every tile issued.
            if (threadIdx.x == 256) {
                for (int j = 0, st = 0; j < tiles; ++j) {
                    if (j >= FH_STAGES) fh_mb_wait(empty + 8 * st, (j / FH_STAGES - 1) & 1);
                    unsigned int kt = kv + 2 * st * TILE, vt = kt + TILE;
                    fh_mb_expect(full + 8 * st, TILE);
#pragma unroll
                    for (int a = 0; a < D / 64; ++a) fh_tma4(kt + a * FH_BC * 128, km, a * 64, j * FH_BC, hk, (int)bi, full + 8 * st);
                    fh_mb_expect(vfull + 8 * st, TILE);
#pragma unroll
                    for (int a = 0; a < D / 64; ++a) fh_tma4(vt + a * FH_BC * 128, vm, a * 64, j * FH_BC, hk, (int)bi, vfull + 8 * st);
                    st = st + 1 == FH_STAGES ? 0 : st + 1;
                }
            }
            return;
        }
        // cp.async: all four warps copy (one warp issuing a tile's 4,096 copies, ~8 instructions
        // each, fell behind the products: 0.69 ms); a tile is announced once its copies have
        // landed (an asynchronous arrival of each thread; the consumers fence the copies for the
        // tensor cores).
        int pt = threadIdx.x - 256;
        for (int j = 0, st = 0; j < tiles; ++j) {
            if (j >= FH_STAGES) fh_mb_wait(empty + 8 * st, (j / FH_STAGES - 1) & 1);
            fh_load<D, FH_BC, 128>(kv + 2 * st * TILE, kb + (long long)j * FH_BC * ks.l, ks.l, kl - j * FH_BC, pt);
            fh_load<D, FH_BC, 128>(kv + (2 * st + 1) * TILE, vb + (long long)j * FH_BC * vs.l, vs.l, kl - j * FH_BC, pt);
            // Each thread's arrival comes when its copies land, without waiting here, so the
            // producer runs up to FH_STAGES tiles ahead (waiting for its copies before announcing
            // left one tile in flight: 0.375 ms).
            asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(full + 8 * st) : "memory");
            st = st + 1 == FH_STAGES ? 0 : st + 1;
        }
        cp_async_wait<0>();
        return;
    }
    // The consumers: 232 registers each (12 warps at 168 would spill). They copy Q themselves
    // (named barrier 1: their 256 threads only).
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
    fh_load<D, FH_BR, 256>(qs, (const unsigned short*)(q + (bh * ql + q0) * D), D, ql - q0, threadIdx.x);
    cp_async_commit();
    cp_async_wait<0>();
    fh_proxy_fence();
    asm volatile("bar.sync 1, 256;\n" ::: "memory");
    int row = q0 + wg * 64 + warp * 16 + gid;  // this thread's rows: row and row + 8
    // Scores stay unscaled: p = exp2(s * sc - m) with m the row's largest s * sc, so the max runs
    // on s (its smallest when the scale is negative) and masked scores are the value whose
    // scaled form is -inf.
    const float sc = scale_log2, masked = sc >= 0.0f ? NEG : INF;
    float m[2] = {NEG, NEG}, l[2] = {0.0f, 0.0f};
    float o[D / 2];
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.0f;
    unsigned int qdesc = qs + wg * 64 * 128;
    // No branch around the products (ptxas serializes wgmma issued on divergent paths): the
    // first tile's scores come before the loop, the last tile's P V after it, and a tile wholly
    // above a warpgroup's horizon (the diagonal tile of the first) is computed and masked.
    float s[FH_BC / 2];
    unsigned int pa[FH_BC / 16][4];  // P of the previous tile, waiting for its product with V
    float corr[2];
    // The two warpgroups take turns to issue their products (named barriers 2 and 3), so the
    // tensor cores run one's while the other takes its softmax (FlashAttention-3's ping-pong).
    if (wg == 1) fh_bar_arrive(2);
    fh_mb_wait(full, 0);
    // cp.async writes shared memory through the generic proxy: the copies this thread has seen
    // are fenced before the tensor cores (the async proxy) read them. TMA writes through the
    // async proxy, and the completed phase makes its writes visible: no fence.
    if (!TMA) fh_proxy_fence();
    fh_bar_sync(2 + wg);
    fh_fence();
    fh_scores<DT, D>(s, qdesc, kv);
    fh_commit();
    fh_bar_arrive(3 - wg);
    fh_wait<0>();
    fh_pin<FH_BC / 2>(s);
    fh_softmax<CAUSAL>(s, m, l, corr, 0, kl, row, shift, sc, masked);
    fh_pack<DT>(s, pa);
    int prev = 0;  // the stage of the previous tile
    for (int j = 1, st = 1 % FH_STAGES; j < tiles; ++j) {
        fh_mb_wait(full + 8 * st, (j / FH_STAGES) & 1);
        if (TMA)
            fh_mb_wait(vfull + 8 * prev, ((j - 1) / FH_STAGES) & 1);  // V(j - 1), for this turn's P V
        else
            fh_proxy_fence();
        fh_bar_sync(2 + wg);
        fh_fence();
        fh_scores<DT, D>(s, qdesc, kv + 2 * st * TILE);
        fh_commit();
        fh_pv<DT, D>(o, pa, kv + (2 * prev + 1) * TILE);
        fh_commit();
        fh_bar_arrive(3 - wg);
        fh_wait<1>();
        fh_pin<FH_BC / 2>(s);
        fh_softmax<CAUSAL>(s, m, l, corr, j * FH_BC, kl, row, shift, sc, masked);
        fh_wait<0>();
        fh_pin<D / 2>(o);
        fh_pin<FH_BC / 16>(pa);
        if (lane == 0) fh_mb_arrive(empty + 8 * prev);
        fh_pack<DT>(s, pa);  // the previous P's product is done: its registers are free
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt) {
            o[4 * nt] *= corr[0];
            o[4 * nt + 1] *= corr[0];
            o[4 * nt + 2] *= corr[1];
            o[4 * nt + 3] *= corr[1];
        }
        prev = st;
        st = st + 1 == FH_STAGES ? 0 : st + 1;
    }
    if (TMA) fh_mb_wait(vfull + 8 * prev, ((tiles - 1) / FH_STAGES) & 1);
    fh_bar_sync(2 + wg);
    fh_fence();
    fh_pv<DT, D>(o, pa, kv + (2 * prev + 1) * TILE);
    fh_commit();
    if (wg == 0) fh_bar_arrive(3);  // the second warpgroup's last turn (its own last needs no answer)
    fh_wait<0>();
    fh_pin<D / 2>(o);
    T* ob = out + bh * (long long)ql * D;
    float inv[2];
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
        float lr = l[rr];
        lr += __shfl_xor_sync(0xffffffffu, lr, 1);
        lr += __shfl_xor_sync(0xffffffffu, lr, 2);
        if (SINKS) {
            float sl = sinks[h] * 1.4426950408889634f;
            float mn = fmaxf(m[rr], sl);
            float c = m[rr] == NEG ? 0.0f : exp2f(m[rr] - mn);
            lr = lr * c + exp2f(sl - mn);
#pragma unroll
            for (int nt = 0; nt < D / 8; ++nt) {
                o[4 * nt + 2 * rr] *= c;
                o[4 * nt + 2 * rr + 1] *= c;
            }
        }
        inv[rr] = 1.0f / lr;
    }
    int r0 = row, r1 = row + 8;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
        int col = nt * 8 + tig * 2;
        if (r0 < ql) *(unsigned int*)(ob + (long long)r0 * D + col) = pack2<DT>(o[4 * nt] * inv[0], o[4 * nt + 1] * inv[0]);
        if (r1 < ql) *(unsigned int*)(ob + (long long)r1 * D + col) = pack2<DT>(o[4 * nt + 2] * inv[1], o[4 * nt + 3] * inv[1]);
    }
#else
    __trap();  // the host launches this kernel only on sm_90a
#endif
}

// K and V tiles by cp.async.
template <int DT, int D, bool CAUSAL, bool SINKS>
__device__ void flash_sm90(typename Elem<DT>::T* out, const typename Elem<DT>::T* q, const typename Elem<DT>::T* k,
                           const typename Elem<DT>::T* v, const float* sinks, Rows4 ks, Rows4 vs, int hq, int hkv, int ql,
                           long long kl, float scale_log2) {
    fh_attention<DT, D, CAUSAL, SINKS, false>(out, q, k, v, sinks, ks, vs, hq, hkv, ql, kl, scale_log2, nullptr, nullptr);
}

// K and V tiles by TMA: `km` and `vm` are the kernel's __grid_constant__ parameters (the copies
// read the descriptors where the launch put them).
template <int DT, int D, bool CAUSAL, bool SINKS>
__device__ void flash_sm90_tma(typename Elem<DT>::T* out, const typename Elem<DT>::T* q, const typename Elem<DT>::T* k,
                               const typename Elem<DT>::T* v, const float* sinks, Rows4 ks, Rows4 vs, int hq, int hkv, int ql,
                               long long kl, float scale_log2, const TmaMap& km, const TmaMap& vm) {
    fh_attention<DT, D, CAUSAL, SINKS, true>(out, q, k, v, sinks, ks, vs, hq, hkv, ql, kl, scale_log2, &km, &vm);
}
