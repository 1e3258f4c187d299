//! safetensors reading and writing.
