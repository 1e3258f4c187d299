//! Different optimizers for different parameters.

use crate::learning_rate::LearningRate;
use crate::optimizer::Optimizer;
use crate::params::{check_pairs, Params};
use oxmx_core::prelude::*;

/// A predicate on `(parameter path, array)` choosing the parameters of one optimizer.
pub type Filter = Box<dyn Fn(&str, &Array) -> bool + Send + Sync>;

/// MLX's `MultiOptimizer`: each gradient goes to the first optimizer whose filter accepts it;
/// the last optimizer, which has no filter, takes the rest.
///
/// As in MLX, filters see the *gradient* (same path and shape as the parameter) in
/// [`apply_gradients`](Optimizer::apply_gradients) and the parameter in
/// [`init`](Optimizer::init), and every optimizer steps at every update, even when no gradient
/// went to it. The state is `"states.<i>.<key>"` for optimizer `i`, as
/// `tree_flatten(multi.state)` names it in MLX.
pub struct MultiOptimizer {
    optimizers: Vec<Box<dyn Optimizer + Send>>,
    filters: Vec<Filter>,
}

impl MultiOptimizer {
    /// `filters` must have one entry fewer than `optimizers`.
    pub fn new(optimizers: Vec<Box<dyn Optimizer + Send>>, filters: Vec<Filter>) -> Result<MultiOptimizer> {
        if optimizers.is_empty() {
            return Err(Error::invalid("[MultiOptimizer] needs at least one optimizer"));
        }
        if filters.len() != optimizers.len() - 1 {
            return Err(Error::invalid(format!("[MultiOptimizer] Given {} filters but {} needed.", filters.len(), optimizers.len() - 1)));
        }
        Ok(MultiOptimizer { optimizers, filters })
    }

    /// The wrapped optimizers, in order.
    pub fn optimizers(&self) -> &[Box<dyn Optimizer + Send>] {
        &self.optimizers
    }

    /// Which optimizer takes `(path, array)`.
    fn route(&self, path: &str, a: &Array) -> usize {
        self.filters.iter().position(|f| f(path, a)).unwrap_or(self.optimizers.len() - 1)
    }

    fn split(&self, tree: &Params) -> Vec<Params> {
        let mut parts = vec![Params::new(); self.optimizers.len()];
        for (k, a) in tree {
            parts[self.route(k, a)].insert(k.clone(), a.clone());
        }
        parts
    }

    /// Puts back states saved before a failed step, so an error leaves no optimizer advanced.
    fn restore(&mut self, saved: Vec<Params>) {
        for (o, s) in self.optimizers.iter_mut().zip(saved) {
            // The state came from the optimizer itself, so it reads back.
            let _ = o.set_state(&s);
        }
    }
}

impl Optimizer for MultiOptimizer {
    fn init(&mut self, params: &Params) -> Result<()> {
        let parts = self.split(params);
        let saved: Vec<Params> = self.optimizers.iter().map(|o| o.state()).collect();
        let result = self.optimizers.iter_mut().zip(&parts).try_for_each(|(o, p)| o.init(p));
        if result.is_err() {
            self.restore(saved);
        }
        result
    }

    fn apply_gradients(&mut self, grads: &Params, params: &Params) -> Result<Params> {
        check_pairs(grads, params, "MultiOptimizer")?;
        let parts = self.split(grads);
        let saved: Vec<Params> = self.optimizers.iter().map(|o| o.state()).collect();
        let mut out = Params::new();
        let result = self.optimizers.iter_mut().zip(&parts).try_for_each(|(o, g)| {
            out.extend(o.apply_gradients(g, params)?);
            Ok::<(), Error>(())
        });
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                self.restore(saved);
                Err(e)
            }
        }
    }

    fn state(&self) -> Params {
        let mut s = Params::new();
        for (i, o) in self.optimizers.iter().enumerate() {
            for (k, a) in o.state() {
                s.insert(format!("states.{i}.{k}"), a);
            }
        }
        s
    }

    fn set_state(&mut self, state: &Params) -> Result<()> {
        let n = self.optimizers.len();
        let mut parts = vec![Params::new(); n];
        for (key, a) in state {
            let idx = key
                .strip_prefix("states.")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(i, k)| i.parse::<usize>().ok().filter(|i| *i < n).map(|i| (i, k)));
            let Some((i, k)) = idx else {
                return Err(Error::invalid(format!(
                    "[MultiOptimizer] unexpected state key '{key}': expected 'states.<i>.<key>' with i < {n}"
                )));
            };
            parts[i].insert(k.to_string(), a.clone());
        }
        if let Some(i) = parts.iter().position(|p| p.is_empty()) {
            return Err(Error::invalid(format!("[MultiOptimizer] Invalid state provided: no state for optimizer {i} of {n}")));
        }
        let saved: Vec<Params> = self.optimizers.iter().map(|o| o.state()).collect();
        let result = self
            .optimizers
            .iter_mut()
            .zip(&parts)
            .enumerate()
            .try_for_each(|(i, (o, p))| o.set_state(p).map_err(|e| e.context(format!("[MultiOptimizer] states.{i}"))));
        if result.is_err() {
            self.restore(saved);
        }
        result
    }

    /// The first optimizer's step count (all step together).
    fn step(&self) -> u64 {
        self.optimizers[0].step()
    }

    /// The first optimizer's learning rate, as MLX.
    fn learning_rate(&self) -> f32 {
        self.optimizers[0].learning_rate()
    }

    /// Sets the learning rate of every optimizer, as MLX.
    fn set_learning_rate(&mut self, lr: LearningRate) {
        for o in &mut self.optimizers {
            o.set_learning_rate(lr.clone());
        }
    }
}
