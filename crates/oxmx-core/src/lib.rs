//! oxmx-core: lazy arrays with MLX's semantics, the op set, transforms and backends.
//!
//! ```
//! use oxmx_core::prelude::*;
//! let a = Array::vec(&[1.0f32, 2.0, 3.0]);
//! let b = &a * 2.0 + 1.0;
//! assert_eq!(b.to_vec::<f32>().unwrap(), vec![3.0, 5.0, 7.0]);
//! ```

pub mod array;
pub mod backend;
pub mod device;
pub mod distributed;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod io;
pub mod memory;
pub mod ops;
pub mod primitives;
pub mod print;
pub mod shape;
pub mod stream;
mod switch;
pub mod transforms;

pub use array::{async_eval, eval, Array, IntoArray};
pub use device::{default_device, set_default_device, with_device, Device};
pub use dtype::{finfo, iinfo, promote_types, Dtype, Element, Scalar};
pub use error::{Error, ErrorKind, Result};
pub use graph::{eval_fused_regions, eval_fusion_enabled, set_eval_fusion};
pub use ops::*;
pub use ops::{fast, fft, linalg, random};
pub use stream::{default_stream, new_stream, synchronize, with_stream, Stream};
pub use transforms::*;

pub mod prelude {
    pub use crate::array::{eval, Array, IntoArray};
    pub use crate::dtype::Dtype;
    pub use crate::error::{Error, ErrorKind, Result};
    pub use crate::ops::{self, Axes, SliceSpec};
}
