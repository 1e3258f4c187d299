//! `Custom`: a node whose derivatives (and batching) are user functions — `custom_function` and
//! `checkpoint`. Its inputs are the primals followed by the forward outputs (computed outside
//! any trace, so transforms see them as constants); evaluating it passes the forward outputs
//! through as views.

use crate::array::Array;
use crate::error::Result;
use crate::graph::Spec;
use std::sync::Arc;

/// `(primals, outputs, output cotangents) -> primal cotangents`.
pub type VjpFn = Arc<dyn Fn(&[Array], &[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync>;
/// `(primals, tangents) -> output tangents`.
pub type JvpFn = Arc<dyn Fn(&[Array], &[Array]) -> Result<Vec<Array>> + Send + Sync>;
/// `(primals with batch axes, batch axis per primal (None: not batched)) -> (outputs, batch axis per output)`.
pub type VmapFn = Arc<dyn Fn(&[Array], &[Option<usize>]) -> Result<(Vec<Array>, Vec<Option<usize>>)> + Send + Sync>;
/// Re-runs the forward function (used by vmap when no rule is given).
pub type ForwardFn = Arc<dyn Fn(&[Array]) -> Result<Vec<Array>> + Send + Sync>;

#[derive(Clone)]
pub struct CustomOp {
    pub name: String,
    pub n_primals: usize,
    pub forward: ForwardFn,
    pub vjp: Option<VjpFn>,
    pub jvp: Option<JvpFn>,
    pub vmap: Option<VmapFn>,
}

impl std::fmt::Debug for CustomOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Custom({})", self.name)
    }
}

/// Two custom nodes are equal only if they share their functions (CSE must not merge others).
impl PartialEq for CustomOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.forward, &other.forward) && self.n_primals == other.n_primals
    }
}

impl CustomOp {
    pub fn name(&self) -> String {
        format!("Custom[{}]", self.name)
    }
    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        if inputs.len() < self.n_primals {
            crate::bail!("[{}] expected at least {} inputs, got {}", self.name(), self.n_primals, inputs.len());
        }
        Ok(inputs[self.n_primals..].to_vec())
    }
}
