// Dense mat-vec for decoding (matvec.rs): out[m, n] = alpha * sum_k x[m, k] * w[n, k] for
// M <= 8 rows of x against a weight whose rows are contiguous (a Linear layer's [out, in]
// weight seen through its transpose). Memory-bound: the weight is read once, at full width.
//
// A block's BLOCK_WARPS warps form groups of W; each group owns R consecutive rows of w and
// splits k between its warps: lane c of the group's warp v reads the 8-element chunks
// v * 32 + c, + 32 W, ... of each row (consecutive warps read consecutive 512-byte runs), U
// chunks per row in flight before any arithmetic (16-byte loads; R * U of them outstanding
// per lane keep enough bytes in flight to cover DRAM latency). Splitting long rows keeps every
// SM full even when n is small (the caller picks W from the row length). A chunk of x is
// loaded once per step for all R rows. Sums are float32, reduced across the warp, then across
// the group in shared memory.
template <int DT, int M, int R, int U, int W>
__device__ void gemv_t(typename Elem<DT>::T* out, const typename Elem<DT>::T* x, const typename Elem<DT>::T* w, long long n,
                       long long k, long long ldx, long long ldw, float alpha) {
    typedef Elem<DT> E;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Warp = (row group, k slice): BLOCK_WARPS / W groups of R rows, each split W ways.
    int kw = warp % W;
    long long n0 = ((long long)blockIdx.x * (BLOCK_WARPS / W) + warp / W) * R;
    long long chunks = k / 8;
    float acc[M][R];
    for (int m = 0; m < M; ++m)
        for (int r = 0; r < R; ++r) acc[m][r] = 0.0f;
    for (long long c0 = kw * 32 + lane; c0 < chunks; c0 += 32 * W * U) {
        Chunk8<DT> wc[U][R];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long c = c0 + 32 * W * u;
#pragma unroll
            for (int r = 0; r < R; ++r)
                wc[u][r] = (c < chunks && n0 + r < n) ? chunk8_load<DT>(w + (n0 + r) * ldw + c * 8) : chunk8_zero<DT>();
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            long long c = c0 + 32 * W * u;
            if (c >= chunks) break;
            float wf[R][8];
#pragma unroll
            for (int r = 0; r < R; ++r) chunk8_f<DT>(wc[u][r], wf[r]);
#pragma unroll
            for (int m = 0; m < M; ++m) {
                float xv[8];
                load8<DT>(x + m * ldx + c * 8, xv);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    float d = acc[m][r];
#pragma unroll
                    for (int j = 0; j < 8; ++j) d = fmaf(wf[r][j], xv[j], d);
                    acc[m][r] = d;
                }
            }
        }
    }
    group_reduce_store<E, M, R, W>(acc, out, n, alpha);
}
