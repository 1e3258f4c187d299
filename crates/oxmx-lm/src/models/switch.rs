//! Mixture-of-experts blocks (mlx-lm's `switch_layers`): expert weights stacked on a leading axis
//! (`switch_mlp.{gate,up,down}_proj.weight: [E, out, in]`) and applied with `gather_mm` (or
//! `gather_qmm` once quantized) on each token's selected experts, and the top-k softmax router.
//!
//! Checkpoints come in three layouts, all turned into the stacked one by [`stack_experts`]:
//! Hugging Face per-expert matrices (`experts.{e}.w1/w2/w3` in mixtral, `experts.{e}.gate_proj/
//! up_proj/down_proj` in qwen3_moe), transformers 5's fused `experts.gate_up_proj` /
//! `experts.down_proj`, and mlx-lm's already stacked `switch_mlp.*`.

use super::base::{linear, zeros_linear};
use oxmx_core::{ops, Array, Dtype, Error, Result};
use oxmx_nn::{Linear, Module, ModuleState, QuantSpec, Quantizable};
use std::collections::BTreeMap;

/// `E` linear maps `[E, out, in]` (+ bias `[E, out]`); quantized it holds MLX's
/// `QuantizedSwitchLinear` keys (`weight` packed, `scales`, `biases`).
#[derive(Module, Clone, Debug)]
#[module(quantizable)]
pub struct SwitchLinear {
    pub weight: Array,
    pub scales: Option<Array>,
    pub biases: Option<Array>,
    pub bias: Option<Array>,
    #[module(skip)]
    pub quant: Option<QuantSpec>,
    pub state: ModuleState,
}

impl SwitchLinear {
    /// Placeholder weights (the checkpoint replaces them).
    pub fn new(inp: usize, out: usize, experts: usize) -> SwitchLinear {
        SwitchLinear {
            weight: ops::zeros(&[experts, out, inp], Dtype::Float32),
            scales: None,
            biases: None,
            bias: None,
            quant: None,
            state: ModuleState::default(),
        }
    }

    /// `x: [..., 1, in]` with batch axes broadcasting against `idx: [...]` -> `[..., 1, out]`:
    /// row `i` goes through expert `idx[i]`.
    pub fn forward(&self, x: &Array, idx: &Array) -> Array {
        let y = match &self.quant {
            Some(q) => ops::gather_qmm(
                x,
                &self.weight,
                self.scales.as_ref().unwrap_or(&self.weight),
                self.biases.as_ref(),
                None,
                Some(idx),
                true,
                Some(q.group_size),
                Some(q.bits),
                &q.mode,
                false,
            ),
            None => ops::gather_mm(x, &ops::swapaxes(&self.weight, -1, -2), None, Some(idx), false),
        };
        match &self.bias {
            Some(b) => &y + &ops::expand_dims(&ops::take(b, idx, Some(0)), &[-2]),
            None => y,
        }
    }
}

impl Quantizable for SwitchLinear {
    fn can_quantize(&self, spec: &QuantSpec) -> bool {
        self.quant.is_none() && self.weight.ndim() == 3 && spec.group_size > 0 && self.weight.shape()[2] % spec.group_size == 0
    }

    fn quantize_in_place(&mut self, spec: &QuantSpec) -> Result<()> {
        if self.quant.is_some() {
            return Err(Error::invalid("[quantize] this SwitchLinear is already quantized"));
        }
        // MLX quantizes along the last axis, each expert's rows independently.
        let (w, s, b) = ops::quantize(&self.weight, Some(spec.group_size), Some(spec.bits), &spec.mode);
        w.check()?;
        s.check()?;
        self.weight = w;
        self.scales = Some(s);
        self.biases = b;
        self.quant = Some(spec.clone());
        let mut frozen = vec!["weight", "scales"];
        if self.biases.is_some() {
            frozen.push("biases");
        }
        self.freeze_paths(&frozen)
    }

    fn quant_spec(&self) -> Option<&QuantSpec> {
        self.quant.as_ref()
    }
}

/// `down(silu(gate(x)) * up(x))` through each token's selected experts.
#[derive(Module, Clone, Debug)]
pub struct SwitchGlu {
    pub gate_proj: SwitchLinear,
    pub up_proj: SwitchLinear,
    pub down_proj: SwitchLinear,
    pub state: ModuleState,
}

impl SwitchGlu {
    pub fn new(dims: usize, hidden: usize, experts: usize) -> SwitchGlu {
        SwitchGlu {
            gate_proj: SwitchLinear::new(dims, hidden, experts),
            up_proj: SwitchLinear::new(dims, hidden, experts),
            down_proj: SwitchLinear::new(hidden, dims, experts),
            state: ModuleState::default(),
        }
    }

    /// `x: [B, L, D]`, `idx: [B, L, k]` -> `[B, L, k, D]`.
    pub fn forward(&self, x: &Array, idx: &Array) -> Array {
        let s = x.shape();
        // One row per token, broadcast over its k experts by gather_mm's batch axes.
        let x = ops::reshape_to(x, &[s[0], s[1], 1, 1, s[2]]);
        let g = self.gate_proj.forward(&x, idx);
        let h = super::base::swiglu(&g, &self.up_proj.forward(&x, idx));
        ops::squeeze(&self.down_proj.forward(&h, idx), &[-2])
    }
}

