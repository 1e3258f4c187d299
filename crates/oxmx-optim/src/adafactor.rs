//! Adafactor.

use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, slot, Core, Ctx, Rule, Slots};
use oxmx_core::prelude::*;

/// MLX's `Adafactor` (Shazeer & Stern, 2018): a factored second moment for parameters of rank
/// ≥ 2 (row and column means of the last two axes), relative step sizes and update clipping.
///
/// Slots: `"exp_avg_sq_row"` and `"exp_avg_sq_col"` (rank ≥ 2) or `"exp_avg_sq"` (rank < 2), and
/// `"exp_avg"` when `beta_1` is set. Defaults (MLX's): no learning rate (`relative_step` uses
/// `min(1e-2, 1/sqrt(step))`), `eps = (1e-30, 1e-3)`, `clip_threshold = 1`,
/// `decay_rate = -0.8`, no first moment, `weight_decay = 0`, `scale_parameter = true`,
/// `relative_step = true`, `warmup_init = false`. With `relative_step(false)` a learning rate is
/// required (an error at the first step otherwise).
#[derive(Clone, Debug)]
pub struct Adafactor {
    core: Core,
    eps: (f64, f64),
    clip_threshold: f64,
    decay_rate: f64,
    beta_1: Option<f64>,
    weight_decay: f64,
    scale_parameter: bool,
    relative_step: bool,
    warmup_init: bool,
}

impl Default for Adafactor {
    fn default() -> Adafactor {
        Adafactor::new()
    }
}

impl Adafactor {
    /// MLX's defaults, without a learning rate.
    pub fn new() -> Adafactor {
        let mut a = Adafactor {
            core: Core::new(None),
            eps: (1e-30, 1e-3),
            clip_threshold: 1.0,
            decay_rate: -0.8,
            beta_1: None,
            weight_decay: 0.0,
            scale_parameter: true,
            relative_step: true,
            warmup_init: false,
        };
        a.refresh_implicit_lr();
        a
    }
    /// A learning rate (used when `relative_step` is false; MLX's `learning_rate` argument).
    pub fn with_learning_rate(mut self, learning_rate: impl Into<LearningRate>) -> Adafactor {
        crate::rule::set_lr(&mut self.core, learning_rate.into());
        self
    }
    /// `(eps1, eps2)`: added to the squared gradient, and the floor of the parameter scale
    /// (default (1e-30, 1e-3)).
    pub fn eps(mut self, eps1: f64, eps2: f64) -> Adafactor {
        self.eps = (eps1, eps2);
        self
    }
    /// Clips the unscaled update's RMS at this value (default 1).
    pub fn clip_threshold(mut self, clip_threshold: f64) -> Adafactor {
        self.clip_threshold = clip_threshold;
        self
    }
    /// The second-moment decay is `1 - step^decay_rate` (default -0.8).
    pub fn decay_rate(mut self, decay_rate: f64) -> Adafactor {
        self.decay_rate = decay_rate;
        self
    }
    /// Keeps a first moment with this coefficient (default none).
    pub fn beta_1(mut self, beta_1: Option<f64>) -> Adafactor {
        self.beta_1 = beta_1;
        self
    }
    /// Weight decay λ (default 0).
    pub fn weight_decay(mut self, weight_decay: f64) -> Adafactor {
        self.weight_decay = weight_decay;
        self
    }
    /// Scales the step by `max(eps2, RMS(w))` (default true).
    pub fn scale_parameter(mut self, on: bool) -> Adafactor {
        self.scale_parameter = on;
        self
    }
    /// Ignores the learning rate and uses `min(1e-2, 1/sqrt(step))` (default true).
    pub fn relative_step(mut self, on: bool) -> Adafactor {
        self.relative_step = on;
        self.refresh_implicit_lr();
        self
    }
    /// With `relative_step`, uses `min(1e-6 * step, 1/sqrt(step))` (default false).
    pub fn warmup_init(mut self, on: bool) -> Adafactor {
        self.warmup_init = on;
        self.refresh_implicit_lr();
        self
    }

    /// The relative step size at `step` (float32, as MLX computes it on its step array).
    fn relative_step_size(&self, step: u64) -> f32 {
        let t = step as f32;
        let min_step = if self.warmup_init { 1e-6f32 * t } else { 1e-2f32 };
        min_step.min(1.0 / t.sqrt())
    }

