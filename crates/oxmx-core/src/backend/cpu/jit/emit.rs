//! AVX-512 code for a `Prog`: one pass per 16 floats with every value in a zmm register.
//!
//! Register use: rdi holds the argument table, rcx the byte offset of the current vector, rsi
//! the bytes of whole vectors, rax the scratch base, rdx the constant table; inputs and outputs
//! get one of ten more general registers each. zmm registers go to scratch registers, inputs,
//! outputs and `TEMPS` temporaries, in that order; k1 is the tail mask, k2 a comparison mask.
//!
//! Each op below computes exactly what the interpreter (`fused.rs`, `fastmath.rs`) computes:
//! the same IEEE operations on the same operands in the same order, so the bits agree.

use super::{Instr, Op, Prog, Val, SCRATCH_STRIDE};
use crate::backend::cpu::fastmath::{EXPM1_C, EXP_HI, EXP_LO, LN2_HI, LN2_LO, LOG2E, ROUND_MAGIC, TANH_CLAMP, TANH_P, TANH_Q};
use crate::dtype::Dtype;
use crate::primitives::{BinaryOp, UnaryOp};
use iced_x86::code_asm::*;
use iced_x86::IcedError;

// The fixed constants, by index into the table (`fixed_consts`).
const K_ONE: usize = 0;
const K_ABS: usize = 1;
const K_SIGN: usize = 2;
const K_ZERO: usize = 3;
const K_NEG_ONE: usize = 4;
const K_INF: usize = 5;
const K_NEG_INF: usize = 6;
const K_NAN: usize = 7;
const K_TANH_CLAMP: usize = 8;
const K_TANH_P: usize = 9; // 7 entries
const K_TANH_Q: usize = 16; // 4 entries
const K_EXP_LO: usize = 20;
const K_EXP_HI: usize = 21;
const K_LOG2E: usize = 22;
const K_MAGIC: usize = 23;
const K_LN2_HI: usize = 24;
const K_LN2_LO: usize = 25;
const K_EXPM1: usize = 26; // 7 entries
const K_I127: usize = 33;
const K_I1: usize = 34;
const K_I7FFF: usize = 35;
const K_HI16: usize = 36;
const K_BF16_QUIET: usize = 37;
/// Run-time constants start here.
pub const N_FIXED: usize = 40;

pub fn fixed_consts() -> Vec<f32> {
    let bits = f32::from_bits;
    let mut c = vec![0.0f32; N_FIXED];
    c[K_ONE] = 1.0;
    c[K_ABS] = bits(0x7fff_ffff);
    c[K_SIGN] = bits(0x8000_0000);
    c[K_ZERO] = 0.0;
    c[K_NEG_ONE] = -1.0;
    c[K_INF] = f32::INFINITY;
    c[K_NEG_INF] = f32::NEG_INFINITY;
    // `max_nan`/`min_nan` return `Float::nan()`, which is this quiet NaN.
    c[K_NAN] = f32::NAN;
    c[K_TANH_CLAMP] = TANH_CLAMP;
    c[K_TANH_P..K_TANH_P + 7].copy_from_slice(&TANH_P);
    c[K_TANH_Q..K_TANH_Q + 4].copy_from_slice(&TANH_Q);
    c[K_EXP_LO] = EXP_LO;
    c[K_EXP_HI] = EXP_HI;
    c[K_LOG2E] = LOG2E;
    c[K_MAGIC] = ROUND_MAGIC;
    c[K_LN2_HI] = LN2_HI;
    c[K_LN2_LO] = LN2_LO;
    c[K_EXPM1..K_EXPM1 + 7].copy_from_slice(&EXPM1_C);
    c[K_I127] = bits(127);
    c[K_I1] = bits(1);
    c[K_I7FFF] = bits(0x7fff);
    c[K_HI16] = bits(0xffff_0000);
    c[K_BF16_QUIET] = bits(0x0040_0000);
    c
}

