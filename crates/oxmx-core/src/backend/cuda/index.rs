//! Gather, slice-update, concatenate and pad on the GPU. Elements move as raw bits (any dtype
//! of 1, 2, 4 or 8 bytes). Scatter still runs on the CPU.
//!
//! Out-of-range gather indices: index arrays whose bytes are on the host (token ids, indices
//! built by the program) are checked there first and give the CPU's `IndexOutOfRange` error;
//! indices computed on the GPU are clamped into the axis (no wild reads, no error: checking
//! them would stall the stream, and MLX's GPU gathers do not check either).

use super::compiler::function;
use super::compiler::Args;
use super::device::Gpu;
use super::elementwise::{contiguous, copy_into, raw_type, storage};
use super::fast::{dptr, output};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::{IndexOp, ShapeOp};
use crate::shape::{row_major_strides, size_of};
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

const GATHER_INFO: &str = "struct GatherInfo { long long x_off; long long slice_n; int slice_nd; int pad; \
    long long axis_stride[4]; long long axis_size[4]; long long slice_shape[8]; long long slice_strides[8]; };";

pub(crate) fn eval(g: &Gpu, op: &IndexOp, inputs: &mut [Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    match op {
        IndexOp::Gather { axes, slice_sizes } => gather(g, axes, slice_sizes, inputs, &specs[0]),
        IndexOp::SliceUpdate { start, step, .. } => slice_update(g, start, step, inputs),
        IndexOp::Scatter { .. } => Ok(None),
    }
}

/// Checks host-resident indices against their axes (as the CPU kernel does).
fn check_on_host(idx: &Data, axis: usize, n: usize) -> Result<()> {
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
        Some(v) => Err(Error::index(format!("[gather] index {v} is out of bounds for axis {axis} with size {n}"))),
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
        check_on_host(i, ax, x.shape[ax])?;
    }
    let mut dense = Vec::with_capacity(idx.len());
    for i in idx {
        match contiguous(g, i)? {
            Some(d) => dense.push(d),
            None => return Ok(None),
        }
    }
    let mut info = GatherInfo {
        x_off: x.offset as i64,
        slice_n: size_of(slice_sizes) as i64,
        slice_nd: slice_sizes.len() as i32,
        _pad: 0,
        axis_stride: [0; MAX_INDICES],
        axis_size: [1; MAX_INDICES],
        slice_shape: [1; MAX_DIMS],
        slice_strides: [0; MAX_DIMS],
    };
    for (k, &ax) in axes.iter().enumerate() {
        info.axis_stride[k] = x.strides[ax] as i64;
        info.axis_size[k] = x.shape[ax].max(1) as i64;
    }
    for (d, (&s, &st)) in slice_sizes.iter().zip(&x.strides).enumerate() {
        info.slice_shape[d] = s as i64;
        info.slice_strides[d] = st as i64;
    }
    let itypes: Vec<&str> = dense.iter().map(|d| storage(d.dtype).unwrap_or("int")).collect();
    let name = format!(
        "gather_{}_{}",
        x.dtype.size(),
        dense.iter().map(|d| format!("{:?}", d.dtype).to_lowercase()).collect::<Vec<_>>().join("_")
    );
    let f = function(g, &name, || {
        let params: String = itypes.iter().enumerate().map(|(k, t)| format!("const {t}* __restrict__ i{k}, ")).collect();
        let bases: String = (0..itypes.len())
            .map(|k| {
                format!(
                    "{{ long long v = (long long)i{k}[i]; long long n = info.axis_size[{k}]; if (v < 0) v += n; \
                     v = v < 0 ? 0 : (v >= n ? n - 1 : v); off += v * info.axis_stride[{k}]; }}\n"
                )
            })
            .collect();
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
