//! Element-wise ops: unary math, arithmetic, comparisons, logical and bitwise ops, `where`,
//! `clip` and friends, with MLX's promotion and broadcasting.

use super::args::Operand;
use super::creation::scalar_array;
use crate::array::Array;
use crate::dtype::{promote_types, Dtype};
use crate::error::Error;
use crate::primitives::{BinaryOp, Primitive, TernaryOp, UnaryOp};
use crate::shape::broadcast_shapes;

/// Resolves two operands to arrays of one dtype, applying weak typing to scalars.
#[track_caller]
pub fn promote_operands(a: Operand, b: Operand) -> (Array, Array) {
    match (a, b) {
        (Operand::Array(x), Operand::Array(y)) => {
            let dt = promote_types(x.dtype(), y.dtype());
            (x.astype(dt), y.astype(dt))
        }
        (Operand::Array(x), Operand::Scalar(s)) => {
            let dt = promote_types(x.dtype(), s.weak_dtype_with(x.dtype()));
            (x.astype(dt), scalar_array(s, dt))
        }
        (Operand::Scalar(s), Operand::Array(y)) => {
            let dt = promote_types(y.dtype(), s.weak_dtype_with(y.dtype()));
            (scalar_array(s, dt), y.astype(dt))
        }
        (Operand::Scalar(s), Operand::Scalar(t)) => {
            let dt = promote_types(s.default_dtype(), t.default_dtype());
            (scalar_array(s, dt), scalar_array(t, dt))
        }
    }
}

/// Broadcasts arrays to their common shape.
#[track_caller]
pub fn broadcast_arrays(arrays: &[Array]) -> Vec<Array> {
    let mut shape = vec![];
    for a in arrays {
        match broadcast_shapes(&shape, a.shape()) {
            Ok(s) => shape = s,
            Err(e) => return arrays.iter().map(|_| Array::error(e.clone())).collect(),
        }
    }
    arrays.iter().map(|a| super::broadcast_to(a, &shape)).collect()
}

#[track_caller]
fn binary_arrays(op: BinaryOp, x: Array, y: Array) -> Array {
    Array::build(|| {
        let shape = broadcast_shapes(x.shape(), y.shape()).map_err(|e| e.context(op.name().to_lowercase()))?;
        let (x, y) = (super::broadcast_to(&x, &shape), super::broadcast_to(&y, &shape));
        Ok(Array::from_op(Primitive::Binary(op), vec![x, y]))
    })
}

/// The binary op `op` with MLX's promotion; `float_result` promotes integer results to float32.
#[track_caller]
fn binary(op: BinaryOp, a: Operand, b: Operand, float_result: bool) -> Array {
    let (mut x, mut y) = promote_operands(a, b);
    if float_result && !x.dtype().is_inexact() {
        x = x.astype(Dtype::Float32);
        y = y.astype(Dtype::Float32);
    }
    binary_arrays(op, x, y)
}

macro_rules! binary_fns {
    ($($(#[$doc:meta])* $name:ident => $op:ident, $float:expr;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
            binary(BinaryOp::$op, a.into(), b.into(), $float)
        }
    )*};
}

binary_fns! {
    add => Add, false;
    subtract => Subtract, false;
    multiply => Multiply, false;
    /// True division: integer inputs give float32.
    divide => Divide, true;
    floor_divide => FloorDivide, false;
    /// Python-style remainder (sign of the divisor).
    remainder => Remainder, false;
    power => Power, false;
    maximum => Maximum, false;
    minimum => Minimum, false;
    equal => Equal, false;
    not_equal => NotEqual, false;
    less => Less, false;
    less_equal => LessEqual, false;
    greater => Greater, false;
    greater_equal => GreaterEqual, false;
    arctan2 => ArcTan2, true;
    logaddexp => LogAddExp, true;
}

#[track_caller]
fn bitwise(op: BinaryOp, a: Operand, b: Operand) -> Array {
    let (x, y) = promote_operands(a, b);
    if x.dtype().is_inexact() {
        let name = match op {
            BinaryOp::LeftShift => "left_shift",
            BinaryOp::RightShift => "right_shift",
            BinaryOp::BitwiseAnd => "bitwise_and",
            BinaryOp::BitwiseOr => "bitwise_or",
            _ => "bitwise_xor",
        };
        return Array::error(
            Error::invalid(format!("[{name}] Bitwise operations only allowed on integer types.")).at(std::panic::Location::caller()),
        );
    }
    // MLX shifts booleans as uint8 (True << True is 2).
    if matches!(op, BinaryOp::LeftShift | BinaryOp::RightShift) && x.dtype() == Dtype::Bool {
        return binary_arrays(op, x.astype(Dtype::Uint8), y.astype(Dtype::Uint8));
    }
    binary_arrays(op, x, y)
}

