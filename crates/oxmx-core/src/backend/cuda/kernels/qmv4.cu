// The 4-bit affine mat-vec of decoding (quantized.rs, `qmv4`) for 16-bit x: out[m, n] =
// sum_k x[m, k] * (s[n, k/GS] * q[n, k] + b[n, k/GS]) for m <= 8 rows of x, weights laid out as
// MLX packs them (8 codes per little-endian word, low nibble first).
//
// Why its own kernel: the float kernel (`qmv`) spends a byte permute and a float32 FMA per
// code, which at the memory's rate keeps the SMs ~half busy with integer and FMA work, and it
// reads each warp's rows in one round trip (load everything, then compute, then the next
// wave of blocks), so loads and arithmetic do not overlap. Here
//   - two codes become one 16-bit pair with one LOP3 (`(w >> 4p) & 0x000F000F | MAGIC` is
//     (OFF + q_p, OFF + q_{p+4}), OFF = 128 in bfloat16, 1024 in float16) and m16n8k16
//     products on the tensor cores do the dot products (float32 accumulators);
//   - each warp streams its slice of k through a ring of U stages held in registers: after a
//     stage is used, the loads of the stage U ahead are issued into its registers, so every
//     warp keeps U stages of weights in flight while it computes.
//
// Tiles: a warp owns T tiles of 16 consecutive weight rows and one of W contiguous slices of
// the row's stages. A stage is SC codes (SC / 2 bytes) of each row: NG = SC / GS groups. Lane
// (g, t) (g = lane / 4, t = lane % 4) holds, per group, the codes [t GS/4, (t+1) GS/4) of rows
// g and g + 8 (the A fragments) and x row g at the same positions, paired the same way (the B
// fragments; rows of x at or past m are zero). A dot product does not care in which order k
// is summed, so the products see one consistent permutation of k and need no shuffles. Per
// group and tile:
//   D = sum (OFF + q) x over the group (GS / 16 products), X = sum x (products with A = 1),
//   acc += s D + (b - OFF s) X,
// all float32 (the cancellation leaves ~1e-6 relative error in bfloat16, ~1e-5 in float16,
// far below the outputs' rounding). Lane (g, t) ends with rows g, g + 8 and x rows 2t, 2t + 1.
// The W warps of a tile add their sums in shared memory.
//
// A 2026-12-05 variant (bab77dc) had the same arithmetic but loaded one group (8 bytes a lane)
// per step, U groups then U computations, and interleaved the warps' groups: 1.1-1.3x slower
// than the float kernel. Requirements (checked by the caller): k a multiple of SC, 16-byte
// aligned x and w, scales and biases aligned to their NG-element vectors.

// d += A · B: one m16n8k16 product of 16-bit floats (DT 2: bfloat16, 1: float16), float32
// accumulators, fragments as the PTX manual lays them out.
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

// NW consecutive words at p (aligned to 4 NW bytes) into o, or zeros when !ok. Weights are
// read once: KEEP = false takes the non-coherent path without L1 allocation, which leaves L1
// to x and the scales (a stage reads 4 bytes of each row's scales, so the rest of the sector
// serves the next stages from L1 instead of another round trip to L2).
template <int NW, bool KEEP> __device__ __forceinline__ void load_words(const unsigned* p, bool ok, unsigned* o) {
    if (NW == 4) {
        unsigned a = 0u, b = 0u, c = 0u, d = 0u;
        if (ok && KEEP) asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(a), "=r"(b), "=r"(c), "=r"(d) : "l"(p));
        if (ok && !KEEP) asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(a), "=r"(b), "=r"(c), "=r"(d) : "l"(p));
        o[0] = a;
        o[1] = b;
        o[2] = c;
        o[3] = d;
    } else if (NW == 2) {
        unsigned a = 0u, b = 0u;
        if (ok && KEEP) asm volatile("ld.global.nc.v2.u32 {%0,%1}, [%2];" : "=r"(a), "=r"(b) : "l"(p));
        if (ok && !KEEP) asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(a), "=r"(b) : "l"(p));
        o[0] = a;
        o[1] = b;
    } else {
        unsigned a = 0u;
        if (ok && KEEP) asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(a) : "l"(p));
        if (ok && !KEEP) asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(a) : "l"(p));
        o[0] = a;
    }
}

