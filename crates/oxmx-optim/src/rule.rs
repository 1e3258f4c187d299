//! What every single-rule optimizer shares: the step count, the learning rate, per-parameter
//! slots, and the `Optimizer` plumbing around a per-parameter update rule (MLX's
//! `init_single` / `apply_single`).

use crate::learning_rate::LearningRate;
use crate::params::{check_pairs, Params};
use oxmx_core::prelude::*;
use oxmx_core::transforms::is_traced;
use std::collections::BTreeMap;

/// One parameter's state arrays by slot name (`"m"`, `"v"`, …).
pub(crate) type Slots = BTreeMap<&'static str, Array>;

/// Step count, learning rate and slots. Cloning is cheap (arrays are shared handles), which lets
/// `apply` work on a copy and commit only when every parameter succeeded.
#[derive(Clone, Debug)]
pub(crate) struct Core {
    pub step: u64,
    /// The step count as an array, when `set_state` was given one that a transform is tracing
    /// (the state input of a compiled training step). Its host value would be this trace's only,
    /// so updates then count with array ops and `state()` returns the array; `step` is unused.
    pub traced_step: Option<Array>,
    /// `None` only for Adafactor without a learning rate (it then uses a relative step size).
    pub lr: Option<LearningRate>,
    /// MLX's `state["learning_rate"]`: the value the latest update used.
    pub current_lr: f32,
    /// As `traced_step`, for a traced `learning_rate` in the loaded state (MLX keeps the learning
    /// rate in the state too, so a compiled step can take a new one each call).
    pub traced_lr: Option<Array>,
    pub slots: BTreeMap<String, Slots>,
}

impl Core {
    pub fn new(lr: Option<LearningRate>) -> Core {
        // MLX's `_maybe_schedule` evaluates a schedule at step 0 when the optimizer is built.
        let current_lr = lr.as_ref().map_or(f32::NAN, |l| l.at(0));
        Core { step: 0, traced_step: None, lr, current_lr, traced_lr: None, slots: BTreeMap::new() }
    }
}

/// Values one update step shares across parameters.
pub(crate) struct Ctx {
    /// The step count after this update's increment (Adam's bias correction uses it so), a
    /// float32 scalar as MLX computes with its step array.
    pub t: Array,
    /// The learning rate for this update (float32 scalar).
    pub lr: Array,
}

/// A per-parameter update rule plus access to its [`Core`].
pub(crate) trait Rule {
    /// The name used in error messages (MLX's class name).
    const NAME: &'static str;
    fn core(&self) -> &Core;
    fn core_mut(&mut self) -> &mut Core;
    /// Rejects hyperparameters MLX rejects (MLX does so in the constructor; builder setters can
    /// only be checked once all are set).
    fn validate(&self) -> Result<()> {
        Ok(())
    }
    /// Every slot name this optimizer can hold (for `set_state`).
    fn slot_names(&self) -> &'static [&'static str];
    /// Fresh slots for `param` (MLX's `init_single`).
    fn init_slots(&self, param: &Array) -> Slots;
    /// The updated parameter; updates `slots` in place (MLX's `apply_single`).
    fn apply_single(&self, ctx: &Ctx, grad: &Array, param: &Array, slots: &mut Slots) -> Result<Array>;
    /// The learning rate to report when none is configured (Adafactor's relative step size at
    /// `step`).
    fn implicit_lr(&self, _step: u64) -> f32 {
        f32::NAN
    }
    /// `implicit_lr` at the float32 step count `t`, with array ops (for a traced step count).
    fn implicit_lr_at(&self, _t: &Array) -> Array {
        Array::scalar(f32::NAN)
    }
}

/// `slots` for `param`, created if missing; existing slots must have the shapes fresh ones
/// would (a loaded state may not match the model).
fn slots_for<'a, R: Rule>(r: &R, core: &'a mut Core, key: &str, param: &Array) -> Result<&'a mut Slots> {
    let fresh = r.init_slots(param);
    let slots = core.slots.entry(key.to_string()).or_default();
    for (name, init) in fresh {
        match slots.get(name) {
            Some(have) if have.shape() != init.shape() => {
                return Err(Error::invalid(format!(
                    "[{}] state '{key}.{name}' has shape {:?} but parameter '{key}' needs {:?}",
                    R::NAME,
                    have.shape(),
                    init.shape()
                )))
            }
            Some(_) => {}
            None => {
                slots.insert(name, init);
            }
        }
    }
    Ok(slots)
}

