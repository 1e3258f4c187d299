//! Argument types shared by ops: axis selections and array-or-scalar operands.

use crate::array::Array;
use crate::dtype::Scalar;

/// Which axes an op works over: all of them (`None` in MLX) or a list (negative counts from the end).
#[derive(Clone, Debug, PartialEq)]
pub enum Axes {
    All,
    List(Vec<isize>),
}

impl Axes {
    /// Resolves against `ndim`: sorted, unique, non-negative.
    #[track_caller]
    pub fn resolve(&self, ndim: usize, op: &str) -> crate::error::Result<Vec<usize>> {
        match self {
            Axes::All => Ok((0..ndim).collect()),
            Axes::List(v) => {
                let mut a = crate::shape::normalize_axes(v, ndim, op)?;
                a.sort_unstable();
                Ok(a)
            }
        }
    }
}

impl From<isize> for Axes {
    fn from(a: isize) -> Axes {
        Axes::List(vec![a])
    }
}
impl From<Option<isize>> for Axes {
    fn from(a: Option<isize>) -> Axes {
        a.map_or(Axes::All, |a| Axes::List(vec![a]))
    }
}
impl From<Vec<isize>> for Axes {
    fn from(a: Vec<isize>) -> Axes {
        Axes::List(a)
    }
}
impl From<&[isize]> for Axes {
    fn from(a: &[isize]) -> Axes {
        Axes::List(a.to_vec())
    }
}
impl<const N: usize> From<[isize; N]> for Axes {
    fn from(a: [isize; N]) -> Axes {
        Axes::List(a.to_vec())
    }
}

/// MLX's `axis=None` convention: `None` works on the flattened array (axis 0), `Some(ax)` on
/// `a` along the resolved axis.
#[track_caller]
pub(crate) fn axis_or_flat(a: &Array, axis: Option<isize>, op: &str) -> crate::error::Result<(Array, usize)> {
    match axis {
        None => Ok((super::reshape(a, &[-1]), 0)),
        Some(ax) => Ok((a.clone(), crate::shape::normalize_axis(ax, a.ndim(), op)?)),
    }
}

/// An array or a Rust scalar. Scalars are typed "weakly", as Python scalars are in MLX.
#[derive(Clone, Debug)]
pub enum Operand {
    Array(Array),
    Scalar(Scalar),
}

impl From<Array> for Operand {
    fn from(a: Array) -> Operand {
        Operand::Array(a)
    }
}
impl From<&Array> for Operand {
    fn from(a: &Array) -> Operand {
        Operand::Array(a.clone())
    }
}
impl From<Scalar> for Operand {
    fn from(s: Scalar) -> Operand {
        Operand::Scalar(s)
    }
}
macro_rules! operand_from_scalar {
    ($($t:ty),*) => {$(
        impl From<$t> for Operand {
            fn from(v: $t) -> Operand { Operand::Scalar(Scalar::from(v)) }
        }
    )*};
}
operand_from_scalar!(bool, i8, i16, i32, i64, u8, u16, u32, u64, usize, isize, f32, f64, half::f16, half::bf16, num_complex::Complex32);
