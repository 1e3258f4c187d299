//! Adagrad.

use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, lr_array, slot, Core, Ctx, Rule, Slots};
use oxmx_core::prelude::*;

/// MLX's `Adagrad` (the original paper's form):
///
/// ```text
/// v = v + g²
/// w = w - lr * g / (sqrt(v) + eps)
/// ```
///
/// Slot: `"v"` (MLX's name; PyTorch calls it `sum`). Default `eps = 1e-8`; `eps <= 0` is an
/// error.
#[derive(Clone, Debug)]
pub struct Adagrad {
    core: Core,
    eps: f64,
}

impl Adagrad {
    pub fn new(learning_rate: impl Into<LearningRate>) -> Adagrad {
        Adagrad { core: Core::new(Some(learning_rate.into())), eps: 1e-8 }
    }
    /// Added to the denominator (default 1e-8).
    pub fn eps(mut self, eps: f64) -> Adagrad {
        self.eps = eps;
        self
    }
}

impl Rule for Adagrad {
    const NAME: &'static str = "Adagrad";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        if self.eps <= 0.0 || self.eps.is_nan() {
            return Err(Error::invalid(format!("[Adagrad] epsilon should be >0, {} was provided instead", self.eps)));
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
        let v = &slot(slots, "v")? + &ops::square(grad);
        let new = param - &(&(&lr * grad) / &(&ops::sqrt(&v) + self.eps));
        slots.insert("v", v);
        Ok(new)
    }
}

impl_optimizer!(Adagrad);
