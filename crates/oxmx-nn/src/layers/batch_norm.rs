//! `BatchNorm`, `GroupNorm` and `InstanceNorm`, channels last, as in `mlx.nn`.

use super::norm::layer_norm;
use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype, Error, Result};

fn affine(x: Array, weight: &Option<Array>, bias: &Option<Array>) -> Array {
    match (weight, bias) {
        (Some(w), Some(b)) => &(w * &x) + b,
        (Some(w), None) => w * &x,
        (None, Some(b)) => &x + b,
        (None, None) => x,
    }
}

fn check_eps(layer: &str, eps: f64) -> Result<()> {
    if eps > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!("[{layer}] 'eps' must be positive but got {eps}.")))
    }
}

fn check_features(layer: &str, x: &Array, dims: usize) -> std::result::Result<(), Array> {
    x.check().map_err(Array::error)?;
    if x.shape().last() != Some(&dims) {
        return Err(Array::error(Error::invalid(format!(
            "[{layer}] expected {dims} features in the last axis (channels last), got shape {:?}",
            x.shape()
        ))));
    }
    Ok(())
}

/// Batch normalisation over `[N, C]`, `[N, L, C]` or `[N, H, W, C]`: statistics over every axis
/// but the last.
///
/// `running_mean` / `running_var` are arrays (present when `track_running_stats`), so they are
/// saved and loaded with the parameters, as in MLX, and are buffers: never trainable, whatever
/// `freeze`/`unfreeze` do. MLX updates
/// them in place during a training-mode call. Since [`UnaryModule::forward`] takes `&self`, the
/// update lives in [`BatchNorm::forward_train`] (`&mut self`), which is MLX's `__call__`
/// exactly; `forward` never mutates: in training mode it normalises with the batch statistics,
/// in eval mode with the running ones (when tracked).
#[derive(Module, Clone, Debug)]
pub struct BatchNorm {
    pub weight: Option<Array>,
    pub bias: Option<Array>,
    #[module(buffer)]
    pub running_mean: Option<Array>,
    #[module(buffer)]
    pub running_var: Option<Array>,
    pub num_features: usize,
    pub eps: f64,
    pub momentum: f64,
    pub track_running_stats: bool,
    pub state: ModuleState,
}

impl BatchNorm {
    /// MLX's defaults: `eps = 1e-5`, `momentum = 0.1`, affine, tracking running statistics.
    pub fn new(num_features: usize) -> BatchNorm {
        BatchNorm::with_options(num_features, 1e-5, 0.1, true, true).expect("the default eps is positive")
    }

    pub fn with_options(num_features: usize, eps: f64, momentum: f64, affine: bool, track_running_stats: bool) -> Result<BatchNorm> {
        check_eps("BatchNorm", eps)?;
        let state = ModuleState::default();
        Ok(BatchNorm {
            weight: affine.then(|| ops::ones(&[num_features], Dtype::Float32)),
            bias: affine.then(|| ops::zeros(&[num_features], Dtype::Float32)),
            running_mean: track_running_stats.then(|| ops::zeros(&[num_features], Dtype::Float32)),
            running_var: track_running_stats.then(|| ops::ones(&[num_features], Dtype::Float32)),
            num_features,
            eps,
            momentum,
            track_running_stats,
            state,
        })
    }

    fn validate(&self, x: &Array) -> std::result::Result<(), Array> {
        check_features("BatchNorm", x, self.num_features)?;
        if !(2..=4).contains(&x.ndim()) {
            return Err(Array::error(Error::invalid(format!(
                "[BatchNorm] expected an input with 2, 3 or 4 dimensions ([N, C], [N, L, C] or [N, H, W, C]), got shape {:?}",
                x.shape()
            ))));
        }
        if self.training() && x.shape()[..x.ndim() - 1].iter().product::<usize>() == 1 {
            return Err(Array::error(Error::invalid(format!(
                "[BatchNorm] training requires more than one value per channel, got shape {:?}",
                x.shape()
            ))));
        }
        Ok(())
    }

    fn stats(x: &Array, ddof: usize) -> (Array, Array) {
        let axes: Vec<isize> = (0..x.ndim() as isize - 1).collect();
        (ops::mean(x, axes.clone(), false), ops::var(x, axes, false, ddof))
    }

    fn normalize(&self, x: &Array, mean: &Array, var: &Array) -> Array {
        let y = &(x - mean) * &ops::rsqrt(&(var + self.eps));
        affine(y, &self.weight, &self.bias)
    }

    /// MLX's `__call__`: in training mode normalises with the batch statistics and, when
    /// tracking, moves the running statistics towards them (`(1 - momentum) * running +
    /// momentum * batch`, the variance unbiased); in eval mode uses the running statistics.
    pub fn forward_train(&mut self, x: &Array) -> Array {
        if let Err(e) = self.validate(x) {
            return e;
        }
        if self.training() {
            if let (Some(rm), Some(rv)) = (&self.running_mean, &self.running_var) {
                let (mean, var) = BatchNorm::stats(x, 0);
                let (_, unbiased) = BatchNorm::stats(x, 1);
                let mu = self.momentum;
                let new_mean = &(rm * (1.0 - mu)) + &(&mean * mu);
                let new_var = &(rv * (1.0 - mu)) + &(&unbiased * mu);
                self.running_mean = Some(new_mean);
                self.running_var = Some(new_var);
                return self.normalize(x, &mean, &var);
            }
        }
        UnaryModule::forward(self, x)
    }
}

impl UnaryModule for BatchNorm {
    /// Like [`BatchNorm::forward_train`] without updating the running statistics.
    fn forward(&self, x: &Array) -> Array {
        if let Err(e) = self.validate(x) {
            return e;
        }
        match (&self.running_mean, &self.running_var) {
            (Some(rm), Some(rv)) if !self.training() => self.normalize(x, rm, rv),
            _ => {
                let (mean, var) = BatchNorm::stats(x, 0);
                self.normalize(x, &mean, &var)
            }
        }
    }
}

