//! Reductions (sum, prod, max, min, all, any, mean, var, std, logsumexp, argmax/argmin,
//! median), softmax, and scans (cumsum, cumprod, cummax, cummin, logcumsumexp).

use super::args::Axes;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Error;
use crate::primitives::reduce::{ReduceKind, ScanKind};
use crate::primitives::{Primitive, ReduceOp};

/// MLX's accumulation dtype for `sum`/`prod`: small ints widen to 32 bits, bool to int32.
fn sum_dtype(dt: Dtype) -> Dtype {
    match dt {
        Dtype::Bool | Dtype::Int8 | Dtype::Int16 => Dtype::Int32,
        Dtype::Uint8 | Dtype::Uint16 => Dtype::Uint32,
        d => d,
    }
}

#[track_caller]
fn reduce(a: &Array, axes: Axes, keepdims: bool, kind: ReduceKind, dtype: Dtype, name: &str) -> Array {
    Array::build(|| {
        let ax = axes.resolve(a.ndim(), name)?;
        let input = a.astype(dtype);
        let out = if ax.is_empty() {
            input
        } else {
            Array::from_op(Primitive::Reduce(ReduceOp::Reduce { kind, axes: ax.clone(), dtype }), vec![input])
        };
        Ok(if keepdims { out } else { squeeze_axes(&out, &ax) })
    })
}

fn squeeze_axes(a: &Array, axes: &[usize]) -> Array {
    if axes.is_empty() {
        return a.clone();
    }
    let shape: Vec<isize> = a.shape().iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d as isize).collect();
    super::reshape(a, &shape)
}

#[track_caller]
pub fn sum(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    reduce(a, axes.into(), keepdims, ReduceKind::Sum, sum_dtype(a.dtype()), "sum")
}
#[track_caller]
pub fn prod(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    reduce(a, axes.into(), keepdims, ReduceKind::Prod, sum_dtype(a.dtype()), "prod")
}
#[track_caller]
pub fn max(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    extreme(a, axes.into(), keepdims, ReduceKind::Max, "max")
}
#[track_caller]
pub fn min(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    extreme(a, axes.into(), keepdims, ReduceKind::Min, "min")
}

/// max/min: as MLX, reducing over an axis of length 0 is an error (there is no identity), but an
/// empty array reduced over non-empty axes gives an empty result.
#[track_caller]
fn extreme(a: &Array, axes: Axes, keepdims: bool, kind: ReduceKind, name: &str) -> Array {
    if a.size() == 0 {
        let resolved = match axes.resolve(a.ndim(), name) {
            Ok(ax) => ax,
            Err(e) => return Array::error(e.at(std::panic::Location::caller())),
        };
        if let Some(&ax) = resolved.iter().find(|&&ax| a.shape()[ax] == 0) {
            let msg = format!("[{name}] Cannot {name} reduce over axis {ax} with size 0.");
            return Array::error(Error::invalid(msg).at(std::panic::Location::caller()));
        }
    }
    reduce(a, axes, keepdims, kind, a.dtype(), name)
}
#[track_caller]
pub fn all(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    reduce(&a.astype(Dtype::Bool), axes.into(), keepdims, ReduceKind::And, Dtype::Bool, "all")
}
#[track_caller]
pub fn any(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    reduce(&a.astype(Dtype::Bool), axes.into(), keepdims, ReduceKind::Or, Dtype::Bool, "any")
}

/// The float dtype statistics are computed in (ints → float32).
fn stat_dtype(dt: Dtype) -> Dtype {
    if dt.is_inexact() {
        dt
    } else {
        Dtype::Float32
    }
}

#[track_caller]
pub fn mean(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    let axes = axes.into();
    Array::build(|| {
        let ax = axes.resolve(a.ndim(), "mean")?;
        let n: usize = ax.iter().map(|&i| a.shape()[i]).product();
        let dt = stat_dtype(a.dtype());
        let s = sum(&a.astype(dt), Axes::List(ax.iter().map(|&x| x as isize).collect()), keepdims);
        Ok(super::divide(&s, super::scalar_array(crate::dtype::Scalar::Float(n as f64), dt)))
    })
}

/// Variance with `ddof` delta degrees of freedom.
#[track_caller]
pub fn var(a: &Array, axes: impl Into<Axes>, keepdims: bool, ddof: usize) -> Array {
    let axes = axes.into();
    Array::build(|| {
        let ax = axes.resolve(a.ndim(), "var")?;
        let x = a.astype(stat_dtype(a.dtype()));
        if x.dtype().is_float() && !ax.is_empty() {
            return Ok(rows_reduced(&x, &ax, keepdims, ReduceOp::Var { ddof }));
        }
        // Complex input, or no axes: the composed definition.
        let n: usize = ax.iter().map(|&i| a.shape()[i]).product();
        let axl = Axes::List(ax.iter().map(|&x| x as isize).collect());
        let mu = mean(&x, axl.clone(), true);
        let d = super::subtract(&x, &mu);
        let ss = sum(&super::multiply(&d, &d), axl, keepdims);
        let denom = (n as f64 - ddof as f64).max(0.0);
        Ok(super::divide(&ss, super::scalar_array(crate::dtype::Scalar::Float(denom), x.dtype())))
    })
}

