//! oxmx: an MLX-style machine-learning framework in Rust. This facade re-exports the core (and,
//! as they land, nn and optimizers).
//!
//! ```
//! use oxmx::prelude::*;
//! let x = ops::arange(0.0, 4.0, 1.0, Some(Dtype::Float32));
//! let y = ops::sum(&(&x * &x), None, false);
//! assert_eq!(y.item::<f32>().unwrap(), 14.0);
//! ```

pub use oxmx_core as core;
pub use oxmx_core::*;

pub mod prelude {
    pub use oxmx_core::prelude::*;
}
