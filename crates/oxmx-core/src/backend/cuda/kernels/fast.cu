// mx.fast on the GPU: norms, rope and attention (see fast.rs for the launches). Templated on
// the element code DT (common.cuh); fast.rs instantiates each variant under an extern "C" name.

// rms_norm / layer_norm over the last axis: one block per row, float32 statistics.
template <int DT, bool LAYER, bool HAS_W, bool HAS_B>
__device__ void norm_rows(typename Elem<DT>::T* out, const typename Elem<DT>::T* x,
                          const typename Elem<DT>::T* w, const typename Elem<DT>::T* b, long long d, float eps) {
    typedef Elem<DT> E;
    __shared__ float red[32];
    const typename E::T* xr = x + (long long)blockIdx.x * d;
    typename E::T* orow = out + (long long)blockIdx.x * d;
    float mean = 0.0f;
    if (LAYER) {
        float s = 0.0f;
        for (long long i = threadIdx.x; i < d; i += blockDim.x) s += E::load(xr[i]);
        mean = block_sum(s, red) / (float)d;
    }
    float ss = 0.0f;
    for (long long i = threadIdx.x; i < d; i += blockDim.x) {
        float v = E::load(xr[i]) - mean;
        ss += v * v;
    }
    float inv = 1.0f / sqrtf(block_sum(ss, red) / (float)d + eps);
    for (long long i = threadIdx.x; i < d; i += blockDim.x) {
        float v = (E::load(xr[i]) - mean) * inv;
        if (HAS_W && HAS_B) v = fmaf(v, E::load(w[i]), E::load(b[i]));
        else if (HAS_W) v = v * E::load(w[i]);
        else if (HAS_B) v = v + E::load(b[i]);
        orow[i] = E::store(v);
    }
}

// norm_rows for rows of d = 8 c elements (c <= CH * blockDim.x), everything 16-byte aligned:
// the row stays in registers, read with 16-byte loads once (norm_rows reads it twice, one
// element a load: 56 µs for 4096 x 4096 float32 on an H200 against 37.5 µs here, DRAM-cold).
template <int DT, bool LAYER, bool HAS_W, bool HAS_B, int CH>
__device__ void norm_rows8(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const typename Elem<DT>::T* w,
                           const typename Elem<DT>::T* b, long long d, float eps) {
    __shared__ float red[32];
    long long chunks = d / 8;
    const typename Elem<DT>::T* xr = x + (long long)blockIdx.x * d;
    typename Elem<DT>::T* orow = out + (long long)blockIdx.x * d;
    float v[CH][8];
#pragma unroll
    for (int c = 0; c < CH; ++c) {
        long long j = threadIdx.x + (long long)c * blockDim.x;
        if (j < chunks) {
            load8<DT>(xr + 8 * j, v[c]);
        } else {
            for (int i = 0; i < 8; ++i) v[c][i] = 0.0f;
        }
    }
    float mean = 0.0f;
    if (LAYER) {
        float s = 0.0f;
#pragma unroll
        for (int c = 0; c < CH; ++c)
            for (int i = 0; i < 8; ++i) s += v[c][i];
        mean = block_sum(s, red) / (float)d;
    }
    float ss = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; ++c) {
        if (threadIdx.x + (long long)c * blockDim.x < chunks)
            for (int i = 0; i < 8; ++i) {
                float t = v[c][i] - mean;
                ss += t * t;
            }
    }
    float inv = 1.0f / sqrtf(block_sum(ss, red) / (float)d + eps);
#pragma unroll
    for (int c = 0; c < CH; ++c) {
        long long j = threadIdx.x + (long long)c * blockDim.x;
        if (j >= chunks) continue;
        float wv[8], bv[8], o[8];
        if (HAS_W) load8<DT>(w + 8 * j, wv);
        if (HAS_B) load8<DT>(b + 8 * j, bv);
        for (int i = 0; i < 8; ++i) {
            float t = (v[c][i] - mean) * inv;
            if (HAS_W && HAS_B) t = fmaf(t, wv[i], bv[i]);
            else if (HAS_W) t = t * wv[i];
            else if (HAS_B) t = t + bv[i];
            o[i] = t;
        }
        store8<DT>(orow + 8 * j, o);
    }
}

