//! Reductions on the GPU over trailing axes: `sum/prod/max/min/all/any` whose axes are the last
//! ones (or all of them), `argmax/argmin` and `logsumexp` along the last axis (`RowFold`: one
//! block per row, each thread folding several elements per round of loads, then a tree in
//! shared memory; rows too few to fill the GPU are split across blocks and their partial
//! states merged by a second kernel), and `softmax` along the last axis (one block per row).
//! Other reductions run on the CPU for now.

use super::compiler::{function, launch_grid, Args};
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
    Ok(Some(fold_rows(g, &reduce_fold(kind, it, ot), &x, rows, cols, out)?))
}

/// `kind` of `it` values into `ot`.
fn reduce_fold(kind: ReduceKind, it: Dtype, ot: Dtype) -> RowFold {
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
    RowFold {
        name: format!("reduce_{kind:?}_{}_{}", format!("{it:?}").to_lowercase(), format!("{ot:?}").to_lowercase()),
        value: acc,
        load: format!("({acc})({})", load(it, "@")),
        fields: format!("{acc} acc;"),
        init: format!("s.acc = ({acc})({init});"),
        fold: format!("{{ {acc} acc = s.acc; {step} s.acc = acc; }}"),
        merge: format!("{{ {acc} acc = a.acc, v = b.acc; {step} a.acc = acc; }}"),
        out_t: storage(ot).unwrap_or("float"),
        result: store(ot, "s.acc"),
    }
}

/// A reduction of each row to one value, as C code over a state struct `St`: `fields` declares
/// it, `init` sets `s` to the identity, `fold` adds the value `v` (of type `value`, read by
/// `load` with `@` for the element) at index `i` to `s`, `merge` folds state `b` into `a`, and
/// `result` is the stored output of the final `s`. `merge` must be associative and
/// commutative up to rounding: the GPU combines states in any order.
struct RowFold {
    name: String,
    value: &'static str,
    load: String,
    fields: String,
    init: String,
    fold: String,
    merge: String,
    out_t: &'static str,
    result: String,
}

/// Elements each thread loads before folding them (independent loads in flight: a thread that
/// folded one element per load waited a DRAM round trip each, ~0.4 µs).
const FOLD_UNROLL: usize = 8;

impl RowFold {
    /// The state, its functions and the kernel `kernel`'s opening line.
    fn prelude(&self) -> String {
        let (fields, init, fold, merge) = (&self.fields, &self.init, &self.fold, &self.merge);
        let v = self.value;
        format!(
            "struct St {{ {fields} }};\n\
             __device__ __forceinline__ St st_init() {{ St s; {init} return s; }}\n\
             __device__ __forceinline__ void st_fold(St& s, {v} v, long long i) {{ {fold} }}\n\
             __device__ __forceinline__ void st_merge(St& a, const St& b) {{ {merge} }}\n\
             __device__ __forceinline__ St st_block(St s) {{\n\
             __shared__ St sh[{THREADS}]; sh[threadIdx.x] = s; __syncthreads();\n\
             for (int k = blockDim.x / 2; k > 0; k >>= 1) {{ if (threadIdx.x < k) st_merge(sh[threadIdx.x], sh[threadIdx.x + k]); __syncthreads(); }}\n\
             return sh[0];\n}}\n"
        )
    }

