//! Data types, MLX's promotion rules, weak (scalar) typing, `finfo`/`iinfo`, and the `Element`
//! trait that CPU kernels are generic over.

use half::{bf16, f16};
use num_complex::Complex32;
use std::fmt;

/// An array's element type. Names and sizes follow MLX (`mx.bool_`, `mx.uint8`, …, `mx.complex64`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Float16,
    Bfloat16,
    Float32,
    Float64,
    Complex64,
}

/// The category of a dtype, as MLX's `mx.issubdtype` lattice uses it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Bool,
    Unsigned,
    Signed,
    Float,
    Complex,
}

pub const ALL_DTYPES: [Dtype; 14] = [
    Dtype::Bool,
    Dtype::Uint8,
    Dtype::Uint16,
    Dtype::Uint32,
    Dtype::Uint64,
    Dtype::Int8,
    Dtype::Int16,
    Dtype::Int32,
    Dtype::Int64,
    Dtype::Float16,
    Dtype::Bfloat16,
    Dtype::Float32,
    Dtype::Float64,
    Dtype::Complex64,
];

impl Dtype {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::Uint8 | Dtype::Int8 => 1,
            Dtype::Uint16 | Dtype::Int16 | Dtype::Float16 | Dtype::Bfloat16 => 2,
            Dtype::Uint32 | Dtype::Int32 | Dtype::Float32 => 4,
            Dtype::Uint64 | Dtype::Int64 | Dtype::Float64 | Dtype::Complex64 => 8,
        }
    }

    pub const fn kind(self) -> Kind {
        match self {
            Dtype::Bool => Kind::Bool,
            Dtype::Uint8 | Dtype::Uint16 | Dtype::Uint32 | Dtype::Uint64 => Kind::Unsigned,
            Dtype::Int8 | Dtype::Int16 | Dtype::Int32 | Dtype::Int64 => Kind::Signed,
            Dtype::Float16 | Dtype::Bfloat16 | Dtype::Float32 | Dtype::Float64 => Kind::Float,
            Dtype::Complex64 => Kind::Complex,
        }
    }

    /// MLX's name, as printed in `dtype=...`.
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::Uint8 => "uint8",
            Dtype::Uint16 => "uint16",
            Dtype::Uint32 => "uint32",
            Dtype::Uint64 => "uint64",
            Dtype::Int8 => "int8",
            Dtype::Int16 => "int16",
            Dtype::Int32 => "int32",
            Dtype::Int64 => "int64",
            Dtype::Float16 => "float16",
            Dtype::Bfloat16 => "bfloat16",
            Dtype::Float32 => "float32",
            Dtype::Float64 => "float64",
            Dtype::Complex64 => "complex64",
        }
    }

    pub fn from_name(name: &str) -> Option<Dtype> {
        ALL_DTYPES.iter().copied().find(|d| d.name() == name).or(match name {
            "bool_" => Some(Dtype::Bool),
            _ => None,
        })
    }

    pub const fn is_float(self) -> bool {
        matches!(self.kind(), Kind::Float)
    }
    /// Float or complex: the dtypes MLX calls `inexact`.
    pub const fn is_inexact(self) -> bool {
        matches!(self.kind(), Kind::Float | Kind::Complex)
    }
    pub const fn is_integer(self) -> bool {
        matches!(self.kind(), Kind::Signed | Kind::Unsigned)
    }
    pub const fn is_signed_integer(self) -> bool {
        matches!(self.kind(), Kind::Signed)
    }
    pub const fn is_unsigned(self) -> bool {
        matches!(self.kind(), Kind::Unsigned)
    }
    pub const fn is_complex(self) -> bool {
        matches!(self.kind(), Kind::Complex)
    }
    pub const fn is_bool(self) -> bool {
        matches!(self, Dtype::Bool)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result dtype of a binary operation between two arrays, following MLX's promotion table
/// (checked against `mlx` in `tests/dtype_promotion.rs`).
pub fn promote_types(a: Dtype, b: Dtype) -> Dtype {
    use Dtype::*;
    if a == b {
        return a;
    }
    let (ka, kb) = (a.kind(), b.kind());
    match (ka, kb) {
        (Kind::Bool, _) => b,
        (_, Kind::Bool) => a,
        (Kind::Complex, _) | (_, Kind::Complex) => Complex64,
        (Kind::Float, Kind::Float) => {
            // f16 with bf16 has no exact common 16-bit type: MLX gives float32.
            if (a == Float16 && b == Bfloat16) || (a == Bfloat16 && b == Float16) {
                Float32
            } else if a.size() >= b.size() {
                a
            } else {
                b
            }
        }
        (Kind::Float, _) => a,
        (_, Kind::Float) => b,
        (Kind::Unsigned, Kind::Unsigned) | (Kind::Signed, Kind::Signed) => {
            if a.size() >= b.size() {
                a
            } else {
                b
            }
        }
        _ => {
            // One signed, one unsigned.
            let (s, u) = if ka == Kind::Signed { (a, b) } else { (b, a) };
            if u == Uint64 {
                return Float32;
            }
            if s.size() > u.size() {
                s
            } else {
                match u.size() {
                    1 => Int16,
                    2 => Int32,
                    _ => Int64,
                }
            }
        }
    }
}

/// A Rust or Python scalar in an expression with an array. MLX types such scalars "weakly": they
/// take the array's dtype when it can hold their kind (`int8_array + 1` stays int8,
/// `float16_array * 2.0` stays float16, `int_array + 0.5` becomes float32).
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Complex(f32, f32),
}

