//! Shared decoder blocks: linear layers, RMSNorm, attention with GQA, a KV cache and optional
//! sliding window ([`attend`]), the SwiGLU MLP, the model-level loop ([`run_decoder`]), and the
//! Llama-style decoder (`model.embed_tokens`, `model.layers.N`, `model.norm`, `lm_head`) that
//! llama, qwen2, qwen3, mixtral and qwen3_moe share. RoPE variants live in `rope.rs`.
//!
//! The numeric kernels go through the small functions at the top of this file (`linear`,
//! `rms_norm`, `apply_rope`, `sdpa`) so the integrator can switch them to `fast::*` and
//! quantized matmuls in one place.

use super::fused::Fused;
pub use super::rope::Rope;
use crate::cache::{create_causal_mask, FetchedKv, KvCache};
use crate::config::ModelConfig;
use oxmx_core::distributed::Group;
use oxmx_core::fast::{self, AttentionMask};
use oxmx_core::{compile_shapeless, ops, Array, CompiledFn, Dtype, Result};
use oxmx_nn::distributed::{shard_linear, Sharding};
use oxmx_nn::{Embedding, Linear, Module, ModuleState, RMSNorm};
use std::sync::OnceLock;

// ---- the kernels: oxmx_core::fast and (through nn::Linear) quantized matmuls ----

/// `x W^T (+ b)`; a quantized `Linear` runs `quantized_matmul`.
pub fn linear(l: &Linear, x: &Array) -> Array {
    oxmx_nn::UnaryModule::forward(l, x)
}

/// RMS normalisation over the last axis (one fused pass per row).
pub fn rms_norm(n: &RMSNorm, x: &Array) -> Array {
    fast::rms_norm(x, Some(&n.weight), n.eps as f32)
}

/// `linear(l, rms_norm(n, x))`: one node for up to 8 rows of `x` when `l` is an affine-quantized
/// 2-d layer without an adapter or shard (`ops::rms_norm_quantized_matmul`: on a GPU the mat-vec of a decoding step
/// normalises its row itself, one kernel less per norm). On by default on the CPU (same results,
/// one dispatch less), opt-in on a GPU for now (`fused_on`).
pub fn normed_linear(n: &RMSNorm, l: &Linear, x: &Array) -> Array {
    match (&l.quant, &l.scales, &l.biases) {
        (Some(q), Some(s), Some(b))
            if q.mode == "affine"
                && l.weight.ndim() == 2
                && l.lora.is_none()
                && l.m.is_none()
                && l.shard.is_none()
                && few_rows(x)
                && fuse_norm() =>
        {
            let y = ops::rms_norm_quantized_matmul(x, &n.weight, n.eps as f32, &l.weight, s, b, Some(q.group_size), Some(q.bits));
            match &l.bias {
                Some(bias) => &y + bias,
                None => y,
            }
        }
        _ => linear(l, &rms_norm(n, x)),
    }
}

/// Decoding's row counts, where the fused products pay (a prompt's or a training batch's
/// products are large enough that one more kernel costs nothing, and a fused node's gradient
/// would recompute the product).
fn few_rows(x: &Array) -> bool {
    x.size() <= 8 * x.shape().last().copied().unwrap_or(1).max(1)
}

/// Whether a fused product is used: `OXMX_FUSE_NORM` / `OXMX_FUSE_SWIGLU` set to 1 or 0, else
/// `cpu_default` on the CPU and off on a GPU: on an H100 the GPU kernels (`qmv1`'s prologues)
/// pass their tests but a Llama-3-8B-shaped 4-bit decode gained nothing (fortieth session,
/// `scripts/gpu_decode_host.sh`: 367.0-367.9 tok/s without, 367.1-368.1 with the norm fused,
/// 364.0-364.1 with SwiGLU too), so a GPU run takes them only when asked.
fn fused_on(var: &str, cpu_default: bool) -> bool {
    match std::env::var(var).ok().as_deref() {
        Some("0") => false,
        Some("1") => true,
        _ => cpu_default && !oxmx_core::default_device().is_gpu(),
    }
}

fn fuse_norm() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| fused_on("OXMX_FUSE_NORM", true))
}

