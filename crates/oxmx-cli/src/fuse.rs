//! `oxmx fuse`: merge trained adapters into the base model and write an MLX folder
//! (mlx_lm.fuse). A quantized base stays quantized with its own parameters (each adapted layer
//! is dequantized, updated and re-quantized) unless `--dequantize`.

use crate::resolve::resolve_model;
use clap::Args;
use oxmx_core::{Error, Result};
use oxmx_lm::convert::{convert, ConvertOptions, Progress};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FuseArgs {
    /// The base model: a folder, .gguf file or repo id (default: the default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Where to write the fused model.
    #[arg(long, default_value = "fused_model")]
    pub save_path: String,
    /// Folder with adapters.safetensors and adapter_config.json.
    #[arg(long, default_value = "adapters")]
    pub adapter_path: String,
    /// Write float weights instead of re-quantizing a quantized base.
    #[arg(long)]
    pub dequantize: bool,
    /// GGUF export (mlx_lm's --export-gguf): not implemented; asking for it is an error.
    #[arg(long)]
    pub export_gguf: bool,
}

pub fn run(a: FuseArgs) -> Result<()> {
    if a.export_gguf {
        return Err(Error::invalid("--export-gguf is not implemented yet; fuse to an MLX folder and convert from there"));
    }
    let src = resolve_model(a.model.as_deref())?;
    println!("Loading pretrained model");
    let mut opts = ConvertOptions::new(src, PathBuf::from(&a.save_path));
    opts.adapter_path = Some(PathBuf::from(&a.adapter_path));
    opts.dequantize = a.dequantize;
    let report = convert(&opts, &mut |p| {
        if let Progress::Info(s) = p {
            println!("{s}");
        }
    })?;
    println!("Fused model written to {} ({} files)", a.save_path, report.files.len());
    Ok(())
}
