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
}

impl ReduceOp {
    pub fn name(&self) -> String {
        match self {
            ReduceOp::Reduce { kind, .. } => format!("Reduce{kind:?}"),
            ReduceOp::ArgMax { .. } => "ArgMax".into(),
            ReduceOp::ArgMin { .. } => "ArgMin".into(),
            ReduceOp::Scan { kind, .. } => format!("Scan{kind:?}"),
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
        }
    }
}
