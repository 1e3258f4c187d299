//! Indexing: `take`, `take_along_axis`, `put_along_axis`, MLX's general `gather`/`scatter`
//! (and `scatter_add/prod/max/min`), `slice_update`, and NumPy-style basic + advanced indexing
//! with `index` (read), `index_set`/`index_add`/… (functional updates, MLX's `.at[]`).

use super::shape::SliceSpec;
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::primitives::index::ScatterKind;
use crate::primitives::{IndexOp, Primitive};

/// MLX's `gather`: `indices[k]` index `axes[k]`; output shape `broadcast(indices) + slice_sizes`.
#[track_caller]
pub fn gather(a: &Array, indices: &[Array], axes: &[isize], slice_sizes: &[usize]) -> Array {
    Array::build(|| {
        if indices.len() != axes.len() {
            crate::bail!("[gather] {} index arrays for {} axes", indices.len(), axes.len());
        }
        let axes = crate::shape::normalize_axes(axes, a.ndim(), "gather")?;
        let idx = super::broadcast_arrays(indices);
        let mut inputs = vec![a.clone()];
        inputs.extend(idx);
        Ok(Array::from_op(Primitive::Index(IndexOp::Gather { axes, slice_sizes: slice_sizes.to_vec() }), inputs))
    })
}

/// Elements of `a` at `indices` along `axis` (`None`: of the flattened array).
#[track_caller]
pub fn take(a: &Array, indices: &Array, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = super::args::axis_or_flat(a, axis, "take")?;
        if !indices.dtype().is_integer() {
            crate::bail!("[take] indices must be integers, got {}", indices.dtype());
        }
        let mut sizes = x.shape().to_vec();
        sizes[ax] = 1;
        let g = gather(&x, std::slice::from_ref(indices), &[ax as isize], &sizes);
        // (idx..., x dims with axis = 1) -> x[:ax] + idx + x[ax+1:]
        let ni = indices.ndim();
        let g = super::squeeze(&g, &[(ni + ax) as isize]);
        let perm: Vec<isize> = (ni..ni + ax).chain(0..ni).chain(ni + ax..g.ndim()).map(|v| v as isize).collect();
        Ok(super::transpose(&g, &perm))
    })
}

/// Index arrays for a `*_along_axis` op: `indices` along `axis`, aranges on the other axes.
fn along_axis_indices(a: &Array, indices: &Array, ax: usize) -> Result<(Vec<Array>, Vec<isize>)> {
    if indices.ndim() != a.ndim() {
        crate::bail!("[take_along_axis] Indices of dimension {} does not match array of dimension {}.", indices.ndim(), a.ndim());
    }
    if !indices.dtype().is_integer() {
        crate::bail!("[take_along_axis] indices must be integers, got {}", indices.dtype());
    }
    // Broadcast non-axis dims of indices and a together.
    let mut shape = Vec::with_capacity(a.ndim());
    for d in 0..a.ndim() {
        let (x, i) = (a.shape()[d], indices.shape()[d]);
        shape.push(if d == ax {
            i
        } else if x == i || i == 1 {
            x
        } else if x == 1 {
            i
        } else {
            crate::bail!("[take_along_axis] indices of shape {:?} cannot broadcast with array of shape {:?}", indices.shape(), a.shape());
        });
    }
    let idx = super::broadcast_to(indices, &shape);
    let mut arrays = Vec::new();
    for d in 0..a.ndim() {
        if d == ax {
            arrays.push(idx.clone());
        } else {
            let mut s = vec![1isize; a.ndim()];
            s[d] = shape[d] as isize;
            let r = super::reshape(&super::arange_n(shape[d], Some(Dtype::Int32)), &s);
            arrays.push(super::broadcast_to(&r, &shape));
        }
    }
    Ok((arrays, (0..a.ndim() as isize).collect()))
}

/// `a[..., indices, ...]` element-wise along `axis` (NumPy `take_along_axis`).
#[track_caller]
pub fn take_along_axis(a: &Array, indices: &Array, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = super::args::axis_or_flat(a, axis, "take_along_axis")?;
        let idx = if axis.is_none() { super::reshape(indices, &[-1]) } else { indices.clone() };
        let (arrays, axes) = along_axis_indices(&x, &idx, ax)?;
        let shape = arrays[0].shape().to_vec();
        let g = gather(&x, &arrays, &axes, &vec![1; x.ndim()]);
        Ok(super::reshape_to(&g, &shape))
    })
}

