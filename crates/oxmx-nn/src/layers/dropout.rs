//! `Dropout`, `Dropout2d`, `Dropout3d`: active in training mode only, as in `mlx.nn`.

use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{random, Array, Error};

fn check_p(p: f64) -> Result<f64, Error> {
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(Error::invalid(format!("[Dropout] the probability should be in [0, 1), got {p}")))
    }
}

/// Zeroes entries with probability `p` and scales the rest by `1 / (1 - p)`; `mask_shape` is the
/// input shape with the axes that share one decision set to 1.
fn drop(x: &Array, p: f64, mask_shape: &[usize]) -> Array {
    if p == 0.0 {
        return x.clone();
    }
    let keep = 1.0 - p;
    let mask = random::bernoulli(keep, mask_shape, None);
    x * &(mask.astype(x.dtype()) * (1.0 / keep))
}

macro_rules! dropout_layer {
    ($(#[$doc:meta])* $name:ident, $spatial:expr) => {
        $(#[$doc])*
        #[derive(Module, Clone, Debug)]
        pub struct $name {
            #[module(skip)]
            pub p: f64,
            pub state: ModuleState,
        }

        impl $name {
            /// Errors if `p` is outside [0, 1).
            pub fn new(p: f64) -> Result<$name, Error> {
                Ok($name { p: check_p(p)?, state: ModuleState::default() })
            }
        }

        impl UnaryModule for $name {
            fn forward(&self, x: &Array) -> Array {
                if !self.training() {
                    return x.clone();
                }
                let spatial: usize = $spatial;
                let mut shape = x.shape().to_vec();
                if spatial > 0 {
                    let nd = shape.len();
                    if nd != spatial + 1 && nd != spatial + 2 {
                        return Array::error(Error::invalid(format!(
                            "[{}] expected input with {} or {} dimensions (channels last), got shape {:?}",
                            stringify!($name), spatial + 1, spatial + 2, shape
                        )));
                    }
                    // Channels last: one decision per (batch, channel) for the whole feature map.
                    for d in &mut shape[nd - 1 - spatial..nd - 1] {
                        *d = 1;
                    }
                }
                drop(x, self.p, &shape)
            }
        }
    };
}

dropout_layer!(
    /// Element-wise dropout.
    Dropout, 0);
dropout_layer!(
    /// Drops whole channels of `[N, H, W, C]` or `[H, W, C]` inputs.
    Dropout2d, 2);
dropout_layer!(
    /// Drops whole channels of `[N, D, H, W, C]` or `[D, H, W, C]` inputs.
    Dropout3d, 3);