// Raw 16-bit values p[0 .. NV) two to a word (NV = 1: the low half), or zeros when !ok.
template <int NV, bool KEEP> __device__ __forceinline__ void load_halves(const unsigned short* p, bool ok, unsigned* o) {
    if (NV == 1) {
        unsigned short a = 0;
        if (ok && KEEP) asm volatile("ld.global.nc.u16 %0, [%1];" : "=h"(a) : "l"(p));
        if (ok && !KEEP) asm volatile("ld.global.nc.L1::no_allocate.u16 %0, [%1];" : "=h"(a) : "l"(p));
        o[0] = a;
    } else {
        load_words<NV / 2, KEEP>((const unsigned*)p, ok, o);
    }
}

// One stage of one tile as lane (g, t) holds it: SC codes of each row are NG = SC / GS groups;
// the lane's WPT = GS / 32 words of each group of rows g and g + 8 (groups in order), and the
// NG scales and biases of each row, raw 16-bit values two to a word.
template <int GS, int SC> struct Stage4 {
    static const int NG = SC / GS;
    static const int SW = NG > 1 ? NG / 2 : 1;
    unsigned w[2][SC / 32];
    unsigned s[2][SW], b[2][SW];
};

template <int DT, int GS, int SC, int T, int U, int W, bool SKEEP = true>
__device__ void qmv4(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const unsigned int* w,
                     const typename Elem<DT>::T* scales, const typename Elem<DT>::T* biases, long long n, long long k, int m) {
    typedef Elem<DT> E;
    typedef Stage4<GS, SC> S;
    const int NG = S::NG, SW = S::SW, WPT = GS / 32, NMMA = GS / 16;
    const unsigned MAGIC = DT == 2 ? 0x43004300u : 0x64006400u;
    const unsigned ONES = DT == 2 ? 0x3F803F80u : 0x3C003C00u;
    const float OFF = DT == 2 ? 128.0f : 1024.0f;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int kw = warp % W;
    long long tile0 = ((long long)blockIdx.x * (BLOCK_WARPS / W) + warp / W) * T;
    long long words = k / 8, groups = k / GS, stages = k / SC;
    // This warp's contiguous slice of the row's stages.
    long long s_begin = stages * kw / W, s_end = stages * (kw + 1) / W;
    const unsigned* wrow[T][2];
    const unsigned short *srow[T][2], *brow[T][2];
    bool live[T][2];
    for (int tt = 0; tt < T; ++tt)
        for (int h = 0; h < 2; ++h) {
            long long row = (tile0 + tt) * 16 + g + 8 * h;
            live[tt][h] = row < n;
            long long r = live[tt][h] ? row : 0;
            wrow[tt][h] = w + r * words + t * WPT;
            srow[tt][h] = (const unsigned short*)scales + r * groups;
            brow[tt][h] = (const unsigned short*)biases + r * groups;
        }
    auto load = [&](S (&st)[T], long long s) {
        bool ok = s < s_end;
#pragma unroll
        for (int tt = 0; tt < T; ++tt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                bool on = ok && live[tt][h];
#pragma unroll
                for (int j = 0; j < NG; ++j) load_words<WPT, false>(wrow[tt][h] + (s * NG + j) * (GS / 8), on, st[tt].w[h] + j * WPT);
                load_halves<NG, SKEEP>(srow[tt][h] + s * NG, on, st[tt].s[h]);
                load_halves<NG, SKEEP>(brow[tt][h] + s * NG, on, st[tt].b[h]);
            }
    };
    float acc[T][4];
    for (int tt = 0; tt < T; ++tt)
        for (int i = 0; i < 4; ++i) acc[tt][i] = 0.0f;
    S ring[U][T];
#pragma unroll
    for (int u = 0; u < U; ++u) load(ring[u], s_begin + u);
    const typename E::T* xg = x + (long long)g * k + t * (GS / 4);
    for (long long s0 = s_begin; s0 < s_end; s0 += U) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long s = s0 + u;
            if (s < s_end) {
#pragma unroll
                for (int j = 0; j < NG; ++j) {
                    // x row g at this lane's positions of group j: from x[8i .. 8i+7] the pairs
                    // (x_p, x_{p+4}).
                    unsigned xr[4 * WPT];
                    const uint4* xp = (const uint4*)(xg + (s * NG + j) * GS);
#pragma unroll
                    for (int i = 0; i < WPT; ++i) {
                        uint4 v = g < m ? xp[i] : make_uint4(0u, 0u, 0u, 0u);
                        xr[4 * i + 0] = __byte_perm(v.x, v.z, 0x5410);
                        xr[4 * i + 1] = __byte_perm(v.x, v.z, 0x7632);
                        xr[4 * i + 2] = __byte_perm(v.y, v.w, 0x5410);
                        xr[4 * i + 3] = __byte_perm(v.y, v.w, 0x7632);
                    }
                    float xs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                    for (int jj = 0; jj < NMMA; ++jj) mma16816<DT>(xs, ONES, ONES, ONES, ONES, xr[2 * jj], xr[2 * jj + 1]);
#pragma unroll
                    for (int tt = 0; tt < T; ++tt) {
                        const S& st = ring[u][tt];
                        unsigned a[2][4 * WPT];
#pragma unroll
                        for (int h = 0; h < 2; ++h)
#pragma unroll
                            for (int i = 0; i < WPT; ++i)
#pragma unroll
                                for (int p = 0; p < 4; ++p) a[h][4 * i + p] = and_or(st.w[h][j * WPT + i] >> (4 * p), 0x000F000Fu, MAGIC);
                        float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                        for (int jj = 0; jj < NMMA; ++jj)
                            mma16816<DT>(d, a[0][2 * jj], a[1][2 * jj], a[0][2 * jj + 1], a[1][2 * jj + 1], xr[2 * jj], xr[2 * jj + 1]);
#pragma unroll
                        for (int h = 0; h < 2; ++h) {
                            unsigned sw = st.s[h][j / 2], bw = st.b[h][j / 2];
                            float sc = E::load((typename E::T)((j & 1) ? sw >> 16 : sw & 0xffffu));
                            float bc = E::load((typename E::T)((j & 1) ? bw >> 16 : bw & 0xffffu));
                            float bo = fmaf(-OFF, sc, bc);
                            for (int c = 0; c < 2; ++c) acc[tt][2 * h + c] = fmaf(sc, d[2 * h + c], fmaf(bo, xs[2 * h + c], acc[tt][2 * h + c]));
                        }
                    }
                }
            }
            load(ring[u], s + U);
        }
    }
    // Sum the W warps of each tile; lane (g, t) holds rows g, g + 8 and x rows 2t, 2t + 1.
    if (W > 1) {
        __shared__ float red[BLOCK_WARPS][T][4][32];
        for (int tt = 0; tt < T; ++tt)
            for (int i = 0; i < 4; ++i) red[warp][tt][i][lane] = acc[tt][i];
        __syncthreads();
        if (kw != 0) return;
        for (int tt = 0; tt < T; ++tt)
            for (int i = 0; i < 4; ++i) {
                float v = 0.0f;
                for (int j = 0; j < W; ++j) v += red[warp + j][tt][i][lane];
                acc[tt][i] = v;
            }
    }
    for (int tt = 0; tt < T; ++tt)
        for (int i = 0; i < 4; ++i) {
            long long row = (tile0 + tt) * 16 + g + 8 * (i >> 1);
            int mm = 2 * t + (i & 1);
            if (row < n && mm < m) out[(long long)mm * n + row] = E::store(acc[tt][i]);
        }
}