/// Writes `values` into `a` at `indices` along `axis` (a copy; NumPy `put_along_axis`).
#[track_caller]
pub fn put_along_axis(a: &Array, indices: &Array, values: &Array, axis: Option<isize>) -> Array {
    Array::build(|| {
        let (x, ax) = super::args::axis_or_flat(a, axis, "put_along_axis")?;
        let idx = if axis.is_none() { super::reshape(indices, &[-1]) } else { indices.clone() };
        let (arrays, axes) = along_axis_indices(&x, &idx, ax)?;
        let shape = arrays[0].shape().to_vec();
        let upd_shape: Vec<usize> = shape.iter().copied().chain(std::iter::repeat_n(1, x.ndim())).collect();
        let v = super::reshape_to(&super::broadcast_to(&values.astype(x.dtype()), &shape), &upd_shape);
        let out = scatter_kind(&x, &arrays, &v, &axes, ScatterKind::Set);
        Ok(super::reshape_to(&out, a.shape()))
    })
}

#[track_caller]
fn scatter_kind(a: &Array, indices: &[Array], updates: &Array, axes: &[isize], kind: ScatterKind) -> Array {
    Array::build(|| {
        let axes = crate::shape::normalize_axes(axes, a.ndim(), "scatter")?;
        let idx = super::broadcast_arrays(indices);
        let mut inputs = vec![a.clone()];
        inputs.extend(idx);
        inputs.push(updates.astype(a.dtype()));
        Ok(Array::from_op(Primitive::Index(IndexOp::Scatter { kind, axes }), inputs))
    })
}

/// MLX's `scatter`: writes `updates` (shape `broadcast(indices) + slice`) at `indices` on `axes`.
#[track_caller]
pub fn scatter(a: &Array, indices: &[Array], updates: &Array, axes: &[isize]) -> Array {
    scatter_kind(a, indices, updates, axes, ScatterKind::Set)
}
#[track_caller]
pub fn scatter_add(a: &Array, indices: &[Array], updates: &Array, axes: &[isize]) -> Array {
    scatter_kind(a, indices, updates, axes, ScatterKind::Add)
}
#[track_caller]
pub fn scatter_prod(a: &Array, indices: &[Array], updates: &Array, axes: &[isize]) -> Array {
    scatter_kind(a, indices, updates, axes, ScatterKind::Prod)
}
#[track_caller]
pub fn scatter_max(a: &Array, indices: &[Array], updates: &Array, axes: &[isize]) -> Array {
    scatter_kind(a, indices, updates, axes, ScatterKind::Max)
}
#[track_caller]
pub fn scatter_min(a: &Array, indices: &[Array], updates: &Array, axes: &[isize]) -> Array {
    scatter_kind(a, indices, updates, axes, ScatterKind::Min)
}

/// A copy of `a` with the region selected by `specs` replaced by `update` (broadcast to it).
#[track_caller]
pub fn slice_update(a: &Array, update: &Array, specs: &[SliceSpec]) -> Array {
    Array::build(|| {
        let (start, step, len) = super::shape::resolve_slices(a.shape(), specs, "slice_update")?;
        let u = super::broadcast_to(&update.astype(a.dtype()), &len);
        Ok(Array::from_op(Primitive::Index(IndexOp::SliceUpdate { start, step, len }), vec![a.clone(), u]))
    })
}

/// The slice of shape `slice_size` (a full shape) starting at `start_indices` (one integer per
/// entry of `axes`; other axes start at 0), with starts that are only known at run time.
/// Unlike MLX, which reads out of bounds, starts are clamped so the slice fits (as JAX does).
#[track_caller]
pub fn slice_dynamic(a: &Array, start_indices: &Array, axes: &[isize], slice_size: &[usize]) -> Array {
    Array::build(|| {
        let axes = dynamic_axes(a, start_indices, axes, "slice")?;
        if slice_size.len() != a.ndim() || slice_size.iter().zip(a.shape()).any(|(s, d)| s > d) {
            crate::bail!("[slice] Invalid slice size {slice_size:?} for array of shape {:?}.", a.shape());
        }
        let mut x = a.clone();
        for ax in 0..a.ndim() {
            let size = slice_size[ax];
            let start = match axes.iter().position(|&q| q == ax) {
                Some(i) => dynamic_start(start_indices, i, a.shape()[ax] - size),
                None if size == a.shape()[ax] => continue,
                None => Array::scalar(0i64),
            };
            let idx = super::add(&start, &super::arange_n(size, Some(Dtype::Int64)));
            x = super::take(&x, &idx, Some(ax as isize));
        }
        Ok(x)
    })
}

