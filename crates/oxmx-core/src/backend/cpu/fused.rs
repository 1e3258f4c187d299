//! The CPU kernel of `Fused`: runs the region's program over blocks of `BLOCK` elements, so
//! intermediates live in a few KB of L1-resident scratch and never reach memory.
//!
//! Values are computed in f32 (f16/bf16/f32 regions, as the unary kernels do) or f64. Per
//! evaluation a small plan maps every value to a location: a scratch register (reused once the
//! value is dead), the input buffer itself (a contiguous input already of the compute type is
//! read in place), or the output buffer (an output of the compute type is written in place).
//! Scalar inputs fill their register once per task; other inputs are converted or gathered
//! (broadcast / strided views) per block. Each instruction is one loop over the block with the
//! op matched outside it, and the whole block is compiled for AVX-512/AVX2 (see `block`), so the loops and
//! the branch-free `fastmath` functions compile to AVX-512/AVX2 code. Tasks of `TASK` elements
//! run in parallel on the thread pool.

use super::binary::{logaddexp, max_nan, min_nan, py_rem_f};
use super::elementwise::{collapse, PAR_THRESHOLD};
use super::fastmath;
use super::jit;
use super::simd::{level, stream_copy, stream_fence, streaming, Level, Work, STREAM_BYTES};
use super::unary::{float_op, FloatMath};
use crate::dtype::{Dtype, Element};
use crate::error::Result;
use crate::graph::{Data, Spec};
use crate::memory::Buffer;
use crate::primitives::{BinaryOp, FusedInstr, FusedOp, UnaryOp};
use crate::shape::size_of;
use half::{bf16, f16};
use rayon::prelude::*;

/// Elements per block: 512 f32 registers of 2 KB each keep a dozen live values inside L1.
const BLOCK: usize = 512;
/// Elements per parallel task (scratch is allocated once per task).
const TASK: usize = 1 << 14;

/// The compute type: f32 for f16/bf16/f32 regions, f64 for f64 regions.
trait Compute: num_traits::Float + FloatMath + Element {
    const ZERO: Self;
    const ONE: Self;
    fn of_f32(x: f32) -> Self;
    fn of_f64(x: f64) -> Self;
    fn as_f32(self) -> f32;
    fn as_f64(self) -> f64;
    fn round_f16(self) -> Self;
    fn round_bf16(self) -> Self;
    fn exp_(self) -> Self;
    fn expm1_(self) -> Self;
    fn ln_(self) -> Self;
    fn ln1p_(self) -> Self;
    fn tanh_(self) -> Self;
    fn sigmoid_(self) -> Self;
}

impl Compute for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of_f32(x: f32) -> Self {
        x
    }
    #[inline(always)]
    fn of_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn as_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn round_f16(self) -> Self {
        f16::from_f32(self).to_f32()
    }
    #[inline(always)]
    fn round_bf16(self) -> Self {
        bf16::from_f32(self).to_f32()
    }
    #[inline(always)]
    fn exp_(self) -> Self {
        fastmath::exp(self)
    }
    #[inline(always)]
    fn expm1_(self) -> Self {
        fastmath::exp_m1(self)
    }
    #[inline(always)]
    fn ln_(self) -> Self {
        fastmath::ln(self)
    }
    #[inline(always)]
    fn ln1p_(self) -> Self {
        fastmath::ln_1p(self)
    }
    #[inline(always)]
    fn tanh_(self) -> Self {
        fastmath::tanh(self)
    }
    #[inline(always)]
    fn sigmoid_(self) -> Self {
        fastmath::sigmoid(self)
    }
}

impl Compute for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    #[inline(always)]
    fn of_f32(x: f32) -> Self {
        x as f64
    }
    #[inline(always)]
    fn of_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn as_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn round_f16(self) -> Self {
        // Through f32, as `Element::from_f64` (half's direct f64 rounding misses low sticky bits).
        f16::from_f32(self as f32).to_f64()
    }
    #[inline(always)]
    fn round_bf16(self) -> Self {
        bf16::from_f32(self as f32).to_f64()
    }
    #[inline(always)]
    fn exp_(self) -> Self {
        float_op(UnaryOp::Exp, self)
    }
    #[inline(always)]
    fn expm1_(self) -> Self {
        float_op(UnaryOp::Expm1, self)
    }
    #[inline(always)]
    fn ln_(self) -> Self {
        float_op(UnaryOp::Log, self)
    }
    #[inline(always)]
    fn ln1p_(self) -> Self {
        float_op(UnaryOp::Log1p, self)
    }
    #[inline(always)]
    fn tanh_(self) -> Self {
        float_op(UnaryOp::Tanh, self)
    }
    #[inline(always)]
    fn sigmoid_(self) -> Self {
        float_op(UnaryOp::Sigmoid, self)
    }
}

/// Where a value lives while a block runs.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Loc {
    /// Scratch register `r` (`BLOCK` elements).
    Reg(usize),
    /// Read in place from input `i` (contiguous, of the compute type).
    In(usize),
    /// Written in place into output `k` (of the compute type).
    Out(usize),
}