/// Group normalisation over `[N, ..., C]`: statistics per sample over the spatial axes and a
/// group of channels.
///
/// MLX's default grouping (`pytorch_compatible = false`) is *interleaved*: channel `c` belongs to
/// group `c % num_groups`. With `pytorch_compatible = true` the groups are contiguous blocks of
/// `C / num_groups` channels, as `torch.nn.GroupNorm`.
#[derive(Module, Clone, Debug)]
pub struct GroupNorm {
    pub weight: Option<Array>,
    pub bias: Option<Array>,
    pub num_groups: usize,
    pub dims: usize,
    pub eps: f64,
    pub pytorch_compatible: bool,
    pub state: ModuleState,
}

impl GroupNorm {
    /// MLX's defaults: `eps = 1e-5`, affine, MLX's (not PyTorch's) grouping.
    pub fn new(num_groups: usize, dims: usize) -> Result<GroupNorm> {
        GroupNorm::with_options(num_groups, dims, 1e-5, true, false)
    }

    pub fn with_options(num_groups: usize, dims: usize, eps: f64, affine: bool, pytorch_compatible: bool) -> Result<GroupNorm> {
        check_eps("GroupNorm", eps)?;
        if num_groups == 0 || dims == 0 || dims % num_groups != 0 {
            return Err(Error::invalid(format!(
                "[GroupNorm] The number of features ({dims}) must be a positive multiple of the number of groups ({num_groups})."
            )));
        }
        Ok(GroupNorm {
            weight: affine.then(|| ops::ones(&[dims], Dtype::Float32)),
            bias: affine.then(|| ops::zeros(&[dims], Dtype::Float32)),
            num_groups,
            dims,
            eps,
            pytorch_compatible,
            state: ModuleState::default(),
        })
    }
}

impl UnaryModule for GroupNorm {
    fn forward(&self, x: &Array) -> Array {
        if let Err(e) = check_features("GroupNorm", x, self.dims) {
            return e;
        }
        if x.ndim() < 2 {
            return Array::error(Error::invalid(format!(
                "[GroupNorm] expected an input [N, ..., C] with at least 2 dimensions, got shape {:?}",
                x.shape()
            )));
        }
        let shape: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
        let batch = shape[0];
        let g = self.num_groups as isize;
        let y = if self.pytorch_compatible {
            let group_size = self.dims as isize / g;
            let t = ops::transpose(&ops::reshape(x, &[batch, -1, g, group_size]), &[0, 2, 1, 3]);
            let t = layer_norm(&ops::reshape(&t, &[batch, g, -1]), None, None, self.eps);
            let t = ops::transpose(&ops::reshape(&t, &[batch, g, -1, group_size]), &[0, 2, 1, 3]);
            ops::reshape(&t, &shape)
        } else {
            let t = ops::reshape(x, &[batch, -1, g]);
            let mean = ops::mean(&t, 1isize, true);
            let var = ops::var(&t, 1isize, true, 0);
            let t = &(&t - &mean) * &ops::rsqrt(&(var + self.eps));
            ops::reshape(&t, &shape)
        };
        affine(y, &self.weight, &self.bias)
    }
}

/// Instance normalisation over `[N, ..., C]` (at least one spatial axis): statistics per sample
/// and channel over the spatial axes.
#[derive(Module, Clone, Debug)]
pub struct InstanceNorm {
    pub weight: Option<Array>,
    pub bias: Option<Array>,
    pub dims: usize,
    pub eps: f64,
    pub state: ModuleState,
}

impl InstanceNorm {
    /// MLX's defaults: `eps = 1e-5`, no affine transform.
    pub fn new(dims: usize) -> InstanceNorm {
        InstanceNorm::with_options(dims, 1e-5, false).expect("the default eps is positive")
    }

    pub fn with_options(dims: usize, eps: f64, affine: bool) -> Result<InstanceNorm> {
        check_eps("InstanceNorm", eps)?;
        Ok(InstanceNorm {
            weight: affine.then(|| ops::ones(&[dims], Dtype::Float32)),
            bias: affine.then(|| ops::zeros(&[dims], Dtype::Float32)),
            dims,
            eps,
            state: ModuleState::default(),
        })
    }
}

impl UnaryModule for InstanceNorm {
    fn forward(&self, x: &Array) -> Array {
        if let Err(e) = check_features("InstanceNorm", x, self.dims) {
            return e;
        }
        let nd = x.ndim();
        if nd < 3 {
            return Array::error(Error::invalid(format!(
                "[InstanceNorm] expected an input [N, ..., C] with at least 3 dimensions, got shape {:?}",
                x.shape()
            )));
        }
        let shape: Vec<isize> = x.shape().iter().map(|&d| d as isize).collect();
        let (batch, features) = (shape[0], shape[nd - 1]);
        // [N, C, spatial...] flattened to [N, C, S], normalised over S.
        let mut to_first: Vec<isize> = vec![0, nd as isize - 1];
        to_first.extend(1..nd as isize - 1);
        let cf = ops::reshape(&ops::transpose(x, &to_first), &[batch, features, -1]);
        let y = layer_norm(&cf, None, None, self.eps);
        let mut cf_shape = vec![batch, features];
        cf_shape.extend_from_slice(&shape[1..nd - 1]);
        let mut to_last: Vec<isize> = vec![0];
        to_last.extend(2..nd as isize);
        to_last.push(1);
        let y = ops::transpose(&ops::reshape(&y, &cf_shape), &to_last);
        affine(y, &self.weight, &self.bias)
    }
}
