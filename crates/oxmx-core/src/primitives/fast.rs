//! The fast family (mx.fast): fused row normalisations, rotary position embeddings and
//! scaled dot-product attention. Each is one node whose CPU kernel reads its inputs once; the
//! ordinary-op composition it stands for (`ops::fast::fallback`) gives its derivatives, its
//! batching rule and the path for dtypes the kernels do not take.
//!
//! The op layer (ops/fast.rs) validates user input, promotes dtypes, casts every float input to
//! the output dtype and broadcasts an attention mask to the full score shape (a view), so the
//! specs below only re-check the invariants the kernels rely on.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Spec;

/// How an attention node masks its scores. The mask array (if any) is the 4th input, already
/// broadcast to `[B, Hq, qL, kL]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaskKind {
    None,
    /// Lower-right aligned: query `i` sees keys `j <= i + kL - qL`.
    Causal,
    /// Boolean: `false` removes the score.
    Bool,
    /// Added to the scores (same dtype as the output).
    Additive,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FastOp {
    /// Inputs: `x`, then `weight` if `has_weight`.
    RmsNorm { eps: f32, has_weight: bool },
    /// Inputs: `x`, then `weight` and `bias` when present.
    LayerNorm { eps: f32, has_weight: bool, has_bias: bool },
    /// Inputs: `x`, `offset` (int32, shape `[]` or `[B]`), then `freqs` (f32, `[dims/2]`) when
    /// `base` is `None`.
    Rope { dims: usize, traditional: bool, base: Option<f32>, scale: f32 },
    /// Inputs: `q`, `k`, `v`, then the mask for `Bool`/`Additive`, then `sinks` (f32, `[Hq]`).
    Sdpa { scale: f32, mask: MaskKind, has_sinks: bool },
}

fn spec_err(name: &str, msg: String) -> Error {
    Error::invalid(format!("[{name}] {msg}"))
}

impl FastOp {
    pub fn name(&self) -> String {
        match self {
            FastOp::RmsNorm { .. } => "RMSNorm".into(),
            FastOp::LayerNorm { .. } => "LayerNorm".into(),
            FastOp::Rope { .. } => "RoPE".into(),
            FastOp::Sdpa { .. } => "ScaledDotProductAttention".into(),
        }
    }

    /// How many inputs the node takes.
    pub fn n_inputs(&self) -> usize {
        match *self {
            FastOp::RmsNorm { has_weight, .. } => 1 + has_weight as usize,
            FastOp::LayerNorm { has_weight, has_bias, .. } => 1 + has_weight as usize + has_bias as usize,
            FastOp::Rope { base, .. } => 2 + base.is_none() as usize,
            FastOp::Sdpa { mask, has_sinks, .. } => 3 + matches!(mask, MaskKind::Bool | MaskKind::Additive) as usize + has_sinks as usize,
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        let name = self.name();
        super::expect_inputs(&name, inputs, self.n_inputs())?;
        let (x_shape, x_dt) = &inputs[0];
        if !x_dt.is_float() {
            return Err(spec_err(&name, format!("expected a floating point input, got {x_dt}")));
        }
        match *self {
            FastOp::RmsNorm { .. } | FastOp::LayerNorm { .. } => {
                let Some(&d) = x_shape.last() else {
                    return Err(spec_err(&name, "input must have at least 1 dimension".into()));
                };
                for (s, dt) in &inputs[1..] {
                    if s.as_slice() != [d] || dt != x_dt {
                        return Err(spec_err(&name, format!("weight/bias must be {x_dt} of shape [{d}], got {dt} {s:?}")));
                    }
                }
                Ok(vec![(x_shape.clone(), *x_dt)])
            }
            FastOp::Rope { dims, base, .. } => {
                if x_shape.len() < 3 {
                    return Err(spec_err(&name, format!("input must have at least 3 dimensions, got shape {x_shape:?}")));
                }
                let d = x_shape[x_shape.len() - 1];
                if dims > d || dims % 2 != 0 {
                    return Err(spec_err(&name, format!("dims {dims} must be even and at most the last axis ({d})")));
                }
                let (os, odt) = &inputs[1];
                if *odt != Dtype::Int32 || !(os.is_empty() || os.as_slice() == [x_shape[0]]) {
                    return Err(spec_err(&name, format!("offset must be int32 of shape [] or [{}], got {odt} {os:?}", x_shape[0])));
                }
                if base.is_none() {
                    let (fs, fdt) = &inputs[2];
                    if *fdt != Dtype::Float32 || fs.as_slice() != [dims / 2] {
                        return Err(spec_err(&name, format!("freqs must be float32 of shape [{}], got {fdt} {fs:?}", dims / 2)));
                    }
                }
                Ok(vec![(x_shape.clone(), *x_dt)])
            }
            FastOp::Sdpa { mask, has_sinks, .. } => {
                let (q, k, v) = (&inputs[0].0, &inputs[1].0, &inputs[2].0);
                if q.len() != 4 || k.len() != 4 || v.len() != 4 {
                    return Err(spec_err(&name, format!("q, k and v must have 4 dimensions, got {q:?}, {k:?}, {v:?}")));
                }
                if inputs[1].1 != *x_dt || inputs[2].1 != *x_dt {
                    return Err(spec_err(&name, format!("q, k, v must share a dtype, got {x_dt}, {}, {}", inputs[1].1, inputs[2].1)));
                }
                if k[0] != q[0] || v[0] != q[0] || k[1] != v[1] || k[2] != v[2] || k[3] != q[3] {
                    return Err(spec_err(&name, format!("incompatible shapes q {q:?}, k {k:?}, v {v:?}")));
                }
                if k[1] == 0 || q[1] % k[1] != 0 {
                    return Err(spec_err(&name, format!("the {} query heads must be a multiple of the {} key/value heads", q[1], k[1])));
                }
                let mut i = 3;
                if matches!(mask, MaskKind::Bool | MaskKind::Additive) {
                    let (ms, mdt) = &inputs[3];
                    let want = [q[0], q[1], q[2], k[2]];
                    let dt_ok = if mask == MaskKind::Bool { *mdt == Dtype::Bool } else { mdt == x_dt };
                    if ms.as_slice() != want || !dt_ok {
                        return Err(spec_err(&name, format!("mask must be of shape {want:?}, got {mdt} {ms:?}")));
                    }
                    i += 1;
                }
                if has_sinks {
                    let (ss, sdt) = &inputs[i];
                    if ss.as_slice() != [q[1]] || *sdt != Dtype::Float32 {
                        return Err(spec_err(&name, format!("sinks must be float32 of shape [{}], got {sdt} {ss:?}", q[1])));
                    }
                }
                Ok(vec![(vec![q[0], q[1], q[2], v[3]], *x_dt)])
            }
        }
    }
}