const ZMM: [AsmRegisterZmm; 32] = [
    zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15, zmm16, zmm17, zmm18, zmm19,
    zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31,
];
const YMM: [AsmRegisterYmm; 32] = [
    ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15, ymm16, ymm17, ymm18, ymm19,
    ymm20, ymm21, ymm22, ymm23, ymm24, ymm25, ymm26, ymm27, ymm28, ymm29, ymm30, ymm31,
];
/// General registers for input and output addresses (rdi, rcx, rsi, rax, rdx are taken).
const POINTERS: [AsmRegister64; 10] = [rbx, rbp, r8, r9, r10, r11, r12, r13, r14, r15];
const CALLEE_SAVED: [AsmRegister64; 6] = [rbx, rbp, r12, r13, r14, r15];
/// Temporaries the widest op (sigmoid: exp's four and two of its own) needs.
const TEMPS: usize = 6;

// vcmpps predicates.
const EQ_OQ: i32 = 0x00;
const UNORD_Q: i32 = 0x03;
const NEQ_UQ: i32 = 0x04;
const LT_OQ: i32 = 0x11;
const LE_OQ: i32 = 0x12;
const GE_OQ: i32 = 0x1d;
const GT_OQ: i32 = 0x1e;

fn unary_supported(op: UnaryOp) -> bool {
    use UnaryOp::*;
    matches!(
        op,
        Abs | Negative
            | Sign
            | Square
            | Sqrt
            | Rsqrt
            | Reciprocal
            | Tanh
            | Exp
            | Sigmoid
            | Floor
            | Ceil
            | Round
            | Real
            | Conjugate
            | IsNan
            | IsInf
            | IsPosInf
            | IsNegInf
            | IsFinite
            | LogicalNot
    )
}

fn binary_supported(op: BinaryOp) -> bool {
    use BinaryOp::*;
    matches!(
        op,
        Add | Subtract | Multiply | Divide | FloorDivide | Maximum | Minimum | Equal | NotEqual | Less | LessEqual | Greater | GreaterEqual
    )
    // NanEqual, LogicalAnd and LogicalOr never reach a fused region with float operands (their
    // ops cast to bool first), so they have no rule here that a test could not reach.
}

fn supported(ins: &Instr) -> bool {
    match ins.op {
        Op::Unary(u) => unary_supported(u),
        Op::Binary(b) => binary_supported(b),
        Op::Affine | Op::Select | Op::Round(_) => true,
    }
}

/// Machine code for `prog`, or None when an op has no rule here or the values do not fit in
/// registers.
pub fn assemble(prog: &Prog) -> Option<Vec<u8>> {
    if !prog.instrs.iter().all(supported) {
        return None;
    }
    let mut e = Emitter::new(prog)?;
    e.function().ok()?;
    e.a.assemble(0).ok()
}

struct Emitter<'p> {
    a: CodeAssembler,
    prog: &'p Prog,
    /// zmm index of each scratch register, input and output used (None: unused).
    reg: Vec<Option<usize>>,
    input: Vec<Option<usize>>,
    output: Vec<Option<usize>>,
    in_ptr: Vec<Option<AsmRegister64>>,
    out_ptr: Vec<Option<AsmRegister64>>,
    /// First temporary zmm.
    t: usize,
}

impl<'p> Emitter<'p> {
    fn new(prog: &'p Prog) -> Option<Self> {
        let (n_in, n_out) = (prog.n_in as usize, prog.n_out as usize);
        let mut regs_used = prog.loaded.clone();
        regs_used.extend(&prog.splat);
        regs_used.extend(&prog.spilled);
        let (mut ins_used, mut outs_used) = (vec![false; n_in], vec![false; n_out]);
        for ins in &prog.instrs {
            for v in ins.args.iter().chain([&ins.dst]) {
                match *v {
                    Val::Reg(r) => regs_used.push(r),
                    Val::In(i) => *ins_used.get_mut(i as usize)? = true,
                    Val::Out(k) => *outs_used.get_mut(k as usize)? = true,
                }
            }
        }
        let nregs = regs_used.iter().map(|&r| r as usize + 1).max().unwrap_or(0);
        let mut next = 0;
        let mut take = |used: bool| {
            used.then(|| {
                next += 1;
                next - 1
            })
        };
        let mut reg_used = vec![false; nregs];
        for &r in &regs_used {
            reg_used[r as usize] = true;
        }
        let reg: Vec<_> = reg_used.iter().map(|&u| take(u)).collect();
        let input: Vec<_> = ins_used.iter().map(|&u| take(u)).collect();
        let output: Vec<_> = outs_used.iter().map(|&u| take(u)).collect();
        if next + TEMPS > 32 {
            return None;
        }
        let mut pointers = POINTERS.iter().copied();
        let mut ptr = |used: bool| if used { pointers.next().map(Some) } else { Some(None) };
        let in_ptr = ins_used.iter().map(|&u| ptr(u)).collect::<Option<Vec<_>>>()?;
        let out_ptr = outs_used.iter().map(|&u| ptr(u)).collect::<Option<Vec<_>>>()?;
        Some(Emitter { a: CodeAssembler::new(64).ok()?, prog, reg, input, output, in_ptr, out_ptr, t: next })
    }