impl Scalar {
    /// The dtype a scalar gets on its own (MLX: bool, int32, float32, complex64).
    pub fn default_dtype(self) -> Dtype {
        match self {
            Scalar::Bool(_) => Dtype::Bool,
            Scalar::Int(_) => Dtype::Int32,
            Scalar::Float(_) => Dtype::Float32,
            Scalar::Complex(..) => Dtype::Complex64,
        }
    }

    /// The dtype this scalar takes next to an array of dtype `other`.
    pub fn weak_dtype_with(self, other: Dtype) -> Dtype {
        match (self, other.kind()) {
            (Scalar::Bool(_), _) => other,
            (Scalar::Int(_), Kind::Bool) => Dtype::Int32,
            (Scalar::Int(_), _) => other,
            (Scalar::Float(_), Kind::Float | Kind::Complex) => other,
            (Scalar::Float(_), _) => Dtype::Float32,
            (Scalar::Complex(..), _) => Dtype::Complex64,
        }
    }

    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => b as u8 as f64,
            Scalar::Int(i) => i as f64,
            Scalar::Float(f) => f,
            Scalar::Complex(re, _) => re as f64,
        }
    }
}

macro_rules! scalar_from {
    ($variant:ident, $conv:ty: $($t:ty),*) => {$(
        impl From<$t> for Scalar {
            fn from(v: $t) -> Scalar { Scalar::$variant(v as $conv) }
        }
    )*};
}
scalar_from!(Int, i64: i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);
scalar_from!(Float, f64: f32, f64);
impl From<bool> for Scalar {
    fn from(v: bool) -> Scalar {
        Scalar::Bool(v)
    }
}
impl From<f16> for Scalar {
    fn from(v: f16) -> Scalar {
        Scalar::Float(v.to_f64())
    }
}
impl From<bf16> for Scalar {
    fn from(v: bf16) -> Scalar {
        Scalar::Float(v.to_f64())
    }
}
impl From<Complex32> for Scalar {
    fn from(v: Complex32) -> Scalar {
        Scalar::Complex(v.re, v.im)
    }
}

/// Machine limits of a floating-point dtype (`mx.finfo`).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Finfo {
    pub dtype: Dtype,
    pub min: f64,
    pub max: f64,
    pub eps: f64,
    /// Smallest positive normal number.
    pub tiny: f64,
}

/// `mx.finfo`: limits of a float or complex dtype; `None` for other dtypes.
pub fn finfo(dtype: Dtype) -> Option<Finfo> {
    let (max, eps, tiny) = match dtype {
        Dtype::Float16 => (f16::MAX.to_f64(), f16::EPSILON.to_f64(), f16::MIN_POSITIVE.to_f64()),
        Dtype::Bfloat16 => (bf16::MAX.to_f64(), bf16::EPSILON.to_f64(), bf16::MIN_POSITIVE.to_f64()),
        Dtype::Float32 | Dtype::Complex64 => (f32::MAX as f64, f32::EPSILON as f64, f32::MIN_POSITIVE as f64),
        Dtype::Float64 => (f64::MAX, f64::EPSILON, f64::MIN_POSITIVE),
        _ => return None,
    };
    let dtype = if dtype == Dtype::Complex64 { Dtype::Float32 } else { dtype };
    Some(Finfo { dtype, min: -max, max, eps, tiny })
}

