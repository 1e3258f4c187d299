//! `oxmx lora`: fine-tune with LoRA, DoRA or fully, and/or report the test loss (mlx_lm.lora's
//! flags, YAML config and output lines). Arguments resolve as mlx-lm's: command line over the
//! `-c` YAML file over the defaults; `adapter_config.json` records the result.

use crate::resolve::resolve_model;
use clap::Args;
use oxmx_core::{Error, Result};
use oxmx_lm::loader::{load, LoadOptions};
use oxmx_lm::lora::data::DataOptions;
use oxmx_lm::lora::{self, Report, TrainArgs, TrainingArgs};
use oxmx_lm::Tokenizer;
use oxmx_optim::{Adam, AdamW, Optimizer, SGD};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Default)]
pub struct LoraArgs {
    /// Model folder, .gguf file or repo id (default: the default model). A quantized model
    /// trains adapters over its packed weights (QLoRA).
    #[arg(long)]
    pub model: Option<String>,
    /// Train.
    #[arg(long)]
    pub train: bool,
    /// Folder with train.jsonl, valid.jsonl and test.jsonl (chat, completions or text records).
    #[arg(long)]
    pub data: Option<String>,
    /// lora, dora or full.
    #[arg(long, value_parser = ["lora", "dora", "full"])]
    pub fine_tune_type: Option<String>,
    /// adam (default), adamw or sgd; settings from the config's optimizer_config.
    #[arg(long, value_parser = ["adam", "adamw", "sgd"])]
    pub optimizer: Option<String>,
    /// Compute the loss on the completion (the last message) only.
    #[arg(long)]
    pub mask_prompt: bool,
    /// Fine-tune the last N blocks (-1: all; default 16).
    #[arg(long, allow_hyphen_values = true)]
    pub num_layers: Option<i64>,
    /// Minibatch size (default 4).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Training iterations (default 1000).
    #[arg(long)]
    pub iters: Option<usize>,
    /// Validation batches per evaluation (-1: the whole set; default 25).
    #[arg(long, allow_hyphen_values = true)]
    pub val_batches: Option<i64>,
    /// Adam learning rate (default 1e-5).
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Iterations between training-loss reports (default 10).
    #[arg(long)]
    pub steps_per_report: Option<usize>,
    /// Iterations between validations (default 200).
    #[arg(long)]
    pub steps_per_eval: Option<usize>,
    /// Start from these adapter weights.
    #[arg(long)]
    pub resume_adapter_file: Option<String>,
    /// Where adapters are saved, and loaded for --test (default adapters).
    #[arg(long)]
    pub adapter_path: Option<String>,
    /// Save the adapters every N iterations (default 100).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Report the loss and perplexity on test.jsonl.
    #[arg(long)]
    pub test: bool,
    /// Test batches (-1: the whole set; default 500).
    #[arg(long, allow_hyphen_values = true)]
    pub test_batches: Option<i64>,
    /// Longer examples are truncated (default 2048).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// A YAML file with any of these options (underscored names) and lora_parameters,
    /// lr_schedule, optimizer_config.
    #[arg(short = 'c', long)]
    pub config: Option<String>,
    /// Recompute each block's activations in the backward pass (less memory, more compute;
    /// llama-family models).
    #[arg(long)]
    pub grad_checkpoint: bool,
    /// Accumulate gradients over N minibatches per update (default 1).
    #[arg(long)]
    pub grad_accumulation_steps: Option<usize>,
    /// Seed for initialisation, dropout and batch order (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl LoraArgs {
    /// The flags given on the command line, as a layer over the YAML file.
    fn overrides(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("model", self.model.clone().map(Value::from));
        put("train", self.train.then_some(Value::Bool(true)));
        put("data", self.data.clone().map(Value::from));
        put("fine_tune_type", self.fine_tune_type.clone().map(Value::from));
        put("optimizer", self.optimizer.clone().map(Value::from));
        put("mask_prompt", self.mask_prompt.then_some(Value::Bool(true)));
        put("num_layers", self.num_layers.map(Value::from));
        put("batch_size", self.batch_size.map(Value::from));
        put("iters", self.iters.map(Value::from));
        put("val_batches", self.val_batches.map(Value::from));
        put("learning_rate", self.learning_rate.map(Value::from));
        put("steps_per_report", self.steps_per_report.map(Value::from));
        put("steps_per_eval", self.steps_per_eval.map(Value::from));
        put("resume_adapter_file", self.resume_adapter_file.clone().map(Value::from));
        put("adapter_path", self.adapter_path.clone().map(Value::from));
        put("save_every", self.save_every.map(Value::from));
        put("test", self.test.then_some(Value::Bool(true)));
        put("test_batches", self.test_batches.map(Value::from));
        put("max_seq_length", self.max_seq_length.map(Value::from));
        put("config", self.config.clone().map(Value::from));
        put("grad_checkpoint", self.grad_checkpoint.then_some(Value::Bool(true)));
        put("grad_accumulation_steps", self.grad_accumulation_steps.map(Value::from));
        put("seed", self.seed.map(Value::from));
        m
    }
}

