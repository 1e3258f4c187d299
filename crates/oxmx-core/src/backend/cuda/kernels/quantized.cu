// Affine-quantized weights on the GPU (layout as MLX: each row of w is a little-endian bit
// stream of `bits`-bit codes, groups of GS codes share a scale and a bias; w = s * q + b).

// A small code as float32 without an int-to-float conversion: 2^23 + q has q in its low
// mantissa bits.
__device__ __forceinline__ float code_f(unsigned int q) {
    return __uint_as_float(0x4B000000u | q) - 8388608.0f;
}

// Four consecutive codes of `w` as float32: byte-sized codes (8-bit words, or the even/odd
// nibbles of a 4-bit word spread into bytes) placed in the mantissa of 2^23 by one byte permute.
__device__ __forceinline__ void bytes_f(unsigned int w, float* o) {
    o[0] = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7650)) - 8388608.0f;
    o[1] = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7651)) - 8388608.0f;
    o[2] = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7652)) - 8388608.0f;
    o[3] = __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7653)) - 8388608.0f;
}

// The VPW codes of one word as float32, in order.
template <int BITS> __device__ __forceinline__ void word_codes(unsigned int w, float* q) {
    if (BITS == 8) {
        bytes_f(w, q);
    } else if (BITS == 4) {
        float e[4], o[4];
        bytes_f(w & 0x0F0F0F0Fu, e);
        bytes_f((w >> 4) & 0x0F0F0F0Fu, o);
        for (int i = 0; i < 4; ++i) {
            q[2 * i] = e[i];
            q[2 * i + 1] = o[i];
        }
    } else {
        for (int v = 0; v < 32 / BITS; ++v) q[v] = code_f((w >> (v * BITS)) & ((1u << BITS) - 1u));
    }
}

// Four codes of a 4-bit word's even (or odd) nibbles spread into bytes, as 128 + q in float32:
// one byte permute puts the byte in the top mantissa bits under the exponent of 128, saving
// the subtraction bytes_f needs (the caller takes 128 * sum(x) off once per chunk).
__device__ __forceinline__ void bytes_f128(unsigned int w, float* o) {
    o[0] = __uint_as_float(__byte_perm(w, 0x43u, 0x4055));
    o[1] = __uint_as_float(__byte_perm(w, 0x43u, 0x4155));
    o[2] = __uint_as_float(__byte_perm(w, 0x43u, 0x4255));
    o[3] = __uint_as_float(__byte_perm(w, 0x43u, 0x4355));
}

