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
template <int DT, int BITS, int GS, int M, int R, int U, int W>
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

// d += A · B on the tensor cores: one m16n8k16 product of 16-bit floats (DT 2: bfloat16,
// 1: float16) with float32 accumulators, fragments as the PTX manual lays them out.
template <int DT>
__device__ __forceinline__ void mma16816(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                         unsigned b1) {
    if (DT == 2)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// (a & b) | c in one instruction.
__device__ __forceinline__ unsigned and_or(unsigned a, unsigned b, unsigned c) {
    unsigned r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

// The 4-bit mat-vec of `qmv` (same arguments and result, m <= 8 rows of x in 16-bit floats)
// with the dot products on the tensor cores. Why: `qmv`'s decode (a byte permute per code) and
// float32 multiply-adds leave the integer pipe nearly full at the memory's rate, so it stalls
// at about half of copy bandwidth; here two codes become one 16-bit pair with one LOP3
// (`(w >> 4p) & 0x000F000F | magic` is the pair (OFF + q_p, OFF + q_{p+4}), OFF = 128 in
// bfloat16, 1024 in float16), and the m16n8k16 product does the rest.
//
// A warp owns T tiles of 16 weight rows and every W-th group of k. Per group, lane (g, t)
// (g = lane / 4, t = lane % 4) reads codes [t GS/4, (t+1) GS/4) of rows g and g + 8 (the A
// fragments), and x row g at the same positions, paired the same way (the B fragments; rows
// of x at or past m are zero). A dot product does not care in which order k is summed, so the
// products see one consistent permutation of k and need no shuffles. Per group and tile:
//   D = sum (OFF + q) x over the group (GS / 16 products), X = sum x (products with A = 1),
//   acc += s (D - OFF X) + b X,
// all float32 (the cancellation leaves ~1e-6 relative error in bfloat16, ~1e-5 in float16,
// far below the outputs' rounding).
template <int DT, int GS, int T, int U, int W>
__device__ void qmv4_mma(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const unsigned int* w,
                         const typename Elem<DT>::T* scales, const typename Elem<DT>::T* biases, long long n, long long k,
                         int m) {
    typedef Elem<DT> E;
    const unsigned MAGIC = DT == 2 ? 0x43004300u : 0x64006400u;
    const unsigned ONES = DT == 2 ? 0x3F803F80u : 0x3C003C00u;
    const float OFF = DT == 2 ? 128.0f : 1024.0f;
    const int WPT = GS / 32;  // words of codes per lane, row and group
    const int NMMA = GS / 16;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int kw = warp % W;
    long long tile0 = ((long long)blockIdx.x * (BLOCK_WARPS / W) + warp / W) * T;
    long long words = k / 8, groups = k / GS;
    float acc[T][4];
    for (int tt = 0; tt < T; ++tt)
        for (int i = 0; i < 4; ++i) acc[tt][i] = 0.0f;
    for (long long G0 = kw; G0 < groups; G0 += (long long)W * U) {
        unsigned wq[U][T][2][WPT];
        float s[U][T][2], b[U][T][2];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long G = G0 + (long long)u * W;
#pragma unroll
            for (int tt = 0; tt < T; ++tt)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    long long row = (tile0 + tt) * 16 + g + 8 * h;
                    bool ok = G < groups && row < n;
                    const unsigned* p = w + row * words + G * (GS / 8) + t * WPT;
                    if (WPT == 1) {
                        wq[u][tt][h][0] = ok ? p[0] : 0u;
                    } else if (WPT == 2) {
                        uint2 v = ok ? *(const uint2*)p : make_uint2(0u, 0u);
                        wq[u][tt][h][0] = v.x;
                        wq[u][tt][h][WPT - 1] = v.y;
                    } else {
                        uint4 v = ok ? *(const uint4*)p : make_uint4(0u, 0u, 0u, 0u);
                        unsigned vv[4] = {v.x, v.y, v.z, v.w};
                        for (int i = 0; i < WPT; ++i) wq[u][tt][h][i] = vv[i & 3];
                    }
                    s[u][tt][h] = ok ? E::load(scales[row * groups + G]) : 0.0f;
                    b[u][tt][h] = ok ? E::load(biases[row * groups + G]) : 0.0f;
                }
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long G = G0 + (long long)u * W;
            if (G >= groups) break;
            // x row g at this lane's positions: from x[8i .. 8i+7] the pairs (x_p, x_{p+4}).
            unsigned xr[4 * WPT];
            if (g < m) {
                const uint4* xp = (const uint4*)(x + (long long)g * k + G * GS + t * (GS / 4));
#pragma unroll
                for (int i = 0; i < WPT; ++i) {
                    uint4 v = xp[i];
                    xr[4 * i + 0] = __byte_perm(v.x, v.z, 0x5410);
                    xr[4 * i + 1] = __byte_perm(v.x, v.z, 0x7632);
                    xr[4 * i + 2] = __byte_perm(v.y, v.w, 0x5410);
                    xr[4 * i + 3] = __byte_perm(v.y, v.w, 0x7632);
                }
            } else {
#pragma unroll
                for (int i = 0; i < 4 * WPT; ++i) xr[i] = 0u;
            }
            float xs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int j = 0; j < NMMA; ++j) mma16816<DT>(xs, ONES, ONES, ONES, ONES, xr[2 * j], xr[2 * j + 1]);
#pragma unroll
            for (int tt = 0; tt < T; ++tt) {
                unsigned a[2][4 * WPT];
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int i = 0; i < WPT; ++i)
#pragma unroll
                        for (int p = 0; p < 4; ++p) a[h][4 * i + p] = and_or(wq[u][tt][h][i] >> (4 * p), 0x000F000Fu, MAGIC);
                float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int j = 0; j < NMMA; ++j) mma16816<DT>(d, a[0][2 * j], a[1][2 * j], a[0][2 * j + 1], a[1][2 * j + 1], xr[2 * j], xr[2 * j + 1]);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    int h = i >> 1;
                    acc[tt][i] += s[u][tt][h] * fmaf(-OFF, xs[i], d[i]) + b[u][tt][h] * xs[i];
                }
            }
        }
    }
    // Sum the W warps that split k; lane (g, t) holds rows g, g + 8 and x rows 2t, 2t + 1.
    __shared__ float red[BLOCK_WARPS][T][4][32];
    for (int tt = 0; tt < T; ++tt)
        for (int i = 0; i < 4; ++i) red[warp][tt][i][lane] = acc[tt][i];
    __syncthreads();
    if (kw == 0) {
        for (int tt = 0; tt < T; ++tt)
            for (int i = 0; i < 4; ++i) {
                float v = 0.0f;
                for (int j = 0; j < W; ++j) v += red[warp + j][tt][i][lane];
                long long row = (tile0 + tt) * 16 + g + 8 * (i >> 1);
                int mm = 2 * t + (i & 1);
                if (row < n && mm < m) out[(long long)mm * n + row] = E::store(v);
            }
    }
}
