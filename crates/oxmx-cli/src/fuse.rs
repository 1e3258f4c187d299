//! `oxmx fuse`: merge trained adapters into the base model and write an MLX folder
//! (mlx_lm.fuse). A quantized base stays quantized with its own parameters (each adapted layer
//! is dequantized, updated and re-quantized) unless `--dequantize`.

use crate::resolve::resolve_model;
use clap::Args;
use oxmx_core::Result;
use oxmx_lm::convert::{convert, ConvertOptions, Progress};
use oxmx_lm::export_gguf::export_gguf;
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
    /// Also write the fused model as a float16 GGUF file (llama-family models; implies
    /// --dequantize), as mlx_lm.fuse --export-gguf.
    #[arg(long)]
    pub export_gguf: bool,
    /// The GGUF file's name inside --save-path.
    #[arg(long, default_value = "ggml-model-f16.gguf")]
    pub gguf_path: String,
}

pub fn run(a: FuseArgs) -> Result<()> {
    let src = resolve_model(a.model.as_deref())?;
    println!("Loading pretrained model");
    let mut opts = ConvertOptions::new(src.clone(), PathBuf::from(&a.save_path));
    opts.adapter_path = Some(PathBuf::from(&a.adapter_path));
    opts.dequantize = a.dequantize || a.export_gguf;
    let report = convert(&opts, &mut |p| {
        if let Progress::Info(s) = p {
            println!("{s}");
        }
    })?;
    println!("Fused model written to {} ({} files)", a.save_path, report.files.len());
    if a.export_gguf {
        let out = PathBuf::from(&a.save_path).join(&a.gguf_path);
        // A GGUF base gives its own tokenizer metadata (exactly what llama.cpp had).
        let tokenizer_gguf = (src.extension().and_then(|e| e.to_str()) == Some("gguf")).then_some(src.as_path());
        export_gguf(std::path::Path::new(&a.save_path), &out, tokenizer_gguf)?;
        println!("GGUF written to {}", out.display());
    }
    Ok(())
}
