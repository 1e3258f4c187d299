//! Reductions over axes (output keeps the reduced axes as size 1; the op layer squeezes),
//! arg-reductions, and scans.

use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Spec;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Prod,
    Max,
    Min,
    /// `all`
    And,
    /// `any`
    Or,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScanKind {
    Sum,
    Prod,
    Max,
    Min,
    LogAddExp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReduceOp {
    /// Reduce `axes` (sorted, unique) keeping them as size-1 dims; output dtype as given.
    Reduce {
        kind: ReduceKind,
        axes: Vec<usize>,
        dtype: Dtype,
    },
    /// Index of the max/min along `axis` (kept as size 1), uint32.
    ArgMax {
        axis: usize,
    },
    ArgMin {
        axis: usize,
    },
    Scan {
        kind: ScanKind,
        axis: usize,
        reverse: bool,
        inclusive: bool,
    },
    /// Softmax along the last axis (the op layer moves the axis last); float input.
    Softmax,
    /// `log(sum(exp(x)))` along the last axis, kept as size 1; float input.
    LogSumExp,
    /// Variance along the last axis with `ddof`, kept as size 1; float input.
    Var {
        ddof: usize,
    },
}

impl ReduceOp {
    pub fn name(&self) -> String {
        match self {
            ReduceOp::Reduce { kind, .. } => format!("Reduce{kind:?}"),
            ReduceOp::ArgMax { .. } => "ArgMax".into(),
            ReduceOp::ArgMin { .. } => "ArgMin".into(),
            ReduceOp::Scan { kind, .. } => format!("Scan{kind:?}"),
            ReduceOp::Softmax => "Softmax".into(),
            ReduceOp::LogSumExp => "LogSumExp".into(),
            ReduceOp::Var { .. } => "Var".into(),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 1)?;
        let (shape, dt) = &inputs[0];
        let check = |ax: usize| -> Result<()> {
            if ax >= shape.len() {
                return Err(crate::error::Error::index(format!("[{}] axis {ax} out of range for shape {shape:?}", self.name())));
            }
            Ok(())
        };
        match self {
            ReduceOp::Reduce { axes, dtype, .. } => {
                let mut out = shape.clone();
                for &a in axes {
                    check(a)?;
                    out[a] = 1;
                }
                Ok(vec![(out, *dtype)])
            }
            ReduceOp::ArgMax { axis } | ReduceOp::ArgMin { axis } => {
                check(*axis)?;
                let mut out = shape.clone();
                out[*axis] = 1;
                Ok(vec![(out, Dtype::Uint32)])
            }
            ReduceOp::Scan { axis, .. } => {
                check(*axis)?;
                Ok(vec![(shape.clone(), *dt)])
            }
            ReduceOp::Softmax | ReduceOp::LogSumExp | ReduceOp::Var { .. } => {
                if shape.is_empty() || !dt.is_float() {
                    return Err(crate::error::Error::invalid(format!(
                        "[{}] expected a float array of rank >= 1, got {shape:?} {dt}",
                        self.name()
                    )));
                }
                let mut out = shape.clone();
                if !matches!(self, ReduceOp::Softmax) {
                    *out.last_mut().unwrap() = 1;
                }
                Ok(vec![(out, *dt)])
            }
        }
    }
}