/// `a` with the region of `update`'s shape starting at `start_indices` (along `axes`; other axes
/// start at 0) replaced by `update`; starts are clamped so the region fits.
#[track_caller]
pub fn slice_update_dynamic(a: &Array, update: &Array, start_indices: &Array, axes: &[isize]) -> Array {
    Array::build(|| {
        let axes = dynamic_axes(a, start_indices, axes, "slice_update")?;
        if update.ndim() > a.ndim() {
            crate::bail!("[slice_update] Update with shape {:?} has more dimensions than the array {:?}.", update.shape(), a.shape());
        }
        let mut ushape = vec![1usize; a.ndim() - update.ndim()];
        ushape.extend_from_slice(update.shape());
        if ushape.iter().zip(a.shape()).any(|(u, d)| u > d) {
            crate::bail!("[slice_update] Update with shape {:?} does not fit in array of shape {:?}.", update.shape(), a.shape());
        }
        // Every position of `a` gathers the update element it would receive (clamped), and a mask
        // selects the positions inside the region.
        let mut gathered = super::reshape_to(&update.astype(a.dtype()), &ushape);
        let mut inside = Array::scalar(true);
        for ax in 0..a.ndim() {
            let (d, u) = (a.shape()[ax], ushape[ax]);
            let start = match axes.iter().position(|&q| q == ax) {
                Some(i) => dynamic_start(start_indices, i, d - u),
                None => Array::scalar(0i64),
            };
            let rel = super::subtract(&super::arange_n(d, Some(Dtype::Int64)), &start);
            let within = super::logical_and(&super::greater_equal(&rel, 0i64), &super::less(&rel, u as i64));
            let mut shape = vec![1usize; a.ndim()];
            shape[ax] = d;
            inside = super::logical_and(&inside, &super::reshape_to(&within, &shape));
            let src =
                if u == 1 { super::zeros(&[d], Dtype::Int64) } else { super::clip(&rel, Some(0i64.into()), Some((u as i64 - 1).into())) };
            gathered = super::take(&gathered, &src, Some(ax as isize));
        }
        Ok(super::where_(&inside, &gathered, a))
    })
}

/// Normalises `axes` for a dynamic slice and checks the start indices against them.
fn dynamic_axes(a: &Array, start: &Array, axes: &[isize], name: &str) -> Result<Vec<usize>> {
    if !start.dtype().is_integer() {
        crate::bail!("[{name}] Start indices must be integers, got {}.", start.dtype());
    }
    if start.size() != axes.len() {
        crate::bail!("[{name}] Got {} start indices for {} axes.", start.size(), axes.len());
    }
    axes.iter().map(|&x| crate::shape::normalize_axis(x, a.ndim(), name)).collect()
}

/// Start `i` of `start` clamped to `[0, max]`, as an int64 scalar array.
fn dynamic_start(start: &Array, i: usize, max: usize) -> Array {
    let s = super::reshape_to(&super::take(&super::reshape_to(start, &[start.size()]), &Array::scalar(i as u32), Some(0)), &[]);
    super::clip(&s.astype(Dtype::Int64), Some(0i64.into()), Some((max as i64).into()))
}

/// One entry of a NumPy-style index expression.
#[derive(Clone, Debug)]
pub enum Idx {
    /// A single position (removes the axis).
    At(isize),
    Slice(SliceSpec),
    /// `None` / `np.newaxis`: inserts a size-1 axis.
    NewAxis,
    /// `...`
    Ellipsis,
    /// An integer index array (advanced indexing; bool masks are not supported lazily).
    Array(Array),
}

impl From<isize> for Idx {
    fn from(i: isize) -> Idx {
        Idx::At(i)
    }
}
impl From<SliceSpec> for Idx {
    fn from(s: SliceSpec) -> Idx {
        Idx::Slice(s)
    }
}
impl From<Array> for Idx {
    fn from(a: Array) -> Idx {
        Idx::Array(a)
    }
}
impl From<&Array> for Idx {
    fn from(a: &Array) -> Idx {
        Idx::Array(a.clone())
    }
}

/// The plan of an index expression: basic part as slices over `a`'s axes, the advanced arrays
/// (broadcast) with the axes they index, and how to lay out the result.
struct Plan {
    specs: Vec<SliceSpec>,
    /// Axes of `a` indexed by a single integer (removed).
    int_axes: Vec<usize>,
    /// (axis of `a`, index array) for advanced indexing (ints count as 0-d arrays when arrays exist).
    adv: Vec<(usize, Array)>,
    /// Output position of each kept axis, new axis or the advanced block.
    layout: Vec<Slot>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Axis(usize),
    New,
    Advanced,
}

