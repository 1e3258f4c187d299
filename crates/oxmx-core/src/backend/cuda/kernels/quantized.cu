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
// 2 KB stage. Later found: all of them re-read x per chunk, and those loads were the limit
// (see qmv1, which serves one row of x and keeps x in registers).
template <int DT, int BITS, int GS, int M, int R, int U, int W, int MEMONLY = 0>
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
                if (MEMONLY) {  // experiment: the same loads, almost no arithmetic
                    for (int r = 0; r < R; ++r)
                        acc[m][r] += __uint_as_float((wq[u][r].x ^ wq[u][r].y ^ wq[u][r].z ^ wq[u][r].w) & 0x3f7fffffu) * s[u][r] + b[u][r] + xs;
                    continue;
                }
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

// One row of x (decoding) against affine-quantized weights, with x held in registers.
// In `qmv` every lane re-reads the x values of each 16-byte chunk it multiplies: lanes 64 bytes
// apart (bf16 x), so each of those loads touches 16 cache lines of L1 for 512 bytes of use,
// and x's share of L1 traffic is four times the weights' (twice with R = 2). Here the block's
// S warps split k into slices of 1024 codes: lane (s, l) owns codes [32 (32 s + l), +32) of
// every row, loads their 32 x values once (as float32, with their sum), and then streams the
// block's rows: per row one 8/16/32-byte load of codes and one scale and bias, U rows in flight
// in a ring of registers. Each row's warp sum goes to shared memory; the slices are added in a
// fixed order at the end (the same bits every run). G warps share each slice, taking every
// G-th row of the block's range. A lane's 32 codes lie in one group (GS a multiple of 32).
template <int BITS> struct LaneCodes {
    unsigned int v[BITS];  // 32 codes of BITS bits
};
template <int BITS> __device__ __forceinline__ LaneCodes<BITS> lane_codes_load(const unsigned int* p) {
    LaneCodes<BITS> c;
    if (BITS == 2) {
        uint2 a = *(const uint2*)p;
        c.v[0] = a.x;
        c.v[1] = a.y;
    } else {
        for (int i = 0; i < BITS / 4; ++i) {
            uint4 a = ((const uint4*)p)[i];
            c.v[4 * i] = a.x;
            c.v[4 * i + 1] = a.y;
            c.v[4 * i + 2] = a.z;
            c.v[4 * i + 3] = a.w;
        }
    }
    return c;
}

// The next row of a lane's ring slot: its codes, scale and bias (zeros unless ok), then the
// row pointers moved on by one step.
template <int DT, int BITS>
__device__ __forceinline__ void qmv1_next(LaneCodes<BITS>& wq, float& sv, float& bv, bool ok, const unsigned int*& wn,
                                          const typename Elem<DT>::T*& sn, const typename Elem<DT>::T*& bn, long long wstep,
                                          long long sstep) {
    for (int b = 0; b < BITS; ++b) wq.v[b] = 0u;
    sv = 0.0f;
    bv = 0.0f;
    if (ok) {
        wq = lane_codes_load<BITS>(wn);
        sv = Elem<DT>::load(*sn);
        bv = Elem<DT>::load(*bn);
    }
    wn += wstep;
    sn += sstep;
    bn += sstep;
}

