//! Gather, slice-update, concatenate and pad on the GPU. Elements move as raw bits (any dtype
//! of 1, 2, 4 or 8 bytes) and scatter (set, add, prod, max, min) with atomics.
//!
//! Out-of-range indices: index arrays whose bytes are on the host (token ids, indices built by
//! the program) are checked there first and give the CPU's `IndexOutOfRange` error; indices
//! computed on the GPU are clamped into the axis by gathers and skipped by scatters (no wild
//! reads or writes, no error: checking them would stall the stream, and MLX's GPU kernels do
//! not check either). Scatter-set with repeated indices keeps one of the updates, unspecified
//! which (MLX's GPU backend is the same; its CPU keeps the last).

use super::compiler::function;
use super::compiler::Args;
use super::device::Gpu;
use super::elementwise::{compute, contiguous, copy_into, load, raw_type, storage, store};
use super::fast::{dptr, output};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::index::ScatterKind;
use crate::primitives::{IndexOp, ShapeOp};
use crate::shape::row_major_strides;
use std::sync::Arc;

const MAX_INDICES: usize = 4;
const MAX_DIMS: usize = 8;

/// Mirrors `struct GatherInfo` in the generated gather kernels.
#[repr(C)]
#[derive(Clone, Copy)]
struct GatherInfo {
    x_off: i64,
    slice_n: i64,
    slice_nd: i32,
    _pad: i32,
    axis_stride: [i64; MAX_INDICES],
    axis_size: [i64; MAX_INDICES],
    slice_shape: [i64; MAX_DIMS],
    slice_strides: [i64; MAX_DIMS],
}

impl GatherInfo {
    /// Base element offset `x_off`; index k steps `axis_stride[k]` over an axis of `axis_size[k]`;
    /// each index selects a slice of `slice` (shape, strides).
    fn new(x_off: i64, axes: impl Iterator<Item = (i64, i64)>, slice: impl Iterator<Item = (usize, isize)>) -> GatherInfo {
        let mut info = GatherInfo {
            x_off,
            slice_n: 1,
            slice_nd: 0,
            _pad: 0,
            axis_stride: [0; MAX_INDICES],
            axis_size: [1; MAX_INDICES],
            slice_shape: [1; MAX_DIMS],
            slice_strides: [0; MAX_DIMS],
        };
        for (k, (stride, size)) in axes.enumerate() {
            (info.axis_stride[k], info.axis_size[k]) = (stride, size);
        }
        for (d, (n, st)) in slice.enumerate() {
            (info.slice_shape[d], info.slice_strides[d]) = (n as i64, st as i64);
            info.slice_n *= n as i64;
            info.slice_nd += 1;
        }
        info
    }
}

/// Each index array as a dense device array, or `None` when one cannot be made so.
fn dense_indices(g: &Gpu, idx: &[Data]) -> Result<Option<Vec<Data>>> {
    let mut dense = Vec::with_capacity(idx.len());
    for i in idx {
        match contiguous(g, i)? {
            Some(d) => dense.push(d),
            None => return Ok(None),
        }
    }
    Ok(Some(dense))
}

/// The index-array kernel parameters (`i0, i1, ...` of `itypes`) and the statements adding each
/// index's offset to `off` for update/gather element `i`; `out_of_range` handles an index
/// outside its axis after negative wrapping (clamp for gathers, skip for scatters).
fn index_source(itypes: &[&str], out_of_range: &str) -> (String, String) {
    let params = itypes.iter().enumerate().map(|(k, t)| format!("const {t}* __restrict__ i{k}, ")).collect();
    let bases = (0..itypes.len())
        .map(|k| {
            format!(
                "{{ long long v = (long long)i{k}[i]; long long n = info.axis_size[{k}]; if (v < 0) v += n; \
                 if (v < 0 || v >= n) {{ {out_of_range} }} off += v * info.axis_stride[{k}]; }}\n"
            )
        })
        .collect();
    (params, bases)
}

const GATHER_INFO: &str = "struct GatherInfo { long long x_off; long long slice_n; int slice_nd; int pad; \
    long long axis_stride[4]; long long axis_size[4]; long long slice_shape[8]; long long slice_strides[8]; };";