/// How an input reaches its register.
enum Access {
    /// One element, splatted once per task.
    Scalar,
    /// Row-contiguous over the whole output: converted per block.
    Contig,
    /// Broadcast or strided: gathered per block over the collapsed (shape, strides).
    Strided(Vec<usize>, Vec<isize>),
}

/// A scalar step folded into the instruction before it: the result `v` is stored as
/// `(v * m) + a`, two IEEE operations as the separate instructions did (never fused into one
/// rounding). Identity: m = 1, a = -0 (exact for every v, signed zeros and NaNs included).
#[derive(Copy, Clone, Debug)]
struct Post<C> {
    m: C,
    a: C,
    has_m: bool,
    has_a: bool,
}

/// A binary instruction with one scalar operand `s`, as a step on the other operand.
#[derive(Copy, Clone)]
enum ScalarStep<C> {
    /// `v * s` (either operand order: IEEE multiplication commutes).
    Mul(C),
    /// `v + s`, and `v - s` as `v + (-s)` (exact).
    Add(C),
    /// `s - v` as `(v * -1) + s` (exact).
    RSub(C),
}

impl<C: Compute> Post<C> {
    fn identity() -> Self {
        Post { m: C::ONE, a: C::of_f64(-0.0), has_m: false, has_a: false }
    }

    /// Appends `step` when the result still has the form `(v * m) + a` in that order; false
    /// otherwise (the step then runs as its own instruction).
    fn then(&mut self, step: ScalarStep<C>) -> bool {
        match step {
            ScalarStep::Mul(s) if !self.has_m && !self.has_a => {
                (self.m, self.has_m) = (s, true);
                true
            }
            ScalarStep::Add(s) if !self.has_a => {
                (self.a, self.has_a) = (s, true);
                true
            }
            ScalarStep::RSub(s) if !self.has_m && !self.has_a => {
                *self = Post { m: -C::ONE, a: s, has_m: true, has_a: true };
                true
            }
            _ => false,
        }
    }
}

enum PInstr<C> {
    Unary(UnaryOp, Loc, Loc, Post<C>),
    Binary(BinaryOp, Loc, Loc, Loc, Post<C>),
    /// A binary op with a scalar operand on its own: one input stream instead of two.
    Affine(Loc, Loc, Post<C>),
    Select(Loc, Loc, Loc, Loc),
    Round(Dtype, Loc, Loc),
}

impl<C> PInstr<C> {
    fn post_mut(&mut self) -> Option<&mut Post<C>> {
        match self {
            PInstr::Unary(UnaryOp::BitwiseInvert, ..) => None,
            PInstr::Binary(
                BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor | BinaryOp::LeftShift | BinaryOp::RightShift,
                ..,
            ) => None,
            PInstr::Unary(.., p) | PInstr::Binary(.., p) | PInstr::Affine(.., p) => Some(p),
            _ => None,
        }
    }
}

struct Plan<C> {
    nregs: usize,
    /// (input, register, access) for every input read through a register.
    loads: Vec<(usize, usize, Access)>,
    instrs: Vec<PInstr<C>>,
    /// (output, source) for outputs not computed in place.
    stores: Vec<(usize, Loc)>,
}

/// `op(a, b)` as a scalar step on one operand when the other is a scalar input of known value.
fn scalar_step<C: Compute>(op: BinaryOp, a: usize, b: usize, scalar: &[Option<C>]) -> Option<(usize, ScalarStep<C>)> {
    let sv = |v: usize| scalar.get(v).copied().flatten();
    match (op, sv(a), sv(b)) {
        (_, Some(_), Some(_)) => None,
        (BinaryOp::Multiply, Some(s), None) => Some((b, ScalarStep::Mul(s))),
        (BinaryOp::Multiply, None, Some(s)) => Some((a, ScalarStep::Mul(s))),
        (BinaryOp::Add, Some(s), None) => Some((b, ScalarStep::Add(s))),
        (BinaryOp::Add, None, Some(s)) => Some((a, ScalarStep::Add(s))),
        (BinaryOp::Subtract, None, Some(s)) => Some((a, ScalarStep::Add(-s))),
        (BinaryOp::Subtract, Some(s), None) => Some((b, ScalarStep::RSub(s))),
        _ => None,
    }
}

/// Strides of `d` viewed at the output's `shape` (zero along broadcast axes).
fn broadcast_strides(d: &Data, shape: &[usize]) -> Vec<isize> {
    let lead = shape.len() - d.ndim();
    (0..shape.len())
        .map(|ax| {
            if ax < lead {
                0
            } else {
                let i = ax - lead;
                if d.shape[i] == 1 && shape[ax] != 1 {
                    0
                } else {
                    d.strides[i]
                }
            }
        })
        .collect()
}

