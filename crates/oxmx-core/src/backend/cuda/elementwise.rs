//! Element-wise kernels on the GPU: unary, binary, select, casts and strided copies.
//!
//! One generated CUDA kernel per (op, input dtypes, output dtype): the op's expression in the
//! compute type (f32 for f16/bf16/f32, f64, or the integer itself), grid-stride over the output,
//! each input read through an `Index` (contiguous with a step, or strided over the collapsed
//! shape), so broadcast and transposed views need no copies. Ops and dtypes without a kernel
//! here return `None` and the caller runs the CPU kernel instead.

use super::compiler::{cached, function, launch};
use super::device::Gpu;
use super::memory::alloc;
use crate::backend::cpu::elementwise::collapse;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::memory::Buffer;
use crate::primitives::{BinaryOp, UnaryOp};
use crate::shape::size_of;
use std::ffi::c_void;

const MAX_DIMS: usize = 8;
const MAX_INPUTS: usize = 3;

/// Element offsets of up to K inputs for a flat output index: `struct Index` in
/// kernels/common.cuh (K = 3), or the fused kernels' `struct FIndex` (K = 8).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct IndexN<const K: usize> {
    ndim: i32,
    contiguous: i32,
    shape: [i64; MAX_DIMS],
    strides: [[i64; MAX_DIMS]; K],
    offset: [i64; K],
    step: [i64; K],
}

type Index = IndexN<MAX_INPUTS>;

/// The C storage type of a dtype (`None`: no GPU kernels for it).
pub(crate) fn storage(d: Dtype) -> Option<&'static str> {
    Some(match d {
        Dtype::Bool => "bool_t",
        Dtype::Uint8 => "unsigned char",
        Dtype::Uint16 => "unsigned short",
        Dtype::Uint32 => "unsigned int",
        Dtype::Uint64 => "unsigned long long",
        Dtype::Int8 => "signed char",
        Dtype::Int16 => "short",
        Dtype::Int32 => "int",
        Dtype::Int64 => "long long",
        Dtype::Float16 => "f16_t",
        Dtype::Bfloat16 => "bf16_t",
        Dtype::Float32 => "float",
        Dtype::Float64 => "double",
        Dtype::Complex64 => return None,
    })
}

/// The type arithmetic on `d` happens in.
pub(crate) fn compute(d: Dtype) -> &'static str {
    match d {
        Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 => "float",
        Dtype::Float64 => "double",
        Dtype::Bool => "int",
        other => storage(other).unwrap_or("float"),
    }
}

/// `v` (a stored element of `d`) as a value of `compute(d)`.
pub(crate) fn load(d: Dtype, v: &str) -> String {
    match d {
        Dtype::Float16 => format!("f16_to_f32({v})"),
        Dtype::Bfloat16 => format!("bf16_to_f32({v})"),
        Dtype::Bool => format!("(int)({v} != 0)"),
        _ => v.to_string(),
    }
}

/// The value `v` (of any arithmetic type) converted and stored as `d`.
pub(crate) fn store(d: Dtype, v: &str) -> String {
    match d {
        Dtype::Float16 => format!("f32_to_f16((float)({v}))"),
        Dtype::Bfloat16 => format!("f32_to_bf16((float)({v}))"),
        Dtype::Bool => format!("(bool_t)(({v}) != 0)"),
        other => format!("({})({v})", storage(other).unwrap_or("float")),
    }
}

fn is_float(d: Dtype) -> bool {
    matches!(d, Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 | Dtype::Float64)
}

/// A math function name for compute type `c` (`expf` for float, `exp` for double).
fn m(c: &str, name: &str) -> String {
    if c == "float" {
        format!("{name}f")
    } else {
        name.to_string()
    }
}

