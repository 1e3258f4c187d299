//! Shape and layout ops. Reshape (of viewable data), Broadcast, Transpose, Slice and AsStrided
//! are zero-copy views on the CPU; the rest copy.

use crate::error::Result;
use crate::graph::Spec;
use crate::shape::{size_of, Shape};

#[derive(Clone, Debug, PartialEq)]
pub enum ShapeOp {
    Reshape(Shape),
    /// Broadcast to a shape (NumPy rules; validated by the op layer).
    Broadcast(Shape),
    Transpose(Vec<usize>),
    /// Strided slice: per axis, `start` (resolved, in range), `step` (non-zero) and the
    /// resulting length.
    Slice {
        start: Vec<usize>,
        step: Vec<isize>,
        len: Vec<usize>,
    },
    /// A raw strided view (element strides, element offset) of the row-contiguous input.
    AsStrided {
        shape: Shape,
        strides: Vec<isize>,
        offset: usize,
    },
    /// A dense row-major copy.
    Copy,
    /// Identity whose derivative is zero (`stop_gradient`); a view.
    StopGradient,
    Concatenate {
        axis: usize,
    },
    /// Constant padding: inputs are (x, 0-d value of x's dtype).
    Pad {
        low: Vec<usize>,
        high: Vec<usize>,
    },
}

impl ShapeOp {
    pub fn name(&self) -> String {
        match self {
            ShapeOp::Reshape(_) => "Reshape",
            ShapeOp::Broadcast(_) => "Broadcast",
            ShapeOp::Transpose(_) => "Transpose",
            ShapeOp::Slice { .. } => "Slice",
            ShapeOp::AsStrided { .. } => "AsStrided",
            ShapeOp::Copy => "Copy",
            ShapeOp::StopGradient => "StopGradient",
            ShapeOp::Concatenate { .. } => "Concatenate",
            ShapeOp::Pad { .. } => "Pad",
        }
        .into()
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        let name = self.name();
        if !matches!(self, ShapeOp::Concatenate { .. }) {
            let n = if matches!(self, ShapeOp::Pad { .. }) { 2 } else { 1 };
            super::expect_inputs(&name, inputs, n)?;
        }
        let (shape, dt) = inputs.first().cloned().unwrap_or_default_spec();
        match self {
            ShapeOp::Reshape(s) => {
                if size_of(s) != size_of(&shape) {
                    crate::bail!("[reshape] Cannot reshape array of size {} into shape {s:?}.", size_of(&shape));
                }
                Ok(vec![(s.clone(), dt)])
            }
            ShapeOp::Broadcast(s) => {
                let ok = s.len() >= shape.len() && shape.iter().rev().zip(s.iter().rev()).all(|(&a, &b)| a == b || a == 1);
                if !ok {
                    crate::bail!("[broadcast_to] Cannot broadcast array of shape {shape:?} to shape {s:?}.");
                }
                Ok(vec![(s.clone(), dt)])
            }
            ShapeOp::Transpose(perm) => {
                let mut seen = vec![false; shape.len()];
                if perm.len() != shape.len() || perm.iter().any(|&p| p >= shape.len() || std::mem::replace(&mut seen[p], true)) {
                    crate::bail!("[transpose] Recived invalid axes {perm:?} for array with {} dimensions.", shape.len());
                }
                Ok(vec![(perm.iter().map(|&p| shape[p]).collect(), dt)])
            }
            ShapeOp::Slice { start, step, len } => {
                if start.len() != shape.len() || step.len() != shape.len() || len.len() != shape.len() {
                    crate::bail!("[slice] internal: slice parameters do not match {} dimensions", shape.len());
                }
                Ok(vec![(len.clone(), dt)])
            }
            ShapeOp::AsStrided { shape: s, .. } => Ok(vec![(s.clone(), dt)]),
            ShapeOp::Copy | ShapeOp::StopGradient => Ok(vec![(shape, dt)]),
            ShapeOp::Concatenate { axis } => {
                let Some((first, dt)) = inputs.first().cloned() else {
                    crate::bail!("[concatenate] No arrays provided for concatenation");
                };
                let mut out = first.clone();
                if *axis >= out.len() {
                    return Err(crate::error::Error::index(format!(
                        "[concatenate] Invalid axis {axis} for arrays with {} dimensions.",
                        out.len()
                    )));
                }
                out[*axis] = 0;
                for (s, d) in inputs {
                    if *d != dt || s.len() != first.len() || s.iter().zip(&first).enumerate().any(|(i, (a, b))| i != *axis && a != b) {
                        crate::bail!("[concatenate] All the input array dimensions must match exactly except for the concatenation axis. However, the provided shapes are {first:?} and {s:?}, and the concatenation axis is {axis}.");
                    }
                    out[*axis] += s[*axis];
                }
                Ok(vec![(out, dt)])
            }
            ShapeOp::Pad { low, high } => {
                if low.len() != shape.len() || high.len() != shape.len() {
                    crate::bail!("[pad] internal: padding does not match {} dimensions", shape.len());
                }
                Ok(vec![(shape.iter().zip(low).zip(high).map(|((d, l), h)| d + l + h).collect(), dt)])
            }
        }
    }
}

trait DefaultSpec {
    fn unwrap_or_default_spec(self) -> Spec;
}
impl DefaultSpec for Option<Spec> {
    fn unwrap_or_default_spec(self) -> Spec {
        self.unwrap_or((vec![], crate::dtype::Dtype::Float32))
    }
}
