//! Three-input element-wise ops.

use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum TernaryOp {
    /// `where(cond, x, y)`: inputs are (bool cond, x, y), all of one shape; x and y share a dtype.
    Select,
}

impl TernaryOp {
    pub fn name(&self) -> String {
        "Select".into()
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs("Select", inputs, 3)?;
        let (c, x, y) = (&inputs[0], &inputs[1], &inputs[2]);
        if c.1 != Dtype::Bool || c.0 != x.0 || x != y {
            crate::bail!("[where] internal: Select expects (bool, T, T) of one shape, got {c:?} {x:?} {y:?}");
        }
        Ok(vec![x.clone()])
    }
}
