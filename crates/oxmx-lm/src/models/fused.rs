//! Projections that read the same input, run as one product at inference: q/k/v of an
//! attention layer and gate/up of an MLP. One (quantized) mat-vec instead of three (or two)
//! per layer and token: fewer dispatches (the CPU's fork-join of the pool, the GPU's kernel
//! launches, the decoding step's main cost on both) and wider products for the small k/v heads.
//!
//! The fused weight is the row-wise concatenation of the parts'; each part's arrays are then
//! replaced by row views of it, so the model holds the weights once and its parameters (names,
//! shapes, values, what `save_weights` and `convert` write) are unchanged. The fused product is
//! used only while every part still holds exactly those views and has no adapter: a weight
//! replaced by `update`, training, or a LoRA/DoRA adapter falls back to the separate products.
//! Each output row of a product is the same dot product either way, so results are identical.

use oxmx_core::{ops, Array, Result};
use oxmx_nn::{Linear, ModuleState, RMSNorm, UnaryModule};

/// One product for several `Linear`s of the same input.
#[derive(Clone, Debug)]
pub struct Fused {
    linear: Linear,
    /// Output width of each part, in order.
    widths: Vec<usize>,
    /// Ids of the parts' arrays (weight, scales, biases, bias) when fused.
    ids: Vec<Vec<u64>>,
}

/// Rows of input (batch × tokens) up to which the fused product is used.
const MAX_ROWS: usize = 8;

/// On by default; `OXMX_FUSE_PROJECTIONS=0` turns it off (`=1` forces it on). On an H200
/// (Llama-3-8B-shaped, 4-bit, random weights, same run) decoding went from 211.5/210.6 to
/// 222.0/223.2 tok/s (fewer kernel launches) and the peak fell from 10.39 to 7.67 GB. On the
/// CPU it was off until the twenty-ninth session: SmolLM2's decoding was unchanged within noise
/// on an AVX-512 host and fusing raised the loaded model's memory by 12.9 MB (the allocator's
/// cache handed the fused arrays blocks up to twice their size; `new` now clears it first).
/// With q and k rotated by one RoPE launch, on a Zen 2 host (2 cores, alternating pairs) it
/// decoded 99.8–101.9 against 94.6–96.5 tok/s after a 128-token prompt and 75.9–79.9 against
/// 73.6–76.5 after 512, peak 0.132 against 0.133 GB.
fn enabled() -> bool {
    std::env::var("OXMX_FUSE_PROJECTIONS").map_or(true, |v| v != "0")
}

fn arrays(l: &Linear) -> impl Iterator<Item = &Array> {
    [Some(&l.weight), l.scales.as_ref(), l.biases.as_ref(), l.bias.as_ref()].into_iter().flatten()
}

fn ids(l: &Linear) -> impl Iterator<Item = u64> + '_ {
    arrays(l).map(|a| a.id())
}

/// No adapters, and no communication in the forward (an all-to-sharded layer's forward is its
/// local product at inference, so its slices fuse like whole layers).
fn plain(l: &Linear) -> bool {
    l.lora.is_none()
        && l.lora_a.is_none()
        && l.lora_b.is_none()
        && l.m.is_none()
        && l.shard.as_ref().is_none_or(|s| s.sharding == oxmx_nn::distributed::Sharding::AllToSharded)
}

