//! Layers with MLX's names and semantics, one family per file.

mod activation;
mod attention;
mod batch_norm;
mod bilinear;
mod conv;
mod dropout;
mod linear;
mod lora;
mod norm;
mod pooling;
mod positional;
mod recurrent;
mod sequential;
mod transformer;
mod upsample;

pub use activation::*;
pub use dropout::{Dropout, Dropout2d, Dropout3d};
pub use linear::{Embedding, Identity, Linear};
pub use lora::LoraSpec;
pub use norm::{layer_norm, rms_norm, LayerNorm, RMSNorm};
pub use sequential::Sequential;
#[allow(unused_imports)]
pub use {attention::*, batch_norm::*, bilinear::*, conv::*, pooling::*, positional::*, recurrent::*, transformer::*, upsample::*};