/// Moves `axes` (sorted, unique) to the end and merges them into one last axis, so that a row
/// primitive can treat each reduction as one contiguous row. Returns the arranged array and the
/// shape it had before the merge (kept dims, then the reduced dims).
fn rows_last(x: &Array, axes: &[usize]) -> (Array, Vec<usize>) {
    let kept: Vec<usize> = (0..x.ndim()).filter(|i| !axes.contains(i)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let moved = if perm.iter().enumerate().all(|(i, &p)| i == p) {
        x.clone()
    } else {
        super::transpose(x, &perm.iter().map(|&p| p as isize).collect::<Vec<_>>())
    };
    let moved_shape = moved.shape().to_vec();
    let mut rows: Vec<usize> = kept.iter().map(|&i| x.shape()[i]).collect();
    rows.push(axes.iter().map(|&i| x.shape()[i]).product());
    let merged = if axes.len() == 1 { moved } else { super::reshape_to(&moved, &rows) };
    (merged, moved_shape)
}

/// A row reduction (`LogSumExp`, `Var`) over `axes`, with MLX's keepdims handling.
fn rows_reduced(x: &Array, axes: &[usize], keepdims: bool, op: ReduceOp) -> Array {
    let (rows, _) = rows_last(x, axes);
    let out = Array::from_op(Primitive::Reduce(op), vec![rows]);
    super::reshape_to(&out, &reduced_shape(x.shape(), axes, keepdims))
}

/// `shape` with `axes` removed, or kept as size 1 with `keepdims`.
fn reduced_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    (0..shape.len()).filter_map(|i| if axes.contains(&i) { keepdims.then_some(1) } else { Some(shape[i]) }).collect()
}

#[track_caller]
pub fn std(a: &Array, axes: impl Into<Axes>, keepdims: bool, ddof: usize) -> Array {
    super::sqrt(&var(a, axes, keepdims, ddof))
}

/// The median over `axes` (the mean of the two middle values for even counts; NaN if the
/// reduced values contain NaN), as MLX.
#[track_caller]
pub fn median(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    let axes = axes.into();
    Array::build(|| {
        let ax = axes.resolve(a.ndim(), "median")?;
        let x = a.astype(stat_dtype(a.dtype()));
        if ax.is_empty() {
            return Ok(x);
        }
        let (rows, _) = rows_last(&x, &ax);
        let n = *rows.shape().last().unwrap();
        if n == 0 {
            crate::bail!("[median] Cannot compute the median of an empty reduction, shape {:?} over axes {ax:?}.", a.shape());
        }
        let s = super::sort(&rows, Some(-1));
        let at = |k: usize| super::take(&s, &Array::from_slice(&[k as u32], &[1]), Some(-1));
        let (lo, hi) = (at((n - 1) / 2), at(n / 2));
        let mid = super::multiply(&super::add(&lo, &hi), 0.5);
        // Sorting puts NaN last, so the last value says whether the row has one.
        let out = super::where_(&super::isnan(&at(n - 1)), f64::NAN, &mid);
        Ok(super::reshape_to(&out, &reduced_shape(x.shape(), &ax, keepdims)))
    })
}

/// `log(sum(exp(a)))`, computed stably.
#[track_caller]
pub fn logsumexp(a: &Array, axes: impl Into<Axes>, keepdims: bool) -> Array {
    let axes = axes.into();
    Array::build(|| {
        let ax = axes.resolve(a.ndim(), "logsumexp")?;
        let x = a.astype(stat_dtype(a.dtype()));
        if x.dtype().is_float() && !ax.is_empty() {
            return Ok(rows_reduced(&x, &ax, keepdims, ReduceOp::LogSumExp));
        }
        let axl = Axes::List(ax.iter().map(|&x| x as isize).collect());
        if x.size() == 0 {
            return Ok(log(&sum(&super::exp(&x), axl, keepdims)));
        }
        let m = stop_inf(&max(&x, axl.clone(), true));
        let s = super::log(&sum(&super::exp(&super::subtract(&x, &m)), axl, true));
        let out = super::add(&s, &m);
        Ok(if keepdims { out } else { squeeze_axes(&out, &ax) })
    })
}

fn log(a: &Array) -> Array {
    super::log(a)
}

/// Replaces infinite maxima by 0 so `x - max` stays finite (all -inf rows give -inf).
fn stop_inf(m: &Array) -> Array {
    super::where_(&super::isinf(m), 0.0f32, m)
}