pub(crate) fn eval(g: &Gpu, op: &IndexOp, inputs: &mut [Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    match op {
        IndexOp::Gather { axes, slice_sizes } => gather(g, axes, slice_sizes, inputs, &specs[0]),
        IndexOp::SliceUpdate { start, step, .. } => slice_update(g, start, step, inputs),
        IndexOp::Scatter { kind, axes } => scatter(g, *kind, axes, inputs),
    }
}

/// Checks host-resident indices against their axes (as the CPU kernel does).
fn check_on_host(op: &str, idx: &Data, axis: usize, n: usize) -> Result<()> {
    if !idx.buffer.is_on_host() {
        return Ok(());
    }
    let bad: Option<i128> = crate::dispatch!(idx.dtype, T => {
        idx.row_major::<T>().iter().map(|v| crate::dtype::Element::to_i128(*v)).find(|&v| {
            let r = if v < 0 { v + n as i128 } else { v };
            r < 0 || r >= n as i128
        })
    });
    match bad {
        Some(v) => Err(Error::index(format!("[{op}] index {v} is out of bounds for axis {axis} with size {n}"))),
        None => Ok(()),
    }
}

fn gather(g: &Gpu, axes: &[usize], slice_sizes: &[usize], inputs: &[Data], spec: &Spec) -> Result<Option<Vec<Data>>> {
    let x = &inputs[0];
    let idx = &inputs[1..];
    let Some(et) = raw_type(x.dtype.size()) else { return Ok(None) };
    if idx.len() > MAX_INDICES || x.ndim() > MAX_DIMS || idx.iter().any(|i| !i.dtype.is_integer()) {
        return Ok(None);
    }
    for (i, &ax) in idx.iter().zip(axes) {
        check_on_host("gather", i, ax, x.shape[ax])?;
    }
    let Some(dense) = dense_indices(g, idx)? else { return Ok(None) };
    let axes_info = axes.iter().map(|&ax| (x.strides[ax] as i64, x.shape[ax].max(1) as i64));
    let info = GatherInfo::new(x.offset as i64, axes_info, slice_sizes.iter().copied().zip(x.strides.iter().copied()));
    let itypes: Vec<&str> = dense.iter().map(|d| storage(d.dtype).unwrap_or("int")).collect();
    let name = format!(
        "gather_{}_{}",
        x.dtype.size(),
        dense.iter().map(|d| format!("{:?}", d.dtype).to_lowercase()).collect::<Vec<_>>().join("_")
    );
    let f = function(g, &name, || {
        let (params, bases) = index_source(&itypes, "v = v < 0 ? 0 : n - 1;");
        format!(
            "{GATHER_INFO}\nextern \"C\" __global__ void {name}({et}* __restrict__ out, const {et}* __restrict__ x, {params}long long n, GatherInfo info) {{\n\
             for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {{\n\
             long long i = e / info.slice_n, s = e % info.slice_n; long long off = info.x_off;\n{bases}\
             for (int d = info.slice_nd - 1; d >= 0; --d) {{ long long c = s % info.slice_shape[d]; s /= info.slice_shape[d]; off += c * info.slice_strides[d]; }}\n\
             out[e] = x[off];\n}}\n}}\n"
        )
    })?;
    let (out, optr) = output(g, &spec.0, spec.1)?;
    let n = out.size();
    if n > 0 {
        let mut args = Args::new().arg(optr).arg(x.buffer.device_block(g.ordinal)?.ptr());
        for d in &dense {
            args = args.arg(dptr(g, d)?);
        }
        let blocks = n.div_ceil(256).clamp(1, g.sm_count as usize * 32) as u32;
        args.arg(n as i64).arg(info).launch(g, &f, (blocks, 1), 256)?;
    }
    Ok(Some(vec![out]))
}

/// Writes the update into the strided region of x: in place when x's buffer is the kernel's
/// alone (the scheduler donated it, as a KV cache's is at each step), else into a copy.
fn slice_update(g: &Gpu, start: &[usize], step: &[isize], inputs: &mut [Data]) -> Result<Option<Vec<Data>>> {
    let (x, rest) = inputs.split_first_mut().expect("slice_update has two inputs");
    let update = &rest[0];
    let rs = row_major_strides(&x.shape);
    let dst_strides: Vec<isize> = rs.iter().zip(step).map(|(&s, &k)| s * k).collect();
    let off: isize = start.iter().zip(&rs).map(|(&s, &r)| s as isize * r).sum();
    let whole = x.offset == 0 && x.is_row_contiguous() && x.buffer.len() >= x.size() * x.dtype.size() && !x.buffer.is_mapped();
    if whole {
        if let Some(buf) = Arc::get_mut(&mut x.buffer) {
            let base = buf.device_block_mut(g.ordinal)?.ptr();
            if copy_into(g, update, base, &dst_strides, off)? {
                return Ok(Some(vec![x.clone()]));
            }
        }
    }
    let (out, optr) = output(g, &x.shape, x.dtype)?;
    if !copy_into(g, x, optr, &rs, 0)? || !copy_into(g, update, optr, &dst_strides, off)? {
        return Ok(None);
    }
    Ok(Some(vec![out]))
}

/// Concatenate and pad: each input copied into its region of a fresh output.
pub(crate) fn assemble(g: &Gpu, op: &ShapeOp, inputs: &[Data], spec: &Spec) -> Result<Option<Vec<Data>>> {
    let (out, optr) = output(g, &spec.0, spec.1)?;
    let strides = row_major_strides(&spec.0);
    match op {
        ShapeOp::Concatenate { axis } => {
            let mut at = 0usize;
            for inp in inputs {
                if inp.dtype != spec.1 || !copy_into(g, inp, optr, &strides, at as isize * strides[*axis])? {
                    return Ok(None);
                }
                at += inp.shape[*axis];
            }
        }
        ShapeOp::Pad { low, .. } => {
            let (x, value) = (&inputs[0], &inputs[1]);
            // The fill is the scalar value broadcast over the output (stride 0 everywhere).
            let fill = value.view(spec.0.clone(), vec![0; spec.0.len()], value.offset);
            let off: isize = low.iter().zip(&strides).map(|(&l, &s)| l as isize * s).sum();
            if value.dtype != spec.1 || !copy_into(g, &fill, optr, &strides, 0)? || !copy_into(g, x, optr, &strides, off)? {
                return Ok(None);
            }
        }
        _ => return Ok(None),
    }
    Ok(Some(vec![out]))
}

/// How one scatter update combines into its element: a C statement on `out + off` (storage
/// type `st`) with the update `u`, or `None` when this kernel does not cover the pair.
/// Sums of f32/f64/32- and 64-bit integers use the hardware's atomic add; every other pair
/// runs a compare-and-swap loop on the aligned 4- or 8-byte word holding the element.
fn scatter_update(kind: ScatterKind, dt: Dtype) -> Option<String> {
    let st = storage(dt)?;
    let bytes = dt.size();
    if kind == ScatterKind::Set {
        return Some("out[off] = u;".into());
    }
    match (kind, dt) {
        (ScatterKind::Add, Dtype::Float32 | Dtype::Float64 | Dtype::Int32 | Dtype::Uint32 | Dtype::Uint64) => {
            return Some("atomicAdd(out + off, u);".into())
        }
        (ScatterKind::Add, Dtype::Int64) => return Some("atomicAdd((unsigned long long*)(out + off), (unsigned long long)u);".into()),
        _ => {}
    }
    // The new value from the current one `a` and the update `u` (both stored values).
    let c = if dt == Dtype::Bool { "int" } else { compute(dt) };
    let (a, b) = (load(dt, "a"), load(dt, "u"));
    let combined = match (kind, dt) {
        (ScatterKind::Add, Dtype::Bool) => format!("{a} | {b}"),
        (ScatterKind::Prod, Dtype::Bool) => format!("{a} & {b}"),
        (ScatterKind::Add, _) => format!("({c})({a}) + ({c})({b})"),
        (ScatterKind::Prod, _) => format!("({c})({a}) * ({c})({b})"),
        (ScatterKind::Max, _) => format!("(({c})({b}) > ({c})({a}) || ({c})({b}) != ({c})({b})) ? ({c})({b}) : ({c})({a})"),
        (ScatterKind::Min, _) => format!("(({c})({b}) < ({c})({a}) || ({c})({b}) != ({c})({b})) ? ({c})({b}) : ({c})({a})"),
        (ScatterKind::Set, _) => unreachable!(),
    };
    let new = store(dt, &combined);
    Some(match bytes {
        4 | 8 => {
            let w = if bytes == 4 { "unsigned int" } else { "unsigned long long" };
            format!(
                "{w}* p_ = ({w}*)(out + off); {w} old_ = *p_, was_;\n\
                 do {{ was_ = old_; union {{ {w} w; {st} v; }} cur_, nv_; cur_.w = was_; {st} a = cur_.v; nv_.v = {new}; \
                 old_ = atomicCAS(p_, was_, nv_.w); }} while (old_ != was_);"
            )
        }
        1 | 2 => {
            let mask = if bytes == 1 { "0xffu" } else { "0xffffu" };
            format!(
                "unsigned long long addr_ = (unsigned long long)(out + off); unsigned int* p_ = (unsigned int*)(addr_ & ~3ull);\n\
                 unsigned int sh_ = (unsigned int)(addr_ & 3ull) * 8u; unsigned int old_ = *p_, was_;\n\
                 do {{ was_ = old_; {st} a = ({st})((was_ >> sh_) & {mask}); {st} nv_ = {new}; \
                 unsigned int w_ = (was_ & ~({mask} << sh_)) | (((unsigned int)nv_ & {mask}) << sh_); \
                 old_ = atomicCAS(p_, was_, w_); }} while (old_ != was_);"
            )
        }
        _ => return None,
    })
}

/// `x` with `updates` combined in at the indexed slices (inputs: x, idx_0..idx_{k-1}, updates).
/// In place when x's buffer is the kernel's alone (a donated gradient accumulator), else into
/// a copy of x.
fn scatter(g: &Gpu, kind: ScatterKind, axes: &[usize], inputs: &mut [Data]) -> Result<Option<Vec<Data>>> {
    let n_in = inputs.len();
    let dt = inputs[0].dtype;
    let Some(update_stmt) = scatter_update(kind, dt) else { return Ok(None) };
    let st = storage(dt).unwrap_or("float");
    {
        let idx = &inputs[1..n_in - 1];
        let x = &inputs[0];
        if idx.len() > MAX_INDICES || x.ndim() > MAX_DIMS || idx.iter().any(|i| !i.dtype.is_integer()) {
            return Ok(None);
        }
        for (i, &ax) in idx.iter().zip(axes) {
            check_on_host("scatter", i, ax, x.shape[ax])?;
        }
    }
    let Some(dense) = dense_indices(g, &inputs[1..n_in - 1])? else { return Ok(None) };
    let Some(upd) = contiguous(g, &inputs[n_in - 1])? else { return Ok(None) };
    let x = &mut inputs[0];
    let rs = row_major_strides(&x.shape);
    let slice_shape: Vec<usize> = x.shape.iter().enumerate().map(|(d, &n)| if axes.contains(&d) { 1 } else { n }).collect();
    let whole = x.offset == 0 && x.is_row_contiguous() && x.buffer.len() >= x.size() * x.dtype.size() && !x.buffer.is_mapped();
    let in_place = whole && Arc::get_mut(&mut x.buffer).is_some();
    let (out, optr) = if in_place {
        let ptr = Arc::get_mut(&mut x.buffer).expect("checked above").device_block_mut(g.ordinal)?.ptr();
        (x.clone(), ptr)
    } else {
        let (out, optr) = output(g, &x.shape, dt)?;
        if !copy_into(g, x, optr, &rs, 0)? {
            return Ok(None);
        }
        (out, optr)
    };
    let axes_info = axes.iter().map(|&ax| (rs[ax] as i64, out.shape[ax] as i64));
    let info = GatherInfo::new(0, axes_info, slice_shape.iter().copied().zip(rs.iter().copied()));
    let itypes: Vec<&str> = dense.iter().map(|d| storage(d.dtype).unwrap_or("int")).collect();
    let name = format!(
        "scatter_{kind:?}_{}_{}",
        format!("{dt:?}").to_lowercase(),
        dense.iter().map(|d| format!("{:?}", d.dtype).to_lowercase()).collect::<Vec<_>>().join("_")
    );
    let f = function(g, &name, || {
        let (params, bases) = index_source(&itypes, "continue;");
        format!(
            "{GATHER_INFO}\nextern \"C\" __global__ void {name}({st}* __restrict__ out, const {st}* __restrict__ updates, {params}long long n, GatherInfo info) {{\n\
             for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (long long)gridDim.x * blockDim.x) {{\n\
             long long i = e / info.slice_n, s = e % info.slice_n; long long off = 0;\n{bases}\
             for (int d = info.slice_nd - 1; d >= 0; --d) {{ long long c = s % info.slice_shape[d]; s /= info.slice_shape[d]; off += c * info.slice_strides[d]; }}\n\
             {st} u = updates[e];\n{update_stmt}\n}}\n}}\n"
        )
    })?;
    let n = upd.size();
    if n > 0 {
        let mut args = Args::new().arg(optr).arg(dptr(g, &upd)?);
        for d in &dense {
            args = args.arg(dptr(g, d)?);
        }
        let blocks = n.div_ceil(256).clamp(1, g.sm_count as usize * 32) as u32;
        args.arg(n as i64).arg(info).launch(g, &f, (blocks, 1), 256)?;
    }
    Ok(Some(vec![out]))
}
