//! Dtype conversion (`astype`) and bit reinterpretation (`view`).

use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Spec;

#[derive(Clone, Debug, PartialEq)]
pub enum CastOp {
    /// Value conversion with C++ `static_cast` semantics.
    AsType(Dtype),
    /// Reinterpret the bytes; the last axis scales by the size ratio.
    View(Dtype),
}

impl CastOp {
    pub fn name(&self) -> String {
        match self {
            CastOp::AsType(d) => format!("AsType({d})"),
            CastOp::View(d) => format!("View({d})"),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        super::expect_inputs(&self.name(), inputs, 1)?;
        let (shape, from) = &inputs[0];
        match *self {
            CastOp::AsType(to) => Ok(vec![(shape.clone(), to)]),
            CastOp::View(to) => {
                let mut shape = shape.clone();
                let (fs, ts) = (from.size(), to.size());
                if fs != ts {
                    let Some(last) = shape.last_mut() else {
                        crate::bail!(
                            "[view] Changing the type of a scalar is only allowed for types with the same size (from {from} to {to})."
                        );
                    };
                    if fs > ts {
                        *last *= fs / ts;
                    } else if (*last * fs) % ts != 0 {
                        crate::bail!("[view] Cannot view an array of shape {:?} and dtype {from} as {to}: the last axis size must be divisible by {}.", inputs[0].0, ts / fs);
                    } else {
                        *last = *last * fs / ts;
                    }
                }
                Ok(vec![(shape, to)])
            }
        }
    }
}
