//! `compile`'s fused element-wise regions on the GPU: the region's program becomes one
//! generated CUDA kernel (each value a register in the compute type, float32 or float64, with
//! `astype` rounding as the target dtype would, as the CPU kernel does), reading up to
//! `MAX_FUSED_INPUTS` inputs through broadcast strides and writing every output once. Regions
//! the generator has no expression for run on the CPU.

use super::compiler::{fnv, function, launch};
use super::device::Gpu;
use super::elementwise::{binary_expr, compute, element_loop, index_raw, load, storage, store, strides_at, unary_expr, IndexN, UNROLL};
use super::fast::output;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::primitives::{FusedInstr, FusedOp};
use crate::shape::size_of;
use std::ffi::c_void;

const MAX_FUSED_INPUTS: usize = 8;

const FINDEX: &str =
    "struct FIndex { int ndim; int contiguous; long long shape[8]; long long strides[8][8]; long long offset[8]; long long step[8]; };\n\
__device__ __forceinline__ long long foffset(const FIndex& ix, int k, long long i) {\n\
  if (ix.contiguous) return ix.offset[k] + i * ix.step[k];\n\
  long long o = ix.offset[k];\n\
  for (int d = ix.ndim - 1; d >= 0; --d) { long long c = i % ix.shape[d]; i /= ix.shape[d]; o += c * ix.strides[k][d]; }\n\
  return o;\n}\n";

fn float_or_bool(d: Dtype) -> bool {
    matches!(d, Dtype::Bool | Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 | Dtype::Float64)
}

/// The kernel body's statements after the inputs' variables `v0..` (one register per value),
/// or `None` without an expression.
fn program(op: &FusedOp) -> Option<String> {
    let n = op.input_dtypes.len();
    let mut code = String::new();
    for (k, ins) in op.instrs.iter().enumerate() {
        let dst = n + k;
        let ct = compute(ins.dtype());
        let expr = match *ins {
            FusedInstr::Unary { op: u, x, .. } => {
                let e = unary_expr(u, op.value_dtype(x))?;
                format!("[&]() {{ {} x = v{x}; return {e}; }}()", compute(op.value_dtype(x)))
            }
            FusedInstr::Binary { op: b, a, b: bb, .. } => {
                let e = binary_expr(b, op.value_dtype(a))?;
                let t = compute(op.value_dtype(a));
                format!("[&]() {{ {t} a = v{a}; {t} b = v{bb}; return {e}; }}()")
            }
            FusedInstr::Select { cond, a, b, .. } => format!("(v{cond} ? v{a} : v{b})"),
            FusedInstr::AsType { x, dtype } => match dtype {
                Dtype::Float16 => format!("f16_to_f32(f32_to_f16((float)v{x}))"),
                Dtype::Bfloat16 => format!("bf16_to_f32(f32_to_bf16((float)v{x}))"),
                Dtype::Bool => format!("(int)(v{x} != 0)"),
                _ => format!("({ct})v{x}"),
            },
        };
        code += &format!("{ct} v{dst} = ({ct})({expr});\n");
    }
    Some(code)
}

pub(crate) fn eval(g: &Gpu, op: &FusedOp, inputs: &[Data], specs: &[Spec]) -> Result<Option<Vec<Data>>> {
    let n_in = inputs.len();
    let all_types = op.input_dtypes.iter().copied().chain(op.instrs.iter().map(|i| i.dtype()));
    let types: Vec<Dtype> = all_types.collect();
    let has_f64 = types.contains(&Dtype::Float64);
    let mixed = has_f64 && types.iter().any(|d| matches!(d, Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32));
    if n_in > MAX_FUSED_INPUTS || mixed || !types.iter().all(|d| float_or_bool(*d)) || inputs.iter().any(|d| storage(d.dtype).is_none()) {
        return Ok(None);
    }
    let shape = &specs[0].0;
    let parts: Vec<(isize, Vec<isize>)> = inputs.iter().map(|d| (d.offset, strides_at(d, shape))).collect();
    let Some(ix) = index_raw::<MAX_FUSED_INPUTS>(shape, &parts) else { return Ok(None) };
    let name = format!("fused_{:016x}", fnv(&[&format!("{op:?}")]));
    let mut failed = false;
    let f = function(g, &name, || {
        let Some(code) = program(op) else {
            failed = true;
            return String::new();
        };
        let ins: String = inputs
            .iter()
            .enumerate()
            .map(|(k, d)| format!("const {}* __restrict__ in{k}, ", storage(d.dtype).unwrap_or("float")))
            .collect();
        let outs: String =
            specs.iter().enumerate().map(|(j, s)| format!("{}* __restrict__ out{j}, ", storage(s.1).unwrap_or("float"))).collect();
        let stores: String =
            op.outputs.iter().enumerate().map(|(j, &v)| format!("@o{j} = {};\n", store(specs[j].1, &format!("v{v}")))).collect();
        let out_types: Vec<&str> = specs.iter().map(|s| storage(s.1).unwrap_or("float")).collect();
        let loads: Vec<(&str, String)> = op
            .input_dtypes
            .iter()
            .zip(inputs)
            .enumerate()
            .map(|(k, (d, data))| (storage(data.dtype).unwrap_or("float"), format!("{} v{k} = {};", compute(*d), load(*d, "@"))))
            .collect();
        let lp = element_loop("foffset", &loads, &out_types, &format!("{code}{stores}"));
        format!("{FINDEX}extern \"C\" __global__ void {name}({outs}{ins}long long n, FIndex ix) {{\n{lp}}}\n")
    });
    if failed {
        return Ok(None);
    }
    let f = f?;
    let mut ix: IndexN<MAX_FUSED_INPUTS> = ix;
    let mut outs = Vec::with_capacity(specs.len());
    let mut ptrs: Vec<u64> = Vec::new();
    for s in specs {
        let (d, p) = output(g, &s.0, s.1)?;
        outs.push(d);
        ptrs.push(p);
    }
    let total = size_of(shape);
    if total > 0 {
        for d in inputs {
            ptrs.push(d.buffer.device_block(g.ordinal)?.ptr());
        }
        let mut n64 = total as i64;
        let mut params: Vec<*mut c_void> = ptrs.iter_mut().map(|p| p as *mut u64 as *mut c_void).collect();
        params.push(&mut n64 as *mut i64 as *mut c_void);
        params.push(&mut ix as *mut IndexN<MAX_FUSED_INPUTS> as *mut c_void);
        launch(g, &f, total.div_ceil(UNROLL), &mut params)?;
    }
    Ok(Some(outs))
}