/// The expression of a unary op on `x` of input dtype `d`, or `None` without a GPU kernel.
pub(crate) fn unary_expr(op: UnaryOp, d: Dtype) -> Option<String> {
    use UnaryOp::*;
    let c = compute(d);
    if is_float(d) {
        let inf = if c == "float" { "OXMX_INF_F" } else { "OXMX_INF_D" };
        let call = |name: &str| format!("{}(x)", m(c, name));
        return Some(match op {
            Abs => call("fabs"),
            Negative => "-x".into(),
            // MLX: sign(NaN) is 0; zeros keep their sign.
            Sign => format!("(x > ({c})0 ? ({c})1 : (x < ({c})0 ? ({c})-1 : (x != x ? ({c})0 : x)))"),
            Square => "x * x".into(),
            Sqrt => call("sqrt"),
            Rsqrt => format!("({c})1 / {}(x)", m(c, "sqrt")),
            Reciprocal => format!("({c})1 / x"),
            Exp => call("exp"),
            Expm1 => call("expm1"),
            Log => call("log"),
            Log1p => call("log1p"),
            Log2 => call("log2"),
            Log10 => call("log10"),
            Sin => call("sin"),
            Cos => call("cos"),
            Tan => call("tan"),
            ArcSin => call("asin"),
            ArcCos => call("acos"),
            ArcTan => call("atan"),
            Sinh => call("sinh"),
            Cosh => call("cosh"),
            Tanh => call("tanh"),
            ArcSinh => call("asinh"),
            ArcCosh => call("acosh"),
            ArcTanh => call("atanh"),
            Erf => call("erf"),
            ErfInv => call("erfinv"),
            Sigmoid => format!("({c})1 / (({c})1 + {}(-x))", m(c, "exp")),
            Floor => call("floor"),
            Ceil => call("ceil"),
            Round => call("rint"),
            LogicalNot => format!("x == ({c})0"),
            IsNan => "x != x".into(),
            IsInf => format!("{}(x) == {inf}", m(c, "fabs")),
            IsPosInf => format!("x == {inf}"),
            IsNegInf => format!("x == -{inf}"),
            IsFinite => format!("{}(x) < {inf}", m(c, "fabs")),
            BitwiseInvert | Real | Imag | Conjugate => return None,
        });
    }
    let signed = matches!(d, Dtype::Int8 | Dtype::Int16 | Dtype::Int32 | Dtype::Int64);
    let wrap = |e: &str| format!("({c})({e})");
    Some(match op {
        Abs if signed => wrap("x < 0 ? 0ull - (unsigned long long)x : (unsigned long long)x"),
        Abs => "x".into(),
        Negative if d != Dtype::Bool => wrap("0ull - (unsigned long long)x"),
        Sign if signed => "(x > 0) - (x < 0)".into(),
        Sign => "x != 0".into(),
        Square if d != Dtype::Bool => wrap("(unsigned long long)x * (unsigned long long)x"),
        LogicalNot => "x == 0".into(),
        BitwiseInvert if d == Dtype::Bool => "!x".into(),
        BitwiseInvert => wrap("~x"),
        Floor | Ceil | Round => "x".into(),
        _ => return None,
    })
}

/// The expression of a binary op on `a`, `b` (both of dtype `d`), or `None`.
pub(crate) fn binary_expr(op: BinaryOp, d: Dtype) -> Option<String> {
    use BinaryOp::*;
    let c = compute(d);
    let cmp = |s: &str| Some(format!("a {s} b"));
    match op {
        Equal => return cmp("=="),
        NotEqual => return cmp("!="),
        Less => return cmp("<"),
        LessEqual => return cmp("<="),
        Greater => return cmp(">"),
        GreaterEqual => return cmp(">="),
        LogicalAnd => return Some(format!("(a != ({c})0) && (b != ({c})0)")),
        LogicalOr => return Some(format!("(a != ({c})0) || (b != ({c})0)")),
        _ => {}
    }
    if is_float(d) {
        return Some(match op {
            Add => "a + b".into(),
            Subtract => "a - b".into(),
            Multiply => "a * b".into(),
            Divide => "a / b".into(),
            // A half quotient is rounded to its storage type before the floor, as MLX (and the
            // CPU backend) do.
            FloorDivide => format!("{}({})", m(c, "floor"), load(d, &store(d, "a / b"))),
            // Python's remainder: the sign of the divisor.
            Remainder => {
                format!("[&]{{ {c} r = {}(a, b); return (r != ({c})0 && ((r < ({c})0) != (b < ({c})0))) ? r + b : r; }}()", m(c, "fmod"))
            }
            Power => format!("{}(a, b)", m(c, "pow")),
            // NaN in either operand gives NaN (a + b is NaN then).
            Maximum => "(a != a || b != b) ? a + b : (a > b ? a : b)".into(),
            Minimum => "(a != a || b != b) ? a + b : (a < b ? a : b)".into(),
            NanEqual => "(a == b) || (a != a && b != b)".into(),
            ArcTan2 => format!("{}(a, b)", m(c, "atan2")),
            LogAddExp => {
                let inf = if c == "float" { "OXMX_INF_F" } else { "OXMX_INF_D" };
                format!(
                    "[&]{{ if (a != a || b != b) return a + b; {c} mx = a > b ? a : b; if (mx == -{inf}) return mx; \
                     return mx + {}({}(-{}(a - b))); }}()",
                    m(c, "log1p"),
                    m(c, "exp"),
                    m(c, "fabs")
                )
            }
            _ => return None,
        });
    }
    let wrap = |e: &str| Some(format!("({c})({e})"));
    match op {
        Add if d != Dtype::Bool => wrap("(unsigned long long)a + (unsigned long long)b"),
        Subtract if d != Dtype::Bool => wrap("(unsigned long long)a - (unsigned long long)b"),
        Multiply if d != Dtype::Bool => wrap("(unsigned long long)a * (unsigned long long)b"),
        Maximum => Some("a > b ? a : b".into()),
        Minimum => Some("a < b ? a : b".into()),
        BitwiseAnd => wrap("a & b"),
        BitwiseOr => wrap("a | b"),
        BitwiseXor => wrap("a ^ b"),
        NanEqual => cmp("=="),
        _ => None,
    }
}