// ---- qmv4s: the same products with the weights staged through shared memory ----
//
// Nsight Compute on an H100 (14336x4096, 2026-12-05) found qmv4's register ring no faster
// than the float kernel (22 µs, 1.5 TB/s, DRAM 46% busy): each of its loads touches 8 rows'
// lines for 8 bytes a lane (the fragment layout), and each stage's 4 bytes of scales per row
// went back to L2. Here each warp copies whole 128-byte runs of 16 rows into its own ring of
// S stages in shared memory with cp.async (4 rows x 128 bytes an instruction, no registers
// held while in flight) and reads the fragments from there; a stage's scales and biases
// (NG = 256 / GS of each row) travel the same way.
//
// Layout of a stage: 16 rows of codes at RS bytes (RS = 128 + GS / 2 for GS 32 and 64, 192 for
// 128: the padding that keeps the fragment reads free of bank conflicts), then the rows'
// scales, then their biases (NG values each).

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
// 16 bytes global -> shared, bypassing L1; zero-filled when !ok.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src), "r"(ok ? 16 : 0));
}
// N (4, 8 or 16) bytes global -> shared through L1 (a row's scales for the next stages sit in
// the same sector); zero-filled when !ok.
template <int N> __device__ __forceinline__ void cp_async_ca(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(smem_addr(dst)), "l"(src), "n"(N), "r"(ok ? N : 0));
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;");
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

