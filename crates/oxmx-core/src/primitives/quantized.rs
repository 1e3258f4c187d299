//! The quantized family: MLX's packed low-bit weights. A quantized matrix `[.., N, K]` is stored
//! as `uint32` `[.., N, K * bits / 32]` holding each row as a little-endian bit stream (element
//! `j` of a row at bit `j * bits`, so 3/5/6-bit rows are byte packs of 8/8/4 elements), with one
//! scale (and, for `affine`, one bias) per `group_size` consecutive elements of a row:
//! `w ≈ scale * q + bias`. The float modes store E2M1 (`mxfp4`, `nvfp4`) or E4M3 (`mxfp8`)
//! codes and a `uint8` scale per group: E8M0 (a power of two) for the `mx` modes, E4M3 for
//! `nvfp4`.
//!
//! The op layer validates and casts; these nodes re-check shapes so shapeless re-inference is
//! safe.

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Spec;

/// The quantization format (MLX's `mode=` string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantMode {
    Affine,
    Mxfp4,
    Mxfp8,
    Nvfp4,
}

impl QuantMode {
    pub fn parse(mode: &str, tag: &str) -> Result<QuantMode> {
        Ok(match mode {
            "affine" => QuantMode::Affine,
            "mxfp4" => QuantMode::Mxfp4,
            "mxfp8" => QuantMode::Mxfp8,
            "nvfp4" => QuantMode::Nvfp4,
            _ => {
                return Err(Error::invalid(format!(
                    "[{tag}] Invalid quantization mode '{mode}'; expected 'affine', 'mxfp4', 'mxfp8' or 'nvfp4'."
                )))
            }
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            QuantMode::Affine => "affine",
            QuantMode::Mxfp4 => "mxfp4",
            QuantMode::Mxfp8 => "mxfp8",
            QuantMode::Nvfp4 => "nvfp4",
        }
    }

    /// MLX's defaults: `(group_size, bits)`.
    pub fn defaults(&self) -> (usize, usize) {
        match self {
            QuantMode::Affine => (64, 4),
            QuantMode::Mxfp4 => (32, 4),
            QuantMode::Mxfp8 => (32, 8),
            QuantMode::Nvfp4 => (16, 4),
        }
    }

    /// Checks the (group size, bits) pair for this mode.
    pub fn check(&self, group_size: usize, bits: usize, tag: &str) -> Result<()> {
        match self {
            QuantMode::Affine => {
                if ![32, 64, 128].contains(&group_size) {
                    return Err(Error::invalid(format!(
                        "[{tag}] The requested group size {group_size} is not supported. The supported group sizes are 32, 64, and 128."
                    )));
                }
                if ![2, 3, 4, 5, 6, 8].contains(&bits) {
                    return Err(Error::invalid(format!(
                        "[{tag}] The requested number of bits {bits} is not supported. The supported bits are 2, 3, 4, 5, 6 and 8."
                    )));
                }
            }
            _ => {
                let (g, b) = self.defaults();
                if group_size != g {
                    return Err(Error::invalid(format!(
                        "[{tag}] {} quantization requires group size {g} but got {group_size}.",
                        self.as_str()
                    )));
                }
                if bits != b {
                    return Err(Error::invalid(format!("[{tag}] {} quantization requires bits to be {b} but got {bits}.", self.as_str())));
                }
            }
        }
        Ok(())
    }

    pub fn has_biases(&self) -> bool {
        *self == QuantMode::Affine
    }
}

/// Parameters shared by every quantized primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantParams {
    pub group_size: usize,
    pub bits: usize,
    pub mode: QuantMode,
}

#[derive(Clone, Debug, PartialEq)]
pub enum QuantizedOp {
    /// `[w]` (float, `[.., K]`) -> `[wq (uint32), scales, biases?]`.
    Quantize(QuantParams),
    /// `[wq, scales, biases?]` -> the float matrix. Affine computes in the scales' dtype (scales
    /// and biases share it) and returns it; the float modes return `dtype`.
    Dequantize { p: QuantParams, dtype: Dtype },
    /// `[x, wq, scales, biases?]` -> `x @ deq(w).T` (`transpose`) or `x @ deq(w)`. `wq` is
    /// either 2-d (x has any leading axes) or has the same batch axes as `x`.
    Matmul { p: QuantParams, transpose: bool },
    /// `[x, wq, scales, biases?, lhs_indices, rhs_indices]` with uint32 indices of one shape:
    /// `out[i] = x[lhs[i]] @ deq(w[rhs[i]])(.T)`; `x` is `[Bx, M, K]`, `wq` `[Bw, ..]`.
    GatherMatmul { p: QuantParams, transpose: bool },
    /// `[x, norm_weight, wq, scales, biases]` (affine) -> `rms_norm(x, norm_weight, eps) @
    /// deq(w).T`: a pre-norm layer's normalisation and its first product as one node (a
    /// decoding step's GPU kernel normalises the row it already holds in registers; elsewhere
    /// the two kernels run back to back).
    NormMatmul { p: QuantParams, eps: f32 },
    /// `[gate, up, wq, scales, biases]` (affine) -> `(silu(gate) * up) @ deq(w).T`, the
    /// activation computed in float32 and rounded once (as `compile`'s fused SwiGLU): an MLP's
    /// activation and its down projection as one node (a decoding step's GPU kernel computes
    /// the activation of the row it loads anyway).
    SwigluMatmul { p: QuantParams },
}