/// Reads a YAML config as a JSON object (YAML 1.2 reads `1e-5` as a float, as mlx-lm's loader).
pub fn read_yaml(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("[lora] cannot read the config {}: {e}", path.display())))?;
    let v: Value = serde_yaml::from_str(&text).map_err(|e| Error::invalid(format!("[lora] {}: {e}", path.display())))?;
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        _ => Err(Error::invalid(format!("[lora] {}: the config must be a mapping of option names", path.display()))),
    }
}

/// The resolved arguments: defaults, then the YAML file, then the command line.
pub fn resolve_args(a: &LoraArgs) -> Result<TrainArgs> {
    let mut layers = Vec::new();
    if let Some(c) = &a.config {
        println!("Loading configuration file {c}");
        layers.push(read_yaml(Path::new(c))?);
    }
    layers.push(a.overrides());
    TrainArgs::resolve(&layers)
}

fn f64_list(v: Option<&Value>) -> Option<Vec<f64>> {
    v?.as_array()?.iter().map(Value::as_f64).collect()
}

/// The optimizer named in `args` with its `optimizer_config` entry (betas, eps, weight_decay,
/// bias_correction, momentum).
fn make_optimizer(args: &TrainArgs) -> Result<Box<dyn Optimizer>> {
    let lr = args.learning_rate()?;
    let cfg = args.optimizer_config.get(&args.optimizer).cloned().unwrap_or(Value::Null);
    let num = |k: &str| cfg.get(k).and_then(Value::as_f64);
    let betas = f64_list(cfg.get("betas"));
    Ok(match args.optimizer.as_str() {
        "adam" => {
            let mut o = Adam::new(lr);
            if let Some(b) = betas.filter(|b| b.len() == 2) {
                o = o.betas(b[0], b[1]);
            }
            if let Some(e) = num("eps") {
                o = o.eps(e);
            }
            if let Some(bc) = cfg.get("bias_correction").and_then(Value::as_bool) {
                o = o.bias_correction(bc);
            }
            Box::new(o)
        }
        "adamw" => {
            let mut o = AdamW::new(lr);
            if let Some(b) = betas.filter(|b| b.len() == 2) {
                o = o.betas(b[0], b[1]);
            }
            if let Some(e) = num("eps") {
                o = o.eps(e);
            }
            if let Some(w) = num("weight_decay") {
                o = o.weight_decay(w);
            }
            if let Some(bc) = cfg.get("bias_correction").and_then(Value::as_bool) {
                o = o.bias_correction(bc);
            }
            Box::new(o)
        }
        "sgd" => {
            let mut o = SGD::new(lr);
            if let Some(m) = num("momentum") {
                o = o.momentum(m);
            }
            Box::new(o)
        }
        other => return Err(Error::invalid(format!("[lora] unsupported optimizer `{other}`; choose adam, adamw or sgd"))),
    })
}

fn data_options(args: &TrainArgs) -> DataOptions {
    let mut o = DataOptions { mask_prompt: args.mask_prompt, ..Default::default() };
    let feature = |k: &str| args.extra.get(k).and_then(Value::as_str).map(String::from);
    if let Some(f) = feature("prompt_feature") {
        o.prompt_feature = f;
    }
    if let Some(f) = feature("completion_feature") {
        o.completion_feature = f;
    }
    if let Some(f) = feature("text_feature") {
        o.text_feature = f;
    }
    if let Some(f) = feature("chat_feature") {
        o.chat_feature = f;
    }
    o
}