#[track_caller]
pub fn bitwise_and(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
    bitwise(BinaryOp::BitwiseAnd, a.into(), b.into())
}
#[track_caller]
pub fn bitwise_or(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
    bitwise(BinaryOp::BitwiseOr, a.into(), b.into())
}
#[track_caller]
pub fn bitwise_xor(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
    bitwise(BinaryOp::BitwiseXor, a.into(), b.into())
}
#[track_caller]
pub fn left_shift(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
    bitwise(BinaryOp::LeftShift, a.into(), b.into())
}
#[track_caller]
pub fn right_shift(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
    bitwise(BinaryOp::RightShift, a.into(), b.into())
}

/// Logical ops work on the truth values of their inputs.
#[track_caller]
pub fn logical_and(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
    let x = super::to_array(a, None).astype(Dtype::Bool);
    let y = super::to_array(b, None).astype(Dtype::Bool);
    binary_arrays(BinaryOp::LogicalAnd, x, y)
}
#[track_caller]
pub fn logical_or(a: impl Into<Operand>, b: impl Into<Operand>) -> Array {
    let x = super::to_array(a, None).astype(Dtype::Bool);
    let y = super::to_array(b, None).astype(Dtype::Bool);
    binary_arrays(BinaryOp::LogicalOr, x, y)
}
#[track_caller]
pub fn logical_not(a: &Array) -> Array {
    unary_raw(UnaryOp::LogicalNot, a.clone())
}

/// Element-wise equality with NaNs equal when `equal_nan`.
#[track_caller]
pub fn nan_equal(a: impl Into<Operand>, b: impl Into<Operand>, equal_nan: bool) -> Array {
    binary(if equal_nan { BinaryOp::NanEqual } else { BinaryOp::Equal }, a.into(), b.into(), false)
}

/// Python `divmod`: `(floor_divide(a, b), remainder(a, b))`.
#[track_caller]
pub fn divmod(a: impl Into<Operand>, b: impl Into<Operand>) -> (Array, Array) {
    let (a, b) = (a.into(), b.into());
    (floor_divide(a.clone(), b.clone()), remainder(a, b))
}

#[track_caller]
fn unary_raw(op: UnaryOp, a: Array) -> Array {
    Array::from_op(Primitive::Unary(op), vec![a])
}

/// Unary ops whose integer/bool inputs are computed in float32 (as MLX).
macro_rules! float_unary_fns {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name(a: &Array) -> Array {
            let x = if a.dtype().is_inexact() { a.clone() } else { a.astype(Dtype::Float32) };
            unary_raw(UnaryOp::$op, x)
        }
    )*};
}

float_unary_fns! {
    sqrt => Sqrt;
    rsqrt => Rsqrt;
    reciprocal => Reciprocal;
    exp => Exp;
    expm1 => Expm1;
    log => Log;
    log1p => Log1p;
    log2 => Log2;
    log10 => Log10;
    sin => Sin;
    cos => Cos;
    tan => Tan;
    arcsin => ArcSin;
    arccos => ArcCos;
    arctan => ArcTan;
    sinh => Sinh;
    cosh => Cosh;
    tanh => Tanh;
    arcsinh => ArcSinh;
    arccosh => ArcCosh;
    arctanh => ArcTanh;
    erf => Erf;
    erfinv => ErfInv;
    sigmoid => Sigmoid;
}

/// Unary ops that keep the input dtype.
macro_rules! same_unary_fns {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name(a: &Array) -> Array {
            unary_raw(UnaryOp::$op, a.clone())
        }
    )*};
}

same_unary_fns! {
    /// |x|; for complex input the magnitude as float32 (as MLX).
    abs => Abs;
    sign => Sign;
    square => Square;
    floor => Floor;
    ceil => Ceil;
    isnan => IsNan;
    isinf => IsInf;
    isposinf => IsPosInf;
    isneginf => IsNegInf;
    isfinite => IsFinite;
    conjugate => Conjugate;
}

#[track_caller]
pub fn negative(a: &Array) -> Array {
    if a.dtype() == Dtype::Bool {
        return Array::error(
            Error::invalid("[negative] Not supported for bool, use logical_not instead.").at(std::panic::Location::caller()),
        );
    }
    unary_raw(UnaryOp::Negative, a.clone())
}