    /// `relative_step_size` at the float32 step count `t`, with array ops (a traced step stays
    /// live).
    fn relative_step_size_at(&self, t: &Array) -> Array {
        let min_step = if self.warmup_init { t * 1e-6f32 } else { Array::scalar(1e-2f32) };
        ops::minimum(&min_step, &ops::divide(1.0f32, &ops::sqrt(t)))
    }

    /// Without a learning rate, `learning_rate()` reports the relative step size of the next
    /// update (of the latest one once stepping).
    fn refresh_implicit_lr(&mut self) {
        if self.core.lr.is_none() {
            self.core.current_lr = self.relative_step_size(self.core.step.max(1));
        }
    }

    /// The parameter's root mean square, in its dtype.
    fn rms(x: &Array) -> Array {
        ops::sqrt(&ops::mean(&ops::square(x), Axes::All, false))
    }
}

impl Rule for Adafactor {
    const NAME: &'static str = "Adafactor";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        if !self.relative_step && self.core.lr.is_none() {
            return Err(Error::invalid("[Adafactor] relative_step is false, so a learning_rate is required"));
        }
        Ok(())
    }
    fn slot_names(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq", "exp_avg_sq_col", "exp_avg_sq_row"]
    }
    fn init_slots(&self, param: &Array) -> Slots {
        let mut s = Slots::new();
        let shape = param.shape();
        if shape.len() >= 2 {
            let n = shape.len();
            let row = &shape[..n - 1];
            let col: Vec<usize> = shape[..n - 2].iter().chain(&shape[n - 1..]).copied().collect();
            s.insert("exp_avg_sq_row", ops::zeros(row, param.dtype()));
            s.insert("exp_avg_sq_col", ops::zeros(&col, param.dtype()));
        } else {
            s.insert("exp_avg_sq", ops::zeros_like(param));
        }
        if self.beta_1.is_some() {
            s.insert("exp_avg", ops::zeros_like(param));
        }
        s
    }
    fn implicit_lr(&self, step: u64) -> f32 {
        self.relative_step_size(step)
    }
    fn implicit_lr_at(&self, t: &Array) -> Array {
        self.relative_step_size_at(t)
    }
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array> {
        let factored = grad.ndim() >= 2;
        let param_rms = Self::rms(param);
        let dtype = param_rms.dtype();

        // MLX's `_compute_learning_rate`.
        let rel = if self.relative_step { self.relative_step_size_at(&ctx.t) } else { ctx.lr.clone() };
        let rel = rel.astype(dtype);
        let lr = if self.scale_parameter { &ops::maximum(self.eps.1, &param_rms) * &rel } else { &rel * 1.0 };

        let beta_2 = 1.0 - &ops::power(&ctx.t, Array::scalar(self.decay_rate as f32)).astype(dtype);
        let one_minus_beta_2 = 1.0 - &beta_2;
        let sq = &ops::square(grad) + self.eps.0;

        let mut update = if factored {
            let row = &(&beta_2 * &slot(slots, "exp_avg_sq_row")?) + &(&one_minus_beta_2 * &ops::mean(&sq, -1isize, false));
            let col = &(&beta_2 * &slot(slots, "exp_avg_sq_col")?) + &(&one_minus_beta_2 * &ops::mean(&sq, -2isize, false));
            // The rank-1 approximation of the second moment: row / mean(row) ⊗ col.
            let r_factor = ops::rsqrt(&(&row / &ops::mean(&row, -1isize, true)));
            let c_factor = ops::rsqrt(&col);
            let approx = &ops::expand_dims(&r_factor, &[-1]) * &ops::expand_dims(&c_factor, &[-2]);
            slots.insert("exp_avg_sq_row", row);
            slots.insert("exp_avg_sq_col", col);
            &approx * grad
        } else {
            let e = &(&beta_2 * &slot(slots, "exp_avg_sq")?) + &(&one_minus_beta_2 * &sq);
            let u = &ops::rsqrt(&e) * grad;
            slots.insert("exp_avg_sq", e);
            u
        };

        update = &update / &ops::maximum(1.0, &Self::rms(&update) / self.clip_threshold);
        update = &lr * &update;

        if let Some(b1) = self.beta_1 {
            let avg = &(&slot(slots, "exp_avg")? * b1) + &(&update * (1.0 - b1));
            slots.insert("exp_avg", avg.clone());
            update = avg;
        }

        let mut p = param.clone();
        if self.weight_decay != 0.0 {
            p = &p + &(&p * &(&lr * -self.weight_decay));
        }
        Ok(&p - &update)
    }
}

impl_optimizer!(Adafactor);
