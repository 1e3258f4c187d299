//! `oxmx perplexity` (mlx_lm.perplexity): perplexity ± standard error of a model on a local
//! dataset, with evaluation speed and peak memory.

use std::io::Write;
use std::path::Path;

use clap::Args;
use oxmx_core::{Error, Result};
use oxmx_lm::loader::{load, LoadOptions};
use oxmx_lm::perplexity::{eval_perplexity, load_rows};
use oxmx_lm::Tokenizer;
use serde_json::json;

use crate::resolve::resolve_model;

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// Model: a folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    pub model: Option<String>,
    /// Sequences evaluated per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Tokens per evaluated sequence.
    #[arg(long, default_value_t = 512)]
    pub sequence_length: usize,
    /// Number of sequences (-1: all the data gives).
    #[arg(long, default_value_t = 256, allow_hyphen_values = true)]
    pub num_samples: i64,
    /// A local .jsonl file (records with text, messages or prompt + completion), a folder with
    /// train.jsonl, or a plain-text file. Nothing is downloaded.
    #[arg(long)]
    pub data_path: String,
    /// Seed of the document order.
    #[arg(long, default_value_t = 123)]
    pub seed: u64,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PerplexityArgs) -> Result<()> {
    let path = resolve_model(a.model.as_deref())?;
    let num_samples = match a.num_samples {
        -1 => None,
        n if n > 0 => Some(n as usize),
        n => return Err(Error::invalid(format!("--num-samples must be positive or -1, got {n}"))),
    };
    let mut err = std::io::stderr();
    if !a.json {
        let _ = writeln!(err, "Loading model from {}...", path.display());
    }
    let loaded = load(&path, &LoadOptions::default())?;
    let tok = Tokenizer::from_path(&path)?;
    let params = oxmx_lm::perplexity::num_parameters(loaded.model.as_ref());
    if !a.json {
        let _ = writeln!(err, "Model loaded: {:.1}M parameters", params as f64 / 1e6);
        let _ = writeln!(err, "Loading dataset (sequence length {})...", a.sequence_length);
    }
    let rows = load_rows(&tok, Path::new(&a.data_path), a.sequence_length, num_samples, a.seed)?;
    if !a.json {
        let _ = writeln!(err, "  Loaded {} samples", rows.len());
        let _ = writeln!(err, "Evaluating perplexity with batch size {}...", a.batch_size);
    }
    let quiet = a.json;
    let r = eval_perplexity(loaded.model.as_ref(), &rows, a.batch_size, &mut |i, n| {
        if !quiet {
            let _ = write!(std::io::stderr(), "  Processed {i}/{n} batches...\r");
        }
    })?;
    if a.json {
        println!(
            "{}",
            json!({
                "perplexity": r.perplexity, "standard_error": r.standard_error, "mean_loss": r.mean_loss,
                "samples": r.rows, "tokens": r.tokens_evaluated, "seconds": r.seconds,
                "tokens_per_sec": r.tokens_per_sec, "peak_memory": r.peak_memory as f64 / 1e9,
            })
        );
        return Ok(());
    }
    let _ = writeln!(err);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", "=".repeat(60));
    let _ = writeln!(out, "EVALUATION RESULTS");
    let _ = writeln!(out, "{}", "=".repeat(60));
    let _ = writeln!(out, "Model: {}", path.display());
    let _ = writeln!(out, "Perplexity: {:.3} ± {:.3}", r.perplexity, r.standard_error);
    let _ = writeln!(out, "Evaluation time: {:.2} seconds", r.seconds);
    let _ = writeln!(out, "Peak memory: {:.2} GB", r.peak_memory as f64 / 1e9);
    let _ = writeln!(out, "Tokens per second: {:.0}", r.tokens_per_sec);
    let _ = writeln!(out, "\nDataset statistics:");
    let _ = writeln!(out, "  Total samples: {}", r.rows);
    let _ = writeln!(out, "  Total tokens: {}", r.rows * a.sequence_length);
    Ok(())
}