/// `in_place`: outputs of the compute type may be computed directly in their buffers (off when
/// the outputs are streamed: then every output is stored from a register).
fn plan<C: Compute>(op: &FusedOp, inputs: &[Data], out_dtypes: &[Dtype], shape: &[usize], n: usize, in_place: bool) -> Plan<C> {
    let n_in = inputs.len();
    let n_vals = n_in + op.instrs.len();
    // The last instruction reading each value; outputs stay live to the end.
    let mut last_use = vec![None::<usize>; n_vals];
    let mut uses = vec![0usize; n_vals];
    for (k, ins) in op.instrs.iter().enumerate() {
        let mut ops = ins.operands();
        ops.sort_unstable();
        ops.dedup();
        for v in ops {
            last_use[v] = Some(k);
            uses[v] += 1;
        }
    }
    let mut loc: Vec<Option<Loc>> = vec![None; n_vals];
    let mut keep = vec![false; n_vals];
    let mut stores = Vec::new();
    for (k, &v) in op.outputs.iter().enumerate() {
        let claimable = in_place && v >= n_in && loc[v].is_none() && out_dtypes[k] == C::DTYPE;
        if claimable {
            loc[v] = Some(Loc::Out(k));
        } else {
            keep[v] = true;
            stores.push((k, v));
        }
    }
    let mut free: Vec<usize> = Vec::new();
    let mut nregs = 0;
    let mut alloc = |free: &mut Vec<usize>| {
        free.pop().unwrap_or_else(|| {
            nregs += 1;
            nregs - 1
        })
    };
    let mut loads = Vec::new();
    // Values of scalar inputs: binary ops with one become steps folded into their neighbour.
    let mut scalar: Vec<Option<C>> = vec![None; n_in];
    for (i, d) in inputs.iter().enumerate() {
        if last_use[i].is_none() && !keep[i] {
            continue;
        }
        let full = d.size() == n && d.is_row_contiguous();
        if full && d.dtype == C::DTYPE {
            loc[i] = Some(Loc::In(i));
            continue;
        }
        let access = if d.size() == 1 && n > 1 {
            keep[i] = true; // its register is filled once per task: never reuse it
            scalar[i] = Some(load_one::<C>(d));
            Access::Scalar
        } else if full {
            Access::Contig
        } else {
            let (cs, mut cst) = collapse(shape, &[&broadcast_strides(d, shape)]);
            // Broadcast along the last axis (a row statistic): a block inside one row reads one
            // value, so the register is refilled only when the row changes. It must then keep
            // its contents from block to block.
            if cst[0].last() == Some(&0) {
                keep[i] = true;
            }
            Access::Strided(cs, cst.remove(0))
        };
        let r = alloc(&mut free);
        loc[i] = Some(Loc::Reg(r));
        loads.push((i, r, access));
    }
    let mut instrs: Vec<PInstr<C>> = Vec::new();
    // The planned instruction that computes each value (merged steps share their producer's).
    let mut producer = vec![None::<usize>; n_vals];
    for (k, ins) in op.instrs.iter().enumerate() {
        let v = n_in + k;
        let step = match *ins {
            FusedInstr::Binary { op, a, b, .. } => scalar_step::<C>(op, a, b, &scalar),
            _ => None,
        };
        if let Some((u, st)) = step {
            // Fold the step into the instruction computing `u` when this is u's only use (no
            // other reader sees u before the step) and v needs no location of its own: v then
            // lives where u did, and u's register is released when v's last reader runs.
            let foldable = uses[u] == 1 && !keep[u] && loc[v].is_none() && matches!(loc[u], Some(Loc::Reg(_)));
            if let Some(pk) = producer[u].filter(|_| foldable) {
                if instrs[pk].post_mut().is_some_and(|p| p.then(st)) {
                    loc[v] = loc[u];
                    producer[v] = Some(pk);
                    continue;
                }
            }
        }
        // The destination is taken before the operands are released, so it never aliases them.
        let dst = *loc[v].get_or_insert_with(|| Loc::Reg(alloc(&mut free)));
        let l = |u: usize| loc[u].unwrap_or(Loc::Reg(0));
        instrs.push(match (ins, step) {
            (_, Some((u, st))) => {
                let mut post = Post::identity();
                post.then(st);
                PInstr::Affine(l(u), dst, post)
            }
            (&FusedInstr::Unary { op, x, .. }, _) => PInstr::Unary(op, l(x), dst, Post::identity()),
            (&FusedInstr::Binary { op, a, b, .. }, _) => PInstr::Binary(op, l(a), l(b), dst, Post::identity()),
            (&FusedInstr::Select { cond, a, b, .. }, _) => PInstr::Select(l(cond), l(a), l(b), dst),
            (&FusedInstr::AsType { x, dtype }, _) => PInstr::Round(dtype, l(x), dst),
        });
        producer[v] = Some(instrs.len() - 1);
        let mut ops = ins.operands();
        ops.dedup();
        for u in ops {
            if last_use[u] == Some(k) && !keep[u] {
                if let Some(Loc::Reg(r)) = loc[u] {
                    if !free.contains(&r) {
                        free.push(r);
                    }
                }
            }
        }
    }
    let stores = stores.into_iter().map(|(k, v)| (k, loc[v].unwrap_or(Loc::Reg(0)))).collect();
    Plan { nregs, loads, instrs, stores }
}

