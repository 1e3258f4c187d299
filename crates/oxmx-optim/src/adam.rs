//! Adam, AdamW and Adamax.

use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, lr_array, slot, Core, Ctx, Rule, Slots};
use oxmx_core::prelude::*;

/// Checks MLX's constraints on `betas` (each in [0, 1)).
pub(crate) fn check_betas(who: &str, betas: (f64, f64)) -> Result<()> {
    for (i, b) in [betas.0, betas.1].into_iter().enumerate() {
        if !(0.0..1.0).contains(&b) {
            return Err(Error::invalid(format!("[{who}] beta{} should be in [0, 1), {b} was provided instead", i + 1)));
        }
    }
    Ok(())
}

/// The Adam update shared by `Adam` and `AdamW` (MLX's `Adam.apply_single`).
fn adam_single(
    betas: (f64, f64),
    eps: f64,
    bias_correction: bool,
    ctx: &Ctx,
    grad: &Array,
    param: &Array,
    slots: &mut Slots,
) -> Result<Array> {
    let dtype = grad.dtype();
    let lr = lr_array(&ctx.lr, dtype);
    let (b1, b2) = betas;
    let m = &(&slot(slots, "m")? * b1) + &(grad * (1.0 - b1));
    let v = &(&slot(slots, "v")? * b2) + &(&ops::square(grad) * (1.0 - b2));
    slots.insert("m", m.clone());
    slots.insert("v", v.clone());
    if bias_correction {
        // MLX computes `beta ** step` on its uint64 step array, i.e. in float32; with array ops
        // here too, so a traced step count (a compiled training step) stays live.
        let one_minus_pow = |b: f64| 1.0f32 - &ops::power(Array::scalar(b as f32), &ctx.t);
        let c1 = (&lr / &one_minus_pow(b1)).astype(dtype);
        let c2 = ops::rsqrt(&one_minus_pow(b2)).astype(dtype);
        let numerator = &c1 * &m;
        let denominator = &(&ops::sqrt(&v) * &c2) + eps;
        Ok(param - &(&numerator / &denominator))
    } else {
        Ok(param - &(&(&lr * &m) / &(&ops::sqrt(&v) + eps)))
    }
}

fn check_eps(who: &str, eps: f64) -> Result<()> {
    if !(eps >= 0.0) {
        return Err(Error::invalid(format!("[{who}] epsilon should be >=0, {eps} was provided instead")));
    }
    Ok(())
}

/// MLX's `Adam`:
///
/// ```text
/// m = b1 * m + (1 - b1) * g
/// v = b2 * v + (1 - b2) * g²
/// w = w - lr * m / (sqrt(v) + eps)
/// ```
///
/// Slots: `"m"`, `"v"`. Defaults: `betas = (0.9, 0.999)`, `eps = 1e-8` and, unlike PyTorch,
/// **no bias correction** (`bias_correction(true)` gives PyTorch's / the paper's form).
#[derive(Clone, Debug)]
pub struct Adam {
    core: Core,
    betas: (f64, f64),
    eps: f64,
    bias_correction: bool,
}

impl Adam {
    pub fn new(learning_rate: impl Into<LearningRate>) -> Adam {
        Adam { core: Core::new(Some(learning_rate.into())), betas: (0.9, 0.999), eps: 1e-8, bias_correction: false }
    }
    /// Running-average coefficients (default (0.9, 0.999)); each must be in [0, 1).
    pub fn betas(mut self, b1: f64, b2: f64) -> Adam {
        self.betas = (b1, b2);
        self
    }
    /// Added to the denominator (default 1e-8).
    pub fn eps(mut self, eps: f64) -> Adam {
        self.eps = eps;
        self
    }
    /// Divides the moments by `1 - beta^step` (default false).
    pub fn bias_correction(mut self, on: bool) -> Adam {
        self.bias_correction = on;
        self
    }
}

impl Rule for Adam {
    const NAME: &'static str = "Adam";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        check_betas("Adam", self.betas)?;
        check_eps("Adam", self.eps)
    }
    fn slot_names(&self) -> &'static [&'static str] {
        &["m", "v"]
    }
    fn init_slots(&self, param: &Array) -> Slots {
        Slots::from([("m", ops::zeros_like(param)), ("v", ops::zeros_like(param))])
    }
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array> {
        adam_single(self.betas, self.eps, self.bias_correction, ctx, grad, param, slots)
    }
}

