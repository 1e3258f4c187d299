//! Fine-tuning as mlx-lm's `mlx_lm.lora` / `mlx_lm.fuse` (mlx-lm.md §8): LoRA, DoRA and QLoRA
//! adapters (the layer math lives on `oxmx_nn::Linear`, see `oxmx-nn/src/layers/lora.rs`), full
//! fine-tuning of the last blocks, jsonl datasets, the training loop, and adapter files that
//! mlx-lm reads and writes (`adapters.safetensors`, `adapter_config.json`).
//!
//! * [`config`]: the resolved arguments (`adapter_config.json`, YAML configs), schedules;
//! * [`apply`]: which layers get adapters, freezing, loading and saving adapter files;
//! * [`data`]: chat / completions / text jsonl, prompt masking, padded batches;
//! * [`train`]: the loss, evaluation and the training loop;
//! * [`fuse`]: merging adapters into the base weights;
//! * [`checkpoint`]: gradient checkpointing of the transformer blocks.

pub mod apply;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod fuse;
pub mod train;

pub use apply::{linear_to_lora_layers, load_adapters, save_adapters, setup_training};
pub use config::{AdapterConfig, LoraParameters, LrSchedule, TrainArgs};
pub use data::{iterate_batches, load_local_dataset, Dataset};
pub use train::{evaluate, train, Report, TrainingArgs};