/// Broadcast strides of `d` at the output `shape` (zero along broadcast and size-1 axes).
pub(crate) fn strides_at(d: &Data, shape: &[usize]) -> Vec<isize> {
    let lead = shape.len() - d.ndim();
    (0..shape.len()).map(|ax| if ax < lead || d.shape[ax - lead] == 1 { 0 } else { d.strides[ax - lead] }).collect()
}

/// The `Index` for `inputs` read at the output `shape`, or `None` past `MAX_DIMS`.
fn index(inputs: &[&Data], shape: &[usize]) -> Option<Index> {
    let parts: Vec<(isize, Vec<isize>)> = inputs.iter().map(|d| (d.offset, strides_at(d, shape))).collect();
    index_raw(shape, &parts)
}

/// The index over `shape` for operands given as (element offset, strides), or `None` past
/// `MAX_DIMS` dimensions or K operands.
pub(crate) fn index_raw<const K: usize>(shape: &[usize], parts: &[(isize, Vec<isize>)]) -> Option<IndexN<K>> {
    let refs: Vec<&[isize]> = parts.iter().map(|p| p.1.as_slice()).collect();
    let (cshape, cstrides) = collapse(shape, &refs);
    if cshape.len() > MAX_DIMS || parts.len() > K {
        return None;
    }
    let mut ix = IndexN {
        ndim: cshape.len() as i32,
        contiguous: (cshape.len() <= 1) as i32,
        shape: [1; MAX_DIMS],
        strides: [[0; MAX_DIMS]; K],
        offset: [0; K],
        step: [0; K],
    };
    for (i, &s) in cshape.iter().enumerate() {
        ix.shape[i] = s as i64;
    }
    for (k, (off, _)) in parts.iter().enumerate() {
        ix.offset[k] = *off as i64;
        for (i, &s) in cstrides[k].iter().enumerate() {
            ix.strides[k][i] = s as i64;
        }
        ix.step[k] = cstrides[k].first().copied().unwrap_or(0) as i64;
    }
    Some(ix)
}

/// The unsigned C type of an element of `bytes` bytes (raw copies move bits, any dtype).
pub(crate) fn raw_type(bytes: usize) -> Option<&'static str> {
    Some(match bytes {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        8 => "unsigned long long",
        _ => return None,
    })
}

