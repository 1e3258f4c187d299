//! `Fused`: a region of element-wise ops that `compile` merged into one node. It holds a small
//! straight-line program over values: values `0..n_inputs` are the inputs, value `n_inputs + k`
//! is the result of instruction `k`. Inputs may have any shapes that broadcast together (the
//! kernel reads them with zero strides), so a broadcast feeding the region never materialises
//! and the node re-infers its output shape for new input shapes (shapeless compile).
//!
//! Each instruction keeps the dtype its original node had: the CPU kernel computes in f32 (f64
//! for f64 regions) and the derivative rules rebuild the original ops from the program.

use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Spec;
use crate::primitives::{BinaryOp, UnaryOp};
use crate::shape::{broadcast_many, Shape};

#[derive(Clone, Debug, PartialEq)]
pub enum FusedInstr {
    Unary {
        op: UnaryOp,
        x: usize,
        dtype: Dtype,
    },
    Binary {
        op: BinaryOp,
        a: usize,
        b: usize,
        dtype: Dtype,
    },
    /// `where(cond, a, b)`.
    Select {
        cond: usize,
        a: usize,
        b: usize,
        dtype: Dtype,
    },
    /// `astype` between float types (or to/from bool).
    AsType {
        x: usize,
        dtype: Dtype,
    },
}

impl FusedInstr {
    pub fn dtype(&self) -> Dtype {
        match self {
            FusedInstr::Unary { dtype, .. }
            | FusedInstr::Binary { dtype, .. }
            | FusedInstr::Select { dtype, .. }
            | FusedInstr::AsType { dtype, .. } => *dtype,
        }
    }

    /// The values this instruction reads.
    pub fn operands(&self) -> Vec<usize> {
        match *self {
            FusedInstr::Unary { x, .. } | FusedInstr::AsType { x, .. } => vec![x],
            FusedInstr::Binary { a, b, .. } => vec![a, b],
            FusedInstr::Select { cond, a, b, .. } => vec![cond, a, b],
        }
    }

    fn name(&self) -> String {
        match self {
            FusedInstr::Unary { op, .. } => op.name(),
            FusedInstr::Binary { op, .. } => op.name(),
            FusedInstr::Select { .. } => "Select".into(),
            FusedInstr::AsType { dtype, .. } => format!("AsType({dtype})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct FusedOp {
    pub input_dtypes: Vec<Dtype>,
    pub instrs: Vec<FusedInstr>,
    /// The values returned, one output each.
    pub outputs: Vec<usize>,
    /// The output shape, only where it is not the broadcast of the input shapes (a region whose
    /// every input was broadcast up by an explicit `broadcast_to`); such a node bakes its shape.
    pub shape: Option<Shape>,
}

impl FusedOp {
    pub fn name(&self) -> String {
        let ops: Vec<String> = self.instrs.iter().map(|i| i.name()).collect();
        format!("Fused[{}]", ops.join(","))
    }

    /// The dtype of value `v`.
    pub fn value_dtype(&self, v: usize) -> Dtype {
        let n = self.input_dtypes.len();
        if v < n {
            self.input_dtypes[v]
        } else {
            self.instrs[v - n].dtype()
        }
    }

    /// The shape every output has for inputs of these shapes.
    pub fn out_shape(&self, input_shapes: &[&[usize]]) -> Result<Shape> {
        let b = broadcast_many(input_shapes)?;
        match &self.shape {
            None => Ok(b),
            Some(s) => {
                let mut all = input_shapes.to_vec();
                all.push(s);
                if broadcast_many(&all)? != *s {
                    crate::bail!("[compile] a fused region traced for shape {s:?} cannot take inputs of shapes {input_shapes:?}");
                }
                Ok(s.clone())
            }
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, self.input_dtypes.len())?;
        for (i, ((_, d), want)) in inputs.iter().zip(&self.input_dtypes).enumerate() {
            if d != want {
                crate::bail!("[{}] input {i} has dtype {d}, the program was built for {want}", self.name());
            }
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|(s, _)| s.as_slice()).collect();
        let shape = self.out_shape(&shapes)?;
        Ok(self.outputs.iter().map(|&v| (shape.clone(), self.value_dtype(v))).collect())
    }
}
