//! The public NumPy/MLX-like op set. Ops never compute: they validate, promote, broadcast and
//! build a graph node. Invalid input gives an array carrying the error (see `Array::check`).

pub mod args;
pub mod arrange;
pub mod conv;
pub mod fft;
pub mod index;
pub mod linalg;
pub mod matmul;
pub mod random;
pub mod sort;
pub mod cast;
pub mod creation;
pub mod elementwise;
pub mod operators;
pub mod reduce;
pub mod shape;

pub use args::{Axes, Operand};
pub use arrange::*;
pub use cast::*;
pub use creation::*;
pub use elementwise::*;
pub use reduce::*;
pub use shape::*;
pub use index::*;
pub use matmul::*;
pub use sort::*;
pub use shape::SliceSpec;
