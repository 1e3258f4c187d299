//! `astype` and `view`.

use crate::array::Array;
use crate::dtype::Dtype;
use crate::primitives::{CastOp, Primitive};

/// Converts values to `dtype` (a no-op when it already is).
#[track_caller]
pub fn astype(a: &Array, dtype: Dtype) -> Array {
    if a.dtype() == dtype {
        return a.clone();
    }
    Array::from_op(Primitive::Cast(CastOp::AsType(dtype)), vec![a.clone()])
}

/// Reinterprets the bytes as `dtype`; the last axis scales by the size ratio.
#[track_caller]
pub fn view(a: &Array, dtype: Dtype) -> Array {
    if a.dtype() == dtype {
        return a.clone();
    }
    Array::from_op(Primitive::Cast(CastOp::View(dtype)), vec![a.clone()])
}

impl Array {
    #[track_caller]
    pub fn astype(&self, dtype: Dtype) -> Array {
        astype(self, dtype)
    }
}
