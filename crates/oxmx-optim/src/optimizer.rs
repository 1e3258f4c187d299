//! The `Optimizer` trait and saving/loading its state.

use crate::learning_rate::LearningRate;
use crate::params::Params;
use oxmx_core::io::{load, save_safetensors_file};
use oxmx_core::prelude::*;
use oxmx_nn::Module;
use std::path::{Path, PathBuf};

/// An optimizer over named parameters, with MLX's `mlx.optimizers.Optimizer` semantics.
pub trait Optimizer {
    /// Creates the state slots (zeros shaped like each parameter) for the parameters that have
    /// none yet. Optional: [`apply_gradients`](Optimizer::apply_gradients) does it lazily; call it
    /// to see the full [`state`](Optimizer::state) before the first step.
    fn init(&mut self, params: &Params) -> Result<()>;

    /// One optimization step: returns the updated parameters for the keys of `grads` (`params`
    /// may hold more). Evaluates the learning-rate schedule at the current step count, then
    /// increments it. The results are lazy arrays of the parameters' dtypes.
    ///
    /// A gradient without a parameter, a shape mismatch or an invalid hyperparameter is an
    /// error naming the key (and shapes), and leaves the optimizer unchanged.
    fn apply_gradients(&mut self, grads: &Params, params: &Params) -> Result<Params>;

    /// The state as named arrays: `"step"` (uint64), `"learning_rate"` (float32) and
    /// `"<parameter path>.<slot>"`.
    fn state(&self) -> Params;

    /// Replaces the state with one from [`state`](Optimizer::state) (or MLX's flattened state).
    /// Unknown keys are an error; parameters without slots get them lazily at the next step.
    fn set_state(&mut self, state: &Params) -> Result<()>;

    /// The number of updates applied so far.
    fn step(&self) -> u64;

    /// The learning rate in the state: the value the latest update used (a schedule's value at
    /// step 0 before any update), as MLX's `optimizer.learning_rate`.
    fn learning_rate(&self) -> f32;

    /// Replaces the learning rate or schedule; a schedule is evaluated at the current step for
    /// [`learning_rate`](Optimizer::learning_rate).
    fn set_learning_rate(&mut self, lr: LearningRate);

    /// One step on a module, as MLX's `optimizer.update(model, grads)`: applies `grads` to the
    /// module's trainable parameters and writes the results back into it.
    fn update(&mut self, model: &mut dyn Module, grads: &Params) -> Result<()> {
        let new = self.apply_gradients(grads, &model.trainable_parameters())?;
        model.update(&new)
    }

    /// Writes the state as a safetensors file (`.safetensors` is appended when missing).
    fn save_state(&self, path: &Path) -> Result<()> {
        let arrays: Vec<(String, Array)> = self.state().into_iter().collect();
        save_safetensors_file(safetensors_path(path), &arrays, None)
    }

    /// Reads a state written by [`save_state`](Optimizer::save_state) (or by MLX's
    /// `mx.save_safetensors(path, dict(tree_flatten(opt.state)))`).
    fn load_state(&mut self, path: &Path) -> Result<()> {
        let path = safetensors_path(path);
        let arrays = load(&path)?
            .into_arrays()
            .ok_or_else(|| Error::invalid(format!("[load_state] {} does not hold named arrays", path.display())))?;
        self.set_state(&arrays.into_iter().collect())
    }
}

/// `path` with `.safetensors` appended unless present, the rule `save_safetensors_file` uses, so
/// that loading finds what saving wrote.
fn safetensors_path(path: &Path) -> PathBuf {
    if path.extension().and_then(|e| e.to_str()) == Some("safetensors") {
        path.to_path_buf()
    } else {
        let mut s = path.as_os_str().to_os_string();
        s.push(".safetensors");
        PathBuf::from(s)
    }
}

/// Evaluates a training step's results together: the module's parameters, the optimizer's
/// state and `extra` (the loss, metrics) — MLX's `mx.eval(loss, model.parameters(),
/// optimizer.state)`. Evaluating the state each step keeps the moment buffers from holding on
/// to earlier steps' graphs.
pub fn eval_step(model: &dyn Module, opt: &dyn Optimizer, extra: &[&Array]) -> Result<()> {
    let mut live: Vec<Array> = model.parameters().into_values().collect();
    live.extend(opt.state().into_values());
    live.extend(extra.iter().map(|a| (*a).clone()));
    oxmx_core::eval(&live.iter().collect::<Vec<_>>())
}
