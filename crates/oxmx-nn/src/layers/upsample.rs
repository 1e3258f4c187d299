//! `Upsample` as in `mlx.nn`: nearest, (multi)linear and (bi)cubic interpolation over the
//! spatial axes of a channels-last `[N, *spatial, C]` input, with MLX's index formulas
//! (output size `floor(scale * N)`; cubic uses Keys' kernel with `a = -0.75`).
//!
//! The sample positions and weights depend only on shapes, so they are computed here on the
//! host (in float32, as MLX computes them) and applied with `take` one axis at a time
//! (interpolation is separable; MLX's non-separable path for `align_corners` and cubic is the
//! same sum in another order).

use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Error, Result};

/// The interpolation of [`Upsample`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsampleMode {
    Nearest,
    Linear,
    Cubic,
}

impl std::str::FromStr for UpsampleMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<UpsampleMode> {
        match s {
            "nearest" => Ok(UpsampleMode::Nearest),
            "linear" => Ok(UpsampleMode::Linear),
            "cubic" => Ok(UpsampleMode::Cubic),
            _ => Err(Error::invalid(format!("[Upsample] Got unsupported upsampling algorithm: {s}"))),
        }
    }
}

/// Upsamples the spatial axes (`1..ndim - 1`) by `scale_factor` (one value for every axis, or
/// one per axis).
#[derive(Module, Clone, Debug)]
pub struct Upsample {
    /// One factor per spatial axis, or a single factor for all of them.
    pub scale_factor: Vec<f64>,
    #[module(skip)]
    pub mode: UpsampleMode,
    pub align_corners: bool,
    pub state: ModuleState,
}

impl Upsample {
    /// `mode`: "nearest" | "linear" | "cubic".
    pub fn new(scale_factor: &[f64], mode: &str, align_corners: bool) -> Result<Upsample> {
        let mode: UpsampleMode = mode.parse()?;
        if scale_factor.is_empty() || scale_factor.iter().any(|&s| !(s > 0.0) || !s.is_finite()) {
            return Err(Error::invalid(format!("[Upsample] scale factors must be positive, got {scale_factor:?}")));
        }
        Ok(Upsample { scale_factor: scale_factor.to_vec(), mode, align_corners, state: ModuleState::default() })
    }
}

/// One interpolation tap along an axis: source index per output position and its weight.
type Tap = (Vec<i32>, Vec<f32>);

/// MLX's `_scaled_indices` in float32.
fn scaled_indices(n: usize, scale: f64, align_corners: bool) -> Vec<f32> {
    let m = (scale * n as f64) as usize;
    if align_corners {
        let step = ((n as f64 - 1.0) / (m.max(2) - 1) as f64) as f32;
        (0..m).map(|i| i as f32 * step).collect()
    } else {
        let step = 1.0 / scale;
        let start = (((m as f64 - 1.0) * step - n as f64 + 1.0) / 2.0) as f32;
        let step = step as f32;
        (0..m).map(|i| i as f32 * step - start).collect()
    }
}

/// MLX's `_nearest_indices`.
fn nearest_taps(n: usize, scale: f64) -> Vec<Tap> {
    let m = (scale * n as f64) as usize;
    let ratio = (n as f64 / m as f64) as f32;
    let idx = (0..m)
        .map(|i| {
            let i = i as f32;
            if m > n {
                ((i + 0.5) * ratio - 0.5).round_ties_even() as i32
            } else {
                (i * ratio) as i32
            }
        })
        .collect();
    vec![(idx, vec![1.0; m])]
}

/// MLX's `_linear_indices`: positions clipped to `[0, N - 1]`, floor/ceil with weights.
fn linear_taps(n: usize, scale: f64, align_corners: bool) -> Vec<Tap> {
    let pos: Vec<f32> = scaled_indices(n, scale, align_corners).into_iter().map(|p| p.clamp(0.0, (n - 1) as f32)).collect();
    let w: Vec<f32> = pos.iter().map(|p| p - p.floor()).collect();
    vec![
        (pos.iter().map(|p| p.floor() as i32).collect(), w.iter().map(|w| 1.0 - w).collect()),
        (pos.iter().map(|p| p.ceil() as i32).collect(), w),
    ]
}

