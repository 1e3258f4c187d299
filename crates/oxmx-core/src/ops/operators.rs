//! `+ - * / %` and unary `-` on arrays and scalars, like Python's operators on `mx.array`.

use super::args::Operand;
use crate::array::Array;
use std::ops::{Add, Div, Mul, Neg, Rem, Sub};

macro_rules! array_operator {
    ($Trait:ident, $method:ident, $func:path) => {
        impl<T: Into<Operand>> $Trait<T> for Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: T) -> Array {
                $func(self, rhs)
            }
        }
        impl<T: Into<Operand>> $Trait<T> for &Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: T) -> Array {
                $func(self, rhs)
            }
        }
    };
}

array_operator!(Add, add, super::add);
array_operator!(Sub, sub, super::subtract);
array_operator!(Mul, mul, super::multiply);
array_operator!(Div, div, super::divide);
array_operator!(Rem, rem, super::remainder);

/// Scalar on the left: `2.0 * &x`.
macro_rules! scalar_lhs {
    ($($t:ty),*) => {$(
        impl Add<&Array> for $t { type Output = Array; #[track_caller] fn add(self, r: &Array) -> Array { super::add(self, r) } }
        impl Sub<&Array> for $t { type Output = Array; #[track_caller] fn sub(self, r: &Array) -> Array { super::subtract(self, r) } }
        impl Mul<&Array> for $t { type Output = Array; #[track_caller] fn mul(self, r: &Array) -> Array { super::multiply(self, r) } }
        impl Div<&Array> for $t { type Output = Array; #[track_caller] fn div(self, r: &Array) -> Array { super::divide(self, r) } }
        impl Add<Array> for $t { type Output = Array; #[track_caller] fn add(self, r: Array) -> Array { super::add(self, r) } }
        impl Sub<Array> for $t { type Output = Array; #[track_caller] fn sub(self, r: Array) -> Array { super::subtract(self, r) } }
        impl Mul<Array> for $t { type Output = Array; #[track_caller] fn mul(self, r: Array) -> Array { super::multiply(self, r) } }
        impl Div<Array> for $t { type Output = Array; #[track_caller] fn div(self, r: Array) -> Array { super::divide(self, r) } }
    )*};
}
scalar_lhs!(f32, f64, i32, i64);

impl Neg for Array {
    type Output = Array;
    #[track_caller]
    fn neg(self) -> Array {
        super::negative(&self)
    }
}
impl Neg for &Array {
    type Output = Array;
    #[track_caller]
    fn neg(self) -> Array {
        super::negative(self)
    }
}
