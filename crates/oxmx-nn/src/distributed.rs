//! Data and tensor parallelism on top of `oxmx_core::distributed` (MLX's `nn.average_gradients`
//! and `mlx.nn.layers.distributed`).
//!
//! - [`average_gradients`]: the mean of every rank's gradients, packed into few large
//!   all-sums (one collective per parameter would pay the latency hundreds of times a step).
//! - [`shard_linear`]: a `Linear` cut for tensor parallelism. *All-to-sharded* keeps this
//!   rank's block of output features (the input is replicated, the output sharded);
//!   *sharded-to-all* keeps its block of input features and sums the partial products over
//!   ranks (sharded input, replicated output). A Megatron-style block is an all-to-sharded layer
//!   followed by a sharded-to-all one: one all-sum per block in the forward pass, one in the
//!   backward pass (from [`sum_gradients`] in front of the all-to-sharded layer).
//! - [`shard_inplace`]: only slices the parameters (the caller adds the communication).

use crate::layers::Linear;
use crate::module::Params;
use oxmx_core::distributed::{self as dist, Group};
use oxmx_core::{ops, Array, Dtype, Error, Result};

/// How a linear layer is split across ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharding {
    /// Output features split (weight rows): replicated input, sharded output.
    AllToSharded,
    /// Input features split (weight columns): sharded input, all-summed output.
    ShardedToAll,
}

impl std::str::FromStr for Sharding {
    type Err = Error;
    /// MLX's names: `"all-to-sharded"` and `"sharded-to-all"`.
    fn from_str(s: &str) -> Result<Sharding> {
        match s {
            "all-to-sharded" | "all_to_sharded" => Ok(Sharding::AllToSharded),
            "sharded-to-all" | "sharded_to_all" => Ok(Sharding::ShardedToAll),
            _ => Err(Error::invalid(format!("[shard_linear] unknown sharding {s:?}; expected \"all-to-sharded\" or \"sharded-to-all\""))),
        }
    }
}

/// A sharded layer's split and group.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardSpec {
    pub sharding: Sharding,
    pub group: Group,
}

/// Identity forward, all-sum of the cotangent backward: placed where a replicated activation
/// enters rank-local work, so its gradient collects every rank's contribution.
pub fn sum_gradients(x: &Array, group: &Group) -> Array {
    if group.size() == 1 {
        return x.clone();
    }
    let g = group.clone();
    let f = oxmx_core::custom_function("sum_gradients", |v: &[Array]| Ok(vec![v[0].clone()]))
        .vjp(move |_, _, cots| Ok(vec![dist::all_sum(&cots[0], Some(&g))]));
    match f.call(std::slice::from_ref(x)) {
        Ok(mut v) => v.remove(0),
        Err(e) => Array::error(e),
    }
}

/// The forward of a sharded `Linear`.
pub(crate) fn sharded_forward(l: &Linear, s: &ShardSpec, x: &Array) -> Array {
    match s.sharding {
        Sharding::AllToSharded => l.forward_unsharded(&sum_gradients(x, &s.group)),
        Sharding::ShardedToAll => {
            // The bias is added once, after the sum.
            let mut local = l.clone();
            local.shard = None;
            let bias = local.bias.take();
            // Half-precision partial products are summed in float32 (then rounded once), so the
            // result stays as close to the unsharded layer's as its own f32 accumulation keeps it.
            let partial = local.forward_unsharded(x);
            let dt = partial.dtype();
            let y = if matches!(dt, Dtype::Float16 | Dtype::Bfloat16) {
                dist::all_sum(&partial.astype(Dtype::Float32), Some(&s.group)).astype(dt)
            } else {
                dist::all_sum(&partial, Some(&s.group))
            };
            match bias {
                Some(b) => &y + &b,
                None => y,
            }
        }
    }
}

/// This rank's block of axis `axis` of `a`, taken from each of `segments` equal segments
/// (a fused q/k/v weight is 3 segments, each split across ranks).
fn shard_axis(a: &Array, axis: usize, segments: usize, group: &Group, what: &str) -> Result<Array> {
    let (n, r) = (group.size(), group.rank());
    let len = a.shape()[axis];
    if segments == 0 || len % (segments * n) != 0 {
        return Err(Error::invalid(format!(
            "[shard_linear] {what}: axis {axis} of shape {:?} does not split into {segments} segment(s) × {n} ranks",
            a.shape()
        )));
    }
    let (seg, part) = (len / segments, len / segments / n);
    let mut pieces = Vec::with_capacity(segments);
    for k in 0..segments {
        let mut lo = vec![0isize; a.ndim()];
        let mut hi: Vec<isize> = a.shape().iter().map(|&d| d as isize).collect();
        lo[axis] = (k * seg + r * part) as isize;
        hi[axis] = lo[axis] + part as isize;
        pieces.push(ops::slice_range(a, &lo, &hi));
    }
    // A copy, so the full tensor can be freed once every layer is sharded.
    Ok(ops::contiguous(&if pieces.len() == 1 { pieces.remove(0) } else { ops::concatenate(&pieces, axis as isize) }))
}

