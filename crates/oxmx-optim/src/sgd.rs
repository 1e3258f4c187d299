//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and L2 weight decay.

use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, lr_array, slot, Core, Ctx, Rule, Slots};
use oxmx_core::prelude::*;

/// MLX's `SGD`:
///
/// ```text
/// g = g + weight_decay * w                      (when weight_decay != 0)
/// v = momentum * v + (1 - dampening) * g
/// w = w - lr * (nesterov ? g + momentum * v : v)   (w - lr * g when momentum <= 0)
/// ```
///
/// Slot: `"v"`. Nesterov momentum needs `momentum > 0` and `dampening == 0` (an error at the
/// first step otherwise).
#[derive(Clone, Debug)]
pub struct SGD {
    core: Core,
    momentum: f64,
    weight_decay: f64,
    dampening: f64,
    nesterov: bool,
}

impl SGD {
    /// Plain SGD: momentum, weight decay and dampening 0, no Nesterov.
    pub fn new(learning_rate: impl Into<LearningRate>) -> SGD {
        SGD { core: Core::new(Some(learning_rate.into())), momentum: 0.0, weight_decay: 0.0, dampening: 0.0, nesterov: false }
    }
    /// Momentum strength μ (default 0).
    pub fn momentum(mut self, momentum: f64) -> SGD {
        self.momentum = momentum;
        self
    }
    /// L2 penalty added to the gradient (default 0).
    pub fn weight_decay(mut self, weight_decay: f64) -> SGD {
        self.weight_decay = weight_decay;
        self
    }
    /// Dampening τ of the momentum (default 0).
    pub fn dampening(mut self, dampening: f64) -> SGD {
        self.dampening = dampening;
        self
    }
    /// Nesterov momentum (default false).
    pub fn nesterov(mut self, nesterov: bool) -> SGD {
        self.nesterov = nesterov;
        self
    }
}

impl Rule for SGD {
    const NAME: &'static str = "SGD";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn validate(&self) -> Result<()> {
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid("[SGD] Nesterov momentum requires a momentum and zero dampening."));
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
        let mut g = grad.clone();
        if self.weight_decay != 0.0 {
            g = &g + &(param * self.weight_decay);
        }
        let lr = lr_array(&ctx.lr, g.dtype());
        if self.momentum <= 0.0 {
            return Ok(param - &(&lr * &g));
        }
        let mut v = &slot(slots, "v")? * self.momentum;
        // MLX skips the (1 - τ) factor when τ is 0, so the plain case stays exact.
        v = if self.dampening > 0.0 { &v + &(&g * (1.0 - self.dampening)) } else { &v + &g };
        let update = if self.nesterov { &g + &(&v * self.momentum) } else { v.clone() };
        slots.insert("v", v);
        Ok(param - &(&lr * &update))
    }
}

impl_optimizer!(SGD);