#[track_caller]
pub fn bitwise_invert(a: &Array) -> Array {
    if a.dtype().is_inexact() {
        return Array::error(
            Error::invalid("[bitwise_invert] Bitwise inverse only allowed on integer types.").at(std::panic::Location::caller()),
        );
    }
    unary_raw(UnaryOp::BitwiseInvert, a.clone())
}

#[track_caller]
pub fn real(a: &Array) -> Array {
    unary_raw(UnaryOp::Real, a.clone())
}
#[track_caller]
pub fn imag(a: &Array) -> Array {
    unary_raw(UnaryOp::Imag, a.clone())
}

/// Rounds to `decimals` places, half to even (as MLX).
#[track_caller]
pub fn round(a: &Array, decimals: i32) -> Array {
    if decimals == 0 || !a.dtype().is_inexact() {
        return unary_raw(UnaryOp::Round, a.clone());
    }
    let s = 10f64.powi(decimals);
    divide(&unary_raw(UnaryOp::Round, multiply(a, s)), s)
}

/// `cond ? x : y`, broadcasting all three; x and y are promoted together.
#[track_caller]
pub fn where_(cond: impl Into<Operand>, x: impl Into<Operand>, y: impl Into<Operand>) -> Array {
    let c = super::to_array(cond, None).astype(Dtype::Bool);
    let (x, y) = promote_operands(x.into(), y.into());
    let parts = broadcast_arrays(&[c, x, y]);
    Array::build(|| {
        for p in &parts {
            p.check()?;
        }
        Ok(Array::from_op(Primitive::Ternary(TernaryOp::Select), parts.clone()))
    })
}

/// Limits values to `[a_min, a_max]`; either bound may be absent.
#[track_caller]
pub fn clip(a: &Array, a_min: Option<Operand>, a_max: Option<Operand>) -> Array {
    if a_min.is_none() && a_max.is_none() {
        return Array::error(Error::invalid("[clip] At most one of a_min and a_max may be None").at(std::panic::Location::caller()));
    }
    let mut out = a.clone();
    if let Some(lo) = a_min {
        out = maximum(&out, lo);
    }
    if let Some(hi) = a_max {
        out = minimum(&out, hi);
    }
    out
}

/// Replaces NaN with `nan`, +inf with `posinf` (default: the dtype's max), −inf with `neginf`.
#[track_caller]
pub fn nan_to_num(a: &Array, nan: f64, posinf: Option<f64>, neginf: Option<f64>) -> Array {
    if !a.dtype().is_float() {
        return a.clone();
    }
    let info = crate::dtype::finfo(a.dtype()).expect("float dtype has finfo");
    let pos = posinf.unwrap_or(info.max);
    let neg = neginf.unwrap_or(info.min);
    let x = where_(&isnan(a), nan, a);
    let x = where_(&isposinf(&x), pos, &x);
    where_(&isneginf(&x), neg, &x)
}

/// Whether the two arrays are element-wise equal within `rtol`/`atol` (NumPy's formula).
#[track_caller]
pub fn isclose(a: &Array, b: &Array, rtol: f64, atol: f64, equal_nan: bool) -> Array {
    let diff = abs(&subtract(a, b));
    let tol = add(&multiply(&abs(b), rtol), atol);
    let close = less_equal(&diff, &tol);
    // Infinities are close only to themselves.
    let both_inf_eq = equal(a, b);
    let res = logical_or(&close, &both_inf_eq);
    let finite_mismatch = logical_and(&logical_or(&isinf(a), &isinf(b)), &logical_not(&both_inf_eq));
    let res = logical_and(&res, &logical_not(&finite_mismatch));
    if equal_nan {
        logical_or(&res, &logical_and(&isnan(a), &isnan(b)))
    } else {
        res
    }
}

/// Whether all elements are close (a 0-d bool array).
#[track_caller]
pub fn allclose(a: &Array, b: &Array, rtol: f64, atol: f64, equal_nan: bool) -> Array {
    super::all(&isclose(a, b, rtol, atol, equal_nan), None, false)
}

/// Whether the arrays have the same shape and equal elements (0-d bool).
#[track_caller]
pub fn array_equal(a: &Array, b: &Array, equal_nan: bool) -> Array {
    if a.shape() != b.shape() {
        return scalar_array(crate::dtype::Scalar::Bool(false), Dtype::Bool);
    }
    super::all(&nan_equal(a, b, equal_nan), None, false)
}
