//! Positional encodings of `mlx.nn`: `RoPE` (with `rope`, MLX's `mx.fast.rope` built from
//! ops), `SinusoidalPositionalEncoding` and `ALiBi`.

use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype, Error};

/// The position of the first row of a `rope` call: one integer, or an array (a scalar or one
/// offset per batch entry, as `mx.fast.rope` accepts).
#[derive(Clone, Copy, Debug)]
pub enum RopeOffset<'a> {
    Int(usize),
    Array(&'a Array),
}

impl From<usize> for RopeOffset<'_> {
    fn from(o: usize) -> Self {
        RopeOffset::Int(o)
    }
}

impl<'a> From<&'a Array> for RopeOffset<'a> {
    fn from(o: &'a Array) -> Self {
        RopeOffset::Array(o)
    }
}

fn invalid(msg: String) -> Array {
    Array::error(Error::invalid(msg))
}

/// Rotary positional encoding with `mx.fast.rope`'s semantics: `x: [B, *, T, D]` (at least 3-d),
/// positions `offset..offset + T` along axis -2 scaled by `scale`, the first `dims` features
/// rotated (the rest pass through) with inverse frequencies `base^(-2i / dims)` or `1 / freqs`.
/// `traditional` rotates consecutive pairs `(2i, 2i + 1)`; otherwise pairs `(i, i + dims / 2)`.
/// Exactly one of `base` and `freqs` is given. Angles are computed in float32.
pub fn rope<'a>(
    x: &Array,
    dims: usize,
    traditional: bool,
    base: Option<f64>,
    scale: f64,
    offset: impl Into<RopeOffset<'a>>,
    freqs: Option<&Array>,
) -> Array {
    if let Err(e) = x.check() {
        return Array::error(e);
    }
    let shape = x.shape().to_vec();
    let nd = shape.len();
    if nd < 3 {
        return invalid(format!("[rope] Input must have at least 3 dimensions ([B, *, T, D]) but got shape {shape:?}."));
    }
    if dims % 2 != 0 || dims == 0 {
        return invalid(format!("[rope] dims must be even and positive but got {dims}."));
    }
    let d = shape[nd - 1];
    if dims > d {
        return invalid(format!("[rope] dims ({dims}) must not exceed the feature dimension of the input, got shape {shape:?}."));
    }
    let half = dims / 2;
    let inv_freq = match (base, freqs) {
        (Some(b), None) => {
            // base^(-i / half) = exp(-i * ln(base) / half)
            ops::exp(&(&ops::arange_n(half, Some(Dtype::Float32)) * (-(b.ln()) / half as f64)))
        }
        (None, Some(f)) => {
            if f.shape() != [half] {
                return invalid(format!("[rope] freqs must have shape [{half}] (dims / 2) but got {:?}.", f.shape()));
            }
            ops::reciprocal(&f.astype(Dtype::Float32))
        }
        _ => return invalid("[rope] Exactly one of base and freqs must be given.".to_string()),
    };
    let t = shape[nd - 2];
    let steps = ops::arange_n(t, Some(Dtype::Float32));
    // positions: [T] or [B, 1, ..., T] (per-batch offsets)
    let positions = match offset.into() {
        RopeOffset::Int(o) => &steps + o as f64,
        RopeOffset::Array(o) => {
            let o = o.astype(Dtype::Float32);
            match o.ndim() {
                0 => &steps + &o,
                1 if o.shape()[0] == shape[0] => {
                    let mut s = vec![shape[0] as isize];
                    s.extend(std::iter::repeat(1).take(nd - 2));
                    &ops::reshape(&o, &s) + &steps
                }
                _ => {
                    return invalid(format!(
                        "[rope] an array offset must be a scalar or have one entry per batch ({}), got shape {:?}.",
                        shape[0],
                        o.shape()
                    ))
                }
            }
        }
    };
    let positions = &positions * scale;
    // theta: [..., T, half]
    let theta = &ops::expand_dims(&positions, &[-1]) * &inv_freq;
    let (cos, sin) = (ops::cos(&theta).astype(x.dtype()), ops::sin(&theta).astype(x.dtype()));
    let head = |lo: usize, hi: usize, step: usize| {
        let mut specs = vec![ops::SliceSpec::FULL; nd];
        specs[nd - 1] = ops::SliceSpec::new(Some(lo as isize), Some(hi as isize), step as isize);
        ops::slice(x, &specs)
    };
    let rotated = if traditional {
        let x1 = head(0, dims, 2);
        let x2 = head(1, dims, 2);
        let r1 = &(&x1 * &cos) - &(&x2 * &sin);
        let r2 = &(&x1 * &sin) + &(&x2 * &cos);
        let mut s: Vec<isize> = shape[..nd - 1].iter().map(|&v| v as isize).collect();
        s.push(dims as isize);
        ops::reshape(&ops::stack(&[r1, r2], -1), &s)
    } else {
        let x1 = head(0, half, 1);
        let x2 = head(half, dims, 1);
        let r1 = &(&x1 * &cos) - &(&x2 * &sin);
        let r2 = &(&x1 * &sin) + &(&x2 * &cos);
        ops::concatenate(&[r1, r2], -1)
    };
    if dims < d {
        ops::concatenate(&[rotated, head(dims, d, 1)], -1)
    } else {
        rotated
    }
}