/// Slices `l`'s parameters for this rank of `group` (MLX's `shard_inplace`); the forward is
/// unchanged. Quantized layers split along packed words and groups, so the input features per
/// rank must be a multiple of the group size for sharded-to-all.
pub fn shard_inplace(l: &mut Linear, sharding: Sharding, segments: usize, group: &Group) -> Result<()> {
    if group.size() == 1 {
        return Ok(());
    }
    if l.lora.is_some() || l.m.is_some() {
        return Err(Error::invalid("[shard_linear] layers with LoRA/DoRA adapters cannot be sharded; fuse the adapters first"));
    }
    let last = l.weight.ndim() - 1;
    match sharding {
        Sharding::AllToSharded => {
            let axis = last - 1;
            l.weight = shard_axis(&l.weight, axis, segments, group, "weight")?;
            for p in [&mut l.scales, &mut l.biases] {
                if let Some(a) = p {
                    *a = shard_axis(a, axis, segments, group, "quantization scales")?;
                }
            }
            if let Some(b) = &mut l.bias {
                *b = shard_axis(b, b.ndim() - 1, segments, group, "bias")?;
            }
        }
        Sharding::ShardedToAll => {
            if let Some(q) = &l.quant {
                let per_rank_in = l.weight.shape()[last] * 32 / q.bits / (segments * group.size()).max(1);
                if per_rank_in % q.group_size != 0 {
                    return Err(Error::invalid(format!(
                        "[shard_linear] a quantized layer's {per_rank_in} input features per rank are not a multiple of its group size {}",
                        q.group_size
                    )));
                }
            }
            l.weight = shard_axis(&l.weight, last, segments, group, "weight")?;
            for p in [&mut l.scales, &mut l.biases] {
                if let Some(a) = p {
                    *a = shard_axis(a, a.ndim() - 1, segments, group, "quantization scales")?;
                }
            }
        }
    }
    Ok(())
}

/// A copy of `l` holding this rank's slice, whose forward communicates (MLX's `shard_linear`,
/// which returns `AllToShardedLinear` / `ShardedToAllLinear`).
pub fn shard_linear(l: &Linear, sharding: Sharding, segments: usize, group: &Group) -> Result<Linear> {
    let mut out = l.clone();
    shard_inplace(&mut out, sharding, segments, group)?;
    out.shard = (group.size() > 1).then(|| ShardSpec { sharding, group: group.clone() });
    Ok(out)
}

/// The mean over ranks of each gradient. Gradients of one dtype are packed into all-sums of at
/// most `all_reduce_size` bytes (MLX's default: 32 MiB; 0 sends each gradient alone).
pub fn average_gradients(grads: &Params, group: Option<&Group>, all_reduce_size: usize) -> Result<Params> {
    let group = match group {
        Some(g) => g.clone(),
        None => dist::default_group()?,
    };
    let n = group.size();
    if n == 1 {
        return Ok(grads.clone());
    }
    let mut out = Params::new();
    // Batches of (key, array) with one dtype and at most `all_reduce_size` bytes.
    let mut batch: Vec<(&String, &Array)> = Vec::new();
    let mut bytes = 0usize;
    let flush = |batch: &mut Vec<(&String, &Array)>, out: &mut Params| {
        if batch.is_empty() {
            return;
        }
        let flat: Vec<Array> = batch.iter().map(|(_, a)| ops::reshape(a, &[-1])).collect();
        let joined = if flat.len() == 1 { flat[0].clone() } else { ops::concatenate(&flat, 0) };
        let mean = &dist::all_sum(&joined, Some(&group)) / n as f64;
        let mut at = 0isize;
        for (k, a) in batch.drain(..) {
            let len = a.size() as isize;
            let piece = ops::slice_range(&mean, &[at], &[at + len]);
            out.insert(k.clone(), ops::reshape_to(&piece, a.shape()).astype(a.dtype()));
            at += len;
        }
    };
    let mut dtype: Option<Dtype> = None;
    for (k, a) in grads {
        if dtype != Some(a.dtype()) || (bytes > 0 && bytes + a.nbytes() > all_reduce_size) {
            flush(&mut batch, &mut out);
            bytes = 0;
        }
        dtype = Some(a.dtype());
        batch.push((k, a));
        bytes += a.nbytes();
    }
    flush(&mut batch, &mut out);
    Ok(out)
}
