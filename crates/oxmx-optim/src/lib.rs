//! oxmx-optim: MLX's optimizers (`mlx.optimizers`) and learning-rate schedules over named
//! parameters.
//!
//! Parameters, gradients and optimizer state are flat maps from dotted paths
//! (`"layers.0.weight"`, the checkpoint keys) to arrays ([`Params`]). An optimizer's state holds
//! `"step"`, `"learning_rate"` and one `"<parameter path>.<slot>"` entry per moment buffer, the
//! same names `tree_flatten(optimizer.state)` gives in MLX, so a saved state reads in either.
//!
//! Updates are lazy arrays: [`Optimizer::apply_gradients`] builds the update graph and evaluates
//! nothing, so a whole training step can be evaluated at once. Evaluate the state together with
//! the new parameters each step (MLX's `mx.eval(model.parameters(), optimizer.state)`):
//! `oxmx_core::eval(&[..new params.., ..opt.state() values..])`, otherwise each step's moment
//! buffers keep the previous steps' graphs alive.
//!
//! ```
//! use oxmx_core::prelude::*;
//! use oxmx_optim::{Adam, Optimizer, Params};
//!
//! let mut params = Params::new();
//! params.insert("w".into(), Array::vec(&[1.0f32, 2.0]));
//! let mut grads = Params::new();
//! grads.insert("w".into(), Array::vec(&[0.5f32, -0.5]));
//! let mut opt = Adam::new(0.1);
//! let new = opt.apply_gradients(&grads, &params).unwrap();
//! assert_eq!(opt.step(), 1);
//! let w = new["w"].to_vec::<f32>().unwrap();
//! assert!(w[0] < 1.0 && w[1] > 2.0);
//! ```

mod adadelta;
mod adafactor;
mod adagrad;
mod adam;
mod clip;
mod learning_rate;
mod lion;
mod multi;
mod muon;
mod optimizer;
mod params;
mod rmsprop;
mod rule;
pub mod schedule;
mod sgd;

pub use adadelta::AdaDelta;
pub use adafactor::Adafactor;
pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW, Adamax};
pub use clip::clip_grad_norm;
pub use learning_rate::{LearningRate, Schedule};
pub use lion::Lion;
pub use multi::{Filter, MultiOptimizer};
pub use muon::Muon;
pub use optimizer::{eval_step, Optimizer};
pub use params::Params;
pub use rmsprop::RMSprop;
pub use schedule::{cosine_decay, exponential_decay, join_schedules, linear_schedule, step_decay};
pub use sgd::SGD;
