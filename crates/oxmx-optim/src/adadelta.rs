//! AdaDelta.

use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, lr_array, slot, Core, Ctx, Rule, Slots};
use oxmx_core::prelude::*;

/// MLX's `AdaDelta` (with a learning rate):
///
/// ```text
/// v  = rho * v + (1 - rho) * g²
/// Δ  = sqrt(u + eps) / sqrt(v + eps) * g
/// u  = rho * u + (1 - rho) * Δ²
/// w  = w - lr * Δ
/// ```
///
/// Slots: `"v"`, `"u"`. Defaults: `rho = 0.9`, `eps = 1e-6`; `rho < 0` or `eps <= 0` is an
/// error.
#[derive(Clone, Debug)]
pub struct AdaDelta {
    core: Core,
    rho: f64,
    eps: f64,
}

impl AdaDelta {
    pub fn new(learning_rate: impl Into<LearningRate>) -> AdaDelta {
        AdaDelta { core: Core::new(Some(learning_rate.into())), rho: 0.9, eps: 1e-6 }
    }
    /// Running-average coefficient ρ (default 0.9).
    pub fn rho(mut self, rho: f64) -> AdaDelta {
        self.rho = rho;
        self
    }
    /// Added inside the square roots (default 1e-6).
    pub fn eps(mut self, eps: f64) -> AdaDelta {
        self.eps = eps;
        self
    }
}

impl Rule for AdaDelta {
    const NAME: &'static str = "AdaDelta";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        if self.rho < 0.0 || self.rho.is_nan() {
            return Err(Error::invalid(format!("[AdaDelta] rho should be >=0, {} was provided instead", self.rho)));
        }
        if self.eps <= 0.0 || self.eps.is_nan() {
            return Err(Error::invalid(format!("[AdaDelta] epsilon should be >0, {} was provided instead", self.eps)));
        }
        Ok(())
    }
    fn slot_names(&self) -> &'static [&'static str] {
        &["u", "v"]
    }
    fn init_slots(&self, param: &Array) -> Slots {
        Slots::from([("v", ops::zeros_like(param)), ("u", ops::zeros_like(param))])
    }
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array> {
        let lr = lr_array(&ctx.lr, grad.dtype());
        let (v, u) = (slot(slots, "v")?, slot(slots, "u")?);
        let v = &(&v * self.rho) + &(&ops::square(grad) * (1.0 - self.rho));
        let d = &(&ops::sqrt(&(&u + self.eps)) / &ops::sqrt(&(&v + self.eps))) * grad;
        let u = &(&u * self.rho) + &(&ops::square(&d) * (1.0 - self.rho));
        slots.insert("v", v);
        slots.insert("u", u);
        Ok(param - &(&lr * &d))
    }
}

impl_optimizer!(AdaDelta);
