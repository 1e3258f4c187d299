//! One-input element-wise ops. The op layer promotes integer inputs to float where MLX does
//! (`exp(int32)` is float32), so the primitive's output dtype is its input's, except for the
//! predicates (bool) and `real`/`imag`/`abs` (float32 from complex64).

use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Spec;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Abs,
    Negative,
    Sign,
    Square,
    Sqrt,
    Rsqrt,
    Reciprocal,
    Exp,
    Expm1,
    Log,
    Log1p,
    Log2,
    Log10,
    Sin,
    Cos,
    Tan,
    ArcSin,
    ArcCos,
    ArcTan,
    Sinh,
    Cosh,
    Tanh,
    ArcSinh,
    ArcCosh,
    ArcTanh,
    Erf,
    ErfInv,
    Sigmoid,
    Floor,
    Ceil,
    /// Round half to even (MLX's `round` with 0 decimals).
    Round,
    LogicalNot,
    BitwiseInvert,
    IsNan,
    IsInf,
    IsPosInf,
    IsNegInf,
    IsFinite,
    Real,
    Imag,
    Conjugate,
}

impl UnaryOp {
    pub fn name(&self) -> String {
        format!("{self:?}")
    }

    /// Predicates return bool whatever the input dtype.
    pub fn is_predicate(self) -> bool {
        matches!(self, UnaryOp::IsNan | UnaryOp::IsInf | UnaryOp::IsPosInf | UnaryOp::IsNegInf | UnaryOp::IsFinite | UnaryOp::LogicalNot)
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 1)?;
        let (shape, dt) = inputs[0].clone();
        let out = if self.is_predicate() {
            Dtype::Bool
        } else if matches!(self, UnaryOp::Real | UnaryOp::Imag | UnaryOp::Abs) {
            if dt == Dtype::Complex64 {
                Dtype::Float32
            } else {
                dt
            }
        } else {
            dt
        };
        Ok(vec![(shape, out)])
    }
}