/// Raw pointers shared by the tasks (each task touches a disjoint range of every output).
#[derive(Copy, Clone)]
struct Outs<'a>(&'a [usize]);
unsafe impl Send for Outs<'_> {}
unsafe impl Sync for Outs<'_> {}

pub fn eval(op: &FusedOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let wide = op.input_dtypes.iter().chain(op.instrs.iter().map(|i| i.dtype()).collect::<Vec<_>>().iter()).any(|d| *d == Dtype::Float64);
    if wide {
        run::<f64>(op, inputs, specs)
    } else {
        run::<f32>(op, inputs, specs)
    }
}

fn run<C: Compute>(op: &FusedOp, inputs: &[Data], specs: &[Spec]) -> Result<Vec<Data>> {
    let shape = specs[0].0.clone();
    let n = size_of(&shape);
    let dtypes: Vec<Dtype> = specs.iter().map(|s| s.1).collect();
    let mut bufs = specs.iter().map(|(_, d)| Buffer::alloc(n * d.size())).collect::<Result<Vec<_>>>()?;
    if n > 0 {
        let ptrs: Vec<usize> = bufs.iter_mut().map(|b| b.bytes_mut().as_mut_ptr() as usize).collect();
        let outs = Outs(&ptrs);
        // Outputs far larger than the caches are written with streaming stores (as `memcpy`
        // does), which saves reading every destination line before it is overwritten.
        let stream = streaming(Work::Heavy) && dtypes.iter().map(|d| n * d.size()).sum::<usize>() >= STREAM_BYTES;
        // The JIT writes outputs in place (streaming them itself); the interpreter streams
        // through its stage buffer, so it plans outputs into registers when streaming.
        let jitted = (C::DTYPE == Dtype::Float32 && jit::enabled())
            .then(|| {
                let plan = plan::<C>(op, inputs, &dtypes, &shape, n, true);
                let (prog, run_time) = lower(&plan, inputs.len(), dtypes.len(), stream)?;
                Some((plan, jit::kernel(&prog)?, jit::consts(&run_time)))
            })
            .flatten();
        let (plan, jit_code) = match jitted {
            Some((plan, kernel, consts)) => (plan, Some((kernel, consts))),
            None => (plan::<C>(op, inputs, &dtypes, &shape, n, !stream), None),
        };
        let jit_ref = jit_code.as_ref().map(|(k, c)| (&**k, c.as_ptr() as usize));
        let task = |t0: usize, tlen: usize| {
            let outs = outs;
            let mut scratch = vec![C::default(); plan.nregs * BLOCK];
            let mut stage = if stream { vec![0u8; BLOCK * 8] } else { Vec::new() };
            let mut filled = vec![NOT_FILLED; plan.loads.len()];
            let bufs = TaskBufs { stage: if stream { stage.as_mut_ptr() } else { std::ptr::null_mut() }, filled: filled.as_mut_ptr() };
            for (i, r, access) in &plan.loads {
                if let Access::Scalar = access {
                    let v = load_one::<C>(&inputs[*i]);
                    scratch[r * BLOCK..(r + 1) * BLOCK].fill(v);
                }
            }
            // With nothing to convert on the way in or out, the JIT code runs the whole task
            // in one call.
            let per_block = plan.stores.len() + plan.loads.iter().filter(|l| !matches!(l.2, Access::Scalar)).count();
            if let Some((kernel, consts)) = jit_ref.filter(|_| per_block == 0) {
                // SAFETY: as `run_block`; the code reads scratch only at the splatted scalars.
                unsafe { run_jit(kernel, consts, inputs, outs.0, scratch.as_mut_ptr() as usize, t0, tlen) };
                if stream {
                    stream_fence();
                }
                return;
            }
            let mut s = t0;
            while s < t0 + tlen {
                let len = BLOCK.min(t0 + tlen - s);
                // SAFETY: see `run_block`.
                unsafe { block::<C>(&plan, jit_ref, inputs, outs.0, &dtypes, scratch.as_mut_ptr(), bufs, s, len) };
                s += len;
            }
            if stream {
                stream_fence();
            }
        };
        if n < PAR_THRESHOLD {
            task(0, n);
        } else {
            (0..n.div_ceil(TASK)).into_par_iter().for_each(|c| task(c * TASK, TASK.min(n - c * TASK)));
        }
    }
    Ok(bufs.into_iter().zip(specs).map(|(b, (s, d))| Data::dense(b, s.clone(), *d)).collect())
}