pub(crate) fn init<R: Rule>(r: &mut R, params: &Params) -> Result<()> {
    r.validate()?;
    check_pairs(params, params, R::NAME)?;
    let mut core = r.core().clone();
    for (key, p) in params {
        slots_for(r, &mut core, key, p)?;
    }
    *r.core_mut() = core;
    Ok(())
}

pub(crate) fn apply<R: Rule>(r: &mut R, grads: &Params, params: &Params) -> Result<Params> {
    r.validate()?;
    check_pairs(grads, params, R::NAME)?;
    let mut core = r.core().clone();
    let ctx = match core.traced_step.clone() {
        None => {
            // MLX order: the schedule sees the step count before the increment, the update after it.
            if let Some(lr) = &core.lr {
                core.current_lr = lr.at(core.step);
            }
            core.step += 1;
            if core.lr.is_none() {
                core.current_lr = r.implicit_lr(core.step);
            }
            Ctx { t: Array::scalar(core.step as f32), lr: Array::scalar(core.current_lr) }
        }
        Some(step) => {
            if matches!(core.lr, Some(LearningRate::Scheduled(_))) {
                return Err(Error::invalid(format!(
                    "[{}] the state's 'step' is traced (a compiled or transformed function's input), but a learning-rate \
                     schedule is a host function of the step count and would be frozen at its traced value; use a \
                     constant learning rate and pass the scheduled value in the state as 'learning_rate'",
                    R::NAME
                )));
            }
            let next = &step + &Array::scalar(1u64);
            let t = next.astype(Dtype::Float32);
            core.traced_step = Some(next);
            let lr = match (&core.lr, &core.traced_lr) {
                (None, _) => r.implicit_lr_at(&t),
                (Some(_), Some(lr)) => lr.astype(Dtype::Float32),
                (Some(_), None) => Array::scalar(core.current_lr),
            };
            core.traced_lr = Some(lr.clone());
            Ctx { t, lr }
        }
    };
    let mut out = Params::new();
    for (key, g) in grads {
        let Some(p) = params.get(key) else { continue }; // checked by check_pairs
        let slots = slots_for(r, &mut core, key, p)?;
        let new = r.apply_single(&ctx, g, p, slots).map_err(|e| e.context(format!("[{}] parameter '{key}'", R::NAME)))?;
        // MLX returns whatever dtype the arithmetic gives; parameters keep theirs here so that a
        // float32 gradient does not silently promote a float16 model.
        out.insert(key.clone(), if new.dtype() == p.dtype() { new } else { new.astype(p.dtype()) });
    }
    *r.core_mut() = core;
    Ok(out)
}

pub(crate) fn state_of(core: &Core) -> Params {
    let mut s = Params::new();
    s.insert("step".into(), core.traced_step.clone().unwrap_or_else(|| Array::scalar(core.step)));
    if core.lr.is_some() {
        s.insert("learning_rate".into(), core.traced_lr.clone().unwrap_or_else(|| Array::scalar(core.current_lr)));
    }
    for (path, slots) in &core.slots {
        for (name, a) in slots {
            s.insert(format!("{path}.{name}"), a.clone());
        }
    }
    s
}

/// A one-element state entry, checked without reading its value.
fn check_scalar(who: &str, key: &str, a: &Array) -> Result<()> {
    a.check().map_err(|e| e.context(format!("[{who}] state '{key}'")))?;
    if a.size() != 1 {
        return Err(Error::invalid(format!("[{who}] state '{key}' must be a scalar, got shape {:?}", a.shape())));
    }
    Ok(())
}

/// A step count stored as any numeric scalar (MLX stores uint64).
pub(crate) fn read_step(who: &str, a: &Array) -> Result<u64> {
    check_scalar(who, "step", a)?;
    let v = a.item::<f64>().map_err(|e| e.context(format!("[{who}] state 'step'")))?;
    if !(v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(64)) {
        return Err(Error::invalid(format!("[{who}] state 'step' must be a non-negative integer, got {v}")));
    }
    Ok(v as u64)
}

/// A learning rate stored as a float scalar.
pub(crate) fn read_lr(who: &str, a: &Array) -> Result<f32> {
    check_scalar(who, "learning_rate", a)?;
    a.item::<f32>().map_err(|e| e.context(format!("[{who}] state 'learning_rate'")))
}