// x of one `qmv1` lane (32 values, float) as int8 for `dp4a`: x ~ d * (h + l / 256), with
// d = max|x| / 127 over the lane's 32 values, h = round(x / d) and l = round(256 * (x / d - h)):
// an error of at most max|x| / 65024 a value, below half-precision x's own rounding for the
// larger values of the run. Packed to match a 4-bit word's even and odd nibbles spread into
// bytes: word i's even codes (8i, 8i + 2, 8i + 4, 8i + 6) pair with eh[i] / el[i], odd ones with
// oh[i] / ol[i]. A NaN or infinite x gives d = NaN, so the row's result is NaN as in float.
// Why: the float products spend a byte permute and an FMA per code (~100 instructions a lane
// per 512 bytes of codes), which kept `qmv1` at ~2.3-2.4 TB/s on the H100's large products
// whatever its rows in flight; two dp4a per 4 codes (high and low parts of x) take ~45. H100,
// 14336x4096: 14.4 -> 11.2 us; a Llama-3-8B-shaped 4-bit decode 366.6 -> 386.5-388.7 tok/s
// (BENCHMARKS.md, forty-fifth session).
struct LaneX8 {
    int eh[4], oh[4], el[4], ol[4];
    float d;
};
__device__ __forceinline__ int pack_s8(int a, int b, int c, int e) {
    return (a & 0xff) | ((b & 0xff) << 8) | ((c & 0xff) << 16) | ((e & 0xff) << 24);
}
__device__ __forceinline__ LaneX8 lane_x8(const float* xr) {
    LaneX8 q;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(xr[j]));
    bool finite = amax <= 3.0e38f;
    q.d = finite ? amax * (1.0f / 127.0f) : __int_as_float(0x7fc00000);
    float inv = (finite && amax > 0.0f) ? 127.0f / amax : 0.0f;
    int h[32], l[32];
    for (int j = 0; j < 32; ++j) {
        float t = xr[j] * inv;
        float r = rintf(t);
        h[j] = (int)r;
        l[j] = max(-127, min(127, __float2int_rn((t - r) * 256.0f)));
    }
    for (int i = 0; i < 4; ++i) {
        const int* a = h + 8 * i;
        const int* b = l + 8 * i;
        q.eh[i] = pack_s8(a[0], a[2], a[4], a[6]);
        q.oh[i] = pack_s8(a[1], a[3], a[5], a[7]);
        q.el[i] = pack_s8(b[0], b[2], b[4], b[6]);
        q.ol[i] = pack_s8(b[1], b[3], b[5], b[7]);
    }
    return q;
}
__device__ __forceinline__ int dp4a_us(unsigned int a, int b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// PRO, what is done to the row of x first (the op before the product, as one kernel):
//  1 (rms_norm): x is RMS-normalised with weight `aux`. Every block holds the whole row in
//    registers, so it sums its squares itself (slices added in a fixed order) and rounds
//    x * inv * aux to the dtype as the norm kernel (norm_rows8) does.
//  2 (SwiGLU): x is the gate and `aux` the up projection: silu(x) * aux in float, rounded once,
//    as a compiled SwiGLU region computes it.
// X8 (4-bit codes only): the products on dp4a against x as int8 pairs (lane_x8).
template <int DT, int BITS, int GS, int S, int G, int U, int PRO, int X8 = 0>
__device__ void qmv1(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const unsigned int* w,
                     const typename Elem<DT>::T* scales, const typename Elem<DT>::T* biases, long long n, long long k,
                     int rows_per_block, const typename Elem<DT>::T* aux, float eps) {
    typedef Elem<DT> E;
    extern __shared__ float qmv1_red[];  // [rows_per_block][S] warp sums
    const int VPW = 32 / BITS;
    const bool OFFSET128 = BITS == 4 && DT != 0;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int sl = warp % S, g = warp / S;
    long long ci = (long long)sl * 32 + lane;  // this lane's run of 32 codes
    bool active = ci * 32 < k;
    long long wpr = k / VPW, groups = k / GS, gi = ci * 32 / GS;
    float xr[32];
    for (int j = 0; j < 4; ++j) {
        if (active)
            load8<DT>(x + ci * 32 + 8 * j, xr + 8 * j);
        else
            for (int i = 0; i < 8; ++i) xr[8 * j + i] = 0.0f;
    }
    if (PRO == 2 && active) {
        for (int j = 0; j < 4; ++j) {
            float uv[8];
            load8<DT>(aux + ci * 32 + 8 * j, uv);
            for (int i = 0; i < 8; ++i) {
                float gv = xr[8 * j + i];
                xr[8 * j + i] = E::load(E::store(gv * (1.0f / (1.0f + expf(-gv))) * uv[i]));
            }
        }
    }
    if (PRO == 1) {
        __shared__ float qmv1_ss[32];
        float ss = 0.0f;
        for (int j = 0; j < 32; ++j) ss = fmaf(xr[j], xr[j], ss);
        ss = warp_sum(ss);
        if (g == 0 && lane == 0) qmv1_ss[sl] = ss;
        __syncthreads();
        float tot = 0.0f;
        for (int j = 0; j < S; ++j) tot += qmv1_ss[j];
        float inv = 1.0f / sqrtf(tot / (float)k + eps);
        if (active) {
            for (int j = 0; j < 4; ++j) {
                float wv[8];
                load8<DT>(aux + ci * 32 + 8 * j, wv);
                for (int i = 0; i < 8; ++i) xr[8 * j + i] = E::load(E::store(xr[8 * j + i] * inv * wv[i]));
            }
        }
    }
    float xs = 0.0f;
    for (int j = 0; j < 32; ++j) xs += xr[j];
    // X8: 4-bit codes against x as int8 pairs (lane_x8), four products a dp4a instead of a
    // byte permute and an FMA per code.
    const bool INT8 = X8 && BITS == 4;
    LaneX8 x8;
    if (INT8) x8 = lane_x8(xr);
    long long r0 = (long long)blockIdx.x * rows_per_block;
    int nr = (int)min((long long)rows_per_block, n - r0);
    const unsigned int* wl = w + r0 * wpr + ci * BITS;
    const typename E::T* sp = scales + r0 * groups + gi;
    const typename E::T* bp = biases + r0 * groups + gi;
    // Rows g, g + G, ...: pointers step G rows at a time. Every lane runs every row (rows past
    // the block's end hold zeros), so the warp sums stay convergent; only the store is guarded.
    const long long wstep = (long long)G * wpr, sstep = (long long)G * groups;
    const unsigned int* wn = wl + g * wpr;
    const typename E::T* sn = sp + g * groups;
    const typename E::T* bn = bp + g * groups;
    LaneCodes<BITS> wq[U];
    float sv[U], bv[U];
#pragma unroll
    for (int u = 0; u < U; ++u) qmv1_next<DT, BITS>(wq[u], sv[u], bv[u], active && g + u * G < nr, wn, sn, bn, wstep, sstep);
    // The same trip count for every warp (from the block's row count alone), so the compiler
    // sees the warp sums as convergent.
    int rounds = (nr + U * G - 1) / (U * G);
    for (int it = 0; it < rounds; ++it) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            int i = (it * U + u) * G + g;
            float dot, c;
            if (INT8) {
                int hs = 0, ls = 0;
#pragma unroll
                for (int wi = 0; wi < 4; ++wi) {
                    unsigned int e = wq[u].v[wi] & 0x0F0F0F0Fu, o = (wq[u].v[wi] >> 4) & 0x0F0F0F0Fu;
                    hs = dp4a_us(e, x8.eh[wi], hs);
                    hs = dp4a_us(o, x8.oh[wi], hs);
                    ls = dp4a_us(e, x8.el[wi], ls);
                    ls = dp4a_us(o, x8.ol[wi], ls);
                }
                dot = x8.d * fmaf((float)ls, 1.0f / 256.0f, (float)hs);
                c = bv[u];
            } else {
                float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int wi = 0; wi < BITS; ++wi) {
                    float q[VPW];
                    if (OFFSET128) {
                        float e[4], o[4];
                        bytes_f128(wq[u].v[wi] & 0x0F0F0F0Fu, e);
                        bytes_f128((wq[u].v[wi] >> 4) & 0x0F0F0F0Fu, o);
                        for (int t = 0; t < 4; ++t) {
                            q[2 * t] = e[t];
                            q[2 * t + 1] = o[t];
                        }
                    } else {
                        word_codes<BITS>(wq[u].v[wi], q);
                    }
                    for (int j = 0; j < VPW; ++j) d[wi & 3] = fmaf(q[j], xr[wi * VPW + j], d[wi & 3]);
                }
                dot = (d[0] + d[1]) + (d[2] + d[3]);
                c = OFFSET128 ? fmaf(-128.0f, sv[u], bv[u]) : bv[u];
            }
            float v = warp_sum(fmaf(sv[u], dot, c * xs));
            if (lane == 0 && i < nr) qmv1_red[i * S + sl] = v;
            // Refill this slot with the row U steps on (zeros past the end).
            qmv1_next<DT, BITS>(wq[u], sv[u], bv[u], active && i + U * G < nr, wn, sn, bn, wstep, sstep);
        }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < nr; t += blockDim.x) {
        float a = 0.0f;
        for (int j = 0; j < S; ++j) a += qmv1_red[t * S + j];
        out[r0 + t] = E::store(a);
    }
}

// silu(g) * u over n contiguous elements, in float, rounded once (the product's input when
// the one-row kernel cannot take it).
template <int DT>
__device__ void swiglu_flat(typename Elem<DT>::T* out, const typename Elem<DT>::T* g, const typename Elem<DT>::T* u, long long n) {
    typedef Elem<DT> E;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        float gv = E::load(g[e]);
        out[e] = E::store(gv * (1.0f / (1.0f + expf(-gv))) * E::load(u[e]));
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
