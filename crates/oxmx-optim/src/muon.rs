//! Muon: momentum orthogonalized by Newton–Schulz.

use crate::learning_rate::LearningRate;
use crate::rule::{impl_optimizer, lr_array, slot, Core, Ctx, Rule, Slots};
use oxmx_core::ops::linalg;
use oxmx_core::prelude::*;

/// MLX's `Muon` (Keller Jordan's Muon):
///
/// ```text
/// g = g + weight_decay * w                         (when weight_decay != 0)
/// v = momentum * v + (1 - momentum) * g
/// u = nesterov ? (1 - momentum) * g + momentum * v : v
/// u = NewtonSchulz5(u), lr *= sqrt(max(1, rows / cols))   (rank ≥ 2 only)
/// w = w - lr * u
/// ```
///
/// Parameters of rank > 2 are orthogonalized as `[shape[0], -1]` matrices; the learning-rate
/// factor uses the last two axes of the original shape, as MLX does. Rank < 2 parameters get
/// plain momentum SGD (MLX suggests another optimizer for them, e.g. through
/// [`MultiOptimizer`](crate::MultiOptimizer)).
///
/// Slot: `"v"`. Defaults: `momentum = 0.95`, `weight_decay = 0.01`, `nesterov = true`,
/// `ns_steps = 5`.
#[derive(Clone, Debug)]
pub struct Muon {
    core: Core,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    ns_steps: usize,
}

impl Muon {
    pub fn new(learning_rate: impl Into<LearningRate>) -> Muon {
        Muon { core: Core::new(Some(learning_rate.into())), momentum: 0.95, weight_decay: 0.01, nesterov: true, ns_steps: 5 }
    }
    /// Momentum strength (default 0.95).
    pub fn momentum(mut self, momentum: f64) -> Muon {
        self.momentum = momentum;
        self
    }
    /// L2 penalty added to the gradient (default 0.01).
    pub fn weight_decay(mut self, weight_decay: f64) -> Muon {
        self.weight_decay = weight_decay;
        self
    }
    /// Nesterov momentum (default true).
    pub fn nesterov(mut self, nesterov: bool) -> Muon {
        self.nesterov = nesterov;
        self
    }
    /// Newton–Schulz iterations (default 5).
    pub fn ns_steps(mut self, ns_steps: usize) -> Muon {
        self.ns_steps = ns_steps;
        self
    }
}

/// MLX's `_zeropower_via_newtonschulz5`: the quintic Newton–Schulz iteration with coefficients
/// (3.4445, -4.7750, 2.0315), which pushes the singular values of the normalised matrix towards
/// (roughly) 1 without an SVD. Works on the wide orientation so `X Xᵀ` is the smaller Gram
/// matrix.
fn newton_schulz5(x: &Array, steps: usize) -> Result<Array> {
    // A failed reshape yields a 0-d error array: surface it rather than index its shape.
    x.check()?;
    let &[rows, cols] = x.shape() else {
        return Err(Error::invalid(format!("[Muon] Newton-Schulz needs a 2-D array, got shape {:?}", x.shape())));
    };
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    let transpose = rows > cols;
    let mut x = if transpose { ops::transpose(x, &[1, 0]) } else { x.clone() };
    x = &x / &(&linalg::norm(&x, None, Axes::All, true) + 1e-7);
    for _ in 0..steps {
        let gram = ops::matmul(&x, &ops::transpose(&x, &[1, 0]));
        let poly = ops::addmm(&(&gram * b), &gram, &gram, c, 1.0);
        x = ops::addmm(&(&x * a), &poly, &x, 1.0, 1.0);
    }
    Ok(if transpose { ops::transpose(&x, &[1, 0]) } else { x })
}

impl Rule for Muon {
    const NAME: &'static str = "Muon";
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
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
        let mu = self.momentum;
        let v = &(&slot(slots, "v")? * mu) + &(&g * (1.0 - mu));
        let mut update = if self.nesterov { &(&g * (1.0 - mu)) + &(&v * mu) } else { v.clone() };
        slots.insert("v", v);

        let mut lr = lr_array(&ctx.lr, g.dtype());
        let shape = update.shape().to_vec();
        if shape.len() >= 2 {
            let flat = shape.len() > 2;
            if flat {
                update = ops::reshape(&update, &[shape[0] as isize, -1]);
            }
            update = newton_schulz5(&update, self.ns_steps)?;
            if flat {
                update = ops::reshape_to(&update, &shape);
            }
            let (rows, cols) = (shape[shape.len() - 2] as f64, shape[shape.len() - 1] as f64);
            lr = &lr * (rows / cols).max(1.0).sqrt();
        }
        Ok(param - &(&lr * &update))
    }
}

impl_optimizer!(Muon);
