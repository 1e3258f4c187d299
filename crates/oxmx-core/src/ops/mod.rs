//! The public NumPy/MLX-like op set. Ops never compute: they validate, promote, broadcast and
//! build a graph node. Invalid input gives an array carrying the error (see `Array::check`).

pub mod args;
pub mod arrange;
pub mod cast;
pub mod conv;
pub mod creation;
pub mod einsum;
pub mod elementwise;
pub mod fast;
pub mod fft;
pub mod index;
pub mod linalg;
pub mod matmul;
pub mod operators;
pub mod quantized;
pub mod random;
pub mod reduce;
pub mod shape;
pub mod sort;

pub use args::{Axes, Operand};
pub use arrange::*;
pub use cast::*;
pub use conv::*;
pub use creation::*;
pub use einsum::{einsum, einsum_path};
pub use elementwise::*;
pub use index::*;
pub use matmul::*;
pub use quantized::*;
pub use reduce::*;
pub use shape::SliceSpec;
pub use shape::*;
pub use sort::*;