/// Softmax over `axes`; with `precise`, 16-bit inputs are computed in float32. (The row
/// kernel always widens 16-bit rows to f32, so `precise` only matters for the composed path.)
#[track_caller]
pub fn softmax(a: &Array, axes: impl Into<Axes>, precise: bool) -> Array {
    let axes = axes.into();
    Array::build(|| {
        let ax = axes.resolve(a.ndim(), "softmax")?;
        let dt = stat_dtype(a.dtype());
        if dt.is_float() && !ax.is_empty() {
            let x = a.astype(dt);
            let (rows, moved_shape) = rows_last(&x, &ax);
            let out = super::reshape_to(&Array::from_op(Primitive::Reduce(ReduceOp::Softmax), vec![rows]), &moved_shape);
            // Undo the move: output axis `p` came from input axis `perm[p]`.
            let kept: Vec<usize> = (0..x.ndim()).filter(|i| !ax.contains(i)).collect();
            let perm: Vec<usize> = kept.iter().chain(&ax).copied().collect();
            let mut inv = vec![0isize; perm.len()];
            for (p, &src) in perm.iter().enumerate() {
                inv[src] = p as isize;
            }
            return Ok(if perm.iter().enumerate().all(|(i, &p)| i == p) { out } else { super::transpose(&out, &inv) });
        }
        let axl = Axes::List(ax.iter().map(|&x| x as isize).collect());
        let compute = if precise && matches!(dt, Dtype::Float16 | Dtype::Bfloat16) { Dtype::Float32 } else { dt };
        let x = a.astype(compute);
        let m = max(&x, axl.clone(), true);
        let e = super::exp(&super::subtract(&x, &m));
        let s = sum(&e, axl, true);
        Ok(super::divide(&e, &s).astype(dt))
    })
}

#[track_caller]
fn arg_reduce(a: &Array, axis: Option<isize>, keepdims: bool, is_max: bool) -> Array {
    let name = if is_max { "argmax" } else { "argmin" };
    Array::build(|| {
        if a.size() == 0 {
            crate::bail!("[{name}] Cannot {name} reduce zero size array.");
        }
        let (x, ax) = super::args::axis_or_flat(a, axis, name)?;
        let op = if is_max { ReduceOp::ArgMax { axis: ax } } else { ReduceOp::ArgMin { axis: ax } };
        let out = Array::from_op(Primitive::Reduce(op), vec![x]);
        Ok(match (axis, keepdims) {
            (_, false) => squeeze_axes(&out, &[ax]),
            (None, true) => super::reshape(&out, &vec![1isize; a.ndim()]),
            (Some(_), true) => out,
        })
    })
}

/// Index of the maximum (uint32), along `axis` or over the flattened array.
#[track_caller]
pub fn argmax(a: &Array, axis: Option<isize>, keepdims: bool) -> Array {
    arg_reduce(a, axis, keepdims, true)
}
#[track_caller]
pub fn argmin(a: &Array, axis: Option<isize>, keepdims: bool) -> Array {
    arg_reduce(a, axis, keepdims, false)
}

#[track_caller]
fn scan(a: &Array, axis: Option<isize>, reverse: bool, inclusive: bool, kind: ScanKind, name: &str) -> Array {
    Array::build(|| {
        let (x, ax) = super::args::axis_or_flat(a, axis, name)?;
        let op = Primitive::Reduce(ReduceOp::Scan { kind, axis: ax, reverse, inclusive });
        let dt = match kind {
            ScanKind::LogAddExp => stat_dtype(x.dtype()),
            ScanKind::Sum if x.dtype() == Dtype::Bool => Dtype::Int32,
            // MLX keeps bool for cumprod/cummax/cummin; in uint8 the identities (1, 0, 255)
            // cast back to the right truth values.
            _ if x.dtype() == Dtype::Bool => return Ok(Array::from_op(op, vec![x.astype(Dtype::Uint8)]).astype(Dtype::Bool)),
            _ => x.dtype(),
        };
        Ok(Array::from_op(op, vec![x.astype(dt)]))
    })
}

#[track_caller]
pub fn cumsum(a: &Array, axis: Option<isize>, reverse: bool, inclusive: bool) -> Array {
    scan(a, axis, reverse, inclusive, ScanKind::Sum, "cumsum")
}
#[track_caller]
pub fn cumprod(a: &Array, axis: Option<isize>, reverse: bool, inclusive: bool) -> Array {
    scan(a, axis, reverse, inclusive, ScanKind::Prod, "cumprod")
}
#[track_caller]
pub fn cummax(a: &Array, axis: Option<isize>, reverse: bool, inclusive: bool) -> Array {
    scan(a, axis, reverse, inclusive, ScanKind::Max, "cummax")
}
#[track_caller]
pub fn cummin(a: &Array, axis: Option<isize>, reverse: bool, inclusive: bool) -> Array {
    scan(a, axis, reverse, inclusive, ScanKind::Min, "cummin")
}
#[track_caller]
pub fn logcumsumexp(a: &Array, axis: Option<isize>, reverse: bool, inclusive: bool) -> Array {
    scan(a, axis, reverse, inclusive, ScanKind::LogAddExp, "logcumsumexp")
}