    fn z(&self, v: Val) -> AsmRegisterZmm {
        let i = match v {
            Val::Reg(r) => self.reg[r as usize],
            Val::In(i) => self.input[i as usize],
            Val::Out(k) => self.output[k as usize],
        };
        ZMM[i.expect("every value the program names has a register")]
    }

    fn tmp(&self, i: usize) -> AsmRegisterZmm {
        ZMM[self.t + i]
    }

    /// Broadcast operand of constant `k`.
    fn c(k: usize) -> AsmMemoryOperand {
        dword_bcst(rdx + (4 * k) as i32)
    }

    fn scratch(r: u8) -> AsmMemoryOperand {
        zmmword_ptr(rax + rcx + (r as usize * SCRATCH_STRIDE) as i32)
    }

    fn function(&mut self) -> Result<(), IcedError> {
        for r in CALLEE_SAVED {
            self.a.push(r)?;
        }
        self.a.mov(rsi, qword_ptr(rdi))?;
        self.a.kmovw(k1, word_ptr(rdi + 8))?;
        self.a.mov(rax, qword_ptr(rdi + 16))?;
        self.a.mov(rdx, qword_ptr(rdi + 24))?;
        let n_in = self.prog.n_in as usize;
        for (i, p) in self.in_ptr.clone().into_iter().enumerate() {
            if let Some(p) = p {
                self.a.mov(p, qword_ptr(rdi + (32 + 8 * i) as i32))?;
            }
        }
        for (k, p) in self.out_ptr.clone().into_iter().enumerate() {
            if let Some(p) = p {
                self.a.mov(p, qword_ptr(rdi + (32 + 8 * (n_in + k)) as i32))?;
            }
        }
        self.a.xor(ecx, ecx)?;
        for &r in &self.prog.splat.clone() {
            let z = self.z(Val::Reg(r));
            self.a.vbroadcastss(z, dword_ptr(rax + (r as usize * SCRATCH_STRIDE) as i32))?;
        }
        let mut tail = self.a.create_label();
        let mut top = self.a.create_label();
        let mut done = self.a.create_label();
        self.a.test(rsi, rsi)?;
        self.a.jz(tail)?;
        self.a.set_label(&mut top)?;
        self.body(false)?;
        self.a.add(rcx, 64)?;
        self.a.cmp(rcx, rsi)?;
        self.a.jb(top)?;
        self.a.set_label(&mut tail)?;
        self.a.kortestw(k1, k1)?;
        self.a.jz(done)?;
        self.body(true)?;
        self.a.set_label(&mut done)?;
        self.a.vzeroupper()?;
        for r in CALLEE_SAVED.iter().rev() {
            self.a.pop(*r)?;
        }
        self.a.ret()
    }

    /// One vector: loads, the program, stores. `masked`: the last, partial vector (k1 lanes).
    fn body(&mut self, masked: bool) -> Result<(), IcedError> {
        let load = |z: AsmRegisterZmm| if masked { z.k1().z() } else { z };
        for &r in &self.prog.loaded.clone() {
            let z = self.z(Val::Reg(r));
            self.a.vmovups(load(z), Self::scratch(r))?;
        }
        for (i, p) in self.in_ptr.clone().into_iter().enumerate() {
            if let Some(p) = p {
                let z = self.z(Val::In(i as u8));
                self.a.vmovups(load(z), zmmword_ptr(p + rcx))?;
            }
        }
        for ins in &self.prog.instrs {
            self.instr(ins)?;
            if let Val::Out(k) = ins.dst {
                let p = self.out_ptr[k as usize].expect("outputs written have an address");
                let z = self.z(ins.dst);
                if masked {
                    self.a.vmovups(zmmword_ptr(p + rcx).k1(), z)?;
                } else if self.prog.stream {
                    self.a.vmovntps(zmmword_ptr(p + rcx), z)?;
                } else {
                    self.a.vmovups(zmmword_ptr(p + rcx), z)?;
                }
            }
        }
        for &r in &self.prog.spilled.clone() {
            let z = self.z(Val::Reg(r));
            let m = Self::scratch(r);
            self.a.vmovups(if masked { m.k1() } else { m }, z)?;
        }
        Ok(())
    }

