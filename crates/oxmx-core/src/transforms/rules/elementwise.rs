//! Derivatives of the element-wise families (inputs share one shape: the op layer broadcasts
//! before building the node, and the Broadcast node's rule reduces back).

use crate::array::Array;
use crate::error::Result;
use crate::ops as o;
use crate::primitives::{BinaryOp, CastOp, UnaryOp};
use std::f64::consts::{LN_10, LN_2, PI};

/// `g * dy/dx` for `y = op(x)`.
pub(super) fn unary(op: UnaryOp, x: &Array, y: &Array, g: &Array) -> Result<Array> {
    use UnaryOp::*;
    let one_minus_sq = || 1.0 - o::square(x);
    Ok(match op {
        Abs => g * o::sign(x),
        Negative => o::negative(g),
        Square => g * (x * 2.0),
        Sqrt => g / (y * 2.0),
        Rsqrt => g * (o::power(y, 3.0) * -0.5),
        Reciprocal => o::negative(&(g * o::square(y))),
        Exp => g * y,
        Expm1 => g * (y + 1.0),
        Log => g / x,
        Log1p => g / (x + 1.0),
        Log2 => g / (x * LN_2),
        Log10 => g / (x * LN_10),
        Sin => g * o::cos(x),
        Cos => o::negative(&(g * o::sin(x))),
        Tan => g * (o::square(y) + 1.0),
        ArcSin => g * o::rsqrt(&one_minus_sq()),
        ArcCos => o::negative(&(g * o::rsqrt(&one_minus_sq()))),
        ArcTan => g / (o::square(x) + 1.0),
        Sinh => g * o::cosh(x),
        Cosh => g * o::sinh(x),
        Tanh => g * (1.0 - o::square(y)),
        ArcSinh => g * o::rsqrt(&(o::square(x) + 1.0)),
        ArcCosh => g * o::rsqrt(&(o::square(x) - 1.0)),
        ArcTanh => g / one_minus_sq(),
        Erf => g * (o::exp(&o::negative(&o::square(x))) * (2.0 / PI.sqrt())),
        ErfInv => g * (o::exp(&o::square(y)) * (PI.sqrt() / 2.0)),
        Sigmoid => g * (y * (1.0 - y)),
        Conjugate => o::conjugate(g),
        Real | Imag => return Err(complex_only(op)),
        // Piecewise constant or not real-valued: zero derivative.
        Sign | Floor | Ceil | Round | LogicalNot | BitwiseInvert | IsNan | IsInf | IsPosInf | IsNegInf | IsFinite => o::zeros_like(x),
    })
}

fn complex_only(op: UnaryOp) -> crate::error::Error {
    crate::error::Error::runtime(format!("internal: [vjp] {op:?} of a real input"))
}

/// Cotangent of a complex input (convention `∂L/∂Re + i·∂L/∂Im`). Holomorphic ops give
/// `ḡ · conj(f'(x))`, i.e. `conj(rule(conj(ḡ)))` with the real rule; the non-holomorphic ones
/// are written out.
pub(super) fn complex_unary(op: UnaryOp, x: &Array, y: &Array, g: &Array) -> Result<Array> {
    let c64 = crate::Dtype::Complex64;
    Ok(match op {
        UnaryOp::Real => g.astype(c64),
        UnaryOp::Imag => g.astype(c64) * num_complex::Complex32::new(0.0, 1.0),
        UnaryOp::Conjugate => o::conjugate(g),
        UnaryOp::Abs => {
            let m = o::abs(x);
            o::where_(o::equal(&m, 0.0), 0.0, g * x / o::where_(o::equal(&m, 0.0), 1.0, &m))
        }
        _ => o::conjugate(&unary(op, x, y, &o::conjugate(g))?),
    })
}

/// `g * dy/d(input i)` for `y = op(a, b)`.
pub(super) fn binary(op: BinaryOp, a: &Array, b: &Array, y: &Array, g: &Array, i: usize) -> Result<Array> {
    use BinaryOp::*;
    let first = i == 0;
    Ok(match op {
        Add => g.clone(),
        Subtract => {
            if first {
                g.clone()
            } else {
                o::negative(g)
            }
        }
        Multiply => g * if first { b } else { a },
        Divide => {
            if first {
                g / b
            } else {
                o::negative(&(g * y / b))
            }
        }
        Power => {
            if first {
                // b * a^(b-1), written so that b == 0 gives 0 at a == 0 rather than NaN.
                g * o::where_(o::equal(b, 0.0), 0.0, b * o::power(a, &(b - 1.0)))
            } else {
                // y * log(a); a <= 0 contributes 0 (the real power is not differentiable in b there).
                let pos = o::greater(a, 0.0);
                g * o::where_(&pos, y * o::log(&o::where_(&pos, a, 1.0)), 0.0)
            }
        }
        Maximum | Minimum => {
            // Ties send the whole cotangent to the first input.
            let take_a = if op == Maximum { o::greater_equal(a, b) } else { o::less_equal(a, b) };
            if first {
                o::where_(&take_a, g, 0.0)
            } else {
                o::where_(&take_a, 0.0, g)
            }
        }
        Remainder => {
            if first {
                g.clone()
            } else {
                o::negative(&(g * o::floor_divide(a, b)))
            }
        }
        ArcTan2 => {
            let denom = o::square(a) + o::square(b);
            if first {
                g * b / &denom
            } else {
                o::negative(&(g * a / &denom))
            }
        }
        LogAddExp => {
            let d = if first { a - b } else { b - a };
            g * o::sigmoid(&d)
        }
        FloorDivide | Equal | NanEqual | NotEqual | Less | LessEqual | Greater | GreaterEqual | LogicalAnd | LogicalOr | BitwiseAnd
        | BitwiseOr | BitwiseXor | LeftShift | RightShift => o::zeros_like(if first { a } else { b }),
    })
}

/// `where(cond, x, y)`: input 0 is the condition.
pub(super) fn select(cond: &Array, g: &Array, i: usize) -> Result<Array> {
    Ok(match i {
        0 => o::zeros_like(cond),
        1 => o::where_(cond, g, 0.0),
        _ => o::where_(cond, 0.0, g),
    })
}

pub(super) fn cast(op: &CastOp, x: &Array, g: &Array) -> Result<Array> {
    Ok(match op {
        CastOp::AsType(_) if x.dtype().is_inexact() => g.astype(x.dtype()),
        _ => o::zeros_like(x),
    })
}