/// Copies every element of `src` (any layout) into the device memory at `dst` (the base of a
/// buffer of `src`'s dtype) at element offset `dst_off` with `dst_strides`; `false` when the
/// layout has too many dimensions for the kernel.
pub(crate) fn copy_into(g: &Gpu, src: &Data, dst: u64, dst_strides: &[isize], dst_off: isize) -> Result<bool> {
    let Some(t) = raw_type(src.dtype.size()) else { return Ok(false) };
    let n = src.size();
    let Some(ix) = index_raw(&src.shape, &[(src.offset, src.strides.clone()), (dst_off, dst_strides.to_vec())]) else { return Ok(false) };
    if n == 0 {
        return Ok(true);
    }
    let name = format!("copy_into_{}", src.dtype.size());
    let f = function(g, &name, || {
        format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ in0, long long n, Index ix) {{\n\
             for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)\n\
             out[oxmx_offset(ix, 1, i)] = in0[oxmx_offset(ix, 0, i)];\n}}\n"
        )
    })?;
    let mut out_ptr = dst;
    let mut in_ptr = src.buffer.device_block(g.ordinal)?.ptr();
    let mut n64 = n as i64;
    let mut ix = ix;
    let mut params: Vec<*mut c_void> =
        vec![&mut out_ptr as *mut u64 as _, &mut in_ptr as *mut u64 as _, &mut n64 as *mut i64 as _, &mut ix as *mut Index as _];
    launch(g, &f, n, &mut params)?;
    Ok(true)
}

/// Elements each thread loads before computing on any, in `element_loop`'s contiguous case.
pub(crate) const UNROLL: usize = 4;

/// The statements of a grid-stride element-wise kernel over `n` elements, reading input `in{k}`
/// through the index struct `ix` (`offset_fn`: `oxmx_offset` or the fused kernels' `foffset`)
/// and writing `out{j}` (fresh, dense outputs). `inputs[k]` is (storage type, declaration of
/// its variable with `@` standing for the stored element); `outputs[j]` is output j's storage
/// type; `body` computes from the variables and stores element `i` of output j through `@o{j}`.
///
/// When every input is dense (step 1, offset a multiple of 4) or a scalar (step 0), each
/// thread reads and writes four consecutive elements with one access per operand (`V4` in
/// common.cuh: 16 bytes for 4-byte types), which halves the instructions per element of the
/// scalar loop. Other contiguous layouts load `UNROLL` elements of every input first,
/// `gridDim * blockDim` apart (one 4-byte load in flight per thread left DRAM mostly idle,
/// 24–46% of copy bandwidth on an H200, tenth session). Launch with `n / UNROLL` threads.
/// `OXMX_EW_VEC=0` leaves the four-element path out (for comparison on a device).
pub(crate) fn element_loop(offset_fn: &str, inputs: &[(&str, String)], outputs: &[&str], body: &str) -> String {
    let mut raw_decls = String::new();
    let mut raw_loads = String::new();
    let mut from_raw = String::new();
    let mut from_mem = String::new();
    let mut vec_ok = String::from("true");
    let mut vec_loads = String::new();
    let mut from_vec = String::new();
    for (k, (t, decl)) in inputs.iter().enumerate() {
        raw_decls += &format!("{t} r{k}_[{UNROLL}]; ");
        raw_loads += &format!("r{k}_[u_] = in{k}[ix.offset[{k}] + i * ix.step[{k}]]; ");
        from_raw += &decl.replace('@', &format!("r{k}_[u_]"));
        from_mem += &decl.replace('@', &format!("in{k}[{offset_fn}(ix, {k}, i)]"));
        vec_ok += &format!(" && (ix.step[{k}] == 0 || (ix.step[{k}] == 1 && (ix.offset[{k}] & 3) == 0))");
        vec_loads += &format!("V4<{t}> w{k}_ = v4_load(in{k} + ix.offset[{k}], ix.step[{k}], v_); ");
        from_vec += &decl.replace('@', &format!("w{k}_.v[u_]"));
    }
    // Highest first, so that `@o1` does not eat the start of `@o10`.
    let to_mem = |b: &str| (0..outputs.len()).rev().fold(b.to_string(), |b, j| b.replace(&format!("@o{j}"), &format!("out{j}[i]")));
    let to_vec = |b: &str| (0..outputs.len()).rev().fold(b.to_string(), |b, j| b.replace(&format!("@o{j}"), &format!("o{j}_.v[u_]")));
    let out_decls: String = outputs.iter().enumerate().map(|(j, t)| format!("V4<{t}> o{j}_; ")).collect();
    let out_stores: String = (0..outputs.len()).map(|j| format!("((V4<{}>*)out{j})[v_] = o{j}_; ", outputs[j])).collect();
    if std::env::var("OXMX_EW_VEC").is_ok_and(|v| v == "0") {
        vec_ok = "false".into();
    }
    let (mem_body, vec_body) = (to_mem(body), to_vec(body));
    format!(
        "long long s_ = (long long)gridDim.x * blockDim.x;\n\
         long long i0_ = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n\
         if (ix.contiguous && ({vec_ok})) {{\n\
         long long nv_ = n >> 2;\n\
         for (long long v_ = i0_; v_ < nv_; v_ += s_) {{\n\
         {vec_loads}{out_decls}\n\
         #pragma unroll\n\
         for (int u_ = 0; u_ < 4; ++u_) {{ long long i = 4 * v_ + u_; (void)i; {from_vec}\n{vec_body} }}\n\
         {out_stores}\n\
         }}\n\
         for (long long i = 4 * nv_ + i0_; i < n; i += s_) {{ {from_mem}\n{mem_body} }}\n\
         }} else if (ix.contiguous) {{\n\
         for (long long b_ = i0_; b_ < n; b_ += {UNROLL} * s_) {{\n\
         {raw_decls}\n\
         #pragma unroll\n\
         for (int u_ = 0; u_ < {UNROLL}; ++u_) {{ long long i = b_ + u_ * s_; if (i < n) {{ {raw_loads}}} }}\n\
         #pragma unroll\n\
         for (int u_ = 0; u_ < {UNROLL}; ++u_) {{ long long i = b_ + u_ * s_; if (i < n) {{ {from_raw}\n{mem_body} }} }}\n\
         }}\n\
         }} else {{\n\
         for (long long i = i0_; i < n; i += s_) {{ {from_mem}\n{mem_body} }}\n\
         }}\n"
    )
}