fn plan(a: &Array, idx: &[Idx]) -> Result<Plan> {
    let explicit = idx.iter().filter(|i| matches!(i, Idx::At(_) | Idx::Slice(_) | Idx::Array(_))).count();
    if idx.iter().filter(|i| matches!(i, Idx::Ellipsis)).count() > 1 {
        return Err(Error::index("[index] An index can only have a single ellipsis ('...')"));
    }
    if explicit > a.ndim() {
        // MLX raises ValueError (not IndexError) here.
        return Err(Error::invalid(format!("[index] Too many indices for array with {} dimensions.", a.ndim())));
    }
    let has_arrays = idx.iter().any(|i| matches!(i, Idx::Array(_)));
    let mut specs = vec![SliceSpec::FULL; a.ndim()];
    let (mut int_axes, mut adv, mut layout) = (vec![], vec![], vec![]);
    let mut ax = 0usize;
    for it in idx {
        match it {
            Idx::Ellipsis => {
                let n = a.ndim() - explicit;
                for _ in 0..n {
                    layout.push(Slot::Axis(ax));
                    ax += 1;
                }
            }
            Idx::NewAxis => layout.push(Slot::New),
            Idx::Slice(s) => {
                specs[ax] = *s;
                layout.push(Slot::Axis(ax));
                ax += 1;
            }
            Idx::At(i) => {
                let n = a.shape()[ax] as isize;
                let r = if *i < 0 { i + n } else { *i };
                if r < 0 || r >= n {
                    return Err(Error::index(format!("[index] index {i} is out of bounds for axis {ax} with size {n}")));
                }
                if has_arrays {
                    adv.push((ax, Array::scalar(r as i64)));
                    layout.push(Slot::Advanced);
                } else {
                    specs[ax] = SliceSpec::new(Some(r), Some(r + 1), 1);
                    int_axes.push(ax);
                }
                ax += 1;
            }
            Idx::Array(arr) => {
                if arr.dtype() == Dtype::Bool {
                    return Err(Error::invalid(
                        "[index] boolean mask indexing is not supported (its output shape depends on the data); use where()",
                    ));
                }
                if !arr.dtype().is_integer() {
                    return Err(Error::invalid(format!("[index] index arrays must be integers, got {}", arr.dtype())));
                }
                adv.push((ax, arr.clone()));
                layout.push(Slot::Advanced);
                ax += 1;
            }
        }
    }
    while ax < a.ndim() {
        layout.push(Slot::Axis(ax));
        ax += 1;
    }
    Ok(Plan { specs, int_axes, adv, layout })
}

/// Where the advanced block goes in the output: at the first advanced position when all
/// advanced entries are adjacent, else at the front (NumPy's rule).
fn advanced_first(layout: &[Slot]) -> bool {
    let pos: Vec<usize> = layout.iter().enumerate().filter(|(_, s)| **s == Slot::Advanced).map(|(i, _)| i).collect();
    pos.windows(2).any(|w| w[1] != w[0] + 1)
}

