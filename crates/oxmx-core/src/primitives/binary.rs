//! Two-input element-wise ops. Inputs arrive broadcast to one shape and promoted to one dtype by
//! the op layer; comparisons and logical ops return bool.

use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Spec;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    FloorDivide,
    Remainder,
    Power,
    Maximum,
    Minimum,
    Equal,
    /// Equal, with NaN == NaN (for `array_equal(equal_nan=True)`).
    NanEqual,
    NotEqual,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    LogicalAnd,
    LogicalOr,
    BitwiseAnd,
    BitwiseOr,
    BitwiseXor,
    LeftShift,
    RightShift,
    ArcTan2,
    LogAddExp,
}

impl BinaryOp {
    pub fn name(&self) -> String {
        format!("{self:?}")
    }

    pub fn returns_bool(self) -> bool {
        use BinaryOp::*;
        matches!(self, Equal | NanEqual | NotEqual | Less | LessEqual | Greater | GreaterEqual | LogicalAnd | LogicalOr)
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 2)?;
        super::expect_same(&self.name(), inputs)?;
        let (shape, dt) = inputs[0].clone();
        Ok(vec![(shape, if self.returns_bool() { Dtype::Bool } else { dt })])
    }
}
