//! oxmx-lm: the LLM toolkit (DESIGN.md, LLM toolkit): loading Hugging Face / mlx-community / GGUF
//! checkpoints, tokenization and chat templates, models by `model_type`, KV caches, sampling and
//! generation.

pub mod cache;
pub mod config;
pub mod generate;
pub mod loader;
pub mod models;
pub mod sample;
