//! File formats: `.npy`, `.npz`, safetensors, GGUF.

pub mod gguf;
pub mod npy;
pub mod npz;
pub mod safetensors;