/// `linear(l, swiglu(gate, up))`: on a GPU one node for up to 8 rows when `l` is an
/// affine-quantized 2-d layer without an adapter or shard (`ops::swiglu_quantized_matmul`: a decoding step's mat-vec
/// computes the activation of its row itself, one kernel less per MLP). On the CPU the compiled
/// activation stays (one pass either way). Opt-in for now: `OXMX_FUSE_SWIGLU=1` (`fused_on`).
pub fn swiglu_linear(l: &Linear, gate: &Array, up: &Array) -> Array {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| fused_on("OXMX_FUSE_SWIGLU", false));
    match (&l.quant, &l.scales, &l.biases) {
        (Some(q), Some(s), Some(b))
            if on
                && q.mode == "affine"
                && l.weight.ndim() == 2
                && l.lora.is_none()
                && l.m.is_none()
                && l.shard.is_none()
                && few_rows(gate)
                && oxmx_core::default_device().is_gpu() =>
        {
            let y = ops::swiglu_quantized_matmul(gate, up, &l.weight, s, b, Some(q.group_size), Some(q.bits));
            match &l.bias {
                Some(bias) => &y + bias,
                None => y,
            }
        }
        _ => linear(l, &swiglu(gate, up)),
    }
}

/// `x: [B, H, L, D]` rotated for positions `offset..offset + L` (half-split layout).
pub fn apply_rope(r: &Rope, x: &Array, offset: usize) -> Array {
    r.apply(x, offset)
}

/// `softmax(q k^T * scale + mask) v` with GQA: `q: [B, Hq, L, D]`, `k, v: [B, Hkv, S, D]`; the
/// fused kernel reads each KV head once for the query heads that share it.
pub fn sdpa(q: &Array, k: &Array, v: &Array, scale: f64, mask: &AttentionMask) -> Array {
    fast::scaled_dot_product_attention(q, k, v, scale as f32, mask.clone(), None)
}

// ---- blocks ----

/// How one attention layer attends: heads, scale, rotary embedding, sliding window and logit cap.
#[derive(Clone, Debug)]
pub struct AttnSpec {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f64,
    pub rope: Rope,
    /// Sliding window: a query sees the `window` most recent positions, its own included
    /// (transformers' `sliding_window`).
    pub window: Option<usize>,
}

impl AttnSpec {
    /// The usual layer of `c`: `1/sqrt(head_dim)` scale, RoPE over `head_dim x
    /// partial_rotary_factor` features with the config's base and scaling, no window.
    pub fn from_config(c: &ModelConfig) -> Result<AttnSpec> {
        let rope_dims = (c.head_dim as f64 * c.partial_rotary_factor) as usize;
        Ok(AttnSpec {
            n_heads: c.num_attention_heads,
            n_kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f64).sqrt(),
            rope: Rope::new(rope_dims, c.rope_theta, &c.rope_scaling)?,
            window: None,
        })
    }
}

/// `[B, L, n * head_dim]` -> `[B, n, L, head_dim]`.
pub fn split_heads(y: &Array, n: usize, head_dim: usize) -> Array {
    let (b, l) = (y.shape()[0] as isize, y.shape()[1] as isize);
    ops::swapaxes(&ops::reshape(y, &[b, l, n as isize, head_dim as isize]), 1, 2)
}

/// The mask for `l` new queries of a layer, from its own cache (asked before the update).
fn cache_mask(cache: &Option<&mut Box<dyn KvCache>>, l: usize) -> AttentionMask {
    match cache {
        _ if l <= 1 => AttentionMask::None,
        // "causal" lets the attention kernel skip masked tiles; a rotating cache gives its own mask.
        Some(c) => c.make_mask(l).map_or(AttentionMask::Causal, AttentionMask::Array),
        None => AttentionMask::Causal,
    }
}

/// A sliding-window layer builds its own mask whenever the keys are every position so far in
/// order (no cache, a standard cache, a rotating cache that has not wrapped) and reach past the
/// window. A rotating cache that has dropped positions already bounds what is attended; its own
/// mask stands then (exact when its size is at most the window, as mlx-lm sizes such caches).
fn window_mask(window: Option<usize>, base: AttentionMask, offset: usize, l: usize, keys: usize) -> AttentionMask {
    match window {
        Some(w) if keys == offset + l && offset + l > w => AttentionMask::Array(create_causal_mask(l, offset, Some(w))),
        _ => base,
    }
}

/// Rotates `q: [B, Hq, L, D]` and `k: [B, Hkv, L, D]` (already normed), appends `k, v` to the
/// cache, attends with the layer's mask and returns `[B, L, Hq * D]` (before `o_proj`).
pub fn attend(spec: &AttnSpec, q: &Array, k: &Array, v: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
    attend_with(spec, Queries::Separate(q, k), v, cache)
}

