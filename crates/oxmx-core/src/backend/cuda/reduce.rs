//! Reductions on the GPU over trailing axes: one thread block per output row, each thread
//! striding over the row, then a shared-memory tree. Covers `sum/prod/max/min/all/any` whose
//! axes are the last ones (or all of them) and `softmax` along the last axis; other reductions
//! run on the CPU for now.

use super::compiler::{function, launch_grid};
use super::device::Gpu;
use super::elementwise::{compute, contiguous, load, storage, store};
use super::memory::alloc;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::memory::Buffer;
use crate::primitives::reduce::ReduceKind;
use crate::shape::size_of;
use std::ffi::c_void;

const THREADS: u32 = 256;

/// (lowest, highest) literals of a dtype in C.
fn limits(d: Dtype) -> (&'static str, &'static str) {
    match d {
        Dtype::Bool => ("0", "1"),
        Dtype::Uint8 => ("0", "255"),
        Dtype::Uint16 => ("0", "65535"),
        Dtype::Uint32 => ("0u", "4294967295u"),
        Dtype::Uint64 => ("0ull", "18446744073709551615ull"),
        Dtype::Int8 => ("-128", "127"),
        Dtype::Int16 => ("-32768", "32767"),
        Dtype::Int32 => ("(-2147483647 - 1)", "2147483647"),
        Dtype::Int64 => ("(-9223372036854775807LL - 1)", "9223372036854775807LL"),
        Dtype::Float64 => ("-OXMX_INF_D", "OXMX_INF_D"),
        _ => ("-OXMX_INF_F", "OXMX_INF_F"),
    }
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 | Dtype::Float64)
}

/// Launches one block per row over a dense `[rows, cols]` input.
fn run_rows(g: &Gpu, name: &str, body: impl FnOnce() -> String, x: &Data, rows: usize, cols: usize, out: &Spec) -> Result<Data> {
    let (shape, odt) = out;
    let f = function(g, name, body)?;
    let bytes = size_of(shape) * odt.size();
    let block = alloc(g.ordinal, bytes)?;
    if rows > 0 {
        let mut out_ptr = block.ptr();
        let mut in_ptr = x.buffer.device_block(g.ordinal)?.ptr() + x.offset as u64 * x.dtype.size() as u64;
        let mut cols64 = cols as i64;
        let mut params: Vec<*mut c_void> = vec![&mut out_ptr as *mut u64 as _, &mut in_ptr as *mut u64 as _, &mut cols64 as *mut i64 as _];
        if rows > i32::MAX as usize {
            return Err(crate::error::Error::runtime(format!("[gpu] {name}: {rows} rows exceed the grid limit")));
        }
        launch_grid(g, &f, (rows as u32, 1), THREADS, 0, &mut params)?;
    }
    Ok(Data::dense(Buffer::on_device(block, bytes), shape.clone(), *odt))
}