// out[m, n] = sum_k x[m, k] * (s[n, k/GS] * q[n, k] + b[n, k/GS]) for M <= 8 rows of x (decode).
// A block's BLOCK_WARPS warps form groups of W; each group owns R consecutive output columns
// and splits k between its warps: lane c of the group's warp v reads the 16-byte chunks
// v * 32 + c, + 32 W, ... of those rows (VPC codes each, all in one group), U chunks of each
// row in flight before any arithmetic, so a chunk's x values are loaded once for R rows (the
// caller picks W from the row length: long rows split, short ones do not). Sums are float32: per chunk
// s * (q . x) + b * sum(x), reduced across the warp and then the block. For 4-bit codes with
// half-precision activations the dot runs on 128 + q (one permute per code, bytes_f128) and
// 128 * sum(x) comes off per chunk: float32 keeps ~1e-6 relative error, far below the
// output's rounding.
// Not the tensor cores: three 4-bit variants with m16n8k16 products (two codes per LOP3) were
// no faster DRAM-cold on an H100/H200 (BENCHMARKS.md, twenty-sixth and twenty-eighth
// sessions): U groups loaded then computed (bab77dc, 1.09-1.30x slower); each warp streaming
// its slice through a register ring (2d33034, qmv4: equal); and through a cp.async ring in
// shared memory with whole 128-byte runs per copy (2d33034, qmv4s: 0.92x the time at
// 14336x4096, 1.24-1.27x at 4096x4096 and 4096x14336). The measurements point at each warp's
// serial latency per step (load wait, dependent product chains) at the ~16 warps per SM that
// registers or shared memory allow: with one warp per 16-row tile qmv4s needed ~1.5 us per
// 2 KB stage.
// With PF the kernel waits for the previous one itself (template_function_prefetching): first
// each warp asks L2 for its first pass (R rows x U runs of 512 bytes of codes, and the scales
// and biases where each run starts), so a decoding step's weights stream in while the norm or
// activation before the product still runs (a one-wave product's whole weight).
template <int DT, int BITS, int GS, int M, int R, int U, int W, bool PF>
__device__ void qmv(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const unsigned int* w,
                    const typename Elem<DT>::T* scales, const typename Elem<DT>::T* biases, long long n, long long k) {
    typedef Elem<DT> E;
    const int VPW = 32 / BITS, VPC = 4 * VPW;
    const bool OFFSET128 = BITS == 4 && DT != 0;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Warp = (row group, k slice): BLOCK_WARPS / W groups of R rows, each split W ways.
    int kw = warp % W;
    long long n0 = ((long long)blockIdx.x * (BLOCK_WARPS / W) + warp / W) * R;
    long long words = k / VPW, chunks = words / 4, groups = k / GS;
    if (PF) {
        if (lane < R * U) {
            int r = lane / U, u = lane % U;
            long long c = kw * 32 + 32 * W * u;
            if (c < chunks && n0 + r < n) {
                prefetch_l2_bulk(w + (n0 + r) * words + c * 4, (unsigned int)(min(32LL, chunks - c) * 16));
                prefetch_l2_line(scales + (n0 + r) * groups + c * VPC / GS);
                prefetch_l2_line(biases + (n0 + r) * groups + c * VPC / GS);
            }
        }
        oxmx_grid_dependency();
    }
    float acc[M][R];
    for (int m = 0; m < M; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = 0.0f;
    for (long long c0 = kw * 32 + lane; c0 < chunks; c0 += 32 * W * U) {
        uint4 wq[U][R];
        float s[U][R], b[U][R];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long c = c0 + 32 * W * u;
            long long gi = c * VPC / GS;
#pragma unroll
            for (int r = 0; r < R; ++r) {
                bool ok = c < chunks && n0 + r < n;
                wq[u][r] = ok ? ((const uint4*)(w + (n0 + r) * words))[c] : make_uint4(0u, 0u, 0u, 0u);
                s[u][r] = ok ? E::load(scales[(n0 + r) * groups + gi]) : 0.0f;
                b[u][r] = ok ? E::load(biases[(n0 + r) * groups + gi]) : 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long c = c0 + 32 * W * u;
            if (c >= chunks) break;
#pragma unroll
            for (int m = 0; m < M; ++m) {
                float xv[VPC];
                const typename E::T* xp = x + m * k + c * VPC;
                for (int j = 0; j < VPC / 8; ++j) load8<DT>(xp + 8 * j, xv + 8 * j);
                float xs = 0.0f;
                for (int j = 0; j < VPC; ++j) xs += xv[j];
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    unsigned int ws[4] = {wq[u][r].x, wq[u][r].y, wq[u][r].z, wq[u][r].w};
                    float dot = 0.0f;
                    for (int wi = 0; wi < 4; ++wi) {
                        float q[VPW];
                        if (OFFSET128) {
                            float e[4], o[4];
                            bytes_f128(ws[wi] & 0x0F0F0F0Fu, e);
                            bytes_f128((ws[wi] >> 4) & 0x0F0F0F0Fu, o);
                            for (int i = 0; i < 4; ++i) {
                                q[2 * i] = e[i];
                                q[2 * i + 1] = o[i];
                            }
                        } else {
                            word_codes<BITS>(ws[wi], q);
                        }
                        for (int v = 0; v < VPW; ++v) dot = fmaf(q[v], xv[wi * VPW + v], dot);
                    }
                    if (OFFSET128) dot = fmaf(-128.0f, xs, dot);
                    acc[m][r] += s[u][r] * dot + b[u][r] * xs;
                }
            }
        }
    }
    group_reduce_store<E, M, R, W>(acc, out, n, 1.0f);
}

// ---- 4-bit mat-vec on tensor cores (one row of x): qmv_tc ----

