//! The matmul family: batched matrix products `[..., M, K] @ [..., K, N]`.

use crate::error::{Error, Result};
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum MatmulOp {
    /// Inputs share dtype and batch shape (the op layer broadcasts and promotes).
    Matmul,
}

impl MatmulOp {
    pub fn name(&self) -> String {
        match self {
            MatmulOp::Matmul => "Matmul".into(),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 2)?;
        let ((sa, da), (sb, db)) = (&inputs[0], &inputs[1]);
        if sa.len() < 2 || sa.len() != sb.len() || da != db {
            return Err(Error::invalid(format!(
                "[matmul] expected two arrays of equal rank >= 2 and dtype, got {sa:?} {da} and {sb:?} {db}"
            )));
        }
        let nd = sa.len();
        if sa[..nd - 2] != sb[..nd - 2] || sa[nd - 1] != sb[nd - 2] {
            return Err(Error::invalid(format!("[matmul] Last dimension of first input with shape {sa:?} must match second to last dimension of second input with shape {sb:?}.")));
        }
        let mut out = sa.clone();
        out[nd - 1] = sb[nd - 1];
        Ok(vec![(out, *da)])
    }
}