/// MLX's `_cubic_indices`: four taps at `floor(p) - 1 ..= floor(p) + 2`, weights from the
/// unclipped distances, indices clipped to the input.
fn cubic_taps(n: usize, scale: f64, align_corners: bool) -> Vec<Tap> {
    const A: f32 = -0.75;
    let pos = scaled_indices(n, scale, align_corners);
    let weight = |x: f32, near: bool| {
        if near {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else {
            (((x - 5.0) * x + 8.0) * x - 4.0) * A
        }
    };
    let clip = |v: f32| v.clamp(0.0, (n - 1) as f32) as i32;
    // MLX's order: l1, r1, l2, r2.
    let grids: [(fn(f32) -> f32, bool); 4] =
        [(|p| p.floor(), true), (|p| (p + 1.0).floor(), true), (|p| p.floor() - 1.0, false), (|p| (p + 1.0).floor() + 1.0, false)];
    grids
        .iter()
        .map(|(g, near)| {
            let idx = pos.iter().map(|&p| clip(g(p))).collect();
            let w = pos.iter().map(|&p| weight((p - g(p)).abs(), *near)).collect();
            (idx, w)
        })
        .collect()
}

impl UnaryModule for Upsample {
    fn forward(&self, x: &Array) -> Array {
        if let Err(e) = x.check() {
            return Array::error(e);
        }
        let nd = x.ndim();
        if nd < 3 {
            return Array::error(Error::invalid(format!(
                "[Upsample] The input should have at least 1 spatial dimension which means it should be at least 3D ([N, *spatial, C]) but got shape {:?}",
                x.shape()
            )));
        }
        let dims = nd - 2;
        let scales = match self.scale_factor.len() {
            1 => vec![self.scale_factor[0]; dims],
            k if k == dims => self.scale_factor.clone(),
            _ => {
                return Array::error(Error::invalid(format!(
                    "[Upsample] One scale per spatial dimension is required but scale_factor={:?} and the input shape {:?} has {dims} spatial dimensions",
                    self.scale_factor,
                    x.shape()
                )))
            }
        };
        let mut out = x.clone();
        for (i, &s) in scales.iter().enumerate() {
            let n = x.shape()[i + 1];
            let m = (s * n as f64) as usize;
            let axis = i as isize + 1;
            if m == 0 || n == 0 {
                let mut shape = out.shape().to_vec();
                shape[i + 1] = m;
                out = ops::zeros(&shape, out.dtype());
                continue;
            }
            if self.mode == UpsampleMode::Nearest && s.fract() == 0.0 {
                // Integer factors repeat each sample (MLX broadcasts).
                out = ops::repeat(&out, s as usize, Some(axis));
                continue;
            }
            let taps = match self.mode {
                UpsampleMode::Nearest => nearest_taps(n, s),
                UpsampleMode::Linear => linear_taps(n, s, self.align_corners),
                UpsampleMode::Cubic => cubic_taps(n, s, self.align_corners),
            };
            // weights broadcast as [M, 1, ..., 1] against [N, ..., M, ..., C]
            let mut wshape = vec![1usize; nd - 1 - i];
            wshape[0] = m;
            let mut acc: Option<Array> = None;
            for (idx, w) in taps {
                let sample = ops::take(&out, &Array::from_slice(&idx, &[m]), Some(axis));
                let term = if self.mode == UpsampleMode::Nearest { sample } else { &sample * &Array::from_slice(&w, &wshape) };
                acc = Some(match acc {
                    Some(a) => &a + &term,
                    None => term,
                });
            }
            out = acc.expect("at least one tap");
        }
        out
    }
}