// The eight 4-bit codes of one word as four pairs of 16-bit floats OFF + q, each made by one
// mask-and-or under a fixed exponent (no conversion instructions): pair e holds code e in its
// low half and code e + 4 in its high half. bfloat16: 0x4300 | q = 128 + q. float16: the code
// four bits up under 0x5400 = 64 + q (64 rather than 1024, so less cancels when OFF * sum(x)
// is taken off).
template <int DT> struct TcCodes;
template <> struct TcCodes<2> {
    static __device__ __forceinline__ float off() { return 128.0f; }
    static __device__ __forceinline__ unsigned int magic() { return 0x43004300u; }
    static __device__ __forceinline__ unsigned int mask() { return 0x000F000Fu; }
    static __device__ __forceinline__ void pairs(unsigned int w, unsigned int m, unsigned int* p) {
        p[0] = (w & m) | magic();
        p[1] = ((w >> 4) & m) | magic();
        p[2] = ((w >> 8) & m) | magic();
        p[3] = ((w >> 12) & m) | magic();
    }
};
template <> struct TcCodes<1> {
    static __device__ __forceinline__ float off() { return 64.0f; }
    static __device__ __forceinline__ unsigned int magic() { return 0x54005400u; }
    static __device__ __forceinline__ unsigned int mask() { return 0x00F000F0u; }
    static __device__ __forceinline__ void pairs(unsigned int w, unsigned int m, unsigned int* p) {
        p[0] = ((w << 4) & m) | magic();
        p[1] = (w & m) | magic();
        p[2] = ((w >> 4) & m) | magic();
        p[3] = ((w >> 8) & m) | magic();
    }
};

