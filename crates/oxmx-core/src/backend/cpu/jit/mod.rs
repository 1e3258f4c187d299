//! A JIT for the CPU's fused element-wise regions: the program of a `Fused` block, compiled to
//! AVX-512 machine code that keeps every intermediate in a register.
//!
//! The interpreter in `fused.rs` runs each instruction as its own loop over a 512-element block
//! in L1: every instruction loads its operands and stores its result, so a region of n
//! instructions costs about n loads and n stores per vector on top of its arithmetic (tanh-GELU:
//! ~60 cycles per 16 floats on Zen 4, twice what memory allows). Here the block's program runs
//! once per vector of 16 floats with values in zmm registers: one load per input, one store per
//! output. The arithmetic is the interpreter's, operation for operation (the same roundings, the
//! same fused multiply-adds in `fastmath`'s order), so both paths give the same bits; the test
//! `jit_matches_the_interpreter` checks that.
//!
//! Scope: f32 compute on AVX-512 hosts, and the ops in `emit.rs`; any other region (f64, an op
//! without a rule, more values than registers) runs in the interpreter. Kernels are cached by
//! program (`kernel`), so a compiled function assembles once. `OXMX_CPU_JIT=0` turns it off.
//!
//! Machine code is encoded by `iced-x86` (a maintained, complete x86 encoder: we choose the
//! instructions, it encodes them); `exec.rs` maps it executable.

mod emit;
mod exec;

use crate::dtype::Dtype;
use crate::primitives::{BinaryOp, UnaryOp};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Where an operand or a result lives in the block (as `fused::Loc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Val {
    /// Scratch register `r`: zmm r while the vector runs; read from the scratch block when the
    /// interpreter's loader filled it (`Prog::loaded`), written back when a store reads it.
    Reg(u8),
    /// Input `i`, contiguous f32, read in place.
    In(u8),
    /// Output `k`, contiguous f32, written in place.
    Out(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// The operand itself (with the post step: a binary op with a scalar operand).
    Affine,
    /// `args[0] != 0 ? args[1] : args[2]`.
    Select,
    /// `astype` inside the region: rounded as the dtype would, kept in f32.
    Round(Dtype),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Instr {
    pub op: Op,
    pub args: Vec<Val>,
    pub dst: Val,
    /// The post step `(v * m) + a`: indexes of m and a among the run-time constants.
    pub mul: Option<u16>,
    pub add: Option<u16>,
}

/// One block's program. Everything that changes the machine code is here (and nothing else:
/// the values of scalars and post steps travel in the run-time constants), so it is the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Prog {
    pub n_in: u8,
    pub n_out: u8,
    /// Scratch registers the loader fills per block (converted or gathered inputs): read per vector.
    pub loaded: Vec<u8>,
    /// Scratch registers holding one scalar input splatted: read once per call.
    pub splat: Vec<u8>,
    /// Scratch registers written back afterwards (outputs stored by the interpreter's code).
    pub spilled: Vec<u8>,
    pub instrs: Vec<Instr>,
    /// Outputs written with non-temporal stores (the output buffers are 64-byte aligned and
    /// every block but the last starts on a 64-byte boundary).
    pub stream: bool,
}

/// Bytes between scratch registers (the interpreter's `BLOCK` f32 elements).
pub const SCRATCH_STRIDE: usize = 512 * 4;

/// A compiled program: `run(args)`, where `args` is
/// `[full_bytes, tail_mask, scratch, consts, in_0.., out_0..]` — the bytes of whole vectors,
/// the lane mask of the last partial vector (0: none), the block's scratch base, the constant
/// table (`consts`), then every input's and output's address at the block's first element.
pub struct Kernel {
    code: exec::Code,
}

impl Kernel {
    /// # Safety
    /// `args` is laid out as above for the `Prog` this kernel was built from; every address
    /// covers the block's elements; scratch holds the program's registers.
    #[inline]
    pub unsafe fn run(&self, args: &[u64]) {
        let f: extern "sysv64" fn(*const u64) = std::mem::transmute(self.code.entry());
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        f(args.as_ptr())
    }
}

/// Whether fused regions may run as JIT code: on by default where `simd::level()` is AVX-512
/// (so `OXMX_SIMD=avx2` turns it off too); `OXMX_CPU_JIT=0` or `set_enabled(false)` turn it off.
pub fn enabled() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    let env = *ENV.get_or_init(|| {
        std::env::var("OXMX_CPU_JIT").map(|v| v != "0").unwrap_or(true) && matches!(super::simd::level(), super::simd::Level::Avx512)
    });
    env && ENABLED.load(Ordering::Relaxed)
}

static ENABLED: AtomicBool = AtomicBool::new(true);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);

/// Turns the JIT off or on for this process (tests compare it with the interpreter).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Blocks run as JIT code so far in this process.
pub fn blocks_run() -> usize {
    BLOCKS.load(Ordering::Relaxed)
}

/// At most this many distinct programs get machine code (each keeps a few KB mapped).
const MAX_KERNELS: usize = 4096;

/// The kernel for `prog`, assembled on first use; None where the program has an op or a size
/// the emitter does not handle.
pub fn kernel(prog: &Prog) -> Option<Arc<Kernel>> {
    static CACHE: OnceLock<Mutex<HashMap<Prog, Option<Arc<Kernel>>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = cache.get(prog) {
        return k.clone();
    }
    if cache.len() >= MAX_KERNELS {
        return None;
    }
    let built = emit::assemble(prog).and_then(|bytes| exec::Code::new(&bytes)).map(|code| Arc::new(Kernel { code }));
    cache.insert(prog.clone(), built.clone());
    built
}

/// The constants every kernel reads by index (`emit::K_*`), followed by the run-time ones.
pub fn consts(run_time: &[f32]) -> Vec<f32> {
    let mut c = emit::fixed_consts();
    c.extend_from_slice(run_time);
    c
}

/// Index of run-time constant `i` in the table `consts` returns.
pub fn run_time_index(i: usize) -> Option<u16> {
    u16::try_from(emit::N_FIXED + i).ok()
}

#[cfg(test)]
mod tests;
