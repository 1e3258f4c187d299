//! oxmx: an MLX-style machine-learning framework in Rust. This facade re-exports the core, `nn`
//! and `optim`.
//!
//! ```
//! use oxmx::prelude::*;
//! let x = ops::arange(0.0, 4.0, 1.0, Some(Dtype::Float32));
//! let y = ops::sum(&(&x * &x), None, false);
//! assert_eq!(y.item::<f32>().unwrap(), 14.0);
//! ```
//!
//! The README's quick start:
//!
//! ```
//! use oxmx::prelude::*;
//! let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
//! let b = ops::exp(&(&a * 0.5));
//! let s = ops::sum(&b, -1isize, false);
//! assert_eq!(format!("{s}"), "array([4.367, 11.8707], dtype=float32)");
//! let bad = ops::add(&a, &Array::vec(&[1.0f32, 2.0, 3.0]));
//! assert!(bad.check().is_err());
//! ```
//!
//! The README's transforms example:
//!
//! ```
//! use oxmx::prelude::*;
//! use oxmx::{ops, transforms::{grad, vmap}};
//! let d2 = grad(grad(|x: Array| ops::sin(&x)));           // -sin
//! let per_example = vmap(grad(|x: Array| ops::sum(&ops::square(&x), None, false)), &[Some(0)], &[0]);
//! let g = per_example(Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]));  // 2x, row by row
//! assert_eq!(g.to_vec::<f32>().unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
//! assert!((d2(Array::scalar(0.5f32)).item::<f32>().unwrap() + 0.5f32.sin()).abs() < 1e-6);
//! ```

//! The README's nn example, whole: a derived module, its gradient, one optimizer step.
//!
//! ```
//! use oxmx::nn::{self, losses, Linear, Module, UnaryModule};
//! use oxmx::optim::{eval_step, Optimizer, SGD};
//! use oxmx::{random, Dtype};
//!
//! #[derive(nn::Module)]
//! struct Mlp { layers: Vec<Linear> }
//!
//! let mut model = Mlp { layers: vec![Linear::new(4, 8, true), Linear::new(8, 1, true)] };
//! let x = random::normal(&[16, 4], Dtype::Float32, 0.0, 1.0, None);
//! let y = random::normal(&[16, 1], Dtype::Float32, 0.0, 1.0, None);
//! let mut opt = SGD::new(0.1);
//! let loss = |m: &Mlp| losses::mse_loss(&m.layers[1].forward(&nn::activations::relu(&m.layers[0].forward(&x))), &y, losses::Reduction::Mean);
//! let (l, grads) = nn::value_and_grad(&mut model, loss).unwrap();
//! assert_eq!(grads.keys().collect::<Vec<_>>(), ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]);
//! opt.update(&mut model, &grads).unwrap();
//! eval_step(&model, &opt, &[&l]).unwrap();
//! assert!(loss(&model).item::<f32>().unwrap() < l.item::<f32>().unwrap());
//! ```

pub use oxmx_core as core;
pub use oxmx_core::*;
pub use oxmx_nn as nn;
pub use oxmx_optim as optim;

pub mod prelude {
    pub use oxmx_core::prelude::*;
    pub use oxmx_nn::{Module, ModuleState, UnaryModule};
    pub use oxmx_optim::Optimizer;
}