// Rotary embedding of rows of length d (positions along the second-to-last axis, t per
// batch slot): per row, `half` rotated pairs then d - 2*half copied elements. The inverse
// frequency of pair k is exp(k * c) (base mode, c = -ln(base)/half) or 1/freqs[k].
template <int DT, bool TRAD, bool FREQS>
__device__ void rope_rows(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const int* offs,
                          const float* freqs, long long rows, long long t, long long d, long long half,
                          long long rows_per_batch, int per_offset, int off0, float c, float scale) {
    typedef Elem<DT> E;
    long long per_row = d - half;
    long long n = rows * per_row;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {
        long long r = e / per_row, k = e % per_row;
        const typename E::T* xr = x + r * d;
        typename E::T* orow = out + r * d;
        if (k < half) {
            // A host scalar offset comes by value (offs is null): no upload per call.
            int off = offs ? offs[per_offset ? r / rows_per_batch : 0] : off0;
            float pos = ((float)(r % t) + (float)off) * scale;
            float inv = FREQS ? 1.0f / freqs[k] : expf((float)k * c);
            float s, co;
            sincosf(pos * inv, &s, &co);
            long long i1 = TRAD ? 2 * k : k, i2 = TRAD ? 2 * k + 1 : half + k;
            float x1 = E::load(xr[i1]), x2 = E::load(xr[i2]);
            orow[i1] = E::store(x1 * co - x2 * s);
            orow[i2] = E::store(x1 * s + x2 * co);
        } else {
            long long j = 2 * half + (k - half);
            orow[j] = xr[j];
        }
    }
}

// Element strides of a [B, H, L, D] operand read in place (a KV cache is a prefix view).
#define SDPA_WARPS 4
#define MASK_NONE 0
#define MASK_CAUSAL 1
#define MASK_BOOL 2
#define MASK_ADD 3