    /// Block (row, split) folds `x[row, split * seg ..][..seg]`: into `out[row]` when the row is
    /// one split, else into `part[row, split]`.
    fn fold_source(&self, name: &str, in_t: &str) -> String {
        let (v, ot, result) = (self.value, self.out_t, &self.result);
        let ld = self.load.replace('@', "xr[i]");
        format!(
            "{}extern \"C\" __global__ void {name}({ot}* __restrict__ out, St* __restrict__ part, const {in_t}* __restrict__ x, long long cols, long long seg) {{\n\
             long long row = blockIdx.x, lo = (long long)blockIdx.y * seg, hi = lo + seg < cols ? lo + seg : cols;\n\
             const {in_t}* xr = x + row * cols;\n\
             St s = st_init();\n\
             for (long long base = lo; base < hi; base += (long long)blockDim.x * {FOLD_UNROLL}) {{\n\
             {v} vs[{FOLD_UNROLL}];\n\
             #pragma unroll\n\
             for (int u = 0; u < {FOLD_UNROLL}; ++u) {{ long long i = base + (long long)u * blockDim.x + threadIdx.x; if (i < hi) vs[u] = {ld}; }}\n\
             #pragma unroll\n\
             for (int u = 0; u < {FOLD_UNROLL}; ++u) {{ long long i = base + (long long)u * blockDim.x + threadIdx.x; if (i < hi) st_fold(s, vs[u], i); }}\n\
             }}\n\
             s = st_block(s);\n\
             if (threadIdx.x == 0) {{ if (gridDim.y == 1) out[row] = {result}; else part[row * gridDim.y + blockIdx.y] = s; }}\n}}\n",
            self.prelude()
        )
    }

    /// One block per row merges the row's `splits` partial states into `out[row]`.
    fn merge_source(&self, name: &str) -> String {
        let (ot, result) = (self.out_t, &self.result);
        format!(
            "{}extern \"C\" __global__ void {name}({ot}* __restrict__ out, const St* __restrict__ part, long long splits) {{\n\
             long long row = blockIdx.x;\n\
             St s = st_init();\n\
             for (long long j = threadIdx.x; j < splits; j += blockDim.x) st_merge(s, part[row * splits + j]);\n\
             s = st_block(s);\n\
             if (threadIdx.x == 0) out[row] = {result};\n}}\n",
            self.prelude()
        )
    }
}

/// Splits per row: rows too few to cover the GPU with one block each are cut into segments of
/// at least one unrolled round (`THREADS * FOLD_UNROLL` elements), ~4 blocks per SM in all
/// (a decoding step's argmax and logsumexp over a 128k vocabulary ran in one block: ~200 µs).
fn row_splits(g: &Gpu, rows: usize, cols: usize) -> usize {
    let round = THREADS as usize * FOLD_UNROLL;
    let want = (4 * g.sm_count as usize).div_ceil(rows.max(1));
    want.min(cols.div_ceil(round)).clamp(1, 1024)
}

