//! What the attention kernels (`sdpa512`, `sdpa_avx2`) share: the tile sizes, a group of query
//! rows' running softmax state, and the online-softmax step over one tile of scores.

use super::fastmath;

/// Keys per tile: a tile of f32 keys and values (2 x 16 KB at head size 128) stays in L1 while
/// the scores are turned into weights and applied.
pub(super) const TILE: usize = 32;

/// How many rows ahead keys and values are prefetched (into L2). On a 2-core Sapphire-Rapids-
/// class guest 16 beat 64 and 32 in every round of four (decode attention over 32k keys, two
/// threads: f16 6.8-7.7 ms against 7.6-9.6 at 64, bf16 7.5-8.3 against 8.7-10.5); on Zen 2 the
/// distance made no difference (BENCHMARKS.md, twenty-ninth session).
pub(super) const AHEAD: usize = 16;

/// Query rows processed together (their value accumulators fill half the vector registers).
pub(super) const MAX_ROWS: usize = 4;

/// One group of query rows' running softmax state over the keys seen so far.
pub(super) struct Rows<'a> {
    /// `nr` rows of `d` query values, pre-multiplied by the softmax scale.
    pub q: &'a [f32],
    /// Running max of each row's scores.
    pub m: &'a mut [f32],
    /// Running sum of each row's `exp(score - m)`.
    pub l: &'a mut [f32],
    /// `nr` rows of `dv`: the unnormalised weighted sum of values.
    pub acc: &'a mut [f32],
}

/// Online softmax over one tile of `nk` scores per row: rescales what was accumulated when the
/// max grows (the returned factor per row) and turns the scores into weights. Plain loops over
/// the tile: inlined into a kernel compiled for AVX2 or AVX-512, they vectorise there.
#[inline(always)]
pub(super) fn online_softmax<const NR: usize>(s: &mut [[f32; TILE]; NR], nk: usize, m: &mut [f32], l: &mut [f32]) -> [f32; NR] {
    let mut corr = [1f32; NR];
    for r in 0..NR {
        let sr = &mut s[r][..nk];
        let mt = lane_max(sr);
        let m_new = if mt > m[r] { mt } else { m[r] };
        if m_new == f32::NEG_INFINITY {
            sr.iter_mut().for_each(|x| *x = 0.0);
            continue;
        }
        corr[r] = fastmath::exp(m[r] - m_new);
        // Two loops: with the sum folded in, the exponentials ran one lane at a time.
        for x in sr.iter_mut() {
            *x = fastmath::exp(*x - m_new);
        }
        l[r] = l[r] * corr[r] + lane_sum(sr);
        m[r] = m_new;
    }
    corr
}

/// The largest of `x` (NaNs skipped) in 16 independent lanes: an ordered fold does not
/// vectorise, and on AVX-512 it was a tenth of the kernel's time.
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut c = x.chunks_exact(16);
    for ch in &mut c {
        for l in 0..16 {
            acc[l] = if ch[l] > acc[l] { ch[l] } else { acc[l] };
        }
    }
    acc.iter().chain(c.remainder()).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// The sum of `x` in 16 independent lanes (a vector loop, unlike a sequential float sum).
#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut c = x.chunks_exact(16);
    for ch in &mut c {
        for l in 0..16 {
            acc[l] += ch[l];
        }
    }
    acc.iter().sum::<f32>() + c.remainder().iter().sum::<f32>()
}
