//! `oxmx bench` (mlx_lm.benchmark): a warm-up run, then `-n` timed trials of `-p` random prompt
//! tokens and `-g` generated tokens (no EOS), reporting prompt_tps, generation_tps and peak
//! memory per trial and on average. `--random-weights` builds the model from config.json alone.

use std::io::Write;
use std::path::Path;

use clap::Args;
use oxmx_core::{Error, Result};
use oxmx_lm::bench::{average, bench_run, random_prompts, random_weights_model_sharded, BenchOptions, BenchResult};
use oxmx_lm::loader::{folder::read_config, load, LoadOptions};
use serde_json::json;

use crate::resolve::resolve_model;
use crate::KvArgs;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model: a folder (config.json, *.safetensors) or a .gguf file; with --random-weights a
    /// folder with config.json is enough.
    #[arg(long)]
    pub model: Option<String>,
    /// Length of the prompt.
    #[arg(long, short = 'p', default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Length of the completion.
    #[arg(long, short = 'g', default_value_t = 1024)]
    pub generation_tokens: usize,
    /// Number of sequences decoded together.
    #[arg(long, short = 'b', default_value_t = 1)]
    pub batch_size: usize,
    /// Number of timed trials.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub num_trials: usize,
    /// Chunk size of the prompt processing.
    #[arg(long, default_value_t = 2048)]
    pub prefill_step_size: usize,
    /// Seconds to wait between trials.
    #[arg(long, default_value_t = 0)]
    pub delay: u64,
    /// Build the model from config.json with random weights (no weight files needed).
    #[arg(long)]
    pub random_weights: bool,
    /// Shard the model across the ranks started by `oxmx launch` (tensor parallelism).
    #[arg(long)]
    pub tensor_parallel: bool,
    #[command(flatten)]
    pub kv: KvArgs,
    /// Print one JSON object {trials: [...], average: {...}} instead of the report.
    #[arg(long)]
    pub json: bool,
}

fn fields(r: &BenchResult) -> String {
    format!(
        "prompt_tps={:.3}, generation_tps={:.3}, peak_memory={:.3}, total_time={:.3}",
        r.prompt_tps, r.generation_tps, r.peak_memory, r.total_time
    )
}

fn as_json(r: &BenchResult) -> serde_json::Value {
    json!({"prompt_tps": r.prompt_tps, "generation_tps": r.generation_tps, "peak_memory": r.peak_memory, "total_time": r.total_time,
           "tokens": r.tokens})
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.prompt_tokens == 0 || a.generation_tokens == 0 || a.batch_size == 0 || a.num_trials == 0 {
        return Err(Error::invalid("--prompt-tokens, --generation-tokens, --batch-size and --num-trials must be positive"));
    }
    let path = resolve_model(a.model.as_deref())?;
    let group = crate::tensor_parallel_group(a.tensor_parallel)?;
    let model = if a.random_weights {
        if !path.is_dir() {
            return Err(Error::invalid(format!("--random-weights needs a folder with config.json, got {}", path.display())));
        }
        let config = read_config(Path::new(&path))?;
        random_weights_model_sharded(&config, 0, group.as_ref())?
    } else {
        load(&path, &LoadOptions { tensor_parallel: group, ..LoadOptions::default() })?.model
    };
    let vocab = model.config().vocab_size;
    let prompts = random_prompts(vocab, a.batch_size, a.prompt_tokens, 0);
    let opts = BenchOptions {
        prompt_tokens: a.prompt_tokens,
        generation_tokens: a.generation_tokens,
        batch_size: a.batch_size,
        prefill_step_size: a.prefill_step_size,
        kv_bits: a.kv.kv_bits,
        kv_group_size: a.kv.kv_group_size,
        quantized_kv_start: a.kv.quantized_kv_start,
    };
    let mut out = std::io::stdout().lock();
    if !a.json {
        let _ = writeln!(out, "Running warmup..");
    }
    bench_run(model.as_ref(), &prompts, &opts)?;
    if !a.json {
        let _ = writeln!(
            out,
            "Timing with prompt_tokens={}, generation_tokens={}, batch_size={}.",
            a.prompt_tokens, a.generation_tokens, a.batch_size
        );
    }
    let gpu_profiling = oxmx_core::default_device().is_gpu() && std::env::var_os("OXMX_GPU_PROFILE").is_some();
    let mut results = Vec::with_capacity(a.num_trials);
    for i in 0..a.num_trials {
        if a.delay > 0 {
            std::thread::sleep(std::time::Duration::from_secs(a.delay));
        }
        // OXMX_GPU_PROFILE's report covers the last trial alone (no first-use compilations).
        oxmx_core::backend::cuda::profile_reset();
        // Kernel launch counts around the trial, for Nsight Compute's --launch-skip.
        if gpu_profiling {
            eprintln!("[gpu] trial {}: kernel launches before it {}", i + 1, oxmx_core::backend::cuda::launches(0));
        }
        let r = bench_run(model.as_ref(), &prompts, &opts)?;
        if gpu_profiling {
            eprintln!("[gpu] trial {}: kernel launches after it {}", i + 1, oxmx_core::backend::cuda::launches(0));
        }
        if !a.json {
            let _ = writeln!(out, "Trial {}:  {}", i + 1, fields(&r));
        }
        results.push(r);
    }
    let avg = average(&results);
    gpu_report();
    if a.json {
        let trials: Vec<serde_json::Value> = results.iter().map(as_json).collect();
        let _ = writeln!(
            out,
            "{}",
            json!({"prompt_tokens": a.prompt_tokens, "generation_tokens": a.generation_tokens, "batch_size": a.batch_size,
                   "trials": trials, "average": as_json(&avg)})
        );
    } else {
        let _ = writeln!(
            out,
            "Averages: prompt_tps={:.3}, generation_tps={:.3}, peak_memory={:.3}",
            avg.prompt_tps, avg.generation_tps, avg.peak_memory
        );
    }
    Ok(())
}

