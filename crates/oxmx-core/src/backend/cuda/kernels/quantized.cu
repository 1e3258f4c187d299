// Affine-quantized weights on the GPU (layout as MLX: each row of w is a little-endian bit
// stream of `bits`-bit codes, groups of GS codes share a scale and a bias; w = s * q + b).

// Eight consecutive elements at p (16-byte aligned) as float32.
template <int DT> __device__ __forceinline__ void load8(const typename Elem<DT>::T* p, float* o);
template <> __device__ __forceinline__ void load8<0>(const float* p, float* o) {
    float4 a = ((const float4*)p)[0], b = ((const float4*)p)[1];
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
    o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}
template <> __device__ __forceinline__ void load8<1>(const f16_t* p, float* o) {
    uint4 u = *(const uint4*)p;
    unsigned int w[4] = {u.x, u.y, u.z, u.w};
    for (int i = 0; i < 4; ++i) {
        o[2 * i] = f16_to_f32((f16_t)(w[i] & 0xffffu));
        o[2 * i + 1] = f16_to_f32((f16_t)(w[i] >> 16));
    }
}
template <> __device__ __forceinline__ void load8<2>(const bf16_t* p, float* o) {
    uint4 u = *(const uint4*)p;
    unsigned int w[4] = {u.x, u.y, u.z, u.w};
    for (int i = 0; i < 4; ++i) {
        o[2 * i] = __uint_as_float(w[i] << 16);
        o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

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

// out[m, n] = sum_k x[m, k] * (s[n, k/GS] * q[n, k] + b[n, k/GS]) for M <= 8 rows of x (decode).
// Each warp owns R consecutive output columns; lane c reads 16-byte chunks c, c+32, ... of
// those rows (VPC codes each, all in one group), two chunks in flight per step, so a chunk's
// x values are loaded once for R rows. Sums are float32: per chunk s * (q . x) + b * sum(x).
template <int DT, int BITS, int GS, int M, int R>
__device__ void qmv(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const unsigned int* w,
                    const typename Elem<DT>::T* scales, const typename Elem<DT>::T* biases, long long n, long long k) {
    typedef Elem<DT> E;
    const int VPW = 32 / BITS, VPC = 4 * VPW;
    long long warp_id = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    long long n0 = warp_id * R;
    if (n0 >= n) return;
    long long words = k / VPW, chunks = words / 4, groups = k / GS;
    float acc[M][R];
    for (int m = 0; m < M; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = 0.0f;
    for (long long c0 = lane; c0 < chunks; c0 += 64) {
        uint4 wq[2][R];
        float s[2][R], b[2][R];
        for (int u = 0; u < 2; ++u) {
            long long c = c0 + 32 * u;
            long long gi = c * VPC / GS;
            for (int r = 0; r < R; ++r) {
                bool ok = c < chunks && n0 + r < n;
                wq[u][r] = ok ? ((const uint4*)(w + (n0 + r) * words))[c] : make_uint4(0u, 0u, 0u, 0u);
                s[u][r] = ok ? E::load(scales[(n0 + r) * groups + gi]) : 0.0f;
                b[u][r] = ok ? E::load(biases[(n0 + r) * groups + gi]) : 0.0f;
            }
        }
        for (int u = 0; u < 2; ++u) {
            long long c = c0 + 32 * u;
            if (c >= chunks) break;
            for (int m = 0; m < M; ++m) {
                float xv[VPC];
                const typename E::T* xp = x + m * k + c * VPC;
                for (int j = 0; j < VPC / 8; ++j) load8<DT>(xp + 8 * j, xv + 8 * j);
                float xs = 0.0f;
                for (int j = 0; j < VPC; ++j) xs += xv[j];
                for (int r = 0; r < R; ++r) {
                    unsigned int ws[4] = {wq[u][r].x, wq[u][r].y, wq[u][r].z, wq[u][r].w};
                    float dot = 0.0f;
                    for (int wi = 0; wi < 4; ++wi) {
                        float q[VPW];
                        word_codes<BITS>(ws[wi], q);
                        for (int v = 0; v < VPW; ++v) dot = fmaf(q[v], xv[wi * VPW + v], dot);
                    }
                    acc[m][r] += s[u][r] * dot + b[u][r] * xs;
                }
            }
        }
    }
    for (int m = 0; m < M; ++m)
        for (int r = 0; r < R; ++r) {
            float v = warp_sum(acc[m][r]);
            if (lane == 0 && n0 + r < n) out[m * n + n0 + r] = E::store(v);
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