    fn instr(&mut self, ins: &Instr) -> Result<(), IcedError> {
        let d = self.z(ins.dst);
        let x = self.z(ins.args[0]);
        match ins.op {
            Op::Unary(op) => self.unary(op, d, x)?,
            Op::Binary(op) => self.binary(op, d, x, self.z(ins.args[1]))?,
            Op::Affine => self.a.vmovaps(d, x)?,
            Op::Select => {
                let (a, b) = (self.z(ins.args[1]), self.z(ins.args[2]));
                self.a.vcmpps(k2, x, Self::c(K_ZERO), NEQ_UQ)?;
                self.a.vblendmps(d.k2(), b, a)?;
            }
            Op::Round(dtype) => self.round(dtype, d, x)?,
        }
        if let Some(m) = ins.mul {
            self.a.vmulps(d, d, Self::c(m as usize))?;
        }
        if let Some(s) = ins.add {
            self.a.vaddps(d, d, Self::c(s as usize))?;
        }
        Ok(())
    }

    /// d = 1.0 where mask k2 is set, else 0.0.
    fn flag(&mut self, d: AsmRegisterZmm) -> Result<(), IcedError> {
        self.a.vbroadcastss(d.k2().z(), dword_ptr(rdx + (4 * K_ONE) as i32))
    }

    fn unary(&mut self, op: UnaryOp, d: AsmRegisterZmm, x: AsmRegisterZmm) -> Result<(), IcedError> {
        use UnaryOp::*;
        let t0 = self.tmp(0);
        match op {
            Abs => self.a.vpandd(d, x, Self::c(K_ABS))?,
            Negative => self.a.vpxord(d, x, Self::c(K_SIGN))?,
            Square => self.a.vmulps(d, x, x)?,
            Sqrt => self.a.vsqrtps(d, x)?,
            Rsqrt => {
                self.a.vsqrtps(t0, x)?;
                self.a.vbroadcastss(d, dword_ptr(rdx + (4 * K_ONE) as i32))?;
                self.a.vdivps(d, d, t0)?;
            }
            Reciprocal => {
                self.a.vbroadcastss(t0, dword_ptr(rdx + (4 * K_ONE) as i32))?;
                self.a.vdivps(d, t0, x)?;
            }
            Floor => self.a.vrndscaleps(d, x, 0x09)?,
            Ceil => self.a.vrndscaleps(d, x, 0x0a)?,
            Round => self.a.vrndscaleps(d, x, 0x08)?,
            Real | Conjugate => self.a.vmovaps(d, x)?,
            Sign => {
                // x > 0: 1, x < 0: -1, NaN: 0 (as MLX), else x (keeps ±0).
                self.a.vmovaps(t0, x)?;
                self.a.vcmpps(k2, x, Self::c(K_ZERO), GT_OQ)?;
                self.a.vbroadcastss(t0.k2(), dword_ptr(rdx + (4 * K_ONE) as i32))?;
                self.a.vcmpps(k2, x, Self::c(K_ZERO), LT_OQ)?;
                self.a.vbroadcastss(t0.k2(), dword_ptr(rdx + (4 * K_NEG_ONE) as i32))?;
                self.a.vcmpps(k2, x, x, UNORD_Q)?;
                self.a.vbroadcastss(t0.k2(), dword_ptr(rdx + (4 * K_ZERO) as i32))?;
                self.a.vmovaps(d, t0)?;
            }
            IsNan => {
                self.a.vcmpps(k2, x, x, UNORD_Q)?;
                self.flag(d)?;
            }
            IsInf | IsFinite => {
                self.a.vpandd(t0, x, Self::c(K_ABS))?;
                self.a.vcmpps(k2, t0, Self::c(K_INF), if op == IsInf { EQ_OQ } else { LT_OQ })?;
                self.flag(d)?;
            }
            IsPosInf | IsNegInf => {
                self.a.vcmpps(k2, x, Self::c(if op == IsPosInf { K_INF } else { K_NEG_INF }), EQ_OQ)?;
                self.flag(d)?;
            }
            LogicalNot => {
                self.a.vcmpps(k2, x, Self::c(K_ZERO), EQ_OQ)?;
                self.flag(d)?;
            }
            Tanh => self.tanh(d, x)?,
            Exp => self.exp(d, x, 0)?,
            Sigmoid => self.sigmoid(d, x)?,
            _ => unreachable!("checked by `supported`"),
        }
        Ok(())
    }