/// On a GPU, where the work ran: primitives that fell back to the CPU (with counts) and buffer
/// migrations between host and device, on stderr (a fast GPU run has neither beyond loading).
pub(crate) fn gpu_report() {
    if !oxmx_core::default_device().is_gpu() {
        // OXMX_CPU_PROFILE=1: the kernels' run time per primitive (same table).
        print_profile("cpu");
        return;
    }
    let (to_host, to_device) = oxmx_core::memory::migrations();
    eprintln!("[gpu] buffer migrations: {to_host} to the host, {to_device} to the device");
    let f = oxmx_core::backend::cuda::fallbacks();
    if f.is_empty() {
        eprintln!("[gpu] every primitive ran on the GPU");
    } else {
        let list: Vec<String> = f.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        eprintln!("[gpu] ran on the CPU: {}", list.join(", "));
    }
    print_profile("gpu");
}

/// The profile table, largest rows first: on a GPU (OXMX_GPU_PROFILE=1) the host's dispatch time
/// per primitive and the GPU clock's rows; on the CPU (OXMX_CPU_PROFILE=1) kernel run times.
fn print_profile(tag: &str) {
    let (gpu_clock, mut prof): (Vec<_>, Vec<_>) =
        oxmx_core::backend::cuda::profile().into_iter().partition(|(name, _)| name.starts_with("~gpu"));
    // The GPU's own clock: how much of the span the graphs covered it was busy.
    for (name, (n, t)) in &gpu_clock {
        eprintln!("[{tag}] {name}: {n} x, {:.1} ms", t * 1e3);
    }
    prof.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let total: f64 = prof.iter().map(|p| p.1 .1).sum();
    if total > 0.0 {
        let calls: u64 = prof.iter().map(|p| p.1 .0).sum();
        eprintln!("[{tag}] profiled: {calls} ops, {:.1} ms, {:.2} us/op", total * 1e3, total * 1e6 / calls as f64);
        // The largest rows, and every CUDA-graph row (flush reasons, updates, instantiations).
        for (name, (n, t)) in prof.iter().enumerate().filter(|(i, p)| *i < 24 || p.0.starts_with("~graph")).map(|(_, p)| p) {
            eprintln!("[{tag}]   {name:40} {n:8} calls {:9.1} ms {:7.2} us/call", t * 1e3, t * 1e6 / *n as f64);
        }
    }
}