pub(crate) fn set_state<R: Rule>(r: &mut R, state: &Params) -> Result<()> {
    let mut core = r.core().clone();
    core.slots.clear();
    (core.traced_step, core.traced_lr) = (None, None);
    let step = state.get("step").ok_or_else(|| Error::invalid(format!("[{}] state has no 'step'", R::NAME)))?;
    if is_traced(step) {
        // Kept as an array: reading it would freeze this trace's value into a compiled step.
        check_scalar(R::NAME, "step", step)?;
        core.traced_step = Some(ops::reshape(step, &[]).astype(Dtype::Uint64));
        core.step = 0;
    } else {
        core.step = read_step(R::NAME, step)?;
    }
    if let Some(a) = state.get("learning_rate") {
        let scheduled = matches!(core.lr, Some(LearningRate::Scheduled(_)));
        if is_traced(a) {
            check_scalar(R::NAME, "learning_rate", a)?;
            if !scheduled {
                core.traced_lr = Some(ops::reshape(a, &[]).astype(Dtype::Float32));
                // As below, a loaded learning rate makes the optimizer's constant; its value is
                // the traced array, so the host number is a stand-in that is never used.
                if core.lr.is_none() {
                    core.lr = Some(LearningRate::Constant(f32::NAN));
                }
            }
        } else {
            let v = read_lr(R::NAME, a)?;
            core.current_lr = v;
            // A constant takes the saved value; a schedule stays and overrides it at the next step,
            // as in MLX (whose schedulers live outside the state).
            if !scheduled {
                core.lr = Some(LearningRate::Constant(v));
            }
        }
    }
    if core.lr.is_none() {
        core.current_lr = r.implicit_lr(core.step.max(1));
    }
    let names = r.slot_names();
    for (key, a) in state {
        if key == "step" || key == "learning_rate" {
            continue;
        }
        let slot = key.rsplit_once('.').and_then(|(path, slot)| names.iter().find(|n| **n == slot).map(|n| (path, *n)));
        let Some((path, name)) = slot else {
            return Err(Error::invalid(format!(
                "[{}] unexpected state key '{key}': expected 'step', 'learning_rate' or '<parameter>.<slot>' with slot one of {names:?}",
                R::NAME
            )));
        };
        a.check().map_err(|e| e.context(format!("[{}] state '{key}'", R::NAME)))?;
        core.slots.entry(path.to_string()).or_default().insert(name, a.clone());
    }
    *r.core_mut() = core;
    Ok(())
}

pub(crate) fn set_lr(core: &mut Core, lr: LearningRate) {
    core.current_lr = lr.at(core.step);
    core.lr = Some(lr);
}

/// MLX's `self.learning_rate.astype(gradient.dtype)`.
pub(crate) fn lr_array(lr: &Array, dtype: Dtype) -> Array {
    if lr.dtype() == dtype {
        lr.clone()
    } else {
        lr.astype(dtype)
    }
}

/// Implements `Optimizer` for a type that implements `Rule`.
macro_rules! impl_optimizer {
    ($t:ty) => {
        impl $crate::optimizer::Optimizer for $t {
            fn init(&mut self, params: &$crate::params::Params) -> oxmx_core::Result<()> {
                $crate::rule::init(self, params)
            }
            fn apply_gradients(
                &mut self,
                grads: &$crate::params::Params,
                params: &$crate::params::Params,
            ) -> oxmx_core::Result<$crate::params::Params> {
                $crate::rule::apply(self, grads, params)
            }
            fn state(&self) -> $crate::params::Params {
                $crate::rule::state_of($crate::rule::Rule::core(self))
            }
            fn set_state(&mut self, state: &$crate::params::Params) -> oxmx_core::Result<()> {
                $crate::rule::set_state(self, state)
            }
            fn step(&self) -> u64 {
                $crate::rule::Rule::core(self).step
            }
            fn learning_rate(&self) -> f32 {
                $crate::rule::Rule::core(self).current_lr
            }
            fn set_learning_rate(&mut self, lr: $crate::learning_rate::LearningRate) {
                $crate::rule::set_lr($crate::rule::Rule::core_mut(self), lr)
            }
        }
    };
}
pub(crate) use impl_optimizer;

/// A slot `init_slots` created (an error rather than a panic should that ever not hold).
pub(crate) fn slot(slots: &Slots, name: &'static str) -> Result<Array> {
    slots.get(name).cloned().ok_or_else(|| Error::runtime(format!("internal: missing state slot '{name}'")))
}