/// `attend` with `qk: [B, Hq + Hkv, L, D]` holding the query heads and then the key heads (as a
/// fused q/k/v product leaves them): one RoPE launch rotates both, then q and k are views.
pub fn attend_joint(spec: &AttnSpec, qk: &Array, v: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
    attend_with(spec, Queries::Joint(qk), v, cache)
}

/// Queries and keys before RoPE, apart or in one array.
#[derive(Clone, Copy)]
enum Queries<'a> {
    Separate(&'a Array, &'a Array),
    Joint(&'a Array),
}

fn attend_with(spec: &AttnSpec, qk: Queries, v: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
    let q = match qk {
        Queries::Separate(q, _) | Queries::Joint(q) => q,
    };
    let (b, l) = (q.shape()[0] as isize, q.shape()[2]);
    let offset = cache.as_ref().map_or(0, |c| c.offset());
    // A cache of several sequences (the server's batch) gives per-row positions and its own mask.
    let rows = cache.as_ref().and_then(|c| c.batch_layout(l));
    let base = match &rows {
        Some((_, Some(m))) => AttentionMask::Array(m.clone()),
        Some((_, None)) if l <= 1 => AttentionMask::None,
        Some((_, None)) => AttentionMask::Causal,
        None => cache_mask(&cache, l),
    };
    let rope = |x: &Array| spec.rope.apply_rows(x, offset, rows.as_ref().map(|r| &r.0));
    let (q, k) = match qk {
        Queries::Separate(q, k) => (rope(q), rope(k)),
        Queries::Joint(qk) => {
            let mut parts = ops::split_at(&rope(qk), &[spec.n_heads as isize], 1);
            let k = parts.pop().expect("two parts");
            (parts.pop().expect("two parts"), k)
        }
    };
    let fetched = match cache {
        Some(c) => c.update_and_fetch_kv(&k, v),
        None => FetchedKv::Plain(k, v.clone()),
    };
    let keys = match &fetched {
        FetchedKv::Plain(k, _) => k.shape().get(2).copied().unwrap_or(0),
        FetchedKv::Quantized(kv) => kv.keys[0].shape().get(2).copied().unwrap_or(0),
    };
    let mask = window_mask(spec.window, base, offset, l, keys);
    let o = match fetched {
        FetchedKv::Plain(k, v) => sdpa(&q, &k, &v, spec.scale, &mask),
        FetchedKv::Quantized(kv) => kv.attention(&q, spec.scale, &mask),
    };
    ops::reshape(&ops::swapaxes(&o, 1, 2), &[b, l as isize, -1])
}

/// Options that distinguish the llama-like families.
#[derive(Clone, Debug, Default)]
pub struct DecoderOptions {
    /// Bias on q/k/v projections (qwen2; llama's `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on o_proj (llama's `attention_bias` covers it too).
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-head RMSNorm on queries and keys before RoPE (qwen3).
    pub qk_norm: bool,
    /// Sliding-window attention in every layer (mixtral's `sliding_window`).
    pub window: Option<usize>,
}

/// Separate q/k/v projections (the Llama layout), optional per-head q/k RMSNorm.
#[derive(Module, Clone, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RMSNorm>,
    pub k_norm: Option<RMSNorm>,
    #[module(skip)]
    pub spec: AttnSpec,
    /// q/k/v as one product at inference (`fuse_projections`).
    #[module(skip)]
    pub fused: Option<Fused>,
    pub state: ModuleState,
}

pub(crate) fn zeros_linear(inp: usize, out: usize, bias: bool) -> Linear {
    // Placeholders: every parameter is replaced by the checkpoint at load time.
    Linear::from_weights(ops::zeros(&[out, inp], Dtype::Float32), bias.then(|| ops::zeros(&[out], Dtype::Float32)))
}

pub(crate) fn norm(dims: usize, eps: f64) -> RMSNorm {
    RMSNorm::with_eps(dims, eps)
}

pub(crate) fn zeros_embedding(c: &ModelConfig) -> Embedding {
    Embedding::from_weight(ops::zeros(&[c.vocab_size, c.hidden_size], Dtype::Float32))
}