fn load_one<C: Compute>(d: &Data) -> C {
    match d.dtype {
        Dtype::Float64 => C::of_f64(d.get_as::<f64>(0)),
        Dtype::Bool => C::of_f32(d.get_as::<bool>(0) as u8 as f32),
        _ => C::of_f32(d.get_as::<f32>(0)),
    }
}

/// `run_block` compiled for the widest instruction set the CPU has. A closure handed to
/// `simd::vectorized` is too large to be inlined into its wide entry point (it then ran as
/// SSE2 code, 4x slower); these entry points inline `run_block` itself.
///
/// # Safety
/// As `run_block`.
unsafe fn block<C: Compute>(
    plan: &Plan<C>,
    jit: Jit,
    inputs: &[Data],
    outs: &[usize],
    dtypes: &[Dtype],
    scratch: *mut C,
    bufs: TaskBufs,
    start: usize,
    len: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
        unsafe fn wide<C: Compute>(p: &Plan<C>, j: Jit, i: &[Data], o: &[usize], d: &[Dtype], s: *mut C, g: TaskBufs, st: usize, n: usize) {
            run_block::<C>(p, j, i, o, d, s, g, st, n)
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn mid<C: Compute>(p: &Plan<C>, j: Jit, i: &[Data], o: &[usize], d: &[Dtype], s: *mut C, g: TaskBufs, st: usize, n: usize) {
            run_block::<C>(p, j, i, o, d, s, g, st, n)
        }
        match level() {
            // SAFETY: `level` checked that the CPU has these features.
            Level::Avx512 => return wide::<C>(plan, jit, inputs, outs, dtypes, scratch, bufs, start, len),
            Level::Avx2 => return mid::<C>(plan, jit, inputs, outs, dtypes, scratch, bufs, start, len),
            Level::Baseline => {}
        }
    }
    run_block::<C>(plan, jit, inputs, outs, dtypes, scratch, bufs, start, len)
}

/// A task's own buffers besides its scratch registers.
#[derive(Copy, Clone)]
struct TaskBufs {
    /// Null, or the task's `BLOCK * 8`-byte stage for streamed outputs.
    stage: *mut u8,
    /// Per load: the source offset a broadcast register was last filled from, or `NOT_FILLED`.
    filled: *mut isize,
}

const NOT_FILLED: isize = isize::MIN;

/// Arguments of a JIT call: four words, then the inputs' and outputs' addresses.
const JIT_MAX_ARGS: usize = 32;

/// The plan's machine code and its constant table's address, when the JIT compiled it.
type Jit<'a> = Option<(&'a jit::Kernel, usize)>;

/// The plan as a JIT program, and its run-time constants (the post steps' values); None when
/// it does not fit the JIT's limits.
fn lower<C: Compute>(plan: &Plan<C>, n_in: usize, n_out: usize, stream: bool) -> Option<(jit::Prog, Vec<f32>)> {
    if 4 + n_in + n_out > JIT_MAX_ARGS {
        return None;
    }
    let small = |i: usize| u8::try_from(i).ok();
    let val = |l: Loc| match l {
        Loc::Reg(r) => small(r).map(jit::Val::Reg),
        Loc::In(i) => small(i).map(jit::Val::In),
        Loc::Out(k) => small(k).map(jit::Val::Out),
    };
    let mut run_time = Vec::new();
    let mut constant = |on: bool, v: C| -> Option<Option<u16>> {
        if !on {
            return Some(None);
        }
        run_time.push(v.as_f32());
        jit::run_time_index(run_time.len() - 1).map(Some)
    };
    let mut instrs = Vec::with_capacity(plan.instrs.len());
    for ins in &plan.instrs {
        let (op, args, dst, post) = match *ins {
            PInstr::Unary(op, x, o, p) => (jit::Op::Unary(op), vec![x], o, Some(p)),
            PInstr::Binary(op, a, b, o, p) => (jit::Op::Binary(op), vec![a, b], o, Some(p)),
            PInstr::Affine(x, o, p) => (jit::Op::Affine, vec![x], o, Some(p)),
            PInstr::Select(c, a, b, o) => (jit::Op::Select, vec![c, a, b], o, None),
            PInstr::Round(d, x, o) => (jit::Op::Round(d), vec![x], o, None),
        };
        let post = post.unwrap_or_else(Post::identity);
        instrs.push(jit::Instr {
            op,
            args: args.into_iter().map(val).collect::<Option<_>>()?,
            dst: val(dst)?,
            mul: constant(post.has_m, post.m)?,
            add: constant(post.has_a, post.a)?,
        });
    }
    let spilled: Vec<u8> =
        plan.stores.iter().filter_map(|&(_, l)| if let Loc::Reg(r) = l { Some(small(r)) } else { None }).collect::<Option<_>>()?;
    // Registers only a folded step read (a scalar operand) are not loaded at all.
    let read = |r: u8| spilled.contains(&r) || instrs.iter().any(|i: &jit::Instr| i.args.contains(&jit::Val::Reg(r)));
    let (mut loaded, mut splat) = (Vec::new(), Vec::new());
    for (_, r, access) in &plan.loads {
        let r = small(*r)?;
        if read(r) {
            if let Access::Scalar = access {
                splat.push(r);
            } else {
                loaded.push(r);
            }
        }
    }
    let prog = jit::Prog { n_in: small(n_in)?, n_out: small(n_out)?, loaded, splat, spilled, instrs, stream };
    Some((prog, run_time))
}

