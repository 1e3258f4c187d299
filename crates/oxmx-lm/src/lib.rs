//! oxmx-lm: the LLM toolkit (DESIGN.md, LLM toolkit): loading Hugging Face / mlx-community / GGUF
//! checkpoints, tokenization and chat templates, models by `model_type`, KV caches, sampling and
//! generation.

pub mod batch;
pub mod bench;
pub mod cache;
pub mod chat;
pub mod config;
pub mod convert;
pub mod export_gguf;
pub mod generate;
pub mod hub;
pub mod loader;
pub mod lora;
pub mod models;
pub mod models_dir;
pub mod perplexity;
pub mod prompt_cache;
pub mod sample;
pub mod server;
pub mod speculative;
pub mod tokenizer;

pub use chat::{ChatTemplate, ChatTemplateSource};
pub use tokenizer::{StreamingDetokenizer, Tokenizer};