impl Attention {
    pub fn new(c: &ModelConfig, o: &DecoderOptions) -> Result<Attention> {
        let (h, kv, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        Ok(Attention {
            q_proj: zeros_linear(c.hidden_size, h * d, o.qkv_bias),
            k_proj: zeros_linear(c.hidden_size, kv * d, o.qkv_bias),
            v_proj: zeros_linear(c.hidden_size, kv * d, o.qkv_bias),
            o_proj: zeros_linear(h * d, c.hidden_size, o.o_bias),
            q_norm: o.qk_norm.then(|| norm(d, c.rms_norm_eps)),
            k_norm: o.qk_norm.then(|| norm(d, c.rms_norm_eps)),
            spec: AttnSpec { window: o.window, ..AttnSpec::from_config(c)? },
            fused: None,
            state: ModuleState::default(),
        })
    }

    /// `x: [B, L, hidden]`.
    pub fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        self.forward_after(None, x, cache)
    }

    /// `forward(rms_norm(norm, x))`, the norm fused into the q/k/v product when it can be.
    pub fn forward_normed(&self, norm: &RMSNorm, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        self.forward_after(Some(norm), x, cache)
    }

    fn forward_after(&self, norm: Option<&RMSNorm>, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let s = &self.spec;
        let parts = [&self.q_proj, &self.k_proj, &self.v_proj];
        if self.q_norm.is_none() && self.k_norm.is_none() {
            // Fused q/k/v (decoding): q and k stay one array for one RoPE launch.
            if let Some(mut y) = self.fused.as_ref().and_then(|f| f.forward_merged(&parts, norm, x, 2)) {
                let v = split_heads(&y.pop().expect("two parts"), s.n_kv_heads, s.head_dim);
                let qk = split_heads(&y.pop().expect("two parts"), s.n_heads + s.n_kv_heads, s.head_dim);
                return linear(&self.o_proj, &attend_joint(s, &qk, &v, cache));
            }
        }
        let (q, k, v) = match self.fused.as_ref().and_then(|f| f.forward_merged(&parts, norm, x, 1)) {
            Some(mut y) => {
                let v = y.pop().expect("three parts");
                let k = y.pop().expect("three parts");
                (y.pop().expect("three parts"), k, v)
            }
            None => {
                let x = norm.map_or_else(|| x.clone(), |n| rms_norm(n, x));
                (linear(&self.q_proj, &x), linear(&self.k_proj, &x), linear(&self.v_proj, &x))
            }
        };
        let mut q = split_heads(&q, s.n_heads, s.head_dim);
        let mut k = split_heads(&k, s.n_kv_heads, s.head_dim);
        let v = split_heads(&v, s.n_kv_heads, s.head_dim);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = rms_norm(qn, &q);
            k = rms_norm(kn, &k);
        }
        linear(&self.o_proj, &attend(s, &q, &k, &v, cache))
    }
}

impl Attention {
    /// Tensor parallelism (Megatron's split): this rank keeps `1/n` of the query and key/value
    /// heads (q/k/v all-to-sharded) and its columns of `o_proj` (sharded-to-all: one all-sum).
    pub fn shard(&mut self, group: &Group) -> Result<()> {
        let n = group.size();
        let s = &mut self.spec;
        if s.n_heads % n != 0 || s.n_kv_heads % n != 0 {
            return Err(oxmx_core::Error::invalid(format!(
                "[tensor parallel] {} query and {} key/value heads do not split across {n} ranks",
                s.n_heads, s.n_kv_heads
            )));
        }
        self.fused = None;
        for p in [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj] {
            *p = shard_linear(p, Sharding::AllToSharded, 1, group)?;
        }
        self.o_proj = shard_linear(&self.o_proj, Sharding::ShardedToAll, 1, group)?;
        s.n_heads /= n;
        s.n_kv_heads /= n;
        Ok(())
    }

    /// q/k/v as one product from now on (see `fused.rs`).
    pub fn fuse_projections(&mut self) -> Result<()> {
        self.fused = Fused::new(&mut [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj])?;
        Ok(())
    }
}

/// `silu(gate) * x` compiled into one fused element-wise kernel (mlx-lm compiles its `swiglu`
/// the same way, shapeless): on a GPU one launch instead of three per layer and token, on the
/// CPU one pass over memory.
pub fn swiglu(gate: &Array, x: &Array) -> Array {
    type Plain = fn((Array, Array)) -> Array;
    static COMPILED: OnceLock<CompiledFn<Plain, (Array, Array), Array>> = OnceLock::new();
    let plain: Plain = |(g, x)| &oxmx_nn::activations::silu(&g) * &x;
    COMPILED.get_or_init(|| compile_shapeless(plain)).call((gate.clone(), x.clone()))
}