/// Runs the program over elements `start..start + len` (len <= BLOCK).
///
/// # Safety
/// `scratch` holds `nregs * BLOCK` elements owned by this task; `outs[k]` points to output `k`'s
/// buffer of `n` elements of `dtypes[k]` and no other task writes `start..start + len`. The plan
/// gives every instruction a destination distinct from its operands, so the slices made here
/// never alias. `bufs.stage` is null, or this task's `BLOCK * 8`-byte buffer: outputs then go
/// there and on with streaming stores; `bufs.filled` has one entry per load.
#[inline(always)]
unsafe fn run_block<C: Compute>(
    plan: &Plan<C>,
    jit: Jit,
    inputs: &[Data],
    outs: &[usize],
    dtypes: &[Dtype],
    scratch: *mut C,
    bufs: TaskBufs,
    start: usize,
    len: usize,
) {
    let stage = bufs.stage;
    let src = |l: Loc| -> &[C] {
        match l {
            Loc::Reg(r) => std::slice::from_raw_parts(scratch.add(r * BLOCK), len),
            Loc::In(i) => {
                let d = &inputs[i];
                let off = d.offset as usize + start;
                &d.raw::<C>()[off..off + len]
            }
            Loc::Out(k) => std::slice::from_raw_parts((outs[k] as *const C).add(start), len),
        }
    };
    let dst = |l: Loc| -> &mut [C] {
        match l {
            Loc::Reg(r) => std::slice::from_raw_parts_mut(scratch.add(r * BLOCK), len),
            Loc::Out(k) => std::slice::from_raw_parts_mut((outs[k] as *mut C).add(start), len),
            Loc::In(_) => unreachable!("the plan never writes an input"),
        }
    };
    for (l, (i, r, access)) in plan.loads.iter().enumerate() {
        let o = std::slice::from_raw_parts_mut(scratch.add(r * BLOCK), len);
        match access {
            Access::Scalar => {}
            Access::Contig => load_contig(&inputs[*i], start, o),
            Access::Strided(cs, cst) => load_strided(&inputs[*i], cs, cst, start, o, &mut *bufs.filled.add(l)),
        }
    }
    if let Some((kernel, consts)) = jit {
        run_jit(kernel, consts, inputs, outs, scratch as usize, start, len);
    }
    for ins in plan.instrs.iter().filter(|_| jit.is_none()) {
        match *ins {
            PInstr::Unary(op, x, o, p) => unary(op, src(x), dst(o), p),
            PInstr::Binary(op, a, b, o, p) => binary(op, src(a), src(b), dst(o), p),
            PInstr::Affine(x, o, p) => each(src(x), dst(o), p, |v| v),
            PInstr::Select(c, a, b, o) => {
                let (c, a, b, o) = (src(c), src(a), src(b), dst(o));
                for i in 0..o.len() {
                    o[i] = if c[i] != C::ZERO { a[i] } else { b[i] };
                }
            }
            PInstr::Round(d, x, o) => round(d, src(x), dst(o)),
        }
    }
    for &(k, l) in &plan.stores {
        if stage.is_null() {
            store(src(l), outs[k], dtypes[k], start);
            continue;
        }
        let size = dtypes[k].size();
        let from = if dtypes[k] == C::DTYPE {
            src(l).as_ptr() as *const u8
        } else {
            store(src(l), stage as usize, dtypes[k], 0);
            stage as *const u8
        };
        stream_copy(from, (outs[k] as *mut u8).add(start * size), len * size);
    }
}

/// Runs the block's program as JIT code (which reads inputs and writes outputs in place, and
/// the scratch registers the loads filled and the stores read).
///
/// # Safety
/// As `run_block`; `consts` is the table `jit::consts` made for this plan.
#[inline(always)]
unsafe fn run_jit(kernel: &jit::Kernel, consts: usize, inputs: &[Data], outs: &[usize], scratch: usize, start: usize, len: usize) {
    let mut args = [0u64; JIT_MAX_ARGS];
    args[0] = ((len / 16) * 64) as u64;
    args[1] = (1u64 << (len % 16)) - 1;
    args[2] = scratch as u64;
    args[3] = consts as u64;
    for (i, d) in inputs.iter().enumerate() {
        // Inputs the plan reads in place are f32; the others are never addressed by the code.
        args[4 + i] =
            (d.buffer.as_ptr() as usize).wrapping_add((d.offset as usize).wrapping_add(start).wrapping_mul(d.dtype.size())) as u64;
    }
    for (k, &p) in outs.iter().enumerate() {
        args[4 + inputs.len() + k] = (p + start * 4) as u64;
    }
    kernel.run(&args[..4 + inputs.len() + outs.len()]);
}

