//! `Sequential`: applies its layers in order; parameters are named `layers.<i>.<name>` as MLX.

use crate::{Module, UnaryModule};
use oxmx_core::Array;

#[derive(Module, Default)]
pub struct Sequential {
    pub layers: Vec<Box<dyn UnaryModule>>,
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential::default()
    }
    /// Appends a layer (builder style).
    pub fn push(mut self, layer: impl UnaryModule + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }
}

impl UnaryModule for Sequential {
    fn forward(&self, x: &Array) -> Array {
        self.layers.iter().fold(x.clone(), |h, l| l.forward(&h))
    }
}
