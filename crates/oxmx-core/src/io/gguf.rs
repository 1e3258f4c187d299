//! gguf reading and writing.