/// The sparse MoE block: a router `gate` (`Linear` to `E` logits) and the experts.
#[derive(Module, Clone, Debug)]
pub struct SparseMoe {
    pub gate: Linear,
    pub switch_mlp: SwitchGlu,
    #[module(skip)]
    pub top_k: usize,
    /// Renormalise the k selected probabilities to sum to 1 (mixtral always; qwen3_moe's
    /// `norm_topk_prob`). Softmax over all experts then renormalising the top k equals mlx-lm's
    /// softmax over the top-k logits.
    #[module(skip)]
    pub norm_topk: bool,
    pub state: ModuleState,
}

impl SparseMoe {
    pub fn new(dims: usize, hidden: usize, experts: usize, top_k: usize, norm_topk: bool) -> Result<SparseMoe> {
        if experts == 0 || top_k == 0 || top_k > experts {
            return Err(Error::invalid(format!(
                "[config] `num_experts_per_tok` ({top_k}) must be between 1 and the number of experts ({experts})"
            )));
        }
        Ok(SparseMoe {
            gate: zeros_linear(dims, experts, false),
            switch_mlp: SwitchGlu::new(dims, hidden, experts),
            top_k,
            norm_topk,
            state: ModuleState::default(),
        })
    }

    /// `x: [B, L, D]` -> `[B, L, D]`.
    pub fn forward(&self, x: &Array) -> Array {
        let logits = linear(&self.gate, x);
        // Routing probabilities in float32 (transformers' softmax(dtype=float)).
        let probs = ops::softmax(&logits.astype(Dtype::Float32), -1isize, true);
        let k = self.top_k as isize;
        let order = ops::argpartition(&(&probs * -1.0), k - 1, Some(-1));
        let s = order.shape();
        let idx = ops::slice_range(&order, &[0, 0, 0], &[s[0] as isize, s[1] as isize, k]);
        let mut scores = ops::take_along_axis(&probs, &idx, Some(-1));
        if self.norm_topk {
            scores = &scores / &ops::sum(&scores, -1isize, true);
        }
        let y = self.switch_mlp.forward(x, &idx);
        let scores = ops::expand_dims(&scores.astype(y.dtype()), &[-1]);
        ops::sum(&(&y * &scores), -2isize, false)
    }
}

/// The HF per-expert names and mlx-lm's stacked names they go to.
const EXPERT_NAMES: &[(&str, &str)] = &[
    ("w1", "gate_proj"),
    ("w3", "up_proj"),
    ("w2", "down_proj"),
    ("gate_proj", "gate_proj"),
    ("up_proj", "up_proj"),
    ("down_proj", "down_proj"),
];

/// Rewrites per-expert keys `<block>.experts.<e>.<name>.<leaf>` (every `e` in `0..E` present)
/// as `<block>.switch_mlp.<proj>.<leaf>` stacked on a new leading axis, and transformers 5's
/// fused `<block>.experts.gate_up_proj` (`[E, 2I, D]`, gate rows first) / `.experts.down_proj`
/// as the same. Anything else, including incomplete expert sets, passes through unchanged so that
/// the strict load names the keys that do not fit.
pub fn stack_experts(weights: Vec<(String, Array)>) -> Vec<(String, Array)> {
    type Group = BTreeMap<usize, Array>;
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut out = Vec::with_capacity(weights.len());
    let mut originals: BTreeMap<String, Vec<(String, Array)>> = BTreeMap::new();
    for (key, a) in weights {
        let Some((block, rest)) = key.split_once(".experts.") else {
            out.push((key, a));
            continue;
        };
        let parts: Vec<&str> = rest.split('.').collect();
        match parts.as_slice() {
            [e, name, leaf] if e.parse::<usize>().is_ok() => match EXPERT_NAMES.iter().find(|(n, _)| n == name) {
                Some((_, proj)) => {
                    let target = format!("{block}.switch_mlp.{proj}.{leaf}");
                    groups.entry(target.clone()).or_default().insert(e.parse().unwrap_or(0), a.clone());
                    originals.entry(target).or_default().push((key, a));
                }
                None => out.push((key, a)),
            },
            ["gate_up_proj"] if a.ndim() == 3 && a.shape()[1] % 2 == 0 => {
                let halves = ops::split_equal(&a, 2, 1);
                out.push((format!("{block}.switch_mlp.gate_proj.weight"), halves[0].clone()));
                out.push((format!("{block}.switch_mlp.up_proj.weight"), halves[1].clone()));
            }
            ["down_proj"] if a.ndim() == 3 => out.push((format!("{block}.switch_mlp.down_proj.weight"), a)),
            _ => out.push((key, a)),
        }
    }
    for (target, experts) in groups {
        let complete = experts.keys().copied().eq(0..experts.len());
        if complete {
            let mats: Vec<Array> = experts.into_values().collect();
            out.push((target, ops::stack(&mats, 0)));
        } else {
            out.extend(originals.remove(&target).unwrap_or_default());
        }
    }
    out
}
