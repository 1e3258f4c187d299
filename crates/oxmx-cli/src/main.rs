//! The `oxmx` command (mlx_lm's commands and flags where they overlap).
//!
//! Every failure prints one line, `oxmx: error: ...`, and exits non-zero; no panics reach the
//! user (a panic hook turns any that slip through into that line too).

mod bench;
mod cache_prompt;
mod convert;
mod engine;
mod fuse;
mod generate;
mod launch;
mod lora;
mod perplexity;
mod resolve;
mod serve;

use clap::{Args, Parser, Subcommand};

// mimalloc: graph building allocates thousands of small nodes per decoding step on the main
// thread that the stream's pool threads free; glibc's arenas spent ~9% of decode time there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "oxmx", version, about = "oxmx: run language models on the oxmx array framework")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt (mlx_lm.generate).
    Generate(GenerateArgs),
    /// Chat in a loop, keeping the KV cache across turns (mlx_lm.chat).
    Chat(ChatArgs),
    /// Print the token ids of a prompt (after the chat template unless --ignore-chat-template).
    Tokenize(TokenizeArgs),
    /// Run a prompt through the model and save its KV cache (mlx_lm.cache_prompt's file format).
    CachePrompt(cache_prompt::CachePromptArgs),
    /// Perplexity of a model on a local text/jsonl dataset (mlx_lm.perplexity).
    Perplexity(perplexity::PerplexityArgs),
    /// Prompt and generation speed with random prompts (mlx_lm.benchmark).
    Bench(bench::BenchArgs),
    /// Convert a Hugging Face folder or a GGUF file to an MLX folder; quantize or dequantize (mlx_lm.convert).
    Convert(convert::ConvertArgs),
    /// An OpenAI-compatible HTTP server with continuous batching (mlx_lm.server).
    Serve(serve::ServeArgs),
    /// Fine-tune with LoRA, DoRA or fully, and/or report the test loss (mlx_lm.lora).
    Lora(Box<lora::LoraArgs>),
    /// Merge adapters into the base model and write an MLX folder (mlx_lm.fuse).
    Fuse(fuse::FuseArgs),
    /// Start N ranks of a distributed program (MPI's mpirun, or NCCL ranks on this machine).
    Launch(launch::LaunchArgs),
}

/// Model and prompt-building flags shared by the commands.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Model: a folder (config.json, *.safetensors, tokenizer.json), a .gguf file, or a Hugging
    /// Face repo id `org/name` (found in the HF cache, else downloaded into it; HF_HUB_OFFLINE=1,
    /// HF_ENDPOINT, HF_HUB_CACHE and HF_TOKEN as huggingface_hub reads them).
    /// Default: $OXMX_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf (or ~/.cache/oxmx/models/...).
    #[arg(long)]
    pub model: Option<String>,
    /// System message for the chat template.
    #[arg(long)]
    pub system_prompt: Option<String>,
    /// Use the raw prompt, without the chat template.
    #[arg(long)]
    pub ignore_chat_template: bool,
    /// JSON object of extra chat-template variables, e.g. '{"enable_thinking": false}'.
    #[arg(long)]
    pub chat_template_config: Option<String>,
    /// Extra end-of-sequence tokens (text of a token, or an id).
    #[arg(long, num_args = 1..)]
    pub extra_eos_token: Vec<String>,
}

/// Sampling and cache flags.
#[derive(Args, Clone, Debug)]
pub struct SampleArgs {
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f64,
    /// Nucleus sampling: keep the smallest set of tokens with this much probability (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Drop tokens below min_p times the top probability (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f64,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep at most this many tokens in the KV cache (a rotating cache).
    #[arg(long)]
    pub max_kv_size: Option<usize>,
}

