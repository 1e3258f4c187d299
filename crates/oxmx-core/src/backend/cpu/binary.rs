//! Two-input element-wise kernels. Each op is matched outside the element loop so every loop is
//! a monomorphic closure the compiler can vectorise. 16-bit floats compute in f32.

use super::elementwise::map_binary;
use crate::dtype::{Dtype, Element};
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::BinaryOp;
use half::{bf16, f16};
use num_complex::Complex32;

fn unsupported(op: BinaryOp, dt: Dtype) -> Error {
    Error::invalid(format!("[{}] not supported for dtype {dt}", op.name().to_lowercase()))
}

/// Python-style remainder: the result has the sign of the divisor.
#[inline(always)]
pub(crate) fn py_rem_f<F: num_traits::Float>(a: F, b: F) -> F {
    let r = a % b;
    if r != F::zero() && ((r < F::zero()) != (b < F::zero())) {
        r + b
    } else {
        r
    }
}

#[inline(always)]
pub(crate) fn max_nan<F: num_traits::Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if a > b {
        a
    } else {
        b
    }
}
#[inline(always)]
pub(crate) fn min_nan<F: num_traits::Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        F::nan()
    } else if a < b {
        a
    } else {
        b
    }
}

#[inline(always)]
pub(crate) fn logaddexp<F: num_traits::Float>(a: F, b: F) -> F {
    if a.is_nan() || b.is_nan() {
        return F::nan();
    }
    let m = if a > b { a } else { b };
    if m == F::neg_infinity() {
        return m;
    }
    let d = (a - b).abs();
    m + (-d).exp().ln_1p()
}

/// Float kernels in compute type `C` (f32 or f64) over storage type `T`.
macro_rules! float_binary {
    ($op:expr, $a:expr, $b:expr, $T:ty, $to:expr, $from:expr) => {{
        let (a, b) = ($a, $b);
        let to = $to;
        let from = $from;
        macro_rules! f {
            (|$x:ident, $y:ident| $e:expr) => {
                map_binary::<$T, $T, $T>(a, b, |x: $T, y: $T| {
                    let ($x, $y) = (to(x), to(y));
                    from($e)
                })
            };
        }
        macro_rules! p {
            (|$x:ident, $y:ident| $e:expr) => {
                map_binary::<$T, $T, bool>(a, b, |x: $T, y: $T| {
                    let ($x, $y) = (to(x), to(y));
                    $e
                })
            };
        }
        use BinaryOp::*;
        match $op {
            Add => f!(|x, y| x + y),
            Subtract => f!(|x, y| x - y),
            Multiply => f!(|x, y| x * y),
            Divide => f!(|x, y| x / y),
            // The quotient is rounded to the storage type before the floor, as MLX's half types
            // divide (float16 `-179.02` is `-179.0`, whose floor is `-179`, not `-180`).
            FloorDivide => f!(|x, y| to(from(x / y)).floor()),
            Remainder => f!(|x, y| py_rem_f(x, y)),
            Power => f!(|x, y| x.powf(y)),
            Maximum => f!(|x, y| max_nan(x, y)),
            Minimum => f!(|x, y| min_nan(x, y)),
            ArcTan2 => f!(|x, y| x.atan2(y)),
            LogAddExp => f!(|x, y| logaddexp(x, y)),
            Equal => p!(|x, y| x == y),
            NanEqual => p!(|x, y| x == y || (x.is_nan() && y.is_nan())),
            NotEqual => p!(|x, y| x != y),
            Less => p!(|x, y| x < y),
            LessEqual => p!(|x, y| x <= y),
            Greater => p!(|x, y| x > y),
            GreaterEqual => p!(|x, y| x >= y),
            LogicalAnd => p!(|x, y| x != 0.0 && y != 0.0),
            LogicalOr => p!(|x, y| x != 0.0 || y != 0.0),
            op @ (BitwiseAnd | BitwiseOr | BitwiseXor | LeftShift | RightShift) => Err(unsupported(op, a.dtype)),
        }
    }};
}