/// `a[idx]` with NumPy semantics (basic slicing is a view; integer arrays gather).
#[track_caller]
pub fn index(a: &Array, idx: &[Idx]) -> Array {
    Array::build(|| {
        // An input that failed (possibly at evaluation) passes its error on; the shapes below
        // assume a valid input.
        a.check()?;
        let p = plan(a, idx)?;
        let sliced = super::slice(a, &p.specs);
        if p.adv.is_empty() {
            // Basic indexing: drop integer axes, insert new axes.
            let shape: Vec<isize> = p
                .layout
                .iter()
                .filter_map(|s| match s {
                    Slot::Axis(ax) => Some(sliced.shape()[*ax] as isize),
                    Slot::New => Some(1),
                    Slot::Advanced => None,
                })
                .collect();
            let _ = &p.int_axes;
            return Ok(super::reshape(&sliced, &shape));
        }
        let arrays: Vec<Array> = p.adv.iter().map(|(_, a)| a.clone()).collect();
        let axes: Vec<isize> = p.adv.iter().map(|(ax, _)| *ax as isize).collect();
        let idx = super::broadcast_arrays(&arrays);
        let ni = idx[0].ndim();
        let mut sizes = sliced.shape().to_vec();
        for &ax in &axes {
            sizes[ax as usize] = 1;
        }
        let g = gather(&sliced, &idx, &axes, &sizes);
        // g: (I..., sliced dims with advanced axes = 1). Drop those size-1 axes.
        let drop: Vec<isize> = axes.iter().map(|&ax| ax + ni as isize).collect();
        let g = super::squeeze(&g, &drop);
        // Remaining dims after I: the non-advanced axes of `sliced` in order.
        let kept: Vec<usize> = (0..a.ndim()).filter(|d| !axes.contains(&(*d as isize))).collect();
        let pos_of = |ax: usize| ni + kept.iter().position(|&k| k == ax).unwrap();
        let front = advanced_first(&p.layout);
        let mut perm: Vec<usize> = Vec::new();
        let mut new_axes_at: Vec<usize> = Vec::new();
        let mut placed = false;
        if front {
            perm.extend(0..ni);
            placed = true;
        }
        for s in &p.layout {
            match s {
                Slot::Axis(ax) => perm.push(pos_of(*ax)),
                Slot::New => new_axes_at.push(perm.len() + new_axes_at.len()),
                Slot::Advanced => {
                    if !placed {
                        perm.extend(0..ni);
                        placed = true;
                    }
                }
            }
        }
        let perm_i: Vec<isize> = perm.iter().map(|&v| v as isize).collect();
        let out = super::transpose(&g, &perm_i);
        Ok(if new_axes_at.is_empty() {
            out
        } else {
            super::expand_dims(&out, &new_axes_at.iter().map(|&v| v as isize).collect::<Vec<_>>())
        })
    })
}

#[track_caller]
fn index_update(a: &Array, idx: &[Idx], values: &Array, kind: ScatterKind) -> Array {
    Array::build(|| {
        a.check()?; // as in `index`: a failed input passes its error on
        let p = plan(a, idx)?;
        if p.adv.is_empty() && kind == ScatterKind::Set {
            // Basic indexing: a slice update of the selected region.
            let region = super::slice(a, &p.specs);
            let target_shape: Vec<usize> = p
                .layout
                .iter()
                .filter_map(|s| match s {
                    Slot::Axis(ax) => Some(region.shape()[*ax]),
                    Slot::New => Some(1),
                    Slot::Advanced => None,
                })
                .collect();
            let v = super::broadcast_to(&values.astype(a.dtype()), &target_shape);
            let v = super::reshape_to(&v, region.shape());
            return Ok(slice_update(a, &v, &p.specs));
        }
        // General path: index the flat positions, then scatter into the flattened array.
        let positions =
            super::reshape(&super::arange_n(a.size(), Some(Dtype::Int64)), &a.shape().iter().map(|&d| d as isize).collect::<Vec<_>>());
        let sel = index(&positions, idx);
        let v = super::broadcast_to(&values.astype(a.dtype()), sel.shape());
        let flat_idx = super::reshape(&sel, &[-1]);
        let upd = super::reshape(&v, &[-1, 1]);
        let flat = super::reshape(a, &[-1]);
        let out = scatter_kind(&flat, &[flat_idx], &upd, &[0], kind);
        Ok(super::reshape_to(&out, a.shape()))
    })
}

/// `a.at[idx].set(values)`: a copy of `a` with the indexed elements replaced.
#[track_caller]
pub fn index_set(a: &Array, idx: &[Idx], values: &Array) -> Array {
    index_update(a, idx, values, ScatterKind::Set)
}
/// `a.at[idx].add(values)`: duplicates accumulate.
#[track_caller]
pub fn index_add(a: &Array, idx: &[Idx], values: &Array) -> Array {
    index_update(a, idx, values, ScatterKind::Add)
}
#[track_caller]
pub fn index_multiply(a: &Array, idx: &[Idx], values: &Array) -> Array {
    index_update(a, idx, values, ScatterKind::Prod)
}
#[track_caller]
pub fn index_maximum(a: &Array, idx: &[Idx], values: &Array) -> Array {
    index_update(a, idx, values, ScatterKind::Max)
}
#[track_caller]
pub fn index_minimum(a: &Array, idx: &[Idx], values: &Array) -> Array {
    index_update(a, idx, values, ScatterKind::Min)
}

impl Array {
    /// `a[idx]` (NumPy semantics).
    #[track_caller]
    pub fn index(&self, idx: &[Idx]) -> Array {
        index(self, idx)
    }
    /// `a[idx] = values` as a new array (Rust arrays are values; MLX's Python `__setitem__`
    /// rebinds the same way).
    #[track_caller]
    pub fn set(&self, idx: &[Idx], values: &Array) -> Array {
        index_set(self, idx, values)
    }
}
