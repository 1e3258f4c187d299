//! Lion.

use crate::adam::check_betas;
use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, lr_array, slot, Core, Ctx, Rule, Slots};
use oxmx_core::prelude::*;

/// MLX's `Lion`:
///
/// ```text
/// c = b1 * m + (1 - b1) * g
/// m = b2 * m + (1 - b2) * g
/// w = (1 - lr * weight_decay) * w - lr * sign(c)
/// ```
///
/// Slot: `"m"`. Defaults: `betas = (0.9, 0.99)`, `weight_decay = 0` (applied only when > 0).
#[derive(Clone, Debug)]
pub struct Lion {
    core: Core,
    betas: (f64, f64),
    weight_decay: f64,
}

impl Lion {
    pub fn new(learning_rate: impl Into<LearningRate>) -> Lion {
        Lion { core: Core::new(Some(learning_rate.into())), betas: (0.9, 0.99), weight_decay: 0.0 }
    }
    /// Coefficients of the update direction and of the momentum (default (0.9, 0.99)).
    pub fn betas(mut self, b1: f64, b2: f64) -> Lion {
        self.betas = (b1, b2);
        self
    }
    /// Decoupled weight decay λ (default 0).
    pub fn weight_decay(mut self, weight_decay: f64) -> Lion {
        self.weight_decay = weight_decay;
        self
    }
}

impl Rule for Lion {
    const NAME: &'static str = "Lion";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        check_betas("Lion", self.betas)
    }
    fn slot_names(&self) -> &'static [&'static str] {
        &["m"]
    }
    fn init_slots(&self, param: &Array) -> Slots {
        Slots::from([("m", ops::zeros_like(param))])
    }
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array> {
        let lr = lr_array(&ctx.lr, grad.dtype());
        let (b1, b2) = self.betas;
        let m = slot(slots, "m")?;
        let c = &(&m * b1) + &(grad * (1.0 - b1));
        slots.insert("m", &(&m * b2) + &(grad * (1.0 - b2)));
        let mut p = param.clone();
        if self.weight_decay > 0.0 {
            p = &(1.0 - &(&lr * self.weight_decay)) * &p;
        }
        Ok(&p - &(&lr * &ops::sign(&c)))
    }
}

impl_optimizer!(Lion);