/// `kind` over `axes` of `x` (kept as size-1 dims). Axes that are not the trailing ones are
/// moved there first (a transposing copy on the GPU, kept axes in order, so the rows of the
/// result keep the output's order): the gradient of a batch-broadcast matmul sums over leading
/// axes, and running that on the CPU cost a round trip per LoRA weight and step.
pub(crate) fn reduce(g: &Gpu, kind: ReduceKind, axes: &[usize], x: &Data, out: &Spec) -> Result<Option<Data>> {
    let nd = x.ndim();
    let (it, ot) = (x.dtype, out.1);
    if storage(it).is_none() || storage(ot).is_none() {
        return Ok(None);
    }
    let trailing = axes.iter().enumerate().all(|(i, &a)| a == nd - axes.len() + i);
    let x = if trailing {
        x.clone()
    } else {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        let perm: Vec<usize> = (0..nd).filter(|a| !sorted.contains(a)).chain(sorted.iter().copied()).collect();
        let mut view = x.clone();
        view.shape = perm.iter().map(|&a| x.shape[a]).collect();
        view.strides = perm.iter().map(|&a| x.strides[a]).collect();
        view
    };
    let Some(x) = contiguous(g, &x)? else { return Ok(None) };
    let cols: usize = x.shape[nd - axes.len()..].iter().product();
    let rows: usize = x.shape[..nd - axes.len()].iter().product();
    // Sums and products accumulate in the output's compute type; max/min in the input's.
    let (acc, init, step) = match kind {
        ReduceKind::Sum => (compute(ot), "0".to_string(), "acc = acc + v;"),
        ReduceKind::Prod => (compute(ot), "1".to_string(), "acc = acc * v;"),
        ReduceKind::Max if is_float(it) => {
            (compute(it), limits(it).0.to_string(), "acc = (v != v || acc != acc) ? v + acc : (v > acc ? v : acc);")
        }
        ReduceKind::Min if is_float(it) => {
            (compute(it), limits(it).1.to_string(), "acc = (v != v || acc != acc) ? v + acc : (v < acc ? v : acc);")
        }
        ReduceKind::Max => (compute(it), limits(it).0.to_string(), "acc = v > acc ? v : acc;"),
        ReduceKind::Min => (compute(it), limits(it).1.to_string(), "acc = v < acc ? v : acc;"),
        ReduceKind::And => ("int", "1".to_string(), "acc = acc && (v != 0);"),
        ReduceKind::Or => ("int", "0".to_string(), "acc = acc || (v != 0);"),
    };
    let (ist, ost) = (storage(it).unwrap_or("float"), storage(ot).unwrap_or("float"));
    let name = format!("reduce_{kind:?}_{}_{}", format!("{it:?}").to_lowercase(), format!("{ot:?}").to_lowercase());
    let v = format!("({acc})({})", load(it, "x[(long long)row * cols + c]"));
    let combine = step.replace("v", "o").replace("acc = acc", "acc = acc");
    let body = || {
        format!(
            "extern \"C\" __global__ void {name}({ost}* __restrict__ out, const {ist}* __restrict__ x, long long cols) {{\n\
         __shared__ {acc} part[{THREADS}];\n\
         long long row = blockIdx.x;\n\
         {acc} acc = ({acc})({init});\n\
         for (long long c = threadIdx.x; c < cols; c += blockDim.x) {{ {acc} v = {v}; {step} }}\n\
         part[threadIdx.x] = acc;\n\
         __syncthreads();\n\
         for (int s = blockDim.x / 2; s > 0; s >>= 1) {{\n\
         if (threadIdx.x < s) {{ {acc} acc = part[threadIdx.x]; {acc} o = part[threadIdx.x + s]; {combine} part[threadIdx.x] = acc; }}\n\
         __syncthreads();\n\
         }}\n\
         if (threadIdx.x == 0) out[row] = {};\n\
         }}\n",
            store(ot, "part[0]")
        )
    };
    Ok(Some(run_rows(g, &name, body, &x, rows, cols, out)?))
}

/// Row elements per thread that softmax keeps in registers (rows up to `THREADS * SOFTMAX_PER`
/// read memory once; longer ones read it three times).
const SOFTMAX_PER: usize = 16;

/// A block-wide reduction of the variable `a_` (type `c`) with `combine(a_, b_)` (a C
/// expression), leaving the result in `a_` on every thread; `part` is `__shared__ c part[32]`.
fn block_reduce(c: &str, combine: &str, identity: &str) -> String {
    format!(
        "{{ for (int o_ = 16; o_ > 0; o_ >>= 1) {{ {c} b_ = __shfl_xor_sync(0xffffffffu, a_, o_); a_ = {combine}; }}\n\
         __syncthreads(); if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = a_; __syncthreads();\n\
         a_ = (threadIdx.x & 31) < ((blockDim.x + 31) >> 5) ? part[threadIdx.x & 31] : {identity};\n\
         for (int o_ = 16; o_ > 0; o_ >>= 1) {{ {c} b_ = __shfl_xor_sync(0xffffffffu, a_, o_); a_ = {combine}; }} }}\n"
    )
}