/// Rotary positional encoding (`RoPE(dims, traditional=False, base=10000, scale=1)`).
#[derive(Module, Clone, Debug)]
pub struct RoPE {
    pub dims: usize,
    pub traditional: bool,
    pub base: f64,
    pub scale: f64,
    pub state: ModuleState,
}

impl RoPE {
    /// MLX's defaults: not traditional, `base = 10000`, `scale = 1`.
    pub fn new(dims: usize) -> RoPE {
        RoPE::with_options(dims, false, 10000.0, 1.0)
    }

    pub fn with_options(dims: usize, traditional: bool, base: f64, scale: f64) -> RoPE {
        RoPE { dims, traditional, base, scale, state: ModuleState::default() }
    }

    /// `x: [B, *, T, D]`; positions start at `offset`.
    pub fn forward<'a>(&self, x: &Array, offset: impl Into<RopeOffset<'a>>) -> Array {
        rope(x, self.dims, self.traditional, Some(self.base), self.scale, offset, None)
    }
}

impl UnaryModule for RoPE {
    /// Offset 0.
    fn forward(&self, x: &Array) -> Array {
        RoPE::forward(self, x, 0usize)
    }
}

/// `x[..., None] * sigmas` embedded as `[sin; cos]` (or `[cos; sin]`) times `scale`:
/// `SinusoidalPositionalEncoding(dims, min_freq=1e-4, max_freq=1, scale=sqrt(2/dims),
/// cos_first=False, full_turns=False)`. The frequencies are not parameters (MLX keeps them in a
/// private attribute).
#[derive(Module, Clone, Debug)]
pub struct SinusoidalPositionalEncoding {
    /// `[dims / 2]` frequencies, geometric from `max_freq` down to `min_freq`.
    #[module(skip)]
    pub sigmas: Array,
    pub scale: f64,
    pub cos_first: bool,
    pub state: ModuleState,
}

impl SinusoidalPositionalEncoding {
    /// MLX's defaults. Errors if `dims` is not positive and even.
    pub fn new(dims: usize) -> oxmx_core::Result<SinusoidalPositionalEncoding> {
        SinusoidalPositionalEncoding::with_options(dims, 1e-4, 1.0, None, false, false)
    }

    pub fn with_options(
        dims: usize,
        min_freq: f64,
        max_freq: f64,
        scale: Option<f64>,
        cos_first: bool,
        full_turns: bool,
    ) -> oxmx_core::Result<SinusoidalPositionalEncoding> {
        if dims == 0 || dims % 2 != 0 {
            return Err(Error::invalid(format!("[SinusoidalPositionalEncoding] dims must be positive and even but got {dims}.")));
        }
        let half = dims / 2;
        let one_zero = if dims == 2 {
            Array::from_slice(&[1.0f32], &[1])
        } else {
            1.0 - &(&ops::arange_n(half, Some(Dtype::Float32)) / (half - 1) as f64)
        };
        let (lo, hi) = (min_freq.ln(), max_freq.ln());
        let mut sigmas = ops::exp(&(&(&one_zero * (hi - lo)) + lo));
        if full_turns {
            sigmas = &sigmas * (2.0 * std::f64::consts::PI);
        }
        Ok(SinusoidalPositionalEncoding {
            sigmas,
            scale: scale.unwrap_or((2.0 / dims as f64).sqrt()),
            cos_first,
            state: ModuleState::default(),
        })
    }
}