/// Runs `fold` over each row of a dense `[rows, cols]` input: one kernel when a block per row
/// covers the GPU, else per-split partial states and a merge kernel.
fn fold_rows(g: &Gpu, fold: &RowFold, x: &Data, rows: usize, cols: usize, out: &Spec) -> Result<Data> {
    let (shape, odt) = out;
    let bytes = size_of(shape) * odt.size();
    let block = alloc(g.ordinal, bytes)?;
    if rows > i32::MAX as usize {
        return Err(crate::error::Error::runtime(format!("[gpu] {}: {rows} rows exceed the grid limit", fold.name)));
    }
    if rows > 0 {
        let in_t = storage(x.dtype).unwrap_or("float");
        let f = function(g, &fold.name, || fold.fold_source(&fold.name, in_t))?;
        let splits = row_splits(g, rows, cols);
        let seg = cols.div_ceil(splits).max(1);
        let splits = cols.div_ceil(seg).max(1);
        // Partial states: at most 32 bytes each (the largest state is a double and an index).
        let part = if splits > 1 { Some(alloc(g.ordinal, rows * splits * 32)?) } else { None };
        let x_ptr = x.buffer.device_block(g.ordinal)?.ptr() + x.offset as u64 * x.dtype.size() as u64;
        let part_ptr = part.as_ref().map_or(0, |p| p.ptr());
        Args::new().arg(block.ptr()).arg(part_ptr).arg(x_ptr).arg(cols as i64).arg(seg as i64).launch(
            g,
            &f,
            (rows as u32, splits as u32),
            THREADS,
        )?;
        if splits > 1 {
            let name = format!("{}_merge", fold.name);
            let f = function(g, &name, || fold.merge_source(&name))?;
            Args::new().arg(block.ptr()).arg(part_ptr).arg(splits as i64).launch(g, &f, (rows as u32, 1), THREADS)?;
        }
    }
    Ok(Data::dense(Buffer::on_device(block, bytes), shape.clone(), *odt))
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
    // float32 rows of a multiple of 4 at a 16-byte address move as float4: a quarter of the
    // load and store instructions (scalar, a 4096-wide softmax ran at 60% of copy bandwidth).
    let vec4 = in_registers && d == Dtype::Float32 && cols % 4 == 0 && super::fast::dptr(g, &x)? % 16 == 0;
    let name = format!("softmax_{}_{}", format!("{d:?}").to_lowercase(), if vec4 { 2 } else { in_registers as u8 });
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
        if vec4 {
            const P4: usize = SOFTMAX_PER / 4;
            format!(
                "{head}float r_[{SOFTMAX_PER}]; float a_ = -{inf};\n\
                 const float4* x4 = (const float4*)xr; float4* o4 = (float4*)orow; long long c4 = cols / 4;\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {P4}; ++p) {{ long long i = threadIdx.x + (long long)p * blockDim.x;\n\
                   float4 v = i < c4 ? x4[i] : make_float4(-{inf}, -{inf}, -{inf}, -{inf});\n\
                   r_[4 * p] = v.x; r_[4 * p + 1] = v.y; r_[4 * p + 2] = v.z; r_[4 * p + 3] = v.w; }}\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {SOFTMAX_PER}; ++p) {{ float b_ = r_[p]; a_ = {max}; }}\n\
                 {reduce_max}float mx = a_; a_ = 0;\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {SOFTMAX_PER}; ++p) {{ long long i = threadIdx.x + (long long)(p / 4) * blockDim.x; r_[p] = i < c4 ? expf(r_[p] - mx) : 0; a_ += r_[p]; }}\n\
                 {reduce_sum}float inv = 1.0f / a_;\n\
                 #pragma unroll\n\
                 for (int p = 0; p < {P4}; ++p) {{ long long i = threadIdx.x + (long long)p * blockDim.x;\n\
                   if (i < c4) o4[i] = make_float4(r_[4 * p] * inv, r_[4 * p + 1] * inv, r_[4 * p + 2] * inv, r_[4 * p + 3] * inv); }}\n\
                 }}\n"
            )
        } else if in_registers {
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
    Ok(Some(fold_rows(g, &arg_fold(d, is_max), &x, rows, cols, out)?))
}

/// argmax (or argmin) of `d` values with their first index.
fn arg_fold(d: Dtype, is_max: bool) -> RowFold {
    let c = compute(d);
    let cmp = if is_max { ">" } else { "<" };
    // `better(a, ia, b, ib)`: a at ia beats b at ib (NaN first, then the extreme, then the
    // lower index); a state with index -1 holds nothing yet.
    let better = |a: &str, ia: &str, b: &str, ib: &str| {
        format!("(({a} != {a} || {b} != {b}) ? (({a} != {a}) && (!({b} != {b}) || {ia} < {ib})) : ({a} {cmp} {b} || ({a} == {b} && {ia} < {ib})))")
    };
    RowFold {
        name: format!("arg{}_{}", if is_max { "max" } else { "min" }, format!("{d:?}").to_lowercase()),
        value: c,
        load: load(d, "@"),
        fields: format!("{c} v; long long i;"),
        init: "s.v = 0; s.i = -1;".into(),
        fold: format!("if (s.i < 0 || {}) {{ s.v = v; s.i = i; }}", better("v", "i", "s.v", "s.i")),
        merge: format!("if (b.i >= 0 && (a.i < 0 || {})) a = b;", better("b.v", "b.i", "a.v", "a.i")),
        out_t: "unsigned int",
        result: "(unsigned int)s.i".into(),
    }
}

/// logsumexp along the last axis (kept as size 1) with float32 or float64 sums, in one pass: the
/// state is the running maximum and the sum of exp(x - maximum), rescaled when the maximum
/// grows. An infinite maximum is the result (as on the CPU), a NaN propagates.
pub(crate) fn logsumexp(g: &Gpu, x: &Data, out: &Spec) -> Result<Option<Data>> {
    let d = x.dtype;
    if !is_float(d) || out.1 != d || x.shape.last().copied().unwrap_or(0) == 0 {
        return Ok(None);
    }
    let Some(x) = contiguous(g, x)? else { return Ok(None) };
    let cols = *x.shape.last().unwrap_or(&1);
    let rows = size_of(&x.shape) / cols;
    Ok(Some(fold_rows(g, &lse_fold(d), &x, rows, cols, out)?))
}

/// logsumexp of `d` values: (m, s) stands for s * exp(m).
fn lse_fold(d: Dtype) -> RowFold {
    let c = compute(d);
    let (ex, lg, inf) = if c == "double" { ("exp", "log", "OXMX_INF_D") } else { ("expf", "logf", "OXMX_INF_F") };
    // (m, s) stands for s * exp(m). A NaN maximum stays NaN; +inf absorbs everything after it;
    // -inf values add nothing.
    let fold = format!(
        "if (v != v || s.m != s.m) {{ s.m = v + s.m; }} else if (v == -{inf} || s.m == {inf}) {{ }} \
         else if (v == {inf}) {{ s.m = v; s.s = 1; }} \
         else if (v > s.m) {{ s.s = s.s * {ex}(s.m - v) + 1; s.m = v; }} else {{ s.s += {ex}(v - s.m); }}"
    );
    let merge = format!(
        "if (a.m != a.m || b.m != b.m) {{ a.m = a.m + b.m; }} else if (b.m == -{inf} || a.m == {inf}) {{ }} \
         else if (a.m == -{inf} || b.m == {inf}) {{ a = b; }} \
         else if (b.m > a.m) {{ a.s = a.s * {ex}(a.m - b.m) + b.s; a.m = b.m; }} else {{ a.s += b.s * {ex}(b.m - a.m); }}"
    );
    RowFold {
        name: format!("logsumexp_{}", format!("{d:?}").to_lowercase()),
        value: c,
        load: load(d, "@"),
        fields: format!("{c} m; {c} s;"),
        init: format!("s.m = -{inf}; s.s = 0;"),
        fold,
        merge,
        out_t: storage(d).unwrap_or("float"),
        result: store(d, &format!("(s.m == s.m && s.m != {inf} && s.m != -{inf}) ? {lg}(s.s) + s.m : s.m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cuda::compiler::compile_only;

    /// The generated row reductions compile (both kernels), for every state type; needs NVRTC
    /// (`LD_LIBRARY_PATH` with libnvrtc), not a GPU. Their results are tested on a device by
    /// tests/cuda.rs against the CPU.
    #[test]
    fn row_fold_sources_compile() {
        let mut folds = vec![];
        for d in [Dtype::Bfloat16, Dtype::Float16, Dtype::Float32, Dtype::Float64] {
            folds.push((arg_fold(d, true), d));
            folds.push((arg_fold(d, false), d));
            folds.push((lse_fold(d), d));
        }
        for kind in [ReduceKind::Sum, ReduceKind::Prod, ReduceKind::Max, ReduceKind::Min, ReduceKind::And, ReduceKind::Or] {
            for (it, ot) in [
                (Dtype::Bfloat16, Dtype::Bfloat16),
                (Dtype::Int32, Dtype::Int32),
                (Dtype::Bool, Dtype::Bool),
                (Dtype::Float64, Dtype::Float64),
            ] {
                folds.push((reduce_fold(kind, it, ot), it));
            }
        }
        for (fold, it) in &folds {
            let merge = format!("{}_merge", fold.name);
            for (name, src) in [(&fold.name, fold.fold_source(&fold.name, storage(*it).unwrap())), (&merge, fold.merge_source(&merge))] {
                match compile_only(name, src, "sm_90") {
                    None => {
                        eprintln!("skipped: NVRTC (libnvrtc) not found");
                        return;
                    }
                    Some(r) => r.unwrap_or_else(|e| panic!("{e}")),
                }
            }
        }
    }
}