impl Fused {
    /// Fuses `parts` (same input width, same quantization, all or none with a bias, no
    /// adapters); `None` when they do not qualify or fusion is off. Evaluates the fused arrays and the views.
    pub fn new(parts: &mut [&mut Linear]) -> Result<Option<Fused>> {
        let Some(first) = parts.first() else { return Ok(None) };
        let (quant, has_bias, in_w, dt) =
            (first.quant.clone(), first.bias.is_some(), first.weight.shape().get(1).copied(), first.weight.dtype());
        let same = parts.iter().all(|p| {
            plain(p)
                && p.quant == quant
                && p.bias.is_some() == has_bias
                && p.weight.ndim() == 2
                && p.weight.shape().get(1).copied() == in_w
                && p.weight.dtype() == dt
                && p.scales.is_some() == first.scales.is_some()
                && p.biases.is_some() == first.biases.is_some()
        });
        if parts.len() < 2 || !same || !enabled() {
            return Ok(None);
        }
        let widths: Vec<usize> = parts.iter().map(|p| p.weight.shape()[0]).collect();
        // Fresh blocks for arrays that live as long as the model: the allocator's cache would
        // otherwise hand out the previous layer's freed parts, which may be larger than asked
        // for (up to an eighth now, up to twice before the thirty-first session: SmolLM2-135M
        // then held 12.9 MB more after loading, 129.07 against 116.14 MB), and hold the slack.
        oxmx_core::memory::clear_cache();
        let cat = |get: &dyn Fn(&Linear) -> Option<Array>| -> Option<Array> {
            let v: Option<Vec<Array>> = parts.iter().map(|p| get(p)).collect();
            v.map(|v| ops::concatenate(&v, 0))
        };
        let weight = cat(&|l| Some(l.weight.clone())).expect("every part has a weight");
        let scales = cat(&|l| l.scales.clone());
        let biases = cat(&|l| l.biases.clone());
        let bias = cat(&|l| l.bias.clone());
        let fused: Vec<&Array> = [Some(&weight), scales.as_ref(), biases.as_ref(), bias.as_ref()].into_iter().flatten().collect();
        oxmx_core::eval(&fused)?;
        // The parts become row views of the fused arrays (their own copies are freed).
        let mut start = 0usize;
        for (p, &w) in parts.iter_mut().zip(&widths) {
            let rows = |a: &Array| ops::split_at(a, &[start as isize, (start + w) as isize], 0).swap_remove(1);
            p.weight = rows(&weight);
            p.scales = scales.as_ref().map(rows);
            p.biases = biases.as_ref().map(rows);
            p.bias = bias.as_ref().map(rows);
            oxmx_core::eval(&arrays(p).collect::<Vec<_>>())?;
            start += w;
        }
        let linear = Linear {
            weight,
            scales,
            biases,
            bias,
            lora_a: None,
            lora_b: None,
            m: None,
            quant,
            lora: None,
            shard: None,
            state: ModuleState::default(),
        };
        let ids = parts.iter().map(|p| ids(p).collect()).collect();
        Ok(Some(Fused { linear, widths, ids }))
    }

    /// The parts' outputs for `x` (views of one product), or `None` when `x` has more than
    /// `MAX_ROWS` rows or a part changed since it was fused (then the caller runs the parts).
    pub fn forward(&self, parts: &[&Linear], x: &Array) -> Option<Vec<Array>> {
        self.forward_merged(parts, None, x, 1)
    }

    /// As `forward` for `rms_norm(norm, x)` when `norm` is given (fused into the product, see
    /// `base::normed_linear`), with the first `merged` parts' outputs as one view (q and k of an
    /// attention layer, rotated by one RoPE launch).
    pub fn forward_merged(&self, parts: &[&Linear], norm: Option<&RMSNorm>, x: &Array, merged: usize) -> Option<Vec<Array>> {
        // Only for few rows (decoding): a prompt's products are large enough that dispatch costs
        // nothing, and its fused output plus the copies its strided parts need for the next ops
        // would only add memory.
        let rows = x.size() / x.shape().last().copied().unwrap_or(1).max(1);
        if rows > MAX_ROWS {
            return None;
        }
        // Checked on every call without allocating: this runs per layer and token.
        let unchanged =
            parts.len() == self.ids.len() && parts.iter().zip(&self.ids).all(|(p, id)| plain(p) && ids(p).eq(id.iter().copied()));
        if !unchanged {
            return None;
        }
        let y = match norm {
            Some(n) => super::base::normed_linear(n, &self.linear, x),
            None => self.linear.forward(x),
        };
        let mut bounds = Vec::with_capacity(self.widths.len() - 1);
        let mut at = 0isize;
        for (i, w) in self.widths[..self.widths.len() - 1].iter().enumerate() {
            at += *w as isize;
            if i + 1 >= merged {
                bounds.push(at);
            }
        }
        Some(ops::split_at(&y, &bounds, -1))
    }
}