/// Limits of an integer dtype (`mx.iinfo`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Iinfo {
    pub dtype: Dtype,
    pub min: i128,
    pub max: i128,
}

pub fn iinfo(dtype: Dtype) -> Option<Iinfo> {
    let (min, max): (i128, i128) = match dtype {
        Dtype::Bool => (0, 1),
        Dtype::Uint8 => (0, u8::MAX as i128),
        Dtype::Uint16 => (0, u16::MAX as i128),
        Dtype::Uint32 => (0, u32::MAX as i128),
        Dtype::Uint64 => (0, u64::MAX as i128),
        Dtype::Int8 => (i8::MIN as i128, i8::MAX as i128),
        Dtype::Int16 => (i16::MIN as i128, i16::MAX as i128),
        Dtype::Int32 => (i32::MIN as i128, i32::MAX as i128),
        Dtype::Int64 => (i64::MIN as i128, i64::MAX as i128),
        _ => return None,
    };
    Some(Iinfo { dtype, min, max })
}

/// A value stored in an array. Kernels are generic over it; `dispatch!` picks the type for a
/// run-time `Dtype`. Conversions follow C++ `static_cast` semantics as MLX uses them, with Rust's
/// saturating float-to-int casts where C++ would be undefined.
pub trait Element: Copy + Send + Sync + Default + PartialEq + fmt::Debug + 'static {
    const DTYPE: Dtype;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// Exact for every integer dtype (f64 loses precision above 2^53).
    fn to_i128(self) -> i128;
    fn from_i128(v: i128) -> Self;
    fn to_c32(self) -> Complex32 {
        Complex32::new(self.to_f64() as f32, 0.0)
    }
    fn from_c32(v: Complex32) -> Self {
        Self::from_f64(v.re as f64)
    }
    fn zero() -> Self {
        Self::default()
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

macro_rules! int_element {
    ($($t:ty => $d:ident),*) => {$(
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$d;
            #[inline(always)] fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)] fn from_f64(v: f64) -> Self { v as $t }
            #[inline(always)] fn to_i128(self) -> i128 { self as i128 }
            #[inline(always)] fn from_i128(v: i128) -> Self { v as $t }
        }
    )*};
}
int_element!(u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64,
             i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64);

impl Element for bool {
    const DTYPE: Dtype = Dtype::Bool;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    #[inline(always)]
    fn to_i128(self) -> i128 {
        self as i128
    }
    #[inline(always)]
    fn from_i128(v: i128) -> Self {
        v != 0
    }
    fn from_c32(v: Complex32) -> Self {
        v.re != 0.0 || v.im != 0.0
    }
}

macro_rules! float_element {
    ($($t:ty => $d:ident, $to:expr, $from:expr);*) => {$(
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$d;
            #[inline(always)] fn to_f64(self) -> f64 { ($to)(self) }
            #[inline(always)] fn from_f64(v: f64) -> Self { ($from)(v) }
            #[inline(always)] fn to_i128(self) -> i128 { ($to)(self) as i128 }
            #[inline(always)] fn from_i128(v: i128) -> Self { ($from)(v as f64) }
        }
    )*};
}
float_element!(
    f32 => Float32, |x: f32| x as f64, |v: f64| v as f32;
    f64 => Float64, |x: f64| x, |v: f64| v;
    // Through f32, as MLX converts (its half types are built from float): f32 sources round
    // once, exactly. half's direct f64 conversions decide ties from the upper 32 bits of the
    // double only, so an f32 value just above a halfway point (bits only in its last three
    // mantissa bits) was rounded down.
    f16 => Float16, |x: f16| x.to_f64(), |v: f64| f16::from_f32(v as f32);
    bf16 => Bfloat16, |x: bf16| x.to_f64(), |v: f64| bf16::from_f32(v as f32)
);

impl Element for Complex32 {
    const DTYPE: Dtype = Dtype::Complex64;
    fn to_f64(self) -> f64 {
        self.re as f64
    }
    fn from_f64(v: f64) -> Self {
        Complex32::new(v as f32, 0.0)
    }
    fn to_i128(self) -> i128 {
        self.re as i128
    }
    fn from_i128(v: i128) -> Self {
        Complex32::new(v as f32, 0.0)
    }
    fn to_c32(self) -> Complex32 {
        self
    }
    fn from_c32(v: Complex32) -> Self {
        v
    }
}

