//! One-input element-wise kernels. 16-bit floats compute in f32 and round once, as MLX does.

use super::elementwise::{map_unary, map_unary_slices};
use super::fastmath;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::{Data, Spec};
use crate::primitives::UnaryOp;
use half::{bf16, f16};
use num_complex::Complex32;

/// Floats computed through f32 (f16, bf16, f32) or natively (f64).
pub trait FloatMath: Copy {
    fn exp(self) -> Self;
    fn exp_m1(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn log2(self) -> Self;
    fn log10(self) -> Self;
    fn sqrt(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn tanh(self) -> Self;
    fn asinh(self) -> Self;
    fn acosh(self) -> Self;
    fn atanh(self) -> Self;
    fn erf(self) -> Self;
    fn erfinv(self) -> Self;
    fn floor(self) -> Self;
    fn ceil(self) -> Self;
    fn round_even(self) -> Self;
}

macro_rules! float_math {
    ($t:ty, $erf:path, $erfinv:path) => {
        impl FloatMath for $t {
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn log2(self) -> Self {
                <$t>::log2(self)
            }
            #[inline(always)]
            fn log10(self) -> Self {
                <$t>::log10(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn tan(self) -> Self {
                <$t>::tan(self)
            }
            #[inline(always)]
            fn asin(self) -> Self {
                <$t>::asin(self)
            }
            #[inline(always)]
            fn acos(self) -> Self {
                <$t>::acos(self)
            }
            #[inline(always)]
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            #[inline(always)]
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            #[inline(always)]
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn asinh(self) -> Self {
                <$t>::asinh(self)
            }
            #[inline(always)]
            fn acosh(self) -> Self {
                <$t>::acosh(self)
            }
            #[inline(always)]
            fn atanh(self) -> Self {
                <$t>::atanh(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn erfinv(self) -> Self {
                $erfinv(self)
            }
            #[inline(always)]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline(always)]
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            #[inline(always)]
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
        }
    };
}
float_math!(f32, libm::erff, erfinv_f32);
float_math!(f64, libm::erf, erfinv_f64);

/// Inverse error function (Giles, "Approximating the erfinv function", single precision).
pub fn erfinv_f32(x: f32) -> f32 {
    if x <= -1.0 {
        return if x == -1.0 { f32::NEG_INFINITY } else { f32::NAN };
    }
    if x >= 1.0 {
        return if x == 1.0 { f32::INFINITY } else { f32::NAN };
    }
    let mut w = -((1.0 - x) * (1.0 + x)).ln();
    let p;
    if w < 5.0 {
        w -= 2.5;
        let mut q = 2.810_226_4e-8f32;
        q = 3.432_739_4e-7 + q * w;
        q = -3.523_387_7e-6 + q * w;
        q = -4.391_506_5e-6 + q * w;
        q = 0.000_218_580_87 + q * w;
        q = -0.001_253_725 + q * w;
        q = -0.004_177_682 + q * w;
        q = 0.246_640_73 + q * w;
        p = 1.501_409_4 + q * w;
    } else {
        w = w.sqrt() - 3.0;
        let mut q = -0.000_200_214_26f32;
        q = 0.000_100_950_56 + q * w;
        q = 0.001_349_343_2 + q * w;
        q = -0.003_673_428_5 + q * w;
        q = 0.005_739_507_7 + q * w;
        q = -0.007_622_461_3 + q * w;
        q = 0.009_438_870_5 + q * w;
        q = 1.001_674_1 + q * w;
        p = 2.832_976_8 + q * w;
    }
    p * x
}

/// f64 erfinv: the f32 estimate refined by two Newton steps on erf.
pub fn erfinv_f64(x: f64) -> f64 {
    if x <= -1.0 || x >= 1.0 {
        return erfinv_f32(x as f32) as f64;
    }
    let mut y = erfinv_f32(x as f32) as f64;
    let k = 2.0 / std::f64::consts::PI.sqrt();
    for _ in 0..2 {
        let e = libm::erf(y) - x;
        y -= e / (k * (-y * y).exp());
    }
    y
}

#[inline(always)]
pub(crate) fn float_op<F: FloatMath + num_traits::Float>(op: UnaryOp, x: F) -> F {
    use UnaryOp::*;
    let one = F::one();
    match op {
        Abs => x.abs(),
        Negative => -x,
        Sign => {
            if x > F::zero() {
                one
            } else if x < F::zero() {
                -one
            } else if x.is_nan() {
                F::zero() // MLX: sign(NaN) is 0
            } else {
                x // keeps 0 and -0
            }
        }
        Square => x * x,
        Sqrt => FloatMath::sqrt(x),
        Rsqrt => one / FloatMath::sqrt(x),
        Reciprocal => one / x,
        Exp => FloatMath::exp(x),
        Expm1 => FloatMath::exp_m1(x),
        Log => FloatMath::ln(x),
        Log1p => FloatMath::ln_1p(x),
        Log2 => FloatMath::log2(x),
        Log10 => FloatMath::log10(x),
        Sin => FloatMath::sin(x),
        Cos => FloatMath::cos(x),
        Tan => FloatMath::tan(x),
        ArcSin => FloatMath::asin(x),
        ArcCos => FloatMath::acos(x),
        ArcTan => FloatMath::atan(x),
        Sinh => FloatMath::sinh(x),
        Cosh => FloatMath::cosh(x),
        Tanh => FloatMath::tanh(x),
        ArcSinh => FloatMath::asinh(x),
        ArcCosh => FloatMath::acosh(x),
        ArcTanh => FloatMath::atanh(x),
        Erf => FloatMath::erf(x),
        ErfInv => x.erfinv(),
        Sigmoid => one / (one + FloatMath::exp(-x)),
        Floor => FloatMath::floor(x),
        Ceil => FloatMath::ceil(x),
        Round => x.round_even(),
        Real | Conjugate => x,
        Imag => F::zero(),
        BitwiseInvert | LogicalNot | IsNan | IsInf | IsPosInf | IsNegInf | IsFinite => unreachable!("handled before"),
    }
}

fn unsupported(op: UnaryOp, dt: Dtype) -> Error {
    Error::invalid(format!("[{}] not supported for dtype {dt}", op.name().to_lowercase()))
}

/// f32 versions that vectorise (see `fastmath`); every other op uses `float_op`.
#[inline(always)]
fn f32_op<const OP: u8>(x: f32) -> f32 {
    match OP {
        OP_EXP => fastmath::exp(x),
        OP_EXPM1 => fastmath::exp_m1(x),
        OP_LOG => fastmath::ln(x),
        OP_LOG1P => fastmath::ln_1p(x),
        OP_TANH => fastmath::tanh(x),
        OP_SIGMOID => fastmath::sigmoid(x),
        _ => unreachable!(),
    }
}
const OP_EXP: u8 = 0;
const OP_EXPM1: u8 = 1;
const OP_LOG: u8 = 2;
const OP_LOG1P: u8 = 3;
const OP_TANH: u8 = 4;
const OP_SIGMOID: u8 = 5;

/// Runs `f` (an f32 function) over any float dtype: f16/bf16 through f32, f64 via `g`.
fn float_map(a: &Data, f: impl Fn(f32) -> f32 + Sync, g: impl Fn(f64) -> f64 + Sync) -> Result<Data> {
    match a.dtype {
        Dtype::Float32 => map_unary::<f32, f32>(a, f),
        Dtype::Float64 => map_unary::<f64, f64>(a, g),
        Dtype::Float16 => map_unary::<f16, f16>(a, |x| f16::from_f32(f(x.to_f32()))),
        Dtype::Bfloat16 => map_unary::<bf16, bf16>(a, |x| bf16::from_f32(f(x.to_f32()))),
        dt => unreachable!("float_map on {dt}"),
    }
}

/// Float kernels: f16/bf16/f32 through f32, f64 natively. Each op is its own monomorphic loop
/// (matching on `op` per element would stop vectorisation).
fn float_kernel(op: UnaryOp, a: &Data) -> Result<Data> {
    use UnaryOp::*;
    if !a.dtype.is_float() {
        return Err(unsupported(op, a.dtype));
    }
    macro_rules! fast {
        ($k:expr, $u:ident) => {
            float_map(a, f32_op::<$k>, |x| float_op($u, x))
        };
    }
    macro_rules! each {
        ($($u:ident),*) => {
            match op {
                Exp if a.dtype == Dtype::Float32 => map_unary_slices(a, fastmath::exp_slice),
                Sigmoid if a.dtype == Dtype::Float32 => map_unary_slices(a, fastmath::sigmoid_slice),
                Exp => fast!(OP_EXP, Exp),
                Expm1 => fast!(OP_EXPM1, Expm1),
                Log => fast!(OP_LOG, Log),
                Log1p => fast!(OP_LOG1P, Log1p),
                Tanh => fast!(OP_TANH, Tanh),
                Sigmoid => fast!(OP_SIGMOID, Sigmoid),
                $($u => float_map(a, |x| float_op($u, x), |x| float_op($u, x)),)*
                _ => unreachable!("{op:?} handled before"),
            }
        };
    }
    each!(
        Abs, Negative, Sign, Square, Sqrt, Rsqrt, Reciprocal, Log2, Log10, Sin, Cos, Tan, ArcSin, ArcCos, ArcTan, Sinh, Cosh, ArcSinh,
        ArcCosh, ArcTanh, Erf, ErfInv, Floor, Ceil, Round, Real, Conjugate, Imag
    )
}

fn predicate(op: UnaryOp, a: &Data) -> Result<Data> {
    use UnaryOp::*;
    fn pred_f64(op: UnaryOp, x: f64) -> bool {
        match op {
            IsNan => x.is_nan(),
            IsInf => x.is_infinite(),
            IsPosInf => x == f64::INFINITY,
            IsNegInf => x == f64::NEG_INFINITY,
            IsFinite => x.is_finite(),
            LogicalNot => x == 0.0,
            _ => unreachable!(),
        }
    }
    match a.dtype {
        Dtype::Complex64 => map_unary::<Complex32, bool>(a, |z| match op {
            IsNan => z.re.is_nan() || z.im.is_nan(),
            IsInf => z.re.is_infinite() || z.im.is_infinite(),
            IsFinite => z.re.is_finite() && z.im.is_finite(),
            LogicalNot => z.re == 0.0 && z.im == 0.0,
            _ => false,
        }),
        Dtype::Bool => map_unary::<bool, bool>(a, |x| pred_f64(op, x as u8 as f64)),
        dt if dt.is_integer() => crate::dispatch!(int: dt, T => map_unary::<T, bool>(a, |x| match op {
            IsFinite => true,
            LogicalNot => x == T::default(),
            _ => false,
        }), else unreachable!()),
        Dtype::Float32 => map_unary::<f32, bool>(a, |x| pred_f64(op, x as f64)),
        Dtype::Float64 => map_unary::<f64, bool>(a, |x| pred_f64(op, x)),
        Dtype::Float16 => map_unary::<f16, bool>(a, |x| pred_f64(op, x.to_f64())),
        Dtype::Bfloat16 => map_unary::<bf16, bool>(a, |x| pred_f64(op, x.to_f64())),
        _ => unreachable!(),
    }
}

fn complex_kernel(op: UnaryOp, a: &Data) -> Result<Data> {
    use UnaryOp::*;
    match op {
        Real => map_unary::<Complex32, f32>(a, |z| z.re),
        Imag => map_unary::<Complex32, f32>(a, |z| z.im),
        Abs => map_unary::<Complex32, f32>(a, |z| z.norm()),
        _ => map_unary::<Complex32, Complex32>(a, |z| match op {
            Negative => -z,
            Conjugate => z.conj(),
            Square => z * z,
            Sqrt => z.sqrt(),
            Rsqrt => Complex32::new(1.0, 0.0) / z.sqrt(),
            Reciprocal => Complex32::new(1.0, 0.0) / z,
            Exp => z.exp(),
            Expm1 => z.exp() - 1.0,
            Log => z.ln(),
            Log1p => (z + 1.0).ln(),
            Log2 => z.ln() / std::f32::consts::LN_2,
            Log10 => z.ln() / std::f32::consts::LN_10,
            Sin => z.sin(),
            Cos => z.cos(),
            Tan => z.tan(),
            ArcSin => z.asin(),
            ArcCos => z.acos(),
            ArcTan => z.atan(),
            Sinh => z.sinh(),
            Cosh => z.cosh(),
            Tanh => z.tanh(),
            ArcSinh => z.asinh(),
            ArcCosh => z.acosh(),
            ArcTanh => z.atanh(),
            Sigmoid => Complex32::new(1.0, 0.0) / (Complex32::new(1.0, 0.0) + (-z).exp()),
            Sign => {
                let n = z.norm();
                if n == 0.0 {
                    z
                } else {
                    z / n
                }
            }
            Floor => Complex32::new(z.re.floor(), z.im.floor()),
            Ceil => Complex32::new(z.re.ceil(), z.im.ceil()),
            Round => Complex32::new(z.re.round_ties_even(), z.im.round_ties_even()),
            _ => Complex32::new(f32::NAN, f32::NAN),
        }),
    }
}

fn int_kernel(op: UnaryOp, a: &Data) -> Result<Data> {
    use UnaryOp::*;
    macro_rules! int_ops {
        ($T:ty, $signed:expr) => {{
            match op {
                Abs => map_unary::<$T, $T>(a, |x| if $signed { (x as i128).abs() as $T } else { x }),
                Negative => map_unary::<$T, $T>(a, |x| x.wrapping_neg()),
                Sign => map_unary::<$T, $T>(a, |x| (x as i128).signum() as $T),
                Square => map_unary::<$T, $T>(a, |x| x.wrapping_mul(x)),
                Floor | Ceil | Round | Real | Conjugate => map_unary::<$T, $T>(a, |x| x),
                Imag => map_unary::<$T, $T>(a, |_| 0),
                BitwiseInvert => map_unary::<$T, $T>(a, |x| !x),
                _ => Err(unsupported(op, a.dtype)),
            }
        }};
    }
    match a.dtype {
        Dtype::Uint8 => int_ops!(u8, false),
        Dtype::Uint16 => int_ops!(u16, false),
        Dtype::Uint32 => int_ops!(u32, false),
        Dtype::Uint64 => int_ops!(u64, false),
        Dtype::Int8 => int_ops!(i8, true),
        Dtype::Int16 => int_ops!(i16, true),
        Dtype::Int32 => int_ops!(i32, true),
        Dtype::Int64 => int_ops!(i64, true),
        Dtype::Bool => match op {
            Abs | Floor | Ceil | Round | Real | Conjugate | Square | Sign => map_unary::<bool, bool>(a, |x| x),
            BitwiseInvert => map_unary::<bool, bool>(a, |x| !x),
            _ => Err(unsupported(op, a.dtype)),
        },
        dt => Err(unsupported(op, dt)),
    }
}

pub fn eval(op: UnaryOp, inputs: &[Data], _specs: &[Spec]) -> Result<Vec<Data>> {
    let a = &inputs[0];
    let out = if op.is_predicate() {
        predicate(op, a)?
    } else if a.dtype == Dtype::Complex64 {
        complex_kernel(op, a)?
    } else if a.dtype.is_float() {
        if op == UnaryOp::BitwiseInvert {
            return Err(unsupported(op, a.dtype));
        }
        float_kernel(op, a)?
    } else {
        int_kernel(op, a)?
    };
    Ok(vec![out])
}
