//! RMSprop.

use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, lr_array, slot, Core, Ctx, Rule, Slots};
use oxmx_core::prelude::*;

/// MLX's `RMSprop`:
///
/// ```text
/// v = alpha * v + (1 - alpha) * g²
/// w = w - lr * g / (sqrt(v) + eps)
/// ```
///
/// Slot: `"v"`. Defaults: `alpha = 0.99`, `eps = 1e-8`; `alpha < 0` or `eps <= 0` is an error.
#[derive(Clone, Debug)]
pub struct RMSprop {
    core: Core,
    alpha: f64,
    eps: f64,
}

impl RMSprop {
    pub fn new(learning_rate: impl Into<LearningRate>) -> RMSprop {
        RMSprop { core: Core::new(Some(learning_rate.into())), alpha: 0.99, eps: 1e-8 }
    }
    /// Smoothing constant α (default 0.99).
    pub fn alpha(mut self, alpha: f64) -> RMSprop {
        self.alpha = alpha;
        self
    }
    /// Added to the denominator (default 1e-8).
    pub fn eps(mut self, eps: f64) -> RMSprop {
        self.eps = eps;
        self
    }
}

impl Rule for RMSprop {
    const NAME: &'static str = "RMSprop";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        if self.alpha < 0.0 || self.alpha.is_nan() {
            return Err(Error::invalid(format!("[RMSprop] alpha should be >=0, {} was provided instead", self.alpha)));
        }
        if self.eps <= 0.0 || self.eps.is_nan() {
            return Err(Error::invalid(format!("[RMSprop] epsilon should be >0, {} was provided instead", self.eps)));
        }
        Ok(())
    }
    fn slot_names(&self) -> &'static [&'static str] {
        &["v"]
    }
    fn init_slots(&self, param: &Array) -> Slots {
        Slots::from([("v", ops::zeros_like(param))])
    }
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array> {
        let lr = lr_array(&ctx.lr, grad.dtype());
        let v = &(&slot(slots, "v")? * self.alpha) + &(&ops::square(grad) * (1.0 - self.alpha));
        let new = param - &(&(&lr * grad) / &(&ops::sqrt(&v) + self.eps));
        slots.insert("v", v);
        Ok(new)
    }
}

impl_optimizer!(RMSprop);