#[inline(always)]
fn each<C: Compute>(x: &[C], o: &mut [C], p: Post<C>, f: impl Fn(C) -> C) {
    if p.has_m || p.has_a {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = f(x) * p.m + p.a;
        }
    } else {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = f(x);
        }
    }
}

#[inline(always)]
fn each2<C: Compute>(a: &[C], b: &[C], o: &mut [C], p: Post<C>, f: impl Fn(C, C) -> C) {
    if p.has_m || p.has_a {
        for (o, (&x, &y)) in o.iter_mut().zip(a.iter().zip(b)) {
            *o = f(x, y) * p.m + p.a;
        }
    } else {
        for (o, (&x, &y)) in o.iter_mut().zip(a.iter().zip(b)) {
            *o = f(x, y);
        }
    }
}

#[inline(always)]
fn flag<C: Compute>(p: bool) -> C {
    if p {
        C::ONE
    } else {
        C::ZERO
    }
}

#[inline(always)]
fn unary<C: Compute>(op: UnaryOp, x: &[C], o: &mut [C], p: Post<C>) {
    use UnaryOp::*;
    macro_rules! generic {
        ($($u:ident),*) => {
            match op {
                Exp => each(x, o, p, C::exp_),
                Expm1 => each(x, o, p, C::expm1_),
                Log => each(x, o, p, C::ln_),
                Log1p => each(x, o, p, C::ln1p_),
                Tanh => each(x, o, p, C::tanh_),
                Sigmoid => each(x, o, p, C::sigmoid_),
                IsNan => each(x, o, p, |v| flag(v.is_nan())),
                IsInf => each(x, o, p, |v| flag(v.is_infinite())),
                IsPosInf => each(x, o, p, |v| flag(v == C::infinity())),
                IsNegInf => each(x, o, p, |v| flag(v == C::neg_infinity())),
                IsFinite => each(x, o, p, |v| flag(v.is_finite())),
                LogicalNot => each(x, o, p, |v| flag(v == C::ZERO)),
                $($u => each(x, o, p, |v| float_op($u, v)),)*
                // Never fused (integer only).
                BitwiseInvert => o.copy_from_slice(x),
            }
        };
    }
    generic!(
        Abs, Negative, Sign, Square, Sqrt, Rsqrt, Reciprocal, Log2, Log10, Sin, Cos, Tan, ArcSin, ArcCos, ArcTan, Sinh, Cosh, ArcSinh,
        ArcCosh, ArcTanh, Erf, ErfInv, Floor, Ceil, Round, Real, Imag, Conjugate
    )
}

#[inline(always)]
fn binary<C: Compute>(op: BinaryOp, a: &[C], b: &[C], o: &mut [C], p: Post<C>) {
    use BinaryOp::*;
    let z = C::ZERO;
    match op {
        Add => each2(a, b, o, p, |x, y| x + y),
        Subtract => each2(a, b, o, p, |x, y| x - y),
        Multiply => each2(a, b, o, p, |x, y| x * y),
        Divide => each2(a, b, o, p, |x, y| x / y),
        FloorDivide => each2(a, b, o, p, |x, y| num_traits::Float::floor(x / y)),
        Remainder => each2(a, b, o, p, py_rem_f),
        Power => each2(a, b, o, p, |x, y| x.powf(y)),
        Maximum => each2(a, b, o, p, max_nan),
        Minimum => each2(a, b, o, p, min_nan),
        ArcTan2 => each2(a, b, o, p, |x, y| x.atan2(y)),
        LogAddExp => each2(a, b, o, p, logaddexp),
        Equal => each2(a, b, o, p, |x, y| flag(x == y)),
        NanEqual => each2(a, b, o, p, |x, y| flag(x == y || (x.is_nan() && y.is_nan()))),
        NotEqual => each2(a, b, o, p, |x, y| flag(x != y)),
        Less => each2(a, b, o, p, |x, y| flag(x < y)),
        LessEqual => each2(a, b, o, p, |x, y| flag(x <= y)),
        Greater => each2(a, b, o, p, |x, y| flag(x > y)),
        GreaterEqual => each2(a, b, o, p, |x, y| flag(x >= y)),
        LogicalAnd => each2(a, b, o, p, |x, y| flag(x != z && y != z)),
        LogicalOr => each2(a, b, o, p, |x, y| flag(x != z || y != z)),
        // Never fused (integer only).
        BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift => o.fill(z),
    }
}

/// `astype` inside a region: values stay in the compute type, rounded as the target would.
#[inline(always)]
fn round<C: Compute>(to: Dtype, x: &[C], o: &mut [C]) {
    match to {
        Dtype::Float16 => each(x, o, Post::identity(), C::round_f16),
        Dtype::Bfloat16 => each(x, o, Post::identity(), C::round_bf16),
        Dtype::Float32 => each(x, o, Post::identity(), |v| C::of_f32(v.as_f32())),
        Dtype::Bool => each(x, o, Post::identity(), |v| flag(v != C::ZERO)),
        _ => o.copy_from_slice(x),
    }
}