macro_rules! int_binary {
    ($op:expr, $a:expr, $b:expr, $T:ty, $signed:expr) => {{
        let (a, b) = ($a, $b);
        macro_rules! f {
            (|$x:ident, $y:ident| $e:expr) => {
                map_binary::<$T, $T, $T>(a, b, |$x: $T, $y: $T| $e)
            };
        }
        macro_rules! p {
            (|$x:ident, $y:ident| $e:expr) => {
                map_binary::<$T, $T, bool>(a, b, |$x: $T, $y: $T| $e)
            };
        }
        const BITS: u32 = <$T>::BITS;
        use BinaryOp::*;
        match $op {
            Add => f!(|x, y| x.wrapping_add(y)),
            Subtract => f!(|x, y| x.wrapping_sub(y)),
            Multiply => f!(|x, y| x.wrapping_mul(y)),
            // Integer `divide` is promoted to float by the op layer; a direct call truncates.
            Divide => f!(|x, y| if y == 0 { 0 } else { x.wrapping_div(y) }),
            FloorDivide => f!(|x, y| {
                if y == 0 {
                    0
                } else {
                    let q = x.wrapping_div(y);
                    if $signed && (x % y != 0) && ((x < (0 as $T)) != (y < (0 as $T))) {
                        q.wrapping_sub(1)
                    } else {
                        q
                    }
                }
            }),
            Remainder => f!(|x, y| {
                if y == 0 {
                    0
                } else {
                    let r = x.wrapping_rem(y);
                    if $signed && r != 0 && ((r < (0 as $T)) != (y < (0 as $T))) {
                        r.wrapping_add(y)
                    } else {
                        r
                    }
                }
            }),
            Power => f!(|x, y| {
                if $signed && y < (0 as $T) {
                    // Integer power with a negative exponent: only ±1 survive truncation.
                    if x == (1 as $T) {
                        1
                    } else if $signed && x.wrapping_add(1 as $T) == 0 {
                        if y % 2 == 0 {
                            1
                        } else {
                            x
                        }
                    } else {
                        0
                    }
                } else {
                    let (mut base, mut e, mut acc) = (x, y as u64, 1 as $T);
                    while e > 0 {
                        if e & 1 == 1 {
                            acc = acc.wrapping_mul(base);
                        }
                        base = base.wrapping_mul(base);
                        e >>= 1;
                    }
                    acc
                }
            }),
            Maximum => f!(|x, y| if x > y { x } else { y }),
            Minimum => f!(|x, y| if x < y { x } else { y }),
            Equal | NanEqual => p!(|x, y| x == y),
            NotEqual => p!(|x, y| x != y),
            Less => p!(|x, y| x < y),
            LessEqual => p!(|x, y| x <= y),
            Greater => p!(|x, y| x > y),
            GreaterEqual => p!(|x, y| x >= y),
            LogicalAnd => p!(|x, y| x != 0 && y != 0),
            LogicalOr => p!(|x, y| x != 0 || y != 0),
            BitwiseAnd => f!(|x, y| x & y),
            BitwiseOr => f!(|x, y| x | y),
            BitwiseXor => f!(|x, y| x ^ y),
            LeftShift => f!(|x, y| if (y as i128) < 0 || (y as i128) >= BITS as i128 { 0 } else { x.wrapping_shl(y as u32) }),
            RightShift => f!(|x, y| {
                if (y as i128) < 0 || (y as i128) >= BITS as i128 {
                    if $signed && x < (0 as $T) {
                        (0 as $T).wrapping_sub(1)
                    } else {
                        0
                    }
                } else {
                    x.wrapping_shr(y as u32)
                }
            }),
            op @ (ArcTan2 | LogAddExp) => Err(unsupported(op, a.dtype)),
        }
    }};
}