// Attention for few query rows (decoding): block (row, split) walks its key range with one
// warp per key (lane i holds elements [i*KPL, (i+1)*KPL) of q and k, [i*VPL, ..) of v),
// online softmax per warp, then the warps merge and write (max, denominator, weighted sum)
// for sdpa_merge. Rows are (batch, head, position) of q [B, Hq, Lq, D] (dense).
template <int DT, int KPL, int VPL, int MASK>
__device__ void sdpa_vector(float* part, const typename Elem<DT>::T* q, const typename Elem<DT>::T* k,
                            const typename Elem<DT>::T* v, const void* mask, Rows4 ks, Rows4 vs, Rows4 ms,
                            long long ms_k, int d, int dv, int hq, int hkv, int ql, long long kl, float scale,
                            long long split_len) {
    typedef Elem<DT> E;
    __shared__ float sm[SDPA_WARPS], sl[SDPA_WARPS];
    __shared__ float sacc[SDPA_WARPS][VPL * 32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    long long r = blockIdx.x;
    int split = blockIdx.y, n_split = gridDim.y;
    int i = (int)(r % ql), h = (int)((r / ql) % hq);
    long long bi = r / ((long long)ql * hq);
    int hk = h / (hq / hkv);
    float qv[KPL];
    for (int e = 0; e < KPL; ++e) {
        int c = lane * KPL + e;
        qv[e] = c < d ? E::load(q[r * d + c]) * scale : 0.0f;
    }
    long long k0 = (long long)split * split_len;
    long long k1 = k0 + split_len < kl ? k0 + split_len : kl;
    if (MASK == MASK_CAUSAL) {
        long long lim = (long long)i + kl - ql + 1;
        if (lim < k1) k1 = lim;
    }
    float m = -__int_as_float(0x7f800000), l = 0.0f, acc[VPL];
    for (int e = 0; e < VPL; ++e) acc[e] = 0.0f;
    const typename E::T* kb = k + ks.off + bi * ks.b + hk * ks.h;
    const typename E::T* vb = v + vs.off + bi * vs.b + hk * vs.h;
    long long mrow = ms.off + bi * ms.b + h * ms.h + i * ms.l;
    for (long long j = k0 + warp; j < k1; j += SDPA_WARPS) {
        const typename E::T* kr = kb + j * ks.l;
        float s = 0.0f;
        for (int e = 0; e < KPL; ++e) {
            int c = lane * KPL + e;
            if (c < d) s += qv[e] * E::load(kr[c]);
        }
        s = warp_sum(s);
        if (MASK == MASK_BOOL && !((const bool_t*)mask)[mrow + j * ms_k]) s = -OXMX_FLT_MAX;
        if (MASK == MASK_ADD) s += E::load(((const typename E::T*)mask)[mrow + j * ms_k]);
        float mn = fmaxf(m, s);
        if (mn == -__int_as_float(0x7f800000)) continue;
        float corr = expf(m - mn), p = expf(s - mn);
        l = l * corr + p;
        const typename E::T* vr = vb + j * vs.l;
        for (int e = 0; e < VPL; ++e) {
            int c = lane * VPL + e;
            acc[e] = acc[e] * corr + (c < dv ? p * E::load(vr[c]) : 0.0f);
        }
        m = mn;
    }
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
    for (int e = 0; e < VPL; ++e) sacc[warp][lane * VPL + e] = acc[e];
    __syncthreads();
    float M = sm[0];
    for (int w = 1; w < SDPA_WARPS; ++w) M = fmaxf(M, sm[w]);
    float* out = part + (r * n_split + split) * (2 + (long long)dv);
    float L = 0.0f, c[SDPA_WARPS];
    for (int w = 0; w < SDPA_WARPS; ++w) {
        c[w] = sm[w] == -__int_as_float(0x7f800000) ? 0.0f : expf(sm[w] - M);
        L += sl[w] * c[w];
    }
    if (threadIdx.x == 0) {
        out[0] = M;
        out[1] = L;
    }
    for (int x = threadIdx.x; x < dv; x += blockDim.x) {
        float a = 0.0f;
        for (int w = 0; w < SDPA_WARPS; ++w) a += sacc[w][x] * c[w];
        out[2 + x] = a;
    }
}

// Attention for few query rows, one lane per key: block (row, split) walks its key range 32
// keys per warp at a time. Each lane computes its key's score over the whole row (KC 16-byte
// chunks of K, q in shared memory), the warp takes the chunk's max and sum once, then every
// lane accumulates the chunk's 32 value rows for its dims (lane + 32 e: coalesced). Why: the
// warp-per-key kernel above keeps one key in flight per warp, a serial chain of load, shuffle
// reduction and exp per key (~25 µs per layer at 640 keys on an H200, a fifth of a Llama-3-8B
// decoding step); here each lane has its row's KC loads in flight and the reductions run once
// per 32 keys. Needs d = 8 KC and K rows 16-byte aligned (fast.rs checks); writes the same
// partial results as sdpa_vector, for sdpa_merge.
template <int DT, int KC, int VPL, int MASK>
__device__ void sdpa_keys(float* part, const typename Elem<DT>::T* q, const typename Elem<DT>::T* k,
                          const typename Elem<DT>::T* v, const void* mask, Rows4 ks, Rows4 vs, Rows4 ms,
                          long long ms_k, int d, int dv, int hq, int hkv, int ql, long long kl, float scale,
                          long long split_len) {
    typedef Elem<DT> E;
    const float NEG_INF = -__int_as_float(0x7f800000);
    __shared__ float qs[KC * 8];
    __shared__ float sm[SDPA_WARPS], sl[SDPA_WARPS];
    __shared__ float sacc[SDPA_WARPS][VPL * 32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    long long r = blockIdx.x;
    int split = blockIdx.y, n_split = gridDim.y;
    int i = (int)(r % ql), h = (int)((r / ql) % hq);
    long long bi = r / ((long long)ql * hq);
    int hk = h / (hq / hkv);
    for (int c = threadIdx.x; c < KC * 8; c += blockDim.x) qs[c] = E::load(q[r * d + c]) * scale;
    __syncthreads();
    long long k0 = (long long)split * split_len;
    long long k1 = k0 + split_len < kl ? k0 + split_len : kl;
    if (MASK == MASK_CAUSAL) {
        long long lim = (long long)i + kl - ql + 1;
        if (lim < k1) k1 = lim;
    }
    float m = NEG_INF, l = 0.0f, acc[VPL];
#pragma unroll
    for (int e = 0; e < VPL; ++e) acc[e] = 0.0f;
    const typename E::T* kb = k + ks.off + bi * ks.b + hk * ks.h;
    const typename E::T* vb = v + vs.off + bi * vs.b + hk * vs.h;
    long long mrow = ms.off + bi * ms.b + h * ms.h + i * ms.l;
    for (long long base = k0 + 32 * warp; base < k1; base += 32 * SDPA_WARPS) {
        // Past the range, a lane reads the last key again and its weight is 0: no branch
        // around the loads, so they all stay in flight together (a load under a per-key
        // branch waited for the one before it).
        long long last = k1 - 1;
        long long j = base + lane < last ? base + lane : last;
        const typename E::T* kr = kb + j * ks.l;
        float s = 0.0f;
        // Loads first, arithmetic after, in groups of KG chunks: written interleaved, the
        // compiler kept only ~5 of a row's loads in flight.
        constexpr int KG = KC < 16 ? KC : 16;
#pragma unroll
        for (int c0 = 0; c0 < KC; c0 += KG) {
            Chunk8<DT> kc[KG];
#pragma unroll
            for (int u = 0; u < KG; ++u)
                if (c0 + u < KC) kc[u] = chunk8_load<DT>(kr + 8 * (c0 + u));
#pragma unroll
            for (int u = 0; u < KG; ++u) {
                if (c0 + u >= KC) break;
                float kf[8];
                chunk8_f<DT>(kc[u], kf);
#pragma unroll
                for (int t = 0; t < 8; ++t) s = fmaf(qs[8 * (c0 + u) + t], kf[t], s);
            }
        }
        if (MASK == MASK_BOOL && !((const bool_t*)mask)[mrow + j * ms_k]) s = -OXMX_FLT_MAX;
        if (MASK == MASK_ADD) s += E::load(((const typename E::T*)mask)[mrow + j * ms_k]);
        if (base + lane > last) s = NEG_INF;
        float mn = fmaxf(m, warp_max(s));
        if (mn == NEG_INF) continue;
        float corr = expf(m - mn);
        float p = s == NEG_INF ? 0.0f : expf(s - mn);
        l = l * corr + warp_sum(p);
#pragma unroll
        for (int e = 0; e < VPL; ++e) acc[e] *= corr;
        // Value rows VG keys at a time, their loads all issued before the arithmetic.
        constexpr int VG = VPL <= 4 ? 8 : 4;
#pragma unroll 1
        for (int u0 = 0; u0 < 32; u0 += VG) {
            typename E::T vv[VG][VPL];
#pragma unroll
            for (int u = 0; u < VG; ++u) {
                long long ju = base + u0 + u < last ? base + u0 + u : last;
                const typename E::T* vr = vb + ju * vs.l;
#pragma unroll
                for (int e = 0; e < VPL; ++e) {
                    int c = lane + 32 * e;
                    vv[u][e] = c < dv ? vr[c] : vr[0];
                }
            }
#pragma unroll
            for (int u = 0; u < VG; ++u) {
                float pu = __shfl_sync(0xffffffffu, p, u0 + u);
#pragma unroll
                for (int e = 0; e < VPL; ++e)
                    if (lane + 32 * e < dv) acc[e] = fmaf(pu, E::load(vv[u][e]), acc[e]);
            }
        }
        m = mn;
    }
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
#pragma unroll
    for (int e = 0; e < VPL; ++e) sacc[warp][lane + 32 * e] = acc[e];
    __syncthreads();
    float M = sm[0];
    for (int w = 1; w < SDPA_WARPS; ++w) M = fmaxf(M, sm[w]);
    float* out = part + (r * n_split + split) * (2 + (long long)dv);
    float L = 0.0f, cw[SDPA_WARPS];
    for (int w = 0; w < SDPA_WARPS; ++w) {
        cw[w] = sm[w] == NEG_INF ? 0.0f : expf(sm[w] - M);
        L += sl[w] * cw[w];
    }
    if (threadIdx.x == 0) {
        out[0] = M;
        out[1] = L;
    }
    for (int x = threadIdx.x; x < dv; x += blockDim.x) {
        float a = 0.0f;
        for (int w = 0; w < SDPA_WARPS; ++w) a += sacc[w][x] * cw[w];
        out[2 + x] = a;
    }
}

// Merges the key splits of each row (and the row's sink logit, a split with one zero value).
template <int DT, bool SINKS>
__device__ void sdpa_merge(typename Elem<DT>::T* out, const float* part, const float* sinks, int n_split, int dv,
                           int hq, int ql) {
    typedef Elem<DT> E;
    long long r = blockIdx.x;
    int h = (int)((r / ql) % hq);
    const float* p = part + r * n_split * (2 + (long long)dv);
    float M = SINKS ? sinks[h] : -__int_as_float(0x7f800000);
    for (int s = 0; s < n_split; ++s) M = fmaxf(M, p[s * (2 + dv)]);
    float L = SINKS ? expf(sinks[h] - M) : 0.0f;
    for (int s = 0; s < n_split; ++s) {
        float ms = p[s * (2 + dv)];
        if (ms != -__int_as_float(0x7f800000)) L += p[s * (2 + dv) + 1] * expf(ms - M);
    }
    float inv = 1.0f / L;
    for (int x = threadIdx.x; x < dv; x += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < n_split; ++s) {
            float ms = p[s * (2 + dv)];
            if (ms != -__int_as_float(0x7f800000)) a += p[s * (2 + dv) + 2 + x] * expf(ms - M);
        }
        out[r * dv + x] = E::store(a * inv);
    }
}

// The masked softmax of attention scores (float32, [B*Hkv, G*Lq, Lk], rows ordered (batch,
// kv head, head in group, position)) into probabilities of the input dtype: one block per row.
template <int DT, int MASK, bool SINKS>
__device__ void sdpa_softmax(typename Elem<DT>::T* p, const float* s, const void* mask, const float* sinks, Rows4 ms,
                             long long ms_k, long long kl, int ql, int g, int hkv) {
    typedef Elem<DT> E;
    __shared__ float red[32];
    long long r = blockIdx.x;
    long long w = r % ((long long)g * ql), bh = r / ((long long)g * ql);
    int gi = (int)(w / ql), i = (int)(w % ql);
    int hk = (int)(bh % hkv);
    long long bi = bh / hkv;
    int h = hk * g + gi;
    const float* sr = s + r * kl;
    typename E::T* pr = p + r * kl;
    long long mrow = ms.off + bi * ms.b + h * ms.h + i * ms.l;
    long long lim = (long long)i + kl - ql;
    const float NEG = -__int_as_float(0x7f800000);
#define SDPA_SCORE(j)                                                                          \
    (MASK == MASK_CAUSAL ? ((j) > lim ? NEG : sr[j])                                           \
     : MASK == MASK_BOOL ? (((const bool_t*)mask)[mrow + (j) * ms_k] ? sr[j] : -OXMX_FLT_MAX) \
     : MASK == MASK_ADD  ? sr[j] + E::load(((const typename E::T*)mask)[mrow + (j) * ms_k])   \
                         : sr[j])
    float mx = SINKS ? sinks[h] : NEG;
    for (long long j = threadIdx.x; j < kl; j += blockDim.x) mx = fmaxf(mx, SDPA_SCORE(j));
    mx = warp_max(mx);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = (threadIdx.x & 31) < (int)((blockDim.x + 31) >> 5) ? red[threadIdx.x & 31] : NEG;
    mx = warp_max(mx);
    float sum = 0.0f;
    if (mx != NEG)
        for (long long j = threadIdx.x; j < kl; j += blockDim.x) sum += expf(SDPA_SCORE(j) - mx);
    sum = block_sum(sum, red);
    if (SINKS) sum += expf(sinks[h] - mx);
    float inv = 1.0f / sum;
    for (long long j = threadIdx.x; j < kl; j += blockDim.x) pr[j] = E::store(mx == NEG ? 0.0f * inv : expf(SDPA_SCORE(j) - mx) * inv);
#undef SDPA_SCORE
}

// ---- Flash attention (prefill): tensor-core tiles, online softmax in registers ----

// D = A(16x16, row) * B(16x8, col) + C with float32 accumulation (sm_80+).
template <int DT> __device__ __forceinline__ void mma16816(float* c, const unsigned int* a, const unsigned int* b);
template <> __device__ __forceinline__ void mma16816<1>(float* c, const unsigned int* a, const unsigned int* b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <> __device__ __forceinline__ void mma16816<2>(float* c, const unsigned int* a, const unsigned int* b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}


#define FA_BC 64
#define FA_PAD 8

// Four 8x8 matrices of 16-bit elements from shared memory (lane i gives row i % 8 of matrix
// i / 8); lane t receives row t / 4, columns 2 (t % 4) and 2 (t % 4) + 1 of each (of its
// transpose with .trans).
__device__ __forceinline__ void ldmatrix_x4(unsigned int* r, unsigned int addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned int* r, unsigned int addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// ROWS rows of D elements (keys, values or queries from j0 on; rows past kl are zeros) into S,
// 16 bytes per copy, asynchronously (cp_async_commit / cp_async_wait_all around it).
template <int D, int ROWS = FA_BC>
__device__ __forceinline__ void fa_load_tile(unsigned short (*S)[D + FA_PAD], const unsigned short* base, long long rstride,
                                             long long j0, long long kl) {
    for (int idx = threadIdx.x; idx < ROWS * D / 8; idx += blockDim.x) {
        int r = idx / (D / 8), c = (idx % (D / 8)) * 8;
        long long j = j0 + r;
        bool ok = j < kl;
        cp_async16(smem_addr(&S[r][c]), ok ? base + j * rstride + c : base, ok);
    }
}



// Both 16-row tiles of a warp times one ldmatrix.x4 B fragment (n-tiles n and n + 1):
// acc[mt][n] += a[mt] b[0..1], acc[mt][n + 1] += a[mt] b[2..3].
template <int DT, int N>
__device__ __forceinline__ void fa_mma_tiles(float (*acc)[N][4], const unsigned int (*a)[4], const unsigned int* b, int n) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
        mma16816<DT>(acc[mt][n], a[mt], b);
        mma16816<DT>(acc[mt][n + 1], a[mt], b + 2);
    }
}

#define FA_WARPS 4
#define FA_WROWS 32  // query rows per warp: two 16-row mma tiles share each K and V fragment


// Flash attention (FlashAttention-2's loop) on mma.sync tensor-core products: one block per
// (batch x head, 128 query rows), 4 warps of 32 rows. Every K and V fragment read from shared
// memory by ldmatrix feeds two 16-row mma tiles (with 16 rows a warp, the twelfth session's
// version, shared-memory traffic bound it: 151.6 against 270 TFLOP/s on an H100, 34th
// session). The block's queries sit in shared memory (Q's fragments do not fit in registers
// beside the 32-row accumulators), with one 64-key tile of K and one of V (dynamic, 68 KB at
// D = 128; two blocks per SM under __launch_bounds__(128, 2)). V's copy (cp.async) overlaps the
// scores, the next K's the P.V product; scores, the running max and the output accumulate in
// registers, scaled by scale * log2(e) and exponentiated with exp2. Causal blocks run heaviest
// first (blockIdx.y counts the query tiles down from the last), and a warp skips the products
// of a key tile wholly above its rows' horizon. q [B, Hq, Lq, D] dense; k, v read in place (a
// KV cache's prefix view, rows 16-byte aligned); out [B, Hq, Lq, D] dense. fp16 / bf16 only.
template <int DT, int D, bool CAUSAL, bool SINKS>
__device__ void flash_attention(typename Elem<DT>::T* out, const typename Elem<DT>::T* q, const typename Elem<DT>::T* k,
                                     const typename Elem<DT>::T* v, const float* sinks, Rows4 ks, Rows4 vs, int hq, int hkv,
                                     int ql, long long kl64, float scale_log2) {
    typedef typename Elem<DT>::T T;
    typedef unsigned short Row[D + FA_PAD];
    const int RB = (D + FA_PAD) * 2;  // bytes per shared row
    extern __shared__ __align__(16) unsigned short fa_smem[];
    Row* Qs = (Row*)fa_smem;
    Row* Ks = Qs + FA_WARPS * FA_WROWS;
    Row* Vs = Ks + FA_BC;
    const float NEG = -__int_as_float(0x7f800000);
    const int BR = FA_WARPS * FA_WROWS;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int gid = lane >> 2, tig = lane & 3;
    int mi = lane >> 3, mr = lane & 7;  // ldmatrix: this lane's matrix and row
    long long bh = blockIdx.x;
    int h = (int)(bh % hq);
    long long bi = bh / hq;
    int hk = h / (hq / hkv);
    int kl = (int)kl64;  // the host keeps kl below 2^31
    int q0 = (CAUSAL ? gridDim.y - 1 - blockIdx.y : blockIdx.y) * BR;
    const unsigned short* qb = (const unsigned short*)(q + bh * (long long)ql * D);
    const unsigned short* kb = (const unsigned short*)(k + ks.off + bi * ks.b + hk * ks.h);
    const unsigned short* vb = (const unsigned short*)(v + vs.off + bi * vs.b + hk * vs.h);
    int wrow = q0 + warp * FA_WROWS;  // this warp's first query row
    int shift = kl - ql;              // key j is visible to query row i when j <= i + shift (causal)
    int kend = kl;
    if (CAUSAL) kend = min(kend, q0 + BR + shift);
    // This lane's ldmatrix row addresses; every fragment is a constant offset from them.
    unsigned int qaddr = smem_addr(&Qs[warp * FA_WROWS + (mi & 1) * 8 + mr][(mi >> 1) * 8]);
    unsigned int kaddr = smem_addr(&Ks[(mi >> 1) * 8 + mr][(mi & 1) * 8]);
    unsigned int vaddr = smem_addr(&Vs[(mi & 1) * 8 + mr][(mi >> 1) * 8]);
    fa_load_tile<D, FA_WARPS * FA_WROWS>(Qs, qb, D, q0, ql);
    if (kend > 0) fa_load_tile<D>(Ks, kb, ks.l, 0, kl);
    cp_async_commit();
    float m[2][2], l[2][2];
    float o[2][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
        m[mt][0] = m[mt][1] = NEG;
        l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt) o[mt][nt][0] = o[mt][nt][1] = o[mt][nt][2] = o[mt][nt][3] = 0.0f;
    }
    for (int j0 = 0; j0 < kend; j0 += FA_BC) {
        // K(j0) (and Q) have landed and every warp is done with the previous V tile.
        cp_async_wait_all();
        __syncthreads();
        fa_load_tile<D>(Vs, vb, vs.l, j0, kl);
        cp_async_commit();
        // Whether any key of this tile is visible to this warp's last row (warp-uniform).
        bool live = !CAUSAL || j0 <= wrow + FA_WROWS - 1 + shift;
        float s[2][FA_BC / 8][4];
        if (live) {
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int nt = 0; nt < FA_BC / 8; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                unsigned int qa[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) ldmatrix_x4(qa[mt], qaddr + mt * 16 * RB + kk * 32);
#pragma unroll
                for (int np = 0; np < FA_BC / 16; ++np) {
                    unsigned int b[4];
                    ldmatrix_x4(b, kaddr + np * 16 * RB + kk * 32);
                    fa_mma_tiles<DT, FA_BC / 8>(s, qa, b, 2 * np);
                }
            }
            // Masking only where the tile reaches past the keys or this warp's first row's horizon.
            bool edge = j0 + FA_BC > kl || (CAUSAL && j0 + FA_BC - 1 > wrow + shift);
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int hr = 0; hr < 2; ++hr) {
                    // The last visible key of this row, counted from this lane's first column.
                    int lim = kl - 1;
                    if (CAUSAL) lim = min(lim, wrow + mt * 16 + gid + hr * 8 + shift);
                    lim -= j0 + tig * 2;
#pragma unroll
                    for (int nt = 0; nt < FA_BC / 8; ++nt)
#pragma unroll
                        for (int e = 2 * hr; e < 2 * hr + 2; ++e) {
                            float x = s[mt][nt][e] * scale_log2;
                            s[mt][nt][e] = edge && nt * 8 + (e & 1) > lim ? NEG : x;
                        }
                }
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int rr = 0; rr < 2; ++rr) {
                    float mx = NEG;
#pragma unroll
                    for (int nt = 0; nt < FA_BC / 8; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * rr], s[mt][nt][2 * rr + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    float mn = fmaxf(m[mt][rr], mx);
                    // A row with no visible key yet keeps m = -inf: its probabilities are 0.
                    float base = mn == NEG ? 0.0f : mn;
                    float corr = fa_exp2(m[mt][rr] - base);
                    float sum = 0.0f;
#pragma unroll
                    for (int nt = 0; nt < FA_BC / 8; ++nt)
#pragma unroll
                        for (int e = 2 * rr; e < 2 * rr + 2; ++e) {
                            float p = fa_exp2(s[mt][nt][e] - base);
                            s[mt][nt][e] = p;
                            sum += p;
                        }
                    l[mt][rr] = l[mt][rr] * corr + sum;
#pragma unroll
                    for (int nt = 0; nt < D / 8; ++nt) {
                        o[mt][nt][2 * rr] *= corr;
                        o[mt][nt][2 * rr + 1] *= corr;
                    }
                    m[mt][rr] = mn;
                }
        }
        // V(j0) has landed and every warp is done with K(j0): fetch the next K meanwhile.
        cp_async_wait_all();
        __syncthreads();
        if (j0 + FA_BC < kend) {
            fa_load_tile<D>(Ks, kb, ks.l, j0 + FA_BC, kl);
            cp_async_commit();
        }
        if (live) {
#pragma unroll
            for (int kk = 0; kk < FA_BC / 16; ++kk) {
                unsigned int pa[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    pa[mt][0] = pack2<DT>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = pack2<DT>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][2] = pack2<DT>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = pack2<DT>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int np = 0; np < D / 16; ++np) {
                    unsigned int b[4];
                    ldmatrix_x4_trans(b, vaddr + kk * 16 * RB + np * 32);
                    fa_mma_tiles<DT, D / 8>(o, pa, b, 2 * np);
                }
            }
        }
    }
    T* ob = out + bh * (long long)ql * D;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
        float inv[2];
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float lr = l[mt][rr];
            lr += __shfl_xor_sync(0xffffffffu, lr, 1);
            lr += __shfl_xor_sync(0xffffffffu, lr, 2);
            if (SINKS) {
                float sl = sinks[h] * 1.4426950408889634f;
                float mn = fmaxf(m[mt][rr], sl);
                float corr = m[mt][rr] == NEG ? 0.0f : exp2f(m[mt][rr] - mn);
                lr = lr * corr + exp2f(sl - mn);
#pragma unroll
                for (int nt = 0; nt < D / 8; ++nt) {
                    o[mt][nt][2 * rr] *= corr;
                    o[mt][nt][2 * rr + 1] *= corr;
                }
            }
            inv[rr] = 1.0f / lr;
        }
        int r0 = wrow + mt * 16 + gid, r1 = r0 + 8;
#pragma unroll
        for (int nt = 0; nt < D / 8; ++nt) {
            int col = nt * 8 + tig * 2;
            if (r0 < ql) *(unsigned int*)(ob + (long long)r0 * D + col) = pack2<DT>(o[mt][nt][0] * inv[0], o[mt][nt][1] * inv[0]);
            if (r1 < ql) *(unsigned int*)(ob + (long long)r1 * D + col) = pack2<DT>(o[mt][nt][2] * inv[1], o[mt][nt][3] * inv[1]);
        }
    }
}