/// `down(silu(gate(x)) * up(x))`.
#[derive(Module, Clone, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    /// gate/up as one product at inference (`fuse_projections`).
    #[module(skip)]
    pub fused: Option<Fused>,
    pub state: ModuleState,
}

impl Mlp {
    pub fn new(dims: usize, hidden: usize, bias: bool) -> Mlp {
        Mlp {
            gate_proj: zeros_linear(dims, hidden, bias),
            up_proj: zeros_linear(dims, hidden, bias),
            down_proj: zeros_linear(hidden, dims, bias),
            fused: None,
            state: ModuleState::default(),
        }
    }

    pub fn forward(&self, x: &Array) -> Array {
        self.forward_after(None, x)
    }

    /// `forward(rms_norm(norm, x))`, the norm fused into the gate/up product when it can be.
    pub fn forward_normed(&self, norm: &RMSNorm, x: &Array) -> Array {
        self.forward_after(Some(norm), x)
    }

    fn forward_after(&self, norm: Option<&RMSNorm>, x: &Array) -> Array {
        let (g, u) = match self.fused.as_ref().and_then(|f| f.forward_merged(&[&self.gate_proj, &self.up_proj], norm, x, 1)) {
            Some(mut y) => {
                let u = y.pop().expect("two parts");
                (y.pop().expect("two parts"), u)
            }
            None => {
                let x = norm.map_or_else(|| x.clone(), |n| rms_norm(n, x));
                (linear(&self.gate_proj, &x), linear(&self.up_proj, &x))
            }
        };
        swiglu_linear(&self.down_proj, &g, &u)
    }

    /// gate/up as one product from now on (see `fused.rs`).
    pub fn fuse_projections(&mut self) -> Result<()> {
        self.fused = Fused::new(&mut [&mut self.gate_proj, &mut self.up_proj])?;
        Ok(())
    }

    /// Tensor parallelism: gate/up all-to-sharded (this rank's hidden features), down
    /// sharded-to-all.
    pub fn shard(&mut self, group: &Group) -> Result<()> {
        self.fused = None;
        self.gate_proj = shard_linear(&self.gate_proj, Sharding::AllToSharded, 1, group)?;
        self.up_proj = shard_linear(&self.up_proj, Sharding::AllToSharded, 1, group)?;
        self.down_proj = shard_linear(&self.down_proj, Sharding::ShardedToAll, 1, group)?;
        Ok(())
    }
}

#[derive(Module, Clone, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RMSNorm,
    pub post_attention_layernorm: RMSNorm,
    pub state: ModuleState,
}

impl DecoderLayer {
    pub fn new(c: &ModelConfig, o: &DecoderOptions) -> Result<DecoderLayer> {
        Ok(DecoderLayer {
            self_attn: Attention::new(c, o)?,
            mlp: Mlp::new(c.hidden_size, c.intermediate_size, o.mlp_bias),
            input_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            post_attention_layernorm: norm(c.hidden_size, c.rms_norm_eps),
            state: ModuleState::default(),
        })
    }
}

/// A pre-norm decoder layer: `x: [B, L, hidden]` and its cache entry -> `[B, L, hidden]`.
pub trait Layer: Module + Clone + std::fmt::Debug + Send + Sync + 'static {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array;
    /// See `LanguageModel::fuse_projections`.
    fn fuse_projections(&mut self) -> Result<()> {
        Ok(())
    }
    /// See `LanguageModel::shard`.
    fn shard(&mut self, _group: &Group) -> Result<()> {
        Err(oxmx_core::Error::invalid("[tensor parallel] this model family cannot be sharded yet (the llama-style families can)"))
    }
}

impl Layer for DecoderLayer {
    fn forward(&self, x: &Array, cache: Option<&mut Box<dyn KvCache>>) -> Array {
        let h = x + &self.self_attn.forward_normed(&self.input_layernorm, x, cache);
        &h + &self.mlp.forward_normed(&self.post_attention_layernorm, &h)
    }
    fn fuse_projections(&mut self) -> Result<()> {
        self.self_attn.fuse_projections()?;
        self.mlp.fuse_projections()
    }
    fn shard(&mut self, group: &Group) -> Result<()> {
        self.self_attn.shard(group)?;
        self.mlp.shard(group)
    }
}

/// The transformer body: `model.*` in the checkpoint.
#[derive(Module, Clone, Debug)]
pub struct DecoderBody<L: Layer = DecoderLayer> {
    pub embed_tokens: Embedding,
    pub layers: Vec<L>,
    pub norm: RMSNorm,
    pub state: ModuleState,
}

