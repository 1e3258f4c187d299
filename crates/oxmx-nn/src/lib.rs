//! oxmx-nn: MLX's `mlx.nn` in Rust — `Module` (derived), layers, activations, losses and
//! initialisers. Parameter paths are the checkpoint keys (`layers.0.self_attn.q_proj.weight`).

// The derive names `::oxmx_nn::...`; this lets the crate use its own derive.
extern crate self as oxmx_nn;

pub mod activations;
pub mod distributed;
pub mod grad;
pub mod init;
pub mod layers;
pub mod losses;
mod module;
mod node;
pub mod quantize;
mod state;
mod weights;

pub use grad::value_and_grad;
pub use layers::*;
pub use module::{Module, Params};
pub use node::{join_path, Node};
pub use oxmx_core::Array;
pub use oxmx_derive::{Module, Tree};
pub use quantize::{quantize, QuantSpec, Quantizable};
pub use state::ModuleState;
pub use weights::{load_weights, load_weights_from, save_weights, LoadMode};

/// A module with one array input and one array output: what `Sequential` chains.
pub trait UnaryModule: Module {
    fn forward(&self, x: &Array) -> Array;
}