/// Prints a report line in mlx-lm's wording.
fn print_report(r: Report) {
    match r {
        Report::Train { iteration, train_loss, learning_rate, it_per_sec, tokens_per_sec, trained_tokens, peak_memory_gb } => println!(
            "Iter {iteration}: Train loss {train_loss:.3}, Learning Rate {learning_rate:.3e}, It/sec {it_per_sec:.3}, \
             Tokens/sec {tokens_per_sec:.3}, Trained Tokens {trained_tokens}, Peak mem {peak_memory_gb:.3} GB"
        ),
        Report::Val { iteration, val_loss, val_time } => println!("Iter {iteration}: Val loss {val_loss:.3}, Val took {val_time:.3}s"),
        Report::Saved(p) => println!("Saved adapter weights to {}", p.display()),
        Report::Truncated { longest, limit } => println!(
            "[WARNING] Some sequences are longer than {limit} tokens. The longest sentence {longest} will be truncated to {limit}. \
             Consider pre-splitting your data to save memory."
        ),
    }
}

pub fn run(a: LoraArgs) -> Result<()> {
    let mut args = resolve_args(&a)?;
    if !args.train && !args.test {
        return Err(Error::invalid("must provide at least one of --train or --test"));
    }
    oxmx_core::random::seed(args.seed);
    println!("Loading pretrained model");
    let model_arg = (!args.model.is_empty()).then(|| args.model.clone());
    let path = resolve_model(model_arg.as_deref())?;
    args.model = path.display().to_string();
    let tok = Tokenizer::from_path(&path)?;
    let mut loaded = load(&path, &LoadOptions::default())?;
    let model = loaded.model.as_mut();

    println!("Loading datasets");
    let (train_set, valid_set, test_set) = lora::load_local_dataset(Path::new(&args.data), &tok, &data_options(&args))?;
    let adapter_dir = PathBuf::from(&args.adapter_path);

    if args.train {
        let train_set = train_set
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::invalid(format!("training set not found or empty: {}/train.jsonl is needed for --train", args.data)))?;
        if valid_set.as_ref().is_none_or(|v| v.is_empty()) {
            println!("[WARNING] No validation set ({}/valid.jsonl): training without validation.", args.data);
        }
        println!("Training");
        let trainable = lora::setup_training(model, &args)?;
        if let Some(f) = &args.resume_adapter_file {
            println!("Loading fine-tuned weights from {f}");
            let w = lora::apply::read_adapter_file(Path::new(f))?;
            lora::apply::load_adapter_weights(model.as_dyn_mut(), &w, args.fine_tune_type == "full", f)?;
        }
        // Packed weights count as the values they hold, as mlx-lm counts them.
        let total = lora::apply::count_parameters(model.as_dyn_mut());
        println!(
            "Trainable parameters: {:.3}% ({:.3}M/{:.3}M)",
            100.0 * trainable as f64 / total.max(1) as f64,
            trainable as f64 / 1e6,
            total as f64 / 1e6
        );
        std::fs::create_dir_all(&adapter_dir).map_err(|e| Error::io(format!("cannot create {}: {e}", adapter_dir.display())))?;
        args.save(&adapter_dir.join("adapter_config.json"))?;
        let mut opt = make_optimizer(&args)?;
        let targs = TrainingArgs {
            batch_size: args.batch_size,
            iters: args.iters,
            val_batches: args.val_batches,
            steps_per_report: args.steps_per_report,
            steps_per_eval: args.steps_per_eval,
            steps_per_save: args.save_every,
            max_seq_length: args.max_seq_length,
            adapter_file: adapter_dir.join("adapters.safetensors"),
            grad_accumulation_steps: args.grad_accumulation_steps,
            grad_checkpoint: args.grad_checkpoint,
            seed: args.seed,
        };
        lora::train(model, opt.as_mut(), &train_set, valid_set.as_ref(), &targs, &mut print_report)?;
        // On a GPU: fallbacks, migrations and (OXMX_GPU_PROFILE=1) host time per primitive.
        crate::bench::gpu_report();
    } else if !args.adapter_path.is_empty() {
        lora::load_adapters(model, &adapter_dir)?;
    }

    if args.test {
        println!("Testing");
        let test_set = test_set
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::invalid(format!("test set not found or empty: {}/test.jsonl is needed for --test", args.data)))?;
        let loss = lora::evaluate(model, &test_set, args.batch_size, args.test_batches, args.max_seq_length)?;
        println!("Test loss {loss:.3}, Test ppl {:.3}.", loss.exp());
    }
    Ok(())
}