/// A Llama-style causal LM (`LlamaForCausalLM` layout: `model.embed_tokens`, `model.layers.N`,
/// `model.norm`, `lm_head`), generic over the layer so the MoE and fused-projection families
/// reuse it; `lm_head` is `None` when tied.
#[derive(Module, Clone, Debug)]
pub struct DecoderLM<L: Layer = DecoderLayer> {
    pub model: DecoderBody<L>,
    pub lm_head: Option<Linear>,
    #[module(skip)]
    pub config: ModelConfig,
    pub state: ModuleState,
}

impl DecoderLM<DecoderLayer> {
    pub fn new(c: &ModelConfig, o: &DecoderOptions, tied: bool) -> Result<DecoderLM> {
        DecoderLM::with_layers(c, tied, |_| DecoderLayer::new(c, o))
    }
}

impl<L: Layer> DecoderLM<L> {
    /// The model with `layer(i)` as layer `i`.
    pub fn with_layers(c: &ModelConfig, tied: bool, layer: impl Fn(usize) -> Result<L>) -> Result<DecoderLM<L>> {
        Ok(DecoderLM {
            model: DecoderBody {
                embed_tokens: zeros_embedding(c),
                layers: (0..c.num_hidden_layers).map(layer).collect::<Result<_>>()?,
                norm: norm(c.hidden_size, c.rms_norm_eps),
                state: ModuleState::default(),
            },
            lm_head: (!tied).then(|| zeros_linear(c.hidden_size, c.vocab_size, false)),
            config: c.clone(),
            state: ModuleState::default(),
        })
    }

    /// `tokens: [B, L]` integers -> logits `[B, L, vocab]`.
    pub fn forward(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>) -> Array {
        self.logits(tokens, cache, false)
    }

    /// `forward`, or with `last_only` the logits of the last position (`[B, 1, vocab]`).
    pub fn logits(&self, tokens: &Array, cache: Option<&mut [Box<dyn KvCache>]>, last_only: bool) -> Array {
        if let Err(e) = check_forward(&self.config.model_type, tokens, &cache, self.model.layers.len()) {
            return Array::error(e);
        }
        // Through the layer, so a quantized embedding dequantizes just the rows it looks up.
        let h = oxmx_nn::UnaryModule::forward(&self.model.embed_tokens, tokens);
        let h = run_layers(&self.model.layers, h, cache, crate::lora::checkpoint::layer_forward);
        let h = if last_only { last_position(&h) } else { h };
        match &self.lm_head {
            Some(head) => normed_linear(&self.model.norm, head, &h),
            None => self.model.embed_tokens.as_linear(&rms_norm(&self.model.norm, &h)),
        }
    }
}

// ---- the model-level loop every decoder shares ----

/// `x: [B, L, ...]` -> its last position `[B, 1, ...]` (`x` itself when L is 1).
pub fn last_position(x: &Array) -> Array {
    let shape = x.shape();
    if shape.len() < 2 || shape[1] <= 1 {
        return x.clone();
    }
    let mut start = vec![0isize; shape.len()];
    start[1] = shape[1] as isize - 1;
    let stop: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    oxmx_core::ops::slice_range(x, &start, &stop)
}

/// Tokens must be `[B, L]` and the cache, when given, must have one entry per layer.
pub fn check_forward(model_type: &str, tokens: &Array, cache: &Option<&mut [Box<dyn KvCache>]>, layers: usize) -> Result<()> {
    if tokens.ndim() != 2 {
        return Err(oxmx_core::Error::invalid(format!("[{model_type}] tokens must be [B, L] integers, got shape {:?}", tokens.shape())));
    }
    match cache {
        Some(c) if c.len() != layers => {
            Err(oxmx_core::Error::invalid(format!("[{model_type}] the cache has {} layers but the model has {layers}", c.len())))
        }
        _ => Ok(()),
    }
}

/// Runs `h` through `layers`, each with its own cache entry when there is a cache.
pub fn run_layers<T>(
    layers: &[T],
    mut h: Array,
    cache: Option<&mut [Box<dyn KvCache>]>,
    f: impl Fn(&T, &Array, Option<&mut Box<dyn KvCache>>) -> Array,
) -> Array {
    match cache {
        Some(c) => {
            for (layer, lc) in layers.iter().zip(c.iter_mut()) {
                h = f(layer, &h, Some(lc));
            }
        }
        None => {
            for layer in layers {
                h = f(layer, &h, None);
            }
        }
    }
    h
}