impl QuantizedOp {
    pub fn name(&self) -> String {
        match self {
            QuantizedOp::Quantize(_) => "Quantize".into(),
            QuantizedOp::Dequantize { .. } => "Dequantize".into(),
            QuantizedOp::Matmul { .. } => "QuantizedMatmul".into(),
            QuantizedOp::GatherMatmul { .. } => "GatherQMM".into(),
            QuantizedOp::NormMatmul { .. } => "RMSNormQuantizedMatmul".into(),
            QuantizedOp::SwigluMatmul { .. } => "SwiGLUQuantizedMatmul".into(),
        }
    }

    pub fn params(&self) -> QuantParams {
        match self {
            QuantizedOp::Quantize(p) | QuantizedOp::Dequantize { p, .. } => *p,
            QuantizedOp::Matmul { p, .. } | QuantizedOp::GatherMatmul { p, .. } | QuantizedOp::NormMatmul { p, .. } => *p,
            QuantizedOp::SwigluMatmul { p } => *p,
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        let p = self.params();
        let nb = usize::from(p.mode.has_biases());
        match self {
            QuantizedOp::Quantize(p) => {
                super::expect_inputs("quantize", inputs, 1)?;
                let (s, dt) = &inputs[0];
                if !dt.is_float() || *dt == Dtype::Float64 {
                    return Err(Error::invalid(format!("[quantize] Only float32, float16 and bfloat16 can be quantized, got {dt}.")));
                }
                if s.len() < 2 || s[s.len() - 1] % p.group_size != 0 {
                    return Err(Error::invalid(format!(
                        "[quantize] expected at least 2 axes with the last divisible by group size {}, got shape {s:?}",
                        p.group_size
                    )));
                }
                let k = s[s.len() - 1];
                let mut wq = s.clone();
                *wq.last_mut().unwrap() = k * p.bits / 32;
                let mut ss = s.clone();
                *ss.last_mut().unwrap() = k / p.group_size;
                if p.mode.has_biases() {
                    Ok(vec![(wq, Dtype::Uint32), (ss.clone(), *dt), (ss, *dt)])
                } else {
                    Ok(vec![(wq, Dtype::Uint32), (ss, Dtype::Uint8)])
                }
            }
            QuantizedOp::Dequantize { p, dtype } => {
                super::expect_inputs("dequantize", inputs, 2 + nb)?;
                let k = check_packed("dequantize", p, &inputs[0], &inputs[1], inputs.get(2).filter(|_| nb == 1))?;
                let mut s = inputs[0].0.clone();
                *s.last_mut().unwrap() = k;
                let dt = if p.mode.has_biases() { inputs[1].1 } else { *dtype };
                Ok(vec![(s, dt)])
            }
            QuantizedOp::Matmul { p, transpose } => {
                super::expect_inputs("quantized_matmul", inputs, 3 + nb)?;
                let (xs, xd) = &inputs[0];
                let k = check_packed("quantized_matmul", p, &inputs[1], &inputs[2], inputs.get(3).filter(|_| nb == 1))?;
                let ws = &inputs[1].0;
                if !xd.is_float() || *xd == Dtype::Float64 {
                    return Err(Error::invalid(format!("[quantized_matmul] x must be float32, float16 or bfloat16, got {xd}.")));
                }
                if p.mode.has_biases() && inputs[2].1 != *xd {
                    return Err(Error::invalid(format!("[quantized_matmul] scales must have x's dtype {xd}, got {}.", inputs[2].1)));
                }
                let (inner, outer) = if *transpose { (k, ws[ws.len() - 2]) } else { (ws[ws.len() - 2], k) };
                if xs.is_empty() || xs[xs.len() - 1] != inner {
                    return Err(Error::invalid(format!(
                        "[quantized_matmul] Last dimension of x with shape {xs:?} does not match the expanded quantized matrix ({inner}, {outer}) computed from shape {ws:?} with group_size={}, bits={} and transpose={transpose}",
                        p.group_size, p.bits
                    )));
                }
                if ws.len() > 2 && (xs.len() != ws.len() || xs[..xs.len() - 2] != ws[..ws.len() - 2]) {
                    return Err(Error::invalid(format!("[quantized_matmul] x {xs:?} and w {ws:?} must share batch axes")));
                }
                let mut out = xs.clone();
                *out.last_mut().unwrap() = outer;
                Ok(vec![(out, *xd)])
            }
            QuantizedOp::NormMatmul { p, .. } => {
                let name = "rms_norm_quantized_matmul";
                super::expect_inputs(name, inputs, 5)?;
                if !p.mode.has_biases() {
                    return Err(Error::invalid(format!("[{name}] only the affine mode (scales and biases) is fused, got {:?}", p.mode)));
                }
                let (xs, xd) = &inputs[0];
                let d = xs.last().copied().unwrap_or(0);
                if inputs[1].0.as_slice() != [d] || inputs[1].1 != *xd {
                    return Err(Error::invalid(format!(
                        "[{name}] the norm weight must be {xd} of shape [{d}], got {} {:?}",
                        inputs[1].1, inputs[1].0
                    )));
                }
                let mm = QuantizedOp::Matmul { p: *p, transpose: true };
                mm.output_specs(&[inputs[0].clone(), inputs[2].clone(), inputs[3].clone(), inputs[4].clone()])
            }
            QuantizedOp::SwigluMatmul { p } => {
                let name = "swiglu_quantized_matmul";
                super::expect_inputs(name, inputs, 5)?;
                if !p.mode.has_biases() {
                    return Err(Error::invalid(format!("[{name}] only the affine mode (scales and biases) is fused, got {:?}", p.mode)));
                }
                if inputs[0] != inputs[1] {
                    return Err(Error::invalid(format!(
                        "[{name}] gate and up must have one shape and dtype, got {} {:?} and {} {:?}",
                        inputs[0].1, inputs[0].0, inputs[1].1, inputs[1].0
                    )));
                }
                let mm = QuantizedOp::Matmul { p: *p, transpose: true };
                mm.output_specs(&[inputs[0].clone(), inputs[2].clone(), inputs[3].clone(), inputs[4].clone()])
            }
            QuantizedOp::GatherMatmul { p, transpose } => {
                super::expect_inputs("gather_qmm", inputs, 5 + nb)?;
                let (xs, xd) = &inputs[0];
                let k = check_packed("gather_qmm", p, &inputs[1], &inputs[2], inputs.get(3).filter(|_| nb == 1))?;
                let ws = &inputs[1].0;
                let (li, ri) = (&inputs[3 + nb], &inputs[4 + nb]);
                if li.0 != ri.0 || li.1 != Dtype::Uint32 || ri.1 != Dtype::Uint32 {
                    return Err(Error::invalid("[gather_qmm] internal: indices must be uint32 of one shape"));
                }
                if xs.len() != 3 || ws.len() != 3 {
                    return Err(Error::invalid(format!("[gather_qmm] internal: expected x [B, M, K] and w [B, N, K'], got {xs:?} {ws:?}")));
                }
                let (inner, outer) = if *transpose { (k, ws[1]) } else { (ws[1], k) };
                if xs[2] != inner {
                    return Err(Error::invalid(format!(
                        "[gather_qmm] Last dimension of x with shape {xs:?} does not match the expanded quantized matrix ({inner}, {outer})"
                    )));
                }
                let mut out = li.0.clone();
                out.extend_from_slice(&[xs[1], outer]);
                Ok(vec![(out, *xd)])
            }
        }
    }
}

/// Checks packed weights against their scales (and biases); returns the unpacked last axis.
pub fn check_packed(tag: &str, p: &QuantParams, w: &Spec, scales: &Spec, biases: Option<&Spec>) -> Result<usize> {
    let (ws, wd) = w;
    let (ss, sd) = scales;
    if *wd != Dtype::Uint32 {
        return Err(Error::invalid(format!("[{tag}] The weight matrix should be uint32 but received {wd}")));
    }
    if ws.len() < 2 {
        return Err(Error::invalid(format!("[{tag}] The quantized matrix must have at least 2 axes, got shape {ws:?}")));
    }
    if p.mode.has_biases() {
        if !sd.is_float() || *sd == Dtype::Float64 {
            return Err(Error::invalid(format!("[{tag}] scales must be float32, float16 or bfloat16, got {sd}")));
        }
        match biases {
            Some((bs, bd)) if bs == ss && bd == sd => {}
            Some((bs, bd)) => {
                return Err(Error::invalid(format!(
                    "[{tag}] Scales and biases should have the same shape and dtype. Received scales {ss:?} {sd} and biases {bs:?} {bd}"
                )))
            }
            None => return Err(Error::invalid(format!("[{tag}] Biases must be provided for affine quantization."))),
        }
    } else if *sd != Dtype::Uint8 {
        return Err(Error::invalid(format!("[{tag}] Scale type must be uint8 but received type {sd}.")));
    }
    let n = ws.len();
    if ss.len() != n || ss[..n - 1] != ws[..n - 1] {
        return Err(Error::invalid(format!("[{tag}] Shape of scales {ss:?} does not match the matrix {ws:?}")));
    }
    let k = ws[n - 1] * 32 / p.bits;
    if ws[n - 1] * 32 % p.bits != 0 || k != ss[n - 1] * p.group_size {
        return Err(Error::invalid(format!(
            "[{tag}] The shapes of the weight and scales are incompatible based on bits and group_size. w.shape() == {ws:?} and scales.shape() == {ss:?} with group_size={} and bits={}",
            p.group_size, p.bits
        )));
    }
    Ok(k)
}
