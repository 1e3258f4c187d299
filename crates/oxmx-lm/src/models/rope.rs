//! Rotary position embeddings for every `rope_type` of mlx-lm's `rope_utils` and transformers'
//! `ROPE_INIT_FUNCTIONS`: default, linear, dynamic (NTK), llama3, yarn and longrope (Phi-3 "su").
//!
//! Every variant becomes one `fast::rope` call: a base (default, linear, dynamic) or an explicit
//! wavelength per feature pair (`freqs = 1 / inv_freq`: llama3, yarn, longrope). transformers
//! multiplies cos/sin by an "attention factor" (yarn, longrope); rotation is linear, so scaling
//! the rotated features before the rotation is the same thing, and that is what is done here.

use crate::config::RopeScaling;
use oxmx_core::{fast, ops, Array, Error, Result};

/// How the per-pair frequencies are obtained for a call.
#[derive(Clone, Debug)]
enum Freqs {
    /// `inv_freq[i] = base^(-2i/dims)`, positions multiplied by `scale` (linear: 1/factor).
    Base { base: f64, scale: f64 },
    /// Fixed wavelengths.
    Fixed(Array),
    /// Dynamic NTK: the base depends on the length seen so far (see [`Rope::apply`]).
    Dynamic { base: f64, factor: f64, max_position_embeddings: f64 },
    /// LongRoPE: the short set while the sequence fits in `original`, the long set beyond.
    LongRope { short: Array, long: Array, original: f64, short_mscale: f64, long_mscale: f64 },
}

/// A rotary embedding of the first `dims` features of each head (half-split pairs, as
/// transformers' `rotate_half` and MLX's `traditional = false`).
#[derive(Clone, Debug)]
pub struct Rope {
    pub dims: usize,
    /// Factor on the rotated features (yarn's attention factor); 1 for most variants.
    pub mscale: f64,
    freqs: Freqs,
}

/// `base^(2i/dims)` for `i < dims/2`: the plain wavelengths over 2π, as transformers computes
/// `inv_freq` (the exponent in float32, the power in float32) so the rounding matches.
fn plain_freqs(dims: usize, base: f64) -> Vec<f64> {
    (0..dims / 2).map(|i| (base as f32).powf((2 * i) as f32 / dims as f32) as f64).collect()
}

fn to_array(v: &[f64]) -> Array {
    Array::vec(&v.iter().map(|&x| x as f32).collect::<Vec<f32>>())
}