fn bool_binary(op: BinaryOp, a: &Data, b: &Data) -> Result<Data> {
    use BinaryOp::*;
    let f = |g: fn(bool, bool) -> bool| map_binary::<bool, bool, bool>(a, b, g);
    match op {
        Add | LogicalOr | BitwiseOr | Maximum => f(|x, y| x | y),
        Multiply | LogicalAnd | BitwiseAnd | Minimum => f(|x, y| x & y),
        BitwiseXor | NotEqual => f(|x, y| x ^ y),
        Equal | NanEqual => f(|x, y| x == y),
        Less => f(|x, y| !x & y),
        LessEqual => f(|x, y| !x | y),
        Greater => f(|x, y| x & !y),
        GreaterEqual => f(|x, y| x | !y),
        // As MLX: bool arithmetic wraps in one bit (1 - 1 = 0, 0 - 1 = 1), and x ** y is 1
        // unless the base is 0 and the exponent 1.
        Subtract => f(|x, y| x ^ y),
        Power => f(|x, y| x | !y),
        _ => Err(unsupported(op, Dtype::Bool)),
    }
}

fn complex_binary(op: BinaryOp, a: &Data, b: &Data) -> Result<Data> {
    use BinaryOp::*;
    type C = Complex32;
    let f = |g: fn(C, C) -> C| map_binary::<C, C, C>(a, b, g);
    // Complex ordering compares real parts, then imaginary parts (as MLX).
    let p = |g: fn(C, C) -> bool| map_binary::<C, C, bool>(a, b, g);
    let key = |z: C| (z.re, z.im);
    let _ = key;
    match op {
        Add => f(|x, y| x + y),
        Subtract => f(|x, y| x - y),
        Multiply => f(|x, y| x * y),
        Divide => f(|x, y| x / y),
        Power => f(|x, y| if x == C::new(0.0, 0.0) && y == C::new(0.0, 0.0) { C::new(1.0, 0.0) } else { x.powc(y) }),
        Maximum => f(|x, y| if (x.re, x.im) > (y.re, y.im) { x } else { y }),
        Minimum => f(|x, y| if (x.re, x.im) < (y.re, y.im) { x } else { y }),
        Equal | NanEqual => p(|x, y| x == y),
        NotEqual => p(|x, y| x != y),
        Less => p(|x, y| (x.re, x.im) < (y.re, y.im)),
        LessEqual => p(|x, y| (x.re, x.im) <= (y.re, y.im)),
        Greater => p(|x, y| (x.re, x.im) > (y.re, y.im)),
        GreaterEqual => p(|x, y| (x.re, x.im) >= (y.re, y.im)),
        LogicalAnd => p(|x, y| x != C::new(0.0, 0.0) && y != C::new(0.0, 0.0)),
        LogicalOr => p(|x, y| x != C::new(0.0, 0.0) || y != C::new(0.0, 0.0)),
        _ => Err(unsupported(op, Dtype::Complex64)),
    }
}

pub fn eval(op: BinaryOp, inputs: &[Data], _specs: &[Spec]) -> Result<Vec<Data>> {
    let (a, b) = (&inputs[0], &inputs[1]);
    let out = match a.dtype {
        Dtype::Float32 => float_binary!(op, a, b, f32, |x: f32| x, |x: f32| x),
        Dtype::Float64 => float_binary!(op, a, b, f64, |x: f64| x, |x: f64| x),
        Dtype::Float16 => float_binary!(op, a, b, f16, |x: f16| x.to_f32(), f16::from_f32),
        Dtype::Bfloat16 => float_binary!(op, a, b, bf16, |x: bf16| x.to_f32(), bf16::from_f32),
        Dtype::Uint8 => int_binary!(op, a, b, u8, false),
        Dtype::Uint16 => int_binary!(op, a, b, u16, false),
        Dtype::Uint32 => int_binary!(op, a, b, u32, false),
        Dtype::Uint64 => int_binary!(op, a, b, u64, false),
        Dtype::Int8 => int_binary!(op, a, b, i8, true),
        Dtype::Int16 => int_binary!(op, a, b, i16, true),
        Dtype::Int32 => int_binary!(op, a, b, i32, true),
        Dtype::Int64 => int_binary!(op, a, b, i64, true),
        Dtype::Bool => bool_binary(op, a, b),
        Dtype::Complex64 => complex_binary(op, a, b),
    }?;
    let _ = <f32 as Element>::DTYPE;
    Ok(vec![out])
}