/// Softmax along the last axis (max-subtracted, sums in f32 or f64). Rows up to
/// `THREADS * SOFTMAX_PER` long stay in registers between the max, the sum and the write.
pub(crate) fn softmax(g: &Gpu, x: &Data, out: &Spec) -> Result<Option<Data>> {
    let d = x.dtype;
    if !is_float(d) || out.1 != d {
        return Ok(None);
    }
    let Some(x) = contiguous(g, x)? else { return Ok(None) };
    let cols = *x.shape.last().unwrap_or(&1);
    let rows = size_of(&x.shape) / cols.max(1);
    let (t, c) = (storage(d).unwrap_or("float"), compute(d));
    let in_registers = cols <= THREADS as usize * SOFTMAX_PER;
    let name = format!("softmax_{}_{}", format!("{d:?}").to_lowercase(), in_registers as u8);
    let inf = if c == "double" { "OXMX_INF_D" } else { "OXMX_INF_F" };
    let ex = if c == "double" { "exp" } else { "expf" };
    let v = load(d, "xr[i]");
    // NaN-propagating max, as the CPU's.
    let max = "(a_ != a_ || b_ != b_) ? a_ + b_ : (a_ > b_ ? a_ : b_)";
    let reduce_max = block_reduce(c, max, &format!("-{inf}"));
    let reduce_sum = block_reduce(c, "a_ + b_", "0");
    let body = || {
        let head = format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ x, long long cols) {{\n\
             __shared__ {c} part[32];\n\
             long long row = blockIdx.x;\n\
             const {t}* xr = x + row * cols; {t}* orow = out + row * cols;\n"
        );
        if in_registers {
            format!(
                "{head}{c} r_[{SOFTMAX_PER}]; {c} a_ = -{inf};\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {SOFTMAX_PER}; ++p) {{ long long i = threadIdx.x + (long long)p * blockDim.x; r_[p] = i < cols ? {v} : -{inf}; }}\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {SOFTMAX_PER}; ++p) {{ {c} b_ = r_[p]; a_ = {max}; }}\n\
                 {reduce_max}{c} mx = a_; a_ = 0;\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {SOFTMAX_PER}; ++p) {{ long long i = threadIdx.x + (long long)p * blockDim.x; r_[p] = i < cols ? {ex}(r_[p] - mx) : 0; a_ += r_[p]; }}\n\
                 {reduce_sum}{c} inv = ({c})1 / a_;\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {SOFTMAX_PER}; ++p) {{ long long i = threadIdx.x + (long long)p * blockDim.x; if (i < cols) orow[i] = {}; }}\n\
                 }}\n",
                store(d, "r_[p] * inv")
            )
        } else {
            format!(
                "{head}{c} a_ = -{inf};\n\
                 for (long long i = threadIdx.x; i < cols; i += blockDim.x) {{ {c} b_ = {v}; a_ = {max}; }}\n\
                 {reduce_max}{c} mx = a_; a_ = 0;\n\
                 for (long long i = threadIdx.x; i < cols; i += blockDim.x) a_ += {ex}({v} - mx);\n\
                 {reduce_sum}{c} inv = ({c})1 / a_;\n\
                 for (long long i = threadIdx.x; i < cols; i += blockDim.x) orow[i] = {};\n\
                 }}\n",
                store(d, &format!("{ex}({v} - mx) * inv"))
            )
        }
    };
    Ok(Some(run_rows(g, &name, body, &x, rows, cols, out)?))
}