/// Converts one element to another dtype with MLX's `astype` semantics.
#[inline(always)]
pub fn cast<A: Element, B: Element>(a: A) -> B {
    match (A::DTYPE.kind(), B::DTYPE.kind()) {
        (Kind::Complex, _) | (_, Kind::Complex) => B::from_c32(a.to_c32()),
        (Kind::Float, _) | (_, Kind::Float) => B::from_f64(a.to_f64()),
        _ => B::from_i128(a.to_i128()),
    }
}

/// Runs `$body` with `$T` bound to the Rust element type of `$dtype`.
///
/// `dispatch!(dt, T => body)` covers every dtype; the other arms restrict the set and evaluate
/// `$otherwise` for dtypes outside it.
#[macro_export]
macro_rules! dispatch {
    ($dtype:expr, $T:ident => $body:expr) => {{
        use $crate::dtype::Dtype as __D;
        match $dtype {
            __D::Bool => {
                type $T = bool;
                $body
            }
            __D::Uint8 => {
                type $T = u8;
                $body
            }
            __D::Uint16 => {
                type $T = u16;
                $body
            }
            __D::Uint32 => {
                type $T = u32;
                $body
            }
            __D::Uint64 => {
                type $T = u64;
                $body
            }
            __D::Int8 => {
                type $T = i8;
                $body
            }
            __D::Int16 => {
                type $T = i16;
                $body
            }
            __D::Int32 => {
                type $T = i32;
                $body
            }
            __D::Int64 => {
                type $T = i64;
                $body
            }
            __D::Float16 => {
                type $T = half::f16;
                $body
            }
            __D::Bfloat16 => {
                type $T = half::bf16;
                $body
            }
            __D::Float32 => {
                type $T = f32;
                $body
            }
            __D::Float64 => {
                type $T = f64;
                $body
            }
            __D::Complex64 => {
                type $T = num_complex::Complex32;
                $body
            }
        }
    }};
    (real: $dtype:expr, $T:ident => $body:expr, else $otherwise:expr) => {{
        use $crate::dtype::Dtype as __D;
        match $dtype {
            __D::Bool => {
                type $T = bool;
                $body
            }
            __D::Uint8 => {
                type $T = u8;
                $body
            }
            __D::Uint16 => {
                type $T = u16;
                $body
            }
            __D::Uint32 => {
                type $T = u32;
                $body
            }
            __D::Uint64 => {
                type $T = u64;
                $body
            }
            __D::Int8 => {
                type $T = i8;
                $body
            }
            __D::Int16 => {
                type $T = i16;
                $body
            }
            __D::Int32 => {
                type $T = i32;
                $body
            }
            __D::Int64 => {
                type $T = i64;
                $body
            }
            __D::Float16 => {
                type $T = half::f16;
                $body
            }
            __D::Bfloat16 => {
                type $T = half::bf16;
                $body
            }
            __D::Float32 => {
                type $T = f32;
                $body
            }
            __D::Float64 => {
                type $T = f64;
                $body
            }
            _ => $otherwise,
        }
    }};
    (float: $dtype:expr, $T:ident => $body:expr, else $otherwise:expr) => {{
        use $crate::dtype::Dtype as __D;
        match $dtype {
            __D::Float16 => {
                type $T = half::f16;
                $body
            }
            __D::Bfloat16 => {
                type $T = half::bf16;
                $body
            }
            __D::Float32 => {
                type $T = f32;
                $body
            }
            __D::Float64 => {
                type $T = f64;
                $body
            }
            _ => $otherwise,
        }
    }};
    (int: $dtype:expr, $T:ident => $body:expr, else $otherwise:expr) => {{
        use $crate::dtype::Dtype as __D;
        match $dtype {
            __D::Uint8 => {
                type $T = u8;
                $body
            }
            __D::Uint16 => {
                type $T = u16;
                $body
            }
            __D::Uint32 => {
                type $T = u32;
                $body
            }
            __D::Uint64 => {
                type $T = u64;
                $body
            }
            __D::Int8 => {
                type $T = i8;
                $body
            }
            __D::Int16 => {
                type $T = i16;
                $body
            }
            __D::Int32 => {
                type $T = i32;
                $body
            }
            __D::Int64 => {
                type $T = i64;
                $body
            }
            _ => $otherwise,
        }
    }};
}
