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

pub use oxmx_core as core;
pub use oxmx_core::*;
pub use oxmx_nn as nn;
pub use oxmx_optim as optim;

pub mod prelude {
    pub use oxmx_core::prelude::*;
    pub use oxmx_nn::{Module, ModuleState, UnaryModule};
    pub use oxmx_optim::Optimizer;
}