/// KV-cache quantization flags (mlx_lm's).
#[derive(Args, Clone, Debug)]
pub struct KvArgs {
    /// Quantize the KV cache to this many bits (2, 3, 4, 5, 6 or 8); default: no quantization.
    #[arg(long)]
    pub kv_bits: Option<usize>,
    /// Group size of the KV-cache quantization.
    #[arg(long, default_value_t = 64)]
    pub kv_group_size: usize,
    /// Quantize a layer's cache once it holds this many tokens.
    #[arg(long, default_value_t = 5000)]
    pub quantized_kv_start: usize,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    #[command(flatten)]
    pub kv: KvArgs,
    /// A prompt cache saved by `oxmx cache-prompt` (or mlx_lm.cache_prompt): the prompt continues
    /// after the cached tokens; the model defaults to the one recorded in the file.
    #[arg(long)]
    pub prompt_cache_file: Option<String>,
    /// The prompt; '-' reads it from stdin. Literal \n and \t are unescaped, as mlx_lm does.
    #[arg(long, short = 'p', default_value = "hello")]
    pub prompt: String,
    /// Start of the assistant's reply, continued by the model.
    #[arg(long)]
    pub prefill_response: Option<String>,
    /// Maximum number of tokens to generate.
    #[arg(long, short = 'm', default_value_t = 100)]
    pub max_tokens: usize,
    /// Trained adapters to apply (a folder with adapters.safetensors and adapter_config.json).
    #[arg(long)]
    pub adapter_path: Option<String>,
    /// A smaller model with the same tokenizer that proposes tokens for the model to verify
    /// (speculative decoding; the output is the model's own).
    #[arg(long)]
    pub draft_model: Option<String>,
    /// Tokens the draft model proposes per round.
    #[arg(long, default_value_t = 3)]
    pub num_draft_tokens: usize,
    /// Print the prompt, separators and speed / peak-memory statistics, as mlx_lm does.
    #[arg(long)]
    pub verbose: bool,
    /// Print one JSON object {text, tokens, prompt_tokens, prompt_tps, generation_tps, peak_memory}.
    #[arg(long, conflicts_with = "verbose")]
    pub json: bool,
    /// Shard the model across the ranks started by `oxmx launch` (tensor parallelism: each
    /// rank holds its slice of every layer; rank 0 prints).
    #[arg(long)]
    pub tensor_parallel: bool,
}

#[derive(Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sample: SampleArgs,
    #[command(flatten)]
    pub kv: KvArgs,
    /// Maximum number of tokens per reply.
    #[arg(long, short = 'm', default_value_t = 256)]
    pub max_tokens: usize,
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt; '-' reads it from stdin.
    #[arg(long, short = 'p')]
    pub prompt: String,
}

fn main() {
    // A panic would print a backtrace hint; keep the one-line contract even then.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal error".into());
        eprintln!("oxmx: error: internal error: {msg}");
    }));
    let cli = Cli::parse();
    let r = std::panic::catch_unwind(move || match cli.command {
        Command::Generate(a) => generate::run_generate(a),
        Command::Chat(a) => generate::run_chat(a),
        Command::Tokenize(a) => generate::run_tokenize(a),
        Command::CachePrompt(a) => cache_prompt::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Convert(a) => convert::run_convert(a),
        Command::Serve(a) => serve::run(a),
        Command::Lora(a) => lora::run(*a),
        Command::Fuse(a) => fuse::run(a),
        Command::Launch(a) => launch::run(a),
    });
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("oxmx: error: {}", one_line(&e));
            std::process::exit(1);
        }
        Err(_) => std::process::exit(101),
    }
}

/// `--tensor-parallel`: the world group of the ranks `oxmx launch` started (an error without a
/// launcher). Ranks other than 0 print nothing on stdout, so the output reads as one run.
pub fn tensor_parallel_group(on: bool) -> oxmx_core::Result<Option<oxmx_core::distributed::Group>> {
    if !on {
        return Ok(None);
    }
    let g = oxmx_core::distributed::init(true, "any")?;
    if g.rank() != 0 {
        silence_stdout();
    }
    Ok(Some(g))
}

fn silence_stdout() {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn dup2(old: i32, new: i32) -> i32;
    }
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: both descriptors are open; stdout is replaced, /dev/null's copy stays valid.
        unsafe {
            dup2(null.as_raw_fd(), 1);
        }
    }
}

/// Errors print on one line.
fn one_line(e: &oxmx_core::Error) -> String {
    e.message().replace('\n', " ")
}