// out[n] = sum_k x[k] * (s[n, k/GS] * q[n, k] + b[n, k/GS]) for one row of x, 4-bit codes,
// 16-bit activations, GS in {32, 64, 128}. Why: the float kernel above spends ~4 instructions
// per code (a permute and an FMA per code, plus masks, conversions of x and sums of x) and is
// bound by issue, not DRAM (BENCHMARKS.md, twenty-eighth session). Here 8 codes cost 7
// instructions (TcCodes) and the products run on the tensor cores.
//
// A warp owns a tile of 16 weight rows and the kw-th of W equal runs of 128-code segments of k
// (the block's W warps split k; BLOCK_WARPS / W tiles a block), U segments a pass, the next
// pass's loads in flight while a pass computes. Lane (g = lane / 4, t = lane % 4)
// loads 16 bytes (32 codes) of rows g and g + 8: the t-th quarter of each segment. For
// m16n8k16 the weights are A (16 rows x 16 k) and x is B: lane (g, t) owns A's columns 2t,
// 2t+1, 2t+8, 2t+9, and any order of k inside a product is fine as long as A and B agree, so
// each lane feeds its own codes (pair P_2h to columns 2t, 2t+1, P_2h+1 to 2t+8, 2t+9) and B
// holds x at the same codes. A segment spans S = 128 / GS scale groups, so B's column j holds
// x masked to group j of the segment (zero elsewhere): D[row][j] is then row's dot over group
// j alone, and lane (g, t) finds groups 2t and 2t+1 of rows g and g+8 in its accumulator
// fragment, where it applies the scales: s * (D - OFF * sum(x)) + b * sum(x). The sums of x
// over each group come from one 8-byte load per lane and a few shuffles per segment. Rows past
// n read row n - 1 (their results are not stored; a row's products touch no other row).
// PF: L2 prefetch of the first pass before waiting for the previous kernel (see qmv).
template <int DT, int GS, int U, int W, bool PF>
__device__ void qmv_tc(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const unsigned int* w,
                       const typename Elem<DT>::T* scales, const typename Elem<DT>::T* biases, long long n, long long k) {
    typedef Elem<DT> E;
    typedef typename E::T T;
    const int S = 128 / GS;
    const unsigned int FULL = 0xffffffffu;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int kw = warp % W;
    long long n0 = ((long long)blockIdx.x * (BLOCK_WARPS / W) + warp / W) * 16;
    long long ra = n0 + g < n ? n0 + g : n - 1, rb = n0 + g + 8 < n ? n0 + g + 8 : n - 1;
    long long segs = k / 128, groups = k / GS, words = k / 8;
    long long per = segs / W, sb = kw * per, se = sb + per;
    if (PF) {
        for (int i = lane; i < 16 * U; i += 32) {
            long long row = n0 + (i & 15), seg = sb + (i >> 4);
            if (row < n) {
                prefetch_l2_bulk(w + row * words + seg * 16, 64);
                prefetch_l2_line(scales + row * groups + seg * S);
                prefetch_l2_line(biases + row * groups + seg * S);
            }
        }
        oxmx_grid_dependency();
    }
    // This lane's B column holds x where its own codes' group is column g.
    bool xon = g == t * S / 4;
    // Row pointers: this lane's 16-byte quarter of each segment, and its groups' scales and
    // biases (groups 2t and 2t + 1 of a segment, one 4-byte pair when S >= 2; lanes without
    // groups of their own read the first pair and ignore it).
    const uint4* wpa = (const uint4*)(w + ra * words) + t;
    const uint4* wpb = (const uint4*)(w + rb * words) + t;
    int st = S >= 2 ? 2 * (t % (S / 2 > 0 ? S / 2 : 1)) : 0;
    const T* spa = scales + ra * groups + st;
    const T* bpa = biases + ra * groups + st;
    const T* spb = scales + rb * groups + st;
    const T* bpb = biases + rb * groups + st;
    // The mask as an opaque register: as a literal the compiler rematerialises it per use.
    unsigned int mask;
    asm("mov.b32 %0, %1;" : "=r"(mask) : "n"(DT == 2 ? 0x000F000F : 0x00F000F0));
    float off = TcCodes<DT>::off();
    float acc_a = 0.0f, acc_b = 0.0f;
    // A pass's codes, scales and x sums in registers; two passes in flight (software
    // pipelining: the next pass's loads are issued before this one's arithmetic).
    struct Stage {
        uint4 wa[U], wb[U];
        unsigned int sv[U][4];
        uint2 xq[U];
    };
    auto load = [&](Stage& st, long long s0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long seg = s0 + u;
            bool ok = seg < se;
            st.wa[u] = ok ? wpa[seg * 4] : make_uint4(0u, 0u, 0u, 0u);
            st.wb[u] = ok ? wpb[seg * 4] : make_uint4(0u, 0u, 0u, 0u);
            if (S >= 2) {
                st.sv[u][0] = ok ? *(const unsigned int*)(spa + seg * S) : 0u;
                st.sv[u][1] = ok ? *(const unsigned int*)(bpa + seg * S) : 0u;
                st.sv[u][2] = ok ? *(const unsigned int*)(spb + seg * S) : 0u;
                st.sv[u][3] = ok ? *(const unsigned int*)(bpb + seg * S) : 0u;
            } else {
                st.sv[u][0] = ok ? (unsigned int)spa[seg] : 0u;
                st.sv[u][1] = ok ? (unsigned int)bpa[seg] : 0u;
                st.sv[u][2] = ok ? (unsigned int)spb[seg] : 0u;
                st.sv[u][3] = ok ? (unsigned int)bpb[seg] : 0u;
            }
            st.xq[u] = ok ? ((const uint2*)(x + seg * 128))[lane] : make_uint2(0u, 0u);
        }
    };
    auto compute = [&](const Stage& st, long long s0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long seg = s0 + u;
            if (seg >= se) break;  // the same for the whole warp
            // x at this lane's codes (B fragments; an L1 hit after the block's first warp).
            const T* xs = x + seg * 128;
            uint4 xw[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) xw[q] = xon ? ((const uint4*)(xs + t * 32))[q] : make_uint4(0u, 0u, 0u, 0u);
            // Sums of x over the segment's groups: lane l adds x[4l .. 4l+3], then GS / 4 lanes
            // combine; lane j * GS / 4 holds group j's.
            float sum4 = (E::load((T)(st.xq[u].x & 0xFFFFu)) + E::load((T)(st.xq[u].x >> 16))) +
                         (E::load((T)(st.xq[u].y & 0xFFFFu)) + E::load((T)(st.xq[u].y >> 16)));
#pragma unroll
            for (int o = 1; o < GS / 4; o <<= 1) sum4 += __shfl_xor_sync(FULL, sum4, o);
            float xsum[2];
            xsum[0] = __shfl_sync(FULL, sum4, (2 * t * (GS / 4)) & 31);
            xsum[1] = __shfl_sync(FULL, sum4, ((2 * t + 1) * (GS / 4)) & 31);
            // Two accumulators (even and odd products): two chains of four products each.
            float d[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
            unsigned int av[4] = {st.wa[u].x, st.wa[u].y, st.wa[u].z, st.wa[u].w};
            unsigned int bv[4] = {st.wb[u].x, st.wb[u].y, st.wb[u].z, st.wb[u].w};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                unsigned int pa[4], pb[4];
                TcCodes<DT>::pairs(av[j], mask, pa);
                TcCodes<DT>::pairs(bv[j], mask, pb);
                unsigned int xv[4] = {xw[j].x, xw[j].y, xw[j].z, xw[j].w};
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    unsigned int a[4] = {pa[2 * h], pb[2 * h], pa[2 * h + 1], pb[2 * h + 1]};
                    unsigned int b[2] = {__byte_perm(xv[h], xv[h + 2], 0x5410), __byte_perm(xv[h], xv[h + 2], 0x7632)};
                    mma16816<DT>(d[h], a, b);
                }
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                if (2 * t + j < S) {
                    float xsj = xsum[j];
                    int sh = 16 * j;
                    float sa = E::load((T)(st.sv[u][0] >> sh)), ba = E::load((T)(st.sv[u][1] >> sh));
                    float sbv = E::load((T)(st.sv[u][2] >> sh)), bbv = E::load((T)(st.sv[u][3] >> sh));
                    acc_a += sa * ((d[0][j] + d[1][j]) - off * xsj) + ba * xsj;
                    acc_b += sbv * ((d[0][2 + j] + d[1][2 + j]) - off * xsj) + bbv * xsj;
                }
            }
        }
    };
    Stage p0, p1;
    load(p0, sb);
    for (long long s0 = sb; s0 < se; s0 += 2 * U) {
        load(p1, s0 + U);
        compute(p0, s0);
        load(p0, s0 + 2 * U);
        compute(p1, s0 + U);
    }
    // Rows g and g + 8: the lanes of a row's group (t = 0..3), then the tile's W warps.
    acc_a += __shfl_xor_sync(FULL, acc_a, 1);
    acc_a += __shfl_xor_sync(FULL, acc_a, 2);
    acc_b += __shfl_xor_sync(FULL, acc_b, 1);
    acc_b += __shfl_xor_sync(FULL, acc_b, 2);
    __shared__ float red[BLOCK_WARPS][16];
    if (t == 0) {
        red[warp][g] = acc_a;
        red[warp][g + 8] = acc_b;
    }
    __syncthreads();
    if (threadIdx.x < (BLOCK_WARPS / W) * 16) {
        int tile = threadIdx.x / 16, r = threadIdx.x % 16;
        float v = 0.0f;
        for (int i = 0; i < W; ++i) v += red[tile * W + i][r];
        long long row = ((long long)blockIdx.x * (BLOCK_WARPS / W) + tile) * 16 + r;
        if (row < n) out[row] = E::store(v);
    }
}

// The float matrix of affine codes of any width (2..8 bits; a code may straddle two bytes),
// rounded as MLX does: round(round(q * s) + b) in the scales' dtype.
template <int DT>
__device__ void dequantize_affine(typename Elem<DT>::T* out, const unsigned char* w, const typename Elem<DT>::T* scales,
                                  const typename Elem<DT>::T* biases, long long n, int bits, int gs) {
    typedef Elem<DT> E;
    unsigned int maskv = (1u << bits) - 1u;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        long long g = e / gs, i = e % gs;
        long long bit = g * gs * bits + i * bits;
        long long byte = bit >> 3;
        int sh = (int)(bit & 7);
        unsigned int v = w[byte];
        if (sh + bits > 8) v |= (unsigned int)w[byte + 1] << 8;
        float q = (float)((v >> sh) & maskv);
        // __fmul_rn / __fadd_rn: no fused multiply-add, so the two roundings match the CPU's.
        float prod = E::load(E::store(__fmul_rn(q, E::load(scales[g]))));
        out[e] = E::store(__fadd_rn(prod, E::load(biases[g])));
    }
}
