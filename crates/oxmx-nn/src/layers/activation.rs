//! The activation functions as modules (`nn.ReLU()`, `nn.GELU(approx="tanh")`, ...), for
//! `Sequential`.

use crate::activations as act;
use crate::{Module, ModuleState, UnaryModule};
use oxmx_core::{ops, Array, Dtype};

macro_rules! plain_activation {
    ($($(#[$doc:meta])* $name:ident => $f:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Module, Clone, Debug, Default)]
        pub struct $name;

        impl UnaryModule for $name {
            fn forward(&self, x: &Array) -> Array {
                let f: fn(&Array) -> Array = $f;
                f(x)
            }
        }
    )*};
}

plain_activation! {
    ReLU => act::relu;
    ReLU6 => act::relu6;
    SELU => act::selu;
    SiLU => act::silu;
    Mish => act::mish;
    Hardswish => act::hardswish;
    Softplus => act::softplus;
    Softsign => act::softsign;
    Sigmoid => act::sigmoid;
    LogSigmoid => act::log_sigmoid;
    Tanh => act::tanh;
    /// Softmax over the last axis.
    Softmax => |x| act::softmax(x, -1);
    LogSoftmax => |x| act::log_softmax(x, -1);
    Softmin => |x| act::softmin(x, -1);
}

macro_rules! param_activation {
    ($($(#[$doc:meta])* $name:ident { $field:ident: $ty:ty = $default:expr } => $f:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Module, Clone, Debug)]
        pub struct $name {
            #[module(skip)]
            pub $field: $ty,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $field: $default }
            }
        }

        impl UnaryModule for $name {
            fn forward(&self, x: &Array) -> Array {
                let f: fn(&Array, $ty) -> Array = $f;
                f(x, self.$field)
            }
        }
    )*};
}

param_activation! {
    LeakyReLU { negative_slope: f64 = 0.01 } => act::leaky_relu;
    ELU { alpha: f64 = 1.0 } => act::elu;
    CELU { alpha: f64 = 1.0 } => act::celu;
    HardShrink { lambd: f64 = 0.5 } => act::hard_shrink;
    Softshrink { lambd: f64 = 0.5 } => act::softshrink;
    GLU { axis: isize = -1 } => act::glu;
    Step { threshold: f64 = 0.0 } => act::step;
}

/// `HardTanh(min_val=-1, max_val=1)`.
#[derive(Module, Clone, Debug)]
pub struct HardTanh {
    #[module(skip)]
    pub min_val: f64,
    #[module(skip)]
    pub max_val: f64,
}

impl Default for HardTanh {
    fn default() -> Self {
        HardTanh { min_val: -1.0, max_val: 1.0 }
    }
}

impl UnaryModule for HardTanh {
    fn forward(&self, x: &Array) -> Array {
        act::hard_tanh(x, self.min_val, self.max_val)
    }
}

/// Which GELU formula `GELU` uses (MLX's `approx` argument).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GeluApprox {
    /// Exact, with erf (MLX's "none").
    #[default]
    None,
    /// The tanh formula (MLX's "precise" and "tanh").
    Tanh,
    /// `x * sigmoid(1.702 x)` (MLX's "fast").
    Fast,
}

#[derive(Module, Clone, Debug, Default)]
pub struct GELU {
    #[module(skip)]
    pub approx: GeluApprox,
}

impl UnaryModule for GELU {
    fn forward(&self, x: &Array) -> Array {
        match self.approx {
            GeluApprox::None => act::gelu(x),
            GeluApprox::Tanh => act::gelu_approx(x),
            GeluApprox::Fast => act::gelu_fast_approx(x),
        }
    }
}

/// `PReLU(num_parameters=1, init=0.25)`: a learned negative slope per channel (last axis).
#[derive(Module, Clone, Debug)]
pub struct PReLU {
    pub weight: Array,
    pub state: ModuleState,
}

impl PReLU {
    pub fn new(num_parameters: usize, init: f64) -> PReLU {
        PReLU { weight: ops::full(&[num_parameters], init, Some(Dtype::Float32)), state: ModuleState::default() }
    }
}

impl Default for PReLU {
    fn default() -> Self {
        PReLU::new(1, 0.25)
    }
}

impl UnaryModule for PReLU {
    fn forward(&self, x: &Array) -> Array {
        act::prelu(x, &self.weight)
    }
}