template <int GS> struct Ring4 {
    static const int NG = 256 / GS;                   // groups per row and stage
    static const int RS = GS == 128 ? 192 : 128 + GS / 2;  // bytes per row of codes
    static const int SCALES = 16 * RS;                 // offset of the scales
    static const int BIASES = SCALES + 16 * NG * 2;    // offset of the biases
    static const int STAGE = BIASES + 16 * NG * 2;     // bytes per stage
};

// BW warps per block, S stages per warp, W warps per tile.
template <int DT, int GS, int BW, int S, int W>
__device__ void qmv4s(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const unsigned int* w,
                      const typename Elem<DT>::T* scales, const typename Elem<DT>::T* biases, long long n, long long k, int m) {
    typedef Elem<DT> E;
    typedef Ring4<GS> L;
    const int NG = L::NG, WPT = GS / 32, NMMA = GS / 16;
    const unsigned MAGIC = DT == 2 ? 0x43004300u : 0x64006400u;
    const unsigned ONES = DT == 2 ? 0x3F803F80u : 0x3C003C00u;
    const float OFF = DT == 2 ? 128.0f : 1024.0f;
    __shared__ __align__(16) unsigned char ring[BW][S][L::STAGE];
    __shared__ float red[W > 1 ? BW : 1][4][32];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int kw = warp % W;
    long long row0 = ((long long)blockIdx.x * (BW / W) + warp / W) * 16;
    long long groups = k / GS, stages = k / 256;
    long long s_begin = stages * kw / W, s_end = stages * (kw + 1) / W;
    // Copy roles: codes of rows 4i + lane / 8, 16 bytes at (lane % 8) * 16 of the stage's
    // 128; lanes 0-15 the scales of row lane, 16-31 the biases of row lane - 16.
    const unsigned char* csrc[4];
    bool cok[4];
    for (int i = 0; i < 4; ++i) {
        long long r = row0 + 4 * i + (lane >> 3);
        cok[i] = r < n;
        csrc[i] = (const unsigned char*)w + (cok[i] ? r : 0) * (k / 2) + (lane & 7) * 16;
    }
    long long sr = row0 + (lane & 15);
    bool sok = sr < n;
    const unsigned char* ssrc = (const unsigned char*)(lane < 16 ? scales : biases) + (sok ? sr : 0) * groups * 2;
    int sdst = (lane < 16 ? L::SCALES : L::BIASES) + (lane & 15) * NG * 2;
    auto issue = [&](long long s, int slot) {
        if (s < s_end) {
            unsigned char* st = ring[warp][slot];
#pragma unroll
            for (int i = 0; i < 4; ++i) cp_async16(st + (4 * i + (lane >> 3)) * L::RS + (lane & 7) * 16, csrc[i] + s * 128, cok[i]);
            cp_async_ca<NG * 2>(st + sdst, ssrc + s * NG * 2, sok);
        }
        cp_async_commit();
    };
#pragma unroll
    for (int i = 0; i < S - 1; ++i) issue(s_begin + i, i);
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const typename E::T* xg = x + (long long)g * k + t * (GS / 4);
    int slot = 0;
    for (long long s = s_begin; s < s_end; ++s) {
        cp_async_wait<S - 2>();
        __syncwarp();
        issue(s + S - 1, slot == 0 ? S - 1 : slot - 1);
        const unsigned char* st = ring[warp][slot];
        slot = slot == S - 1 ? 0 : slot + 1;
        // This lane's scales and biases of rows g and g + 8, raw, two to a word.
        unsigned sw[2][NG / 2], bw[2][NG / 2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const unsigned* sp = (const unsigned*)(st + L::SCALES + (g + 8 * h) * NG * 2);
            const unsigned* bp = (const unsigned*)(st + L::BIASES + (g + 8 * h) * NG * 2);
#pragma unroll
            for (int i = 0; i < NG / 2; ++i) {
                sw[h][i] = sp[i];
                bw[h][i] = bp[i];
            }
        }
#pragma unroll
        for (int j = 0; j < NG; ++j) {
            // x row g at this lane's positions of group j: from x[8i .. 8i+7] the pairs
            // (x_p, x_{p+4}).
            unsigned xr[4 * WPT];
            const uint4* xp = (const uint4*)(xg + (s * NG + j) * GS);
#pragma unroll
            for (int i = 0; i < WPT; ++i) {
                uint4 v = g < m ? xp[i] : make_uint4(0u, 0u, 0u, 0u);
                xr[4 * i + 0] = __byte_perm(v.x, v.z, 0x5410);
                xr[4 * i + 1] = __byte_perm(v.x, v.z, 0x7632);
                xr[4 * i + 2] = __byte_perm(v.y, v.w, 0x5410);
                xr[4 * i + 3] = __byte_perm(v.y, v.w, 0x7632);
            }
            float xs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int jj = 0; jj < NMMA; ++jj) mma16816<DT>(xs, ONES, ONES, ONES, ONES, xr[2 * jj], xr[2 * jj + 1]);
            unsigned a[2][4 * WPT];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const unsigned* cw = (const unsigned*)(st + (g + 8 * h) * L::RS + j * (GS / 2) + t * WPT * 4);
                unsigned wv[WPT];
                if (WPT == 4) {
                    uint4 v = *(const uint4*)cw;
                    wv[0] = v.x;
                    wv[WPT > 1 ? 1 : 0] = v.y;
                    wv[WPT > 2 ? 2 : 0] = v.z;
                    wv[WPT > 3 ? 3 : 0] = v.w;
                } else if (WPT == 2) {
                    uint2 v = *(const uint2*)cw;
                    wv[0] = v.x;
                    wv[WPT > 1 ? 1 : 0] = v.y;
                } else {
                    wv[0] = cw[0];
                }
#pragma unroll
                for (int i = 0; i < WPT; ++i)
#pragma unroll
                    for (int p = 0; p < 4; ++p) a[h][4 * i + p] = and_or(wv[i] >> (4 * p), 0x000F000Fu, MAGIC);
            }
            float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int jj = 0; jj < NMMA; ++jj)
                mma16816<DT>(d, a[0][2 * jj], a[1][2 * jj], a[0][2 * jj + 1], a[1][2 * jj + 1], xr[2 * jj], xr[2 * jj + 1]);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                unsigned sv = sw[h][j / 2], bv = bw[h][j / 2];
                float sc = E::load((typename E::T)((j & 1) ? sv >> 16 : sv & 0xffffu));
                float bc = E::load((typename E::T)((j & 1) ? bv >> 16 : bv & 0xffffu));
                float bo = fmaf(-OFF, sc, bc);
                for (int c = 0; c < 2; ++c) acc[2 * h + c] = fmaf(sc, d[2 * h + c], fmaf(bo, xs[2 * h + c], acc[2 * h + c]));
            }
        }
    }
    cp_async_wait<0>();
    // Sum the W warps of each tile; lane (g, t) holds rows g, g + 8 and x rows 2t, 2t + 1.
    if (W > 1) {
        for (int i = 0; i < 4; ++i) red[warp][i][lane] = acc[i];
        __syncthreads();
        if (kw != 0) return;
        for (int i = 0; i < 4; ++i) {
            float v = 0.0f;
            for (int j = 0; j < W; ++j) v += red[warp + j][i][lane];
            acc[i] = v;
        }
    }
    for (int i = 0; i < 4; ++i) {
        long long row = row0 + g + 8 * (i >> 1);
        int mm = 2 * t + (i & 1);
        if (row < n && mm < m) out[(long long)mm * n + row] = E::store(acc[i]);
    }
}
