//! `norm`: vector and matrix norms composed from abs/sum/max/min/power/sqrt and the SVD.

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::ops::Axes;
use crate::shape::normalize_axis;

/// A norm order: a number (`2`, `1`, `inf`, `-inf`, `0`, any `p`) or a named matrix norm.
#[derive(Clone, Debug, PartialEq)]
pub enum NormOrd {
    P(f64),
    Fro,
    Nuc,
    /// An unknown name, kept so the error can quote it.
    Invalid(String),
}

impl From<f64> for NormOrd {
    fn from(p: f64) -> NormOrd {
        NormOrd::P(p)
    }
}
impl From<i32> for NormOrd {
    fn from(p: i32) -> NormOrd {
        NormOrd::P(p as f64)
    }
}
impl From<&str> for NormOrd {
    fn from(s: &str) -> NormOrd {
        match s {
            "fro" => NormOrd::Fro,
            "nuc" => NormOrd::Nuc,
            other => NormOrd::Invalid(other.to_string()),
        }
    }
}

/// Formats an order as MLX prints it (`3`, not `3.0`).
fn show(p: f64) -> String {
    if p.fract() == 0.0 && p.is_finite() {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

/// The norm of `a`. `ord = None` with `axis = Axes::All` is the 2-norm of the flattened array
/// (any rank); otherwise one axis gives a vector norm and two axes `[row, col]` a matrix norm
/// (an order with `Axes::All` needs a 1-d or 2-d array). Integer inputs give float32.
#[track_caller]
pub fn norm(a: &Array, ord: Option<NormOrd>, axis: impl Into<Axes>, keepdims: bool) -> Array {
    let axis = axis.into();
    Array::build(|| {
        let x = if a.dtype().is_inexact() { a.clone() } else { a.astype(Dtype::Float32) };
        let axes: Vec<usize> = match &axis {
            Axes::All if ord.is_none() => {
                let all: Vec<isize> = (0..x.ndim() as isize).collect();
                return Ok(fro(&x, &all, keepdims));
            }
            Axes::All if x.ndim() == 1 || x.ndim() == 2 => (0..x.ndim()).collect(),
            Axes::All => crate::bail!("[linalg::norm] Received too many axes for norm."),
            Axes::List(v) => {
                let r: Vec<usize> = v.iter().map(|&ax| normalize_axis(ax, x.ndim(), "linalg::norm")).collect::<Result<_>>()?;
                if r.len() == 2 && r[0] == r[1] {
                    crate::bail!("[linalg::norm] Duplicate axes detected in reduction.");
                }
                r
            }
        };
        match axes.len() {
            1 => vector_norm(&x, ord, axes[0], keepdims),
            2 => matrix_norm(&x, ord, axes[0], axes[1], keepdims),
            _ => crate::bail!("[linalg::norm] Received too many axes for norm."),
        }
    })
}

/// `sqrt(sum(|x|^2))` over `axes`.
fn fro(x: &Array, axes: &[isize], keepdims: bool) -> Array {
    let m = if x.dtype().is_complex() { crate::ops::abs(x) } else { x.clone() };
    crate::ops::sqrt(&crate::ops::sum(&crate::ops::multiply(&m, &m), axes.to_vec(), keepdims))
}

fn vector_norm(x: &Array, ord: Option<NormOrd>, ax: usize, keepdims: bool) -> Result<Array> {
    use crate::ops::{abs, max, min, power, sum};
    let axl = vec![ax as isize];
    let p = match ord {
        None => 2.0,
        Some(NormOrd::P(p)) => p,
        Some(NormOrd::Fro) => crate::bail!("[linalg::norm] Norm 'fro' only supported for matrices, but received 1 axis/axes."),
        Some(NormOrd::Nuc) => crate::bail!("[linalg::norm] Norm 'nuc' only supported for matrices, but received 1 axis/axes."),
        Some(NormOrd::Invalid(s)) => crate::bail!("[linalg::norm] Invalid ord value '{s}' for vector norm."),
    };
    let m = abs(x);
    Ok(if p == 2.0 {
        fro(x, &axl, keepdims)
    } else if p == f64::INFINITY {
        max(&m, axl, keepdims)
    } else if p == f64::NEG_INFINITY {
        min(&m, axl, keepdims)
    } else if p == 0.0 {
        // The count of non-zeros, in the input's (real) float dtype.
        sum(&crate::ops::not_equal(&m, 0.0), axl, keepdims).astype(m.dtype())
    } else if p == 1.0 {
        sum(&m, axl, keepdims)
    } else {
        power(&sum(&power(&m, p), axl, keepdims), 1.0 / p)
    })
}

fn matrix_norm(x: &Array, ord: Option<NormOrd>, row: usize, col: usize, keepdims: bool) -> Result<Array> {
    use crate::ops::{abs, max, min, sum};
    let (r, c) = (row as isize, col as isize);
    // Reductions keep both axes until the end so the axis numbers stay valid.
    let squeeze = |a: Array| if keepdims { a } else { crate::ops::squeeze(&a, &[r, c]) };
    let p = match ord {
        None | Some(NormOrd::Fro) => return Ok(fro(x, &[r, c], keepdims)),
        Some(NormOrd::Nuc) => return Ok(singular_reduce(x, row, col, keepdims, SvReduce::Sum)),
        Some(NormOrd::Invalid(s)) => crate::bail!("[linalg::norm] Invalid ord value '{s}' for matrix norm."),
        Some(NormOrd::P(p)) => p,
    };
    let m = abs(x);
    Ok(if p == 2.0 {
        singular_reduce(x, row, col, keepdims, SvReduce::Max)
    } else if p == -2.0 {
        singular_reduce(x, row, col, keepdims, SvReduce::Min)
    } else if p == f64::INFINITY {
        squeeze(max(&sum(&m, c, true), r, true))
    } else if p == f64::NEG_INFINITY {
        squeeze(min(&sum(&m, c, true), r, true))
    } else if p == 1.0 {
        squeeze(max(&sum(&m, r, true), c, true))
    } else if p == -1.0 {
        squeeze(min(&sum(&m, r, true), c, true))
    } else {
        crate::bail!("[linalg::norm] Invalid ord {} for matrix norm.", show(p))
    })
}

enum SvReduce {
    Max,
    Min,
    Sum,
}

/// Reduces the singular values of the matrices spanned by axes `row`, `col`.
fn singular_reduce(x: &Array, row: usize, col: usize, keepdims: bool, how: SvReduce) -> Array {
    let mut perm: Vec<isize> = (0..x.ndim()).filter(|&i| i != row && i != col).map(|i| i as isize).collect();
    perm.extend([row as isize, col as isize]);
    let s = super::svd_values(&crate::ops::transpose(x, &perm));
    let out = match how {
        SvReduce::Max => crate::ops::max(&s, -1isize, false),
        SvReduce::Min => crate::ops::min(&s, -1isize, false),
        SvReduce::Sum => crate::ops::sum(&s, -1isize, false),
    };
    if keepdims {
        let (lo, hi) = (row.min(col) as isize, row.max(col) as isize);
        crate::ops::expand_dims(&out, &[lo, hi])
    } else {
        out
    }
}