/// Generates, compiles (once) and runs `out[i] = expr(in0[..], in1[..], ...)`. `loads` are
/// the input variable declarations (name, dtype, as compute value or raw storage).
fn run(
    g: &Gpu,
    name: &str,
    inputs: &[&Data],
    vars: &[(&str, Dtype, bool)],
    expr: &dyn Fn() -> Option<String>,
    out: &Spec,
) -> Result<Option<Data>> {
    let (shape, odt) = out;
    let Some(ot) = storage(*odt) else { return Ok(None) };
    let mut ins = Vec::new();
    for d in inputs {
        match storage(d.dtype) {
            Some(t) => ins.push(t),
            None => return Ok(None),
        }
    }
    let Some(ix) = index(inputs, shape) else { return Ok(None) };
    let body = |expr: String| {
        let params: String = ins.iter().enumerate().map(|(k, t)| format!("const {t}* __restrict__ in{k}, ")).collect();
        let loads: Vec<(&str, String)> = vars
            .iter()
            .zip(&ins)
            .map(|((v, d, raw), t)| {
                let decl = if *raw { format!("{t} {v} = @;") } else { format!("{} {v} = {};", compute(*d), load(*d, "@")) };
                (*t, decl)
            })
            .collect();
        let lp = element_loop("oxmx_offset", &loads, &[ot], &format!("@o0 = {expr};"));
        format!("extern \"C\" __global__ void {name}({ot}* __restrict__ out0, {params}long long n, Index ix) {{\n{lp}}}\n")
    };
    // Names determine the source: a cached kernel needs no expression built.
    let f = match cached(g, name) {
        Some(f) => f,
        None => {
            let Some(e) = expr() else { return Ok(None) };
            function(g, name, || body(e))?
        }
    };
    let n = size_of(shape);
    let block = alloc(g.ordinal, n * odt.size())?;
    if n > 0 {
        let mut out_ptr = block.ptr();
        let mut in_ptrs: Vec<u64> = Vec::with_capacity(inputs.len());
        for d in inputs {
            in_ptrs.push(d.buffer.device_block(g.ordinal)?.ptr());
        }
        let mut n64 = n as i64;
        let mut ix = ix;
        let mut params: Vec<*mut c_void> = vec![&mut out_ptr as *mut u64 as *mut c_void];
        for p in in_ptrs.iter_mut() {
            params.push(p as *mut u64 as *mut c_void);
        }
        params.push(&mut n64 as *mut i64 as *mut c_void);
        params.push(&mut ix as *mut Index as *mut c_void);
        launch(g, &f, n.div_ceil(UNROLL), &mut params)?;
    }
    Ok(Some(Data::dense(Buffer::on_device(block, n * odt.size()), shape.clone(), *odt)))
}