#[inline(always)]
fn convert<T: Copy, C>(src: &[T], o: &mut [C], f: impl Fn(T) -> C) {
    for (o, &x) in o.iter_mut().zip(src) {
        *o = f(x);
    }
}

#[inline(always)]
fn load_contig<C: Compute>(d: &Data, start: usize, o: &mut [C]) {
    let off = d.offset as usize + start;
    let len = o.len();
    match d.dtype {
        Dtype::Float32 => convert(&d.raw::<f32>()[off..off + len], o, C::of_f32),
        Dtype::Float64 => convert(&d.raw::<f64>()[off..off + len], o, C::of_f64),
        Dtype::Float16 => convert(&d.raw::<f16>()[off..off + len], o, |x| C::of_f32(x.to_f32())),
        Dtype::Bfloat16 => convert(&d.raw::<bf16>()[off..off + len], o, |x| C::of_f32(x.to_f32())),
        Dtype::Bool => convert(&d.raw::<bool>()[off..off + len], o, |x| flag(x)),
        _ => o.fill(C::ZERO),
    }
}

/// Gathers positions `start..start + o.len()` of a view with collapsed `shape`/`strides`.
#[inline(always)]
/// `filled`: the source offset `o` was last filled from when a whole block read one broadcast
/// value (then an equal offset needs no refill), else `NOT_FILLED`.
fn load_strided<C: Compute>(d: &Data, shape: &[usize], strides: &[isize], start: usize, o: &mut [C], filled: &mut isize) {
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn gather<T: Element, C: Copy>(
        raw: &[T],
        base: isize,
        shape: &[usize],
        strides: &[isize],
        start: usize,
        o: &mut [C],
        filled: &mut isize,
        f: impl Fn(T) -> C,
    ) {
        let nd = shape.len();
        let inner = shape[nd - 1];
        let st = strides[nd - 1];
        let mut pos = start;
        let end = start + o.len();
        while pos < end {
            // Offset of row-major position `pos`.
            let (mut rem, mut off) = (pos, base);
            for ax in (0..nd).rev() {
                off += (rem % shape[ax]) as isize * strides[ax];
                rem /= shape[ax];
            }
            let run = (inner - pos % inner).min(end - pos);
            if st == 0 && run == o.len() {
                if *filled != off {
                    o.fill(f(raw[off as usize]));
                    *filled = off;
                }
                return;
            }
            *filled = NOT_FILLED;
            let dst = &mut o[pos - start..pos - start + run];
            if st == 0 {
                dst.fill(f(raw[off as usize]));
            } else {
                for (j, x) in dst.iter_mut().enumerate() {
                    *x = f(raw[(off + j as isize * st) as usize]);
                }
            }
            pos += run;
        }
    }
    let b = d.offset;
    match d.dtype {
        Dtype::Float32 => gather(d.raw::<f32>(), b, shape, strides, start, o, filled, C::of_f32),
        Dtype::Float64 => gather(d.raw::<f64>(), b, shape, strides, start, o, filled, C::of_f64),
        Dtype::Float16 => gather(d.raw::<f16>(), b, shape, strides, start, o, filled, |x| C::of_f32(x.to_f32())),
        Dtype::Bfloat16 => gather(d.raw::<bf16>(), b, shape, strides, start, o, filled, |x| C::of_f32(x.to_f32())),
        Dtype::Bool => gather(d.raw::<bool>(), b, shape, strides, start, o, filled, |x| flag(x)),
        _ => o.fill(C::ZERO),
    }
}

/// Writes `x` into output buffer `ptr` (of `dtype`) at `start`, converting.
///
/// # Safety
/// `ptr` points to a buffer of at least `start + x.len()` elements of `dtype`.
#[inline(always)]
unsafe fn store<C: Compute>(x: &[C], ptr: usize, dtype: Dtype, start: usize) {
    #[inline(always)]
    unsafe fn put<T, C: Copy>(x: &[C], ptr: usize, start: usize, f: impl Fn(C) -> T) {
        let o = std::slice::from_raw_parts_mut((ptr as *mut T).add(start), x.len());
        for (o, &v) in o.iter_mut().zip(x) {
            *o = f(v);
        }
    }
    match dtype {
        Dtype::Float32 => put(x, ptr, start, |v: C| v.as_f32()),
        Dtype::Float64 => put(x, ptr, start, |v: C| v.as_f64()),
        Dtype::Float16 => put(x, ptr, start, |v: C| f16::from_f32(v.round_f16().as_f32())),
        Dtype::Bfloat16 => put(x, ptr, start, |v: C| bf16::from_f32(v.round_bf16().as_f32())),
        Dtype::Bool => put(x, ptr, start, |v: C| v != C::ZERO),
        _ => {}
    }
}