impl Rope {
    /// The rotary layer for `dims` rotated features (head_dim x partial_rotary_factor).
    pub fn new(dims: usize, base: f64, scaling: &RopeScaling) -> Result<Rope> {
        if dims == 0 || dims % 2 != 0 {
            return Err(Error::invalid(format!("[rope] the rotated dimension must be even and positive, got {dims}")));
        }
        let plain = |freqs| Rope { dims, mscale: 1.0, freqs };
        Ok(match scaling {
            RopeScaling::Default => plain(Freqs::Base { base, scale: 1.0 }),
            RopeScaling::Linear { factor } => plain(Freqs::Base { base, scale: 1.0 / factor }),
            RopeScaling::Dynamic { factor, max_position_embeddings } => {
                plain(Freqs::Dynamic { base, factor: *factor, max_position_embeddings: *max_position_embeddings })
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = *original_max_position_embeddings;
                let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
                let freqs: Vec<f64> = plain_freqs(dims, base)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI * f;
                        if wavelen > low_wavelen {
                            f * factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            // Smooth interpolation of the inverse frequency between the regimes.
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            1.0 / ((1.0 - smooth) / (f * factor) + smooth / f)
                        }
                    })
                    .collect();
                plain(Freqs::Fixed(to_array(&freqs)))
            }
            RopeScaling::Yarn { factor, original_max_position_embeddings, beta_fast, beta_slow, attention_factor, truncate } => {
                // The feature index at which a wavelength makes `rotations` turns over the
                // original context; pairs below `low` keep their frequency (extrapolate),
                // pairs above `high` are divided by `factor` (interpolate), a linear ramp between.
                let d = dims as f64;
                let correction = |rotations: f64| {
                    d * (original_max_position_embeddings / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
                };
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
                if low == high {
                    high += 0.001; // avoid a zero-width ramp
                }
                let freqs: Vec<f64> = plain_freqs(dims, base)
                    .into_iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let keep = 1.0 - ramp; // weight of the extrapolated (unchanged) frequency
                        1.0 / ((1.0 - keep) / (f * factor) + keep / f)
                    })
                    .collect();
                Rope { dims, mscale: *attention_factor, freqs: Freqs::Fixed(to_array(&freqs)) }
            }
            RopeScaling::LongRope { short_factor, long_factor, original_max_position_embeddings, short_mscale, long_mscale } => {
                for (name, f) in [("short_factor", short_factor), ("long_factor", long_factor)] {
                    if f.len() != dims / 2 {
                        return Err(Error::invalid(format!(
                            "[rope] longrope `{name}` has {} entries but the rotary dimension {dims} needs {}",
                            f.len(),
                            dims / 2
                        )));
                    }
                }
                let scaled = |ext: &[f64]| to_array(&plain_freqs(dims, base).iter().zip(ext).map(|(f, e)| f * e).collect::<Vec<f64>>());
                plain(Freqs::LongRope {
                    short: scaled(short_factor),
                    long: scaled(long_factor),
                    original: *original_max_position_embeddings,
                    short_mscale: *short_mscale,
                    long_mscale: *long_mscale,
                })
            }
        })
    }

    /// Rotates `x: [B, H, L, D]` for positions `offset..offset + L`.
    ///
    /// The length-dependent variants follow transformers, which picks the frequencies from the
    /// current sequence length `offset + L` on every call (earlier cached keys keep their
    /// rotation): dynamic NTK grows the base once the length passes `max_position_embeddings`
    /// (mlx-lm's `DynamicNTKScalingRoPE` computes the same base from `offset + L`); longrope uses
    /// the short factors up to `original_max_position_embeddings` and the long ones beyond
    /// (mlx-lm's `SuScaledRoPE` always uses the long factors, which differs from transformers on
    /// short prompts).
    pub fn apply(&self, x: &Array, offset: usize) -> Array {
        self.apply_rows(x, offset, None)
    }

    /// As [`Rope::apply`], with one start position per batch row when `rows` (`[B]` integers) is
    /// given: the server's batch holds sequences of different lengths. `offset` (the longest
    /// row) still picks the length-dependent frequencies.
    pub fn apply_rows(&self, x: &Array, offset: usize, rows: Option<&Array>) -> Array {
        let len = x.shape().get(2).copied().unwrap_or(0);
        let seq = (offset + len) as f64;
        let rope = |x: &Array, base: Option<f64>, scale: f64, freqs: Option<&Array>| {
            let off: fast::RopeOffset = match rows {
                Some(r) => r.into(),
                None => offset.into(),
            };
            fast::rope(x, self.dims, false, base.map(|b| b as f32), scale as f32, off, freqs)
        };
        match &self.freqs {
            Freqs::Base { base, scale } => rope(&self.scaled(x, self.mscale), Some(*base), *scale, None),
            Freqs::Fixed(f) => rope(&self.scaled(x, self.mscale), None, 1.0, Some(f)),
            Freqs::Dynamic { base, factor, max_position_embeddings: m } => {
                let d = self.dims as f64;
                let seq = seq.max(*m);
                let base = base * ((factor * seq / m) - (factor - 1.0)).powf(d / (d - 2.0));
                rope(x, Some(base), 1.0, None)
            }
            Freqs::LongRope { short, long, original, short_mscale, long_mscale } => {
                let (f, m) = if seq > *original { (long, *long_mscale) } else { (short, *short_mscale) };
                rope(&self.scaled(x, m), None, 1.0, Some(f))
            }
        }
    }

    /// `x` with its rotated features multiplied by `s` (the pass-through features unchanged).
    fn scaled(&self, x: &Array, s: f64) -> Array {
        if s == 1.0 {
            return x.clone();
        }
        let d = x.shape().last().copied().unwrap_or(0);
        if self.dims >= d {
            return x * s;
        }
        let parts = ops::split_at(x, &[self.dims as isize], -1);
        ops::concatenate(&[&parts[0] * s, parts[1].clone()], -1)
    }
}