fn tag(d: Dtype) -> &'static str {
    d.name()
}

pub(crate) fn unary(g: &Gpu, op: UnaryOp, x: &Data, out: &Spec) -> Result<Option<Data>> {
    let name = format!("unary_{op:?}_{}_{}", tag(x.dtype), tag(out.1));
    run(g, &name, &[x], &[("x", x.dtype, false)], &|| unary_expr(op, x.dtype).map(|e| store(out.1, &e)), out)
}

pub(crate) fn binary(g: &Gpu, op: BinaryOp, a: &Data, b: &Data, out: &Spec) -> Result<Option<Data>> {
    if a.dtype != b.dtype {
        return Ok(None);
    }
    let name = format!("binary_{op:?}_{}_{}", tag(a.dtype), tag(out.1));
    run(g, &name, &[a, b], &[("a", a.dtype, false), ("b", b.dtype, false)], &|| binary_expr(op, a.dtype).map(|e| store(out.1, &e)), out)
}

/// `where(cond, a, b)`: elements are copied as stored (bit for bit).
pub(crate) fn select(g: &Gpu, c: &Data, a: &Data, b: &Data, out: &Spec) -> Result<Option<Data>> {
    if a.dtype != out.1 || b.dtype != out.1 {
        return Ok(None);
    }
    let name = format!("select_{}_{}", tag(c.dtype), tag(out.1));
    let vars = [("c", c.dtype, false), ("a", a.dtype, true), ("b", b.dtype, true)];
    run(g, &name, &[c, a, b], &vars, &|| Some("c ? a : b".into()), out)
}

/// Value conversion (`astype`); the same dtype is a bit-exact strided copy.
pub(crate) fn cast(g: &Gpu, x: &Data, out: &Spec) -> Result<Option<Data>> {
    let name = format!("cast_{}_{}", tag(x.dtype), tag(out.1));
    if x.dtype == out.1 {
        return run(g, &name, &[x], &[("x", x.dtype, true)], &|| Some("x".into()), out);
    }
    run(g, &name, &[x], &[("x", x.dtype, false)], &|| Some(store(out.1, "x")), out)
}

/// A dense row-major copy of `x` on the GPU (for ops that need contiguous input).
pub(crate) fn contiguous(g: &Gpu, x: &Data) -> Result<Option<Data>> {
    if x.is_row_contiguous() {
        return Ok(Some(x.clone()));
    }
    cast(g, x, &(x.shape.clone(), x.dtype))
}

/// `arange` on the device: `start + i * step` in double precision, rounded after the product and
/// after the sum as the CPU's is (no fused multiply-add), converted as its `from_f64` does
/// (16-bit floats through f32). Made here, the positions and masks built from it
/// need no upload (each upload ended a CUDA graph, ~150 of them per LoRA step).
pub(crate) fn arange(g: &Gpu, start: f64, step: f64, len: usize, dt: Dtype) -> Result<Option<Data>> {
    if dt == Dtype::Bool {
        return Ok(None);
    }
    let Some(st) = storage(dt) else { return Ok(None) };
    let name = format!("arange_{}", format!("{dt:?}").to_lowercase());
    let value = match dt {
        Dtype::Float16 | Dtype::Bfloat16 => store(dt, "(float)v"),
        _ => store(dt, "v"),
    };
    let f = super::compiler::function(g, &name, || {
        format!(
            "extern \"C\" __global__ void {name}({st}* __restrict__ out, long long n, double start, double step) {{\n\
             for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {{\n\
             double v = __dadd_rn(start, __dmul_rn((double)i, step)); out[i] = {value};\n}}\n}}\n"
        )
    })?;
    let (out, optr) = super::fast::output(g, &[len], dt)?;
    if len > 0 {
        let blocks = len.div_ceil(256).clamp(1, g.sm_count as usize * 32) as u32;
        super::compiler::Args::new().arg(optr).arg(len as i64).arg(start).arg(step).launch(g, &f, (blocks, 1), 256)?;
    }
    Ok(Some(out))
}
