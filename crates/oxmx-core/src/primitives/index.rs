//! Gather/scatter style indexing. `Gather` and `Scatter` follow MLX's general forms: index arrays
//! (one per indexed axis, broadcast to one shape) select slices of static size.

use crate::error::{Error, Result};
use crate::graph::Spec;
use crate::shape::Shape;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScatterKind {
    /// Overwrite (the last write wins for duplicate indices, as MLX's CPU backend).
    Set,
    Add,
    Prod,
    Max,
    Min,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IndexOp {
    /// Inputs: (x, idx_0, …, idx_{k-1}) with all idx of one integer shape `I`. Output shape
    /// `I + slice_sizes`; `slice_sizes[d]` is 1 on indexed axes.
    Gather { axes: Vec<usize>, slice_sizes: Shape },
    /// Inputs: (x, idx_0, …, idx_{k-1}, updates) with updates of shape `I + slice shape`
    /// (slice shape: x's shape with 1 on indexed axes). Output: a copy of x with the updates
    /// combined in.
    Scatter { kind: ScatterKind, axes: Vec<usize> },
    /// Inputs: (x, update): writes `update` into the strided region of x (a copy).
    SliceUpdate { start: Vec<usize>, step: Vec<isize>, len: Vec<usize> },
}

impl IndexOp {
    pub fn name(&self) -> String {
        match self {
            IndexOp::Gather { .. } => "Gather".into(),
            IndexOp::Scatter { kind, .. } => format!("Scatter{kind:?}"),
            IndexOp::SliceUpdate { .. } => "SliceUpdate".into(),
        }
    }

    pub fn output_specs(&self, inputs: &[Spec]) -> Result<Vec<Spec>> {
        let Some((xs, xd)) = inputs.first().cloned() else {
            crate::bail!("[{}] missing input", self.name());
        };
        match self {
            IndexOp::Gather { axes, slice_sizes } => {
                let idx = &inputs[1..];
                if idx.len() != axes.len() || slice_sizes.len() != xs.len() {
                    crate::bail!("[gather] {} index arrays for {} axes of an array with {} dimensions", idx.len(), axes.len(), xs.len());
                }
                check_indices("gather", idx)?;
                for (d, (&s, &n)) in slice_sizes.iter().zip(&xs).enumerate() {
                    if s > n || (axes.contains(&d) && n == 0) {
                        return Err(Error::index(format!("[gather] slice size {s} on axis {d} exceeds the dimension {n}")));
                    }
                }
                let mut out = idx.first().map(|i| i.0.clone()).unwrap_or_default();
                out.extend(slice_sizes.iter().copied());
                Ok(vec![(out, xd)])
            }
            IndexOp::Scatter { axes, .. } => {
                if inputs.len() != axes.len() + 2 {
                    crate::bail!("[scatter] expected {} inputs, got {}", axes.len() + 2, inputs.len());
                }
                let idx = &inputs[1..inputs.len() - 1];
                check_indices("scatter", idx)?;
                let (us, ud) = inputs.last().unwrap();
                let mut expect = idx.first().map(|i| i.0.clone()).unwrap_or_default();
                expect.extend(xs.iter().enumerate().map(|(d, &n)| if axes.contains(&d) { 1 } else { n }));
                if *us != expect || *ud != xd {
                    crate::bail!(
                        "[scatter] updates of shape {us:?} and dtype {ud} do not match the expected shape {expect:?} and dtype {xd}"
                    );
                }
                Ok(vec![(xs, xd)])
            }
            IndexOp::SliceUpdate { len, .. } => {
                let (us, ud) = &inputs[1];
                if us != len || *ud != xd {
                    crate::bail!("[slice_update] update of shape {us:?} does not fit the slice of shape {len:?}");
                }
                Ok(vec![(xs, xd)])
            }
        }
    }
}

fn check_indices(name: &str, idx: &[Spec]) -> Result<()> {
    for (s, d) in idx {
        if !d.is_integer() {
            crate::bail!("[{name}] indices must be integers, got {d}");
        }
        if *s != idx[0].0 {
            crate::bail!("[{name}] index arrays must share one shape, got {:?} and {s:?}", idx[0].0);
        }
    }
    Ok(())
}