    fn binary(&mut self, op: BinaryOp, d: AsmRegisterZmm, x: AsmRegisterZmm, y: AsmRegisterZmm) -> Result<(), IcedError> {
        use BinaryOp::*;
        let cmp = |e: &mut Self, pred: i32| -> Result<(), IcedError> {
            e.a.vcmpps(k2, x, y, pred)?;
            e.flag(d)
        };
        match op {
            Add => self.a.vaddps(d, x, y)?,
            Subtract => self.a.vsubps(d, x, y)?,
            Multiply => self.a.vmulps(d, x, y)?,
            Divide => self.a.vdivps(d, x, y)?,
            FloorDivide => {
                self.a.vdivps(d, x, y)?;
                self.a.vrndscaleps(d, d, 0x09)?;
            }
            // vmaxps/vminps give the second operand on ties, as `a > b ? a : b`; a NaN on either
            // side gives the canonical NaN.
            Maximum | Minimum => {
                self.a.vcmpps(k2, x, y, UNORD_Q)?;
                if op == Maximum {
                    self.a.vmaxps(d, x, y)?;
                } else {
                    self.a.vminps(d, x, y)?;
                }
                self.a.vbroadcastss(d.k2(), dword_ptr(rdx + (4 * K_NAN) as i32))?;
            }
            Equal => cmp(self, EQ_OQ)?,
            NotEqual => cmp(self, NEQ_UQ)?,
            Less => cmp(self, LT_OQ)?,
            LessEqual => cmp(self, LE_OQ)?,
            Greater => cmp(self, GT_OQ)?,
            GreaterEqual => cmp(self, GE_OQ)?,
            _ => unreachable!("checked by `supported`"),
        }
        Ok(())
    }

    /// `fastmath::tanh`: x·P(x²)/Q(x²) on |x| clamped, at most 1, with x's sign; NaN stays.
    fn tanh(&mut self, d: AsmRegisterZmm, x: AsmRegisterZmm) -> Result<(), IcedError> {
        let (a, s, p, q) = (self.tmp(0), self.tmp(1), self.tmp(2), self.tmp(3));
        self.a.vpandd(a, x, Self::c(K_ABS))?;
        self.a.vminps(a, a, Self::c(K_TANH_CLAMP))?;
        self.a.vmulps(s, a, a)?;
        self.a.vbroadcastss(p, dword_ptr(rdx + (4 * (K_TANH_P + 6)) as i32))?;
        for k in (0..6).rev() {
            self.a.vfmadd213ps(p, s, Self::c(K_TANH_P + k))?;
        }
        self.a.vbroadcastss(q, dword_ptr(rdx + (4 * (K_TANH_Q + 3)) as i32))?;
        for k in (0..3).rev() {
            self.a.vfmadd213ps(q, s, Self::c(K_TANH_Q + k))?;
        }
        self.a.vmulps(p, a, p)?;
        self.a.vdivps(p, p, q)?;
        self.a.vminps(p, p, Self::c(K_ONE))?;
        self.a.vpandd(q, x, Self::c(K_SIGN))?;
        self.a.vpord(p, p, q)?;
        self.a.vcmpps(k2, x, x, UNORD_Q)?;
        self.a.vblendmps(d.k2(), p, x)?;
        Ok(())
    }