/// argmax / argmin of a float array along its last axis (uint32): the first extreme wins, and
/// a NaN wins over numbers (the first NaN), as on the CPU. `None` for other axes and dtypes.
pub(crate) fn arg_reduce(g: &Gpu, axis: usize, is_max: bool, x: &Data, out: &Spec) -> Result<Option<Data>> {
    let d = x.dtype;
    let inner: usize = x.shape[axis + 1..].iter().product();
    if !is_float(d) || inner != 1 || x.shape[axis] == 0 || out.1 != Dtype::Uint32 {
        return Ok(None);
    }
    let Some(x) = contiguous(g, x)? else { return Ok(None) };
    let cols = x.shape[axis];
    let rows = size_of(&x.shape) / cols;
    let (t, c) = (storage(d).unwrap_or("float"), compute(d));
    let name = format!("arg{}_{}", if is_max { "max" } else { "min" }, format!("{d:?}").to_lowercase());
    let cmp = if is_max { ">" } else { "<" };
    let v = load(d, "xr[i]");
    let body = || {
        format!(
            "__device__ __forceinline__ bool arg_better({c} a, long long ia, {c} b, long long ib) {{\n\
             bool na = a != a, nb = b != b;\n\
             if (na || nb) return na && (!nb || ia < ib);\n\
             return a {cmp} b || (a == b && ia < ib);\n}}\n\
             extern \"C\" __global__ void {name}(unsigned int* __restrict__ out, const {t}* __restrict__ x, long long cols) {{\n\
             __shared__ {c} bv[{THREADS}]; __shared__ long long bi[{THREADS}];\n\
             const {t}* xr = x + (long long)blockIdx.x * cols;\n\
             {c} best = {v0}; long long at = 0;\n\
             for (long long i = threadIdx.x; i < cols; i += blockDim.x) {{ {c} v = {v}; if (i == threadIdx.x || arg_better(v, i, best, at)) {{ best = v; at = i; }} }}\n\
             if (threadIdx.x >= cols) {{ at = -1; }}\n\
             bv[threadIdx.x] = best; bi[threadIdx.x] = at; __syncthreads();\n\
             for (int s = blockDim.x / 2; s > 0; s >>= 1) {{\n\
             if (threadIdx.x < s) {{ long long j = bi[threadIdx.x + s]; if (j >= 0 && (bi[threadIdx.x] < 0 || arg_better(bv[threadIdx.x + s], j, bv[threadIdx.x], bi[threadIdx.x]))) {{ bv[threadIdx.x] = bv[threadIdx.x + s]; bi[threadIdx.x] = j; }} }}\n\
             __syncthreads();\n}}\n\
             if (threadIdx.x == 0) out[blockIdx.x] = (unsigned int)bi[0];\n}}\n",
            v0 = load(d, "xr[0]")
        )
    };
    Ok(Some(run_rows(g, &name, body, &x, rows, cols, out)?))
}

/// logsumexp along the last axis (kept as size 1), max-shifted with float32 or float64 sums;
/// an infinite maximum is the result (as on the CPU), a NaN propagates.
pub(crate) fn logsumexp(g: &Gpu, x: &Data, out: &Spec) -> Result<Option<Data>> {
    let d = x.dtype;
    if !is_float(d) || out.1 != d || x.shape.last().copied().unwrap_or(0) == 0 {
        return Ok(None);
    }
    let Some(x) = contiguous(g, x)? else { return Ok(None) };
    let cols = *x.shape.last().unwrap_or(&1);
    let rows = size_of(&x.shape) / cols;
    let (t, c) = (storage(d).unwrap_or("float"), compute(d));
    let name = format!("logsumexp_{}", format!("{d:?}").to_lowercase());
    let (ex, lg, inf) = if c == "double" { ("exp", "log", "OXMX_INF_D") } else { ("expf", "logf", "OXMX_INF_F") };
    let v = load(d, "xr[i]");
    let body = || {
        format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ x, long long cols) {{\n\
             __shared__ {c} part[{THREADS}];\n\
             const {t}* xr = x + (long long)blockIdx.x * cols;\n\
             {c} mx = -{inf};\n\
             for (long long i = threadIdx.x; i < cols; i += blockDim.x) {{ {c} v = {v}; mx = (v != v || mx != mx) ? v + mx : (v > mx ? v : mx); }}\n\
             part[threadIdx.x] = mx; __syncthreads();\n\
             for (int s = blockDim.x / 2; s > 0; s >>= 1) {{ if (threadIdx.x < s) {{ {c} a = part[threadIdx.x], b = part[threadIdx.x + s]; part[threadIdx.x] = (a != a || b != b) ? a + b : (a > b ? a : b); }} __syncthreads(); }}\n\
             mx = part[0]; __syncthreads();\n\
             bool finite = mx == mx && mx != {inf} && mx != -{inf};\n\
             {c} sum = 0;\n\
             if (finite) for (long long i = threadIdx.x; i < cols; i += blockDim.x) sum += {ex}({v} - mx);\n\
             part[threadIdx.x] = sum; __syncthreads();\n\
             for (int s = blockDim.x / 2; s > 0; s >>= 1) {{ if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s]; __syncthreads(); }}\n\
             if (threadIdx.x == 0) out[blockIdx.x] = {};\n}}\n",
            store(d, &format!("finite ? {lg}(part[0]) + mx : mx"))
        )
    };
    Ok(Some(run_rows(g, &name, body, &x, rows, cols, out)?))
}