impl_optimizer!(Adam);

/// MLX's `AdamW`: Adam on the decayed parameter `w * (1 - lr * weight_decay)` (decoupled weight
/// decay, as PyTorch's AdamW).
///
/// Slots: `"m"`, `"v"`. Defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`, `weight_decay = 0.01`,
/// no bias correction.
#[derive(Clone, Debug)]
pub struct AdamW {
    core: Core,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    bias_correction: bool,
}

impl AdamW {
    pub fn new(learning_rate: impl Into<LearningRate>) -> AdamW {
        AdamW { core: Core::new(Some(learning_rate.into())), betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01, bias_correction: false }
    }
    /// Running-average coefficients (default (0.9, 0.999)); each must be in [0, 1).
    pub fn betas(mut self, b1: f64, b2: f64) -> AdamW {
        self.betas = (b1, b2);
        self
    }
    /// Added to the denominator (default 1e-8).
    pub fn eps(mut self, eps: f64) -> AdamW {
        self.eps = eps;
        self
    }
    /// Decoupled weight decay λ (default 0.01).
    pub fn weight_decay(mut self, weight_decay: f64) -> AdamW {
        self.weight_decay = weight_decay;
        self
    }
    /// Divides the moments by `1 - beta^step` (default false).
    pub fn bias_correction(mut self, on: bool) -> AdamW {
        self.bias_correction = on;
        self
    }
}

impl Rule for AdamW {
    const NAME: &'static str = "AdamW";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        check_betas("AdamW", self.betas)?;
        check_eps("AdamW", self.eps)
    }
    fn slot_names(&self) -> &'static [&'static str] {
        &["m", "v"]
    }
    fn init_slots(&self, param: &Array) -> Slots {
        Slots::from([("m", ops::zeros_like(param)), ("v", ops::zeros_like(param))])
    }
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array> {
        let lr = lr_array(&ctx.lr, grad.dtype());
        let decayed = param * &(1.0 - &(&lr * self.weight_decay));
        adam_single(self.betas, self.eps, self.bias_correction, ctx, grad, &decayed, slots)
    }
}

impl_optimizer!(AdamW);

/// MLX's `Adamax` (Adam with the infinity norm, no bias correction):
///
/// ```text
/// m = b1 * m + (1 - b1) * g
/// v = max(b2 * v, |g|)
/// w = w - lr * m / (v + eps)
/// ```
///
/// Slots: `"m"`, `"v"`. Defaults: `betas = (0.9, 0.999)`, `eps = 1e-8`.
#[derive(Clone, Debug)]
pub struct Adamax {
    core: Core,
    betas: (f64, f64),
    eps: f64,
}

impl Adamax {
    pub fn new(learning_rate: impl Into<LearningRate>) -> Adamax {
        Adamax { core: Core::new(Some(learning_rate.into())), betas: (0.9, 0.999), eps: 1e-8 }
    }
    /// Coefficients of the running average and of the infinity norm (default (0.9, 0.999)).
    pub fn betas(mut self, b1: f64, b2: f64) -> Adamax {
        self.betas = (b1, b2);
        self
    }
    /// Added to the denominator (default 1e-8).
    pub fn eps(mut self, eps: f64) -> Adamax {
        self.eps = eps;
        self
    }
}

impl Rule for Adamax {
    const NAME: &'static str = "Adamax";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        check_betas("Adamax", self.betas)?;
        check_eps("Adamax", self.eps)
    }
    fn slot_names(&self) -> &'static [&'static str] {
        &["m", "v"]
    }
    fn init_slots(&self, param: &Array) -> Slots {
        Slots::from([("m", ops::zeros_like(param)), ("v", ops::zeros_like(param))])
    }
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array> {
        let lr = lr_array(&ctx.lr, grad.dtype());
        let (b1, b2) = self.betas;
        let m = &(&slot(slots, "m")? * b1) + &(grad * (1.0 - b1));
        let v = ops::maximum(&slot(slots, "v")? * b2, ops::abs(grad));
        let new = param - &(&(&lr * &m) / &(&v + self.eps));
        slots.insert("m", m);
        slots.insert("v", v);
        Ok(new)
    }
}

impl_optimizer!(Adamax);