    /// `fastmath::exp` of x into d, using temporaries `t..t + 4`.
    fn exp(&mut self, d: AsmRegisterZmm, x: AsmRegisterZmm, t: usize) -> Result<(), IcedError> {
        let (xc, n, p, h) = (self.tmp(t), self.tmp(t + 1), self.tmp(t + 2), self.tmp(t + 3));
        // clamp (NaN lanes compute garbage and get x back at the end)
        self.a.vmaxps(xc, x, Self::c(K_EXP_LO))?;
        self.a.vminps(xc, xc, Self::c(K_EXP_HI))?;
        // n = round(x·log2 e); r = x - n·ln2 in two parts
        self.a.vmulps(n, xc, Self::c(K_LOG2E))?;
        self.a.vaddps(n, n, Self::c(K_MAGIC))?;
        self.a.vsubps(n, n, Self::c(K_MAGIC))?;
        self.a.vfnmadd231ps(xc, n, Self::c(K_LN2_HI))?;
        self.a.vfnmadd231ps(xc, n, Self::c(K_LN2_LO))?;
        // p = expm1(r) + 1
        self.a.vbroadcastss(p, dword_ptr(rdx + (4 * K_EXPM1) as i32))?;
        for k in 1..7 {
            self.a.vfmadd213ps(p, xc, Self::c(K_EXPM1 + k))?;
        }
        self.a.vmulps(p, p, xc)?;
        self.a.vfmadd213ps(p, xc, xc)?;
        self.a.vaddps(p, p, Self::c(K_ONE))?;
        // · 2^(n >> 1) · 2^(n - (n >> 1))
        self.a.vcvttps2dq(n, n)?;
        self.a.vpsrad(h, n, 1)?;
        self.a.vpsubd(n, n, h)?;
        self.a.vpaddd(h, h, Self::c(K_I127))?;
        self.a.vpslld(h, h, 23)?;
        self.a.vpaddd(n, n, Self::c(K_I127))?;
        self.a.vpslld(n, n, 23)?;
        self.a.vmulps(p, p, h)?;
        self.a.vmulps(p, p, n)?;
        self.a.vcmpps(k2, x, x, UNORD_Q)?;
        self.a.vblendmps(d.k2(), p, x)?;
        Ok(())
    }

    /// `fastmath::sigmoid`: e = exp(-|x|), r = 1 / (1 + e); x < 0 ? e·r : r.
    fn sigmoid(&mut self, d: AsmRegisterZmm, x: AsmRegisterZmm) -> Result<(), IcedError> {
        let (u, e) = (self.tmp(4), self.tmp(5));
        self.a.vpord(u, x, Self::c(K_SIGN))?;
        self.exp(e, u, 0)?;
        let (one, r) = (self.tmp(0), self.tmp(1));
        self.a.vaddps(u, e, Self::c(K_ONE))?;
        self.a.vbroadcastss(one, dword_ptr(rdx + (4 * K_ONE) as i32))?;
        self.a.vdivps(r, one, u)?;
        self.a.vcmpps(k2, x, Self::c(K_ZERO), LT_OQ)?;
        self.a.vmulps(r.k2(), e, r)?;
        self.a.vmovaps(d, r)?;
        Ok(())
    }

    /// `astype` inside a region, rounded as `Compute::round_f16` / `round_bf16` do (half's
    /// round-to-nearest-even; bf16 NaNs keep their top payload bits and turn quiet).
    fn round(&mut self, dtype: Dtype, d: AsmRegisterZmm, x: AsmRegisterZmm) -> Result<(), IcedError> {
        match dtype {
            Dtype::Float16 => {
                let y = YMM[self.t];
                self.a.vcvtps2ph(y, x, 0)?;
                self.a.vcvtph2ps(d, y)?;
            }
            Dtype::Bfloat16 => {
                let (r, n) = (self.tmp(0), self.tmp(1));
                self.a.vpsrld(r, x, 16)?;
                self.a.vpandd(r, r, Self::c(K_I1))?;
                self.a.vpaddd(r, r, x)?;
                self.a.vpaddd(r, r, Self::c(K_I7FFF))?;
                self.a.vpandd(r, r, Self::c(K_HI16))?;
                self.a.vpord(n, x, Self::c(K_BF16_QUIET))?;
                self.a.vpandd(n, n, Self::c(K_HI16))?;
                self.a.vcmpps(k2, x, x, UNORD_Q)?;
                self.a.vblendmps(d.k2(), r, n)?;
            }
            Dtype::Bool => {
                self.a.vcmpps(k2, x, Self::c(K_ZERO), NEQ_UQ)?;
                self.flag(d)?;
            }
            _ => self.a.vmovaps(d, x)?,
        }
        Ok(())
    }
}
