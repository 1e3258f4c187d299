//! `oxmx convert`: mlx_lm.convert's flags over `oxmx_lm::convert` (a Hugging Face folder or a
//! GGUF file to an MLX folder; quantize, dequantize, cast). Steps and a progress line go to
//! stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use oxmx_core::{Error, Result};
use oxmx_lm::convert::{convert, ConvertOptions, Progress, MAX_SHARD_BYTES};

use crate::resolve::resolve_model;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The source model: a Hugging Face folder (safetensors, possibly sharded or MLX-quantized)
    /// or a .gguf file.
    #[arg(long = "hf-path", visible_alias = "model", value_name = "PATH")]
    pub hf_path: Option<String>,
    /// Where to write the MLX model (must not exist, or be empty).
    #[arg(long, default_value = "mlx_model", value_name = "PATH")]
    pub mlx_path: String,
    /// Quantize the model.
    #[arg(short = 'q', long)]
    pub quantize: bool,
    /// Group size for quantization (default: the mode's, affine 64).
    #[arg(long)]
    pub q_group_size: Option<usize>,
    /// Bits per weight for quantization (default: the mode's, affine 4).
    #[arg(long)]
    pub q_bits: Option<usize>,
    /// Quantization mode: affine, mxfp4, nvfp4 or mxfp8.
    #[arg(long, default_value = "affine")]
    pub q_mode: String,
    /// Mixed-bits recipe: mixed_2_6, mixed_3_4, mixed_3_6 or mixed_4_6 (affine only).
    #[arg(long)]
    pub quant_predicate: Option<String>,
    /// dtype of the floating-point parameters: float16, bfloat16 or float32 (default: the
    /// config's torch_dtype, else the weights' own).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Dequantize a quantized model.
    #[arg(short = 'd', long)]
    pub dequantize: bool,
}

fn mb(n: u64) -> f64 {
    n as f64 / 1e6
}

pub fn run_convert(a: ConvertArgs) -> Result<()> {
    let Some(src) = a.hf_path.as_deref() else {
        return Err(Error::invalid("convert needs the source model: --hf-path PATH (or --model PATH)"));
    };
    let src = resolve_model(Some(src))?;
    let mut opts = ConvertOptions::new(src, PathBuf::from(&a.mlx_path));
    opts.quantize = a.quantize;
    opts.q_group_size = a.q_group_size;
    opts.q_bits = a.q_bits;
    opts.q_mode = a.q_mode.clone();
    opts.quant_predicate = a.quant_predicate.clone();
    opts.dtype = a.dtype.clone();
    opts.dequantize = a.dequantize;
    opts.max_shard_bytes = MAX_SHARD_BYTES;

    let tty = std::io::stderr().is_terminal();
    let mut err = std::io::stderr();
    let mut open_line = false;
    let mut last_pct: i64 = -1;
    let mut last_file = String::new();
    let report = convert(&opts, &mut |p| match p {
        Progress::Info(s) => {
            if open_line {
                let _ = writeln!(err);
                open_line = false;
            }
            let _ = writeln!(err, "[INFO] {s}");
        }
        Progress::Writing { file, done, total } => {
            let pct = if total == 0 { 100 } else { (done * 100 / total) as i64 };
            let new_file = file != last_file;
            if tty {
                if pct != last_pct || new_file {
                    let _ = write!(err, "\r[INFO] Writing {file}: {pct:3}% ({:.1}/{:.1} MB)", mb(done), mb(total));
                    let _ = err.flush();
                    open_line = true;
                }
            } else if new_file || (pct / 10 != last_pct / 10) {
                // Not a terminal: a line per file and per tenth, no carriage returns.
                let _ = writeln!(err, "[INFO] Writing {file}: {pct}% ({:.1}/{:.1} MB)", mb(done), mb(total));
            }
            if new_file {
                last_file = file.to_string();
            }
            last_pct = pct;
        }
    });
    if open_line {
        let _ = writeln!(err);
    }
    let report = report?;
    let _ = writeln!(
        err,
        "[INFO] Saved {} ({} file{}, {:.1} MB, {} parameters{}) to {}",
        report.shards.join(", "),
        report.shards.len(),
        if report.shards.len() == 1 { "" } else { "s" },
        mb(report.total_size),
        report.total_parameters,
        if report.quantized_layers > 0 { format!(", {} quantized layers", report.quantized_layers) } else { String::new() },
        a.mlx_path
    );
    Ok(())
}