impl UnaryModule for SinusoidalPositionalEncoding {
    /// `x: [...]` positions -> `[..., dims]`.
    fn forward(&self, x: &Array) -> Array {
        let y = &ops::expand_dims(x, &[-1]) * &self.sigmas;
        let (c, s) = (ops::cos(&y), ops::sin(&y));
        let y = if self.cos_first { ops::concatenate(&[c, s], -1) } else { ops::concatenate(&[s, c], -1) };
        if self.scale != 1.0 {
            &y * self.scale
        } else {
            y
        }
    }
}

/// Attention with Linear Biases: adds `-slope_h * |i - j|` to the attention scores of head `h`.
#[derive(Module, Clone, Debug, Default)]
pub struct ALiBi {
    pub state: ModuleState,
}

fn alibi_slopes(n: usize) -> Vec<f64> {
    let l = (n as f64).log2();
    if l.fract() == 0.0 {
        let start = 2f64.powf(-(2f64.powf(-(l - 3.0))));
        (0..n).map(|i| start * start.powi(i as i32)).collect()
    } else {
        let closest = 1usize << (l.floor() as u32);
        let mut v = alibi_slopes(closest);
        v.extend(alibi_slopes(2 * closest).into_iter().step_by(2).take(n - closest));
        v
    }
}

impl ALiBi {
    pub fn new() -> ALiBi {
        ALiBi::default()
    }

    /// `[num_heads, 1, 1]`: the geometric slopes `2^(-8/n), 2^(-16/n), ...` (interleaved for a
    /// head count that is not a power of two, as the paper and MLX).
    pub fn create_alibi_slope(num_heads: usize, dtype: Dtype) -> Array {
        if num_heads == 0 {
            return invalid("[ALiBi] num_heads must be positive".to_string());
        }
        let s: Vec<f32> = alibi_slopes(num_heads).into_iter().map(|v| v as f32).collect();
        Array::from_slice(&s, &[num_heads, 1, 1]).astype(dtype)
    }

    /// `[1, num_heads, q_sequence_length - offset, k_sequence_length]`: `-|i - j| * slope` for
    /// query positions `offset..q_sequence_length` and key positions `0..k_sequence_length`
    /// (MLX's argument meaning: `q_sequence_length` includes the offset).
    pub fn create_alibi_matrix(q_sequence_length: usize, k_sequence_length: usize, num_heads: usize, offset: usize, dtype: Dtype) -> Array {
        if offset > q_sequence_length {
            return invalid(format!("[ALiBi] offset ({offset}) exceeds q_sequence_length ({q_sequence_length})"));
        }
        let x1 = ops::arange(offset as f64, q_sequence_length as f64, 1.0, Some(Dtype::Int32));
        let x2 = ops::arange_n(k_sequence_length, Some(Dtype::Int32));
        let dist = ops::negative(&ops::abs(&(&ops::expand_dims(&x1, &[1]) - &ops::expand_dims(&x2, &[0]))));
        let dist = ops::expand_dims(&dist, &[0, 1]);
        (&dist * &ALiBi::create_alibi_slope(num_heads, dtype)).astype(dtype)
    }

    /// `attention_scores: [B, num_heads, L, S]` plus the ALiBi bias for query positions
    /// `offset..offset + L`, plus `mask` if given.
    pub fn forward(&self, attention_scores: &Array, offset: usize, mask: Option<&Array>) -> Array {
        if let Err(e) = attention_scores.check() {
            return Array::error(e);
        }
        let s = attention_scores.shape();
        if s.len() != 4 {
            return invalid(format!("[ALiBi] expected attention scores [B, num_heads, L, S], got shape {s:?}"));
        }
        let mut bias = ALiBi::create_alibi_matrix(s[2] + offset, s[3], s[1], offset, attention_scores.dtype());
        if let Some(m) = mask {
            bias = &bias + m;
        }
        attention_scores + &bias
    }
}
