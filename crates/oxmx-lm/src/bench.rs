//! Generation benchmark (mlx-lm's `mlx_lm.benchmark` protocol): random prompt ids drawn from
//! `[0, vocab)`, no EOS (every run generates the full length), one warm-up run, then timed
//! trials reporting `prompt_tps`, `generation_tps` and peak memory, and their averages. Batch
//! size 1 runs the ordinary generation loop; larger batches decode the same-length prompts
//! together (one `[B, L]` prefill, `[B, 1]` greedy steps). A model can be built from its config
//! alone with random weights ([`random_weights_model`]).

use crate::cache::{eval_cache, make_prompt_cache};
use crate::config::ModelConfig;
use crate::generate::{generate_step, GenerateOptions};
use crate::models::{build_model, LanguageModel};
use crate::perplexity::SplitMix64;
use crate::sample::Sampler;
use oxmx_core::{async_eval, eval, memory, ops, random, Array, Dtype, Error, Result};
use std::time::Instant;

/// One timed run (mlx-lm's report keys).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BenchResult {
    /// Prompt tokens (all sequences) per second of prefill.
    pub prompt_tps: f64,
    /// Generated tokens (all sequences, after the first) per second of decoding.
    pub generation_tps: f64,
    /// Peak memory in GB (1e9 bytes), as mlx-lm reports it.
    pub peak_memory: f64,
    /// Wall time of the whole run in seconds.
    pub total_time: f64,
    /// The greedy tokens of the first sequence (single-sequence runs), so runs of one model on
    /// different devices or shardings can be compared token by token.
    pub tokens: Vec<u32>,
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub prompt_tokens: usize,
    pub generation_tokens: usize,
    pub batch_size: usize,
    pub prefill_step_size: usize,
    /// KV-cache quantization (as in generation).
    pub kv_bits: Option<usize>,
    pub kv_group_size: usize,
    pub quantized_kv_start: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            prompt_tokens: 512,
            generation_tokens: 1024,
            batch_size: 1,
            prefill_step_size: 2048,
            kv_bits: None,
            kv_group_size: 64,
            quantized_kv_start: 5000,
        }
    }
}

/// `batch` prompts of `len` ids uniform in `[0, vocab)`.
pub fn random_prompts(vocab: usize, batch: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(seed);
    (0..batch).map(|_| (0..len).map(|_| (rng.next_u64() % vocab.max(1) as u64) as u32).collect()).collect()
}

/// The dtype a checkpoint of `config` stores its weights in (`torch_dtype`, or `dtype` in newer
/// configs); float32 when it says nothing.
fn config_dtype(config: &ModelConfig) -> Result<Dtype> {
    let name = config.raw.get("torch_dtype").or_else(|| config.raw.get("dtype")).and_then(|v| v.as_str());
    Ok(match name {
        None | Some("float32") => Dtype::Float32,
        Some("bfloat16") => Dtype::Bfloat16,
        Some("float16") => Dtype::Float16,
        Some(other) => return Err(Error::invalid(format!("[bench] config.json: unsupported torch_dtype \"{other}\""))),
    })
}

/// The model for `config` with random weights in the config's `torch_dtype`: normal(0, 0.02)
/// matrices, unit norm weights, zero biases; quantized with the config's `quantization` block
/// when it has one.
pub fn random_weights_model(config: &ModelConfig, seed: u64) -> Result<Box<dyn LanguageModel>> {
    random_weights_model_sharded(config, seed, None)
}

/// [`random_weights_model`], sharded over `group` for tensor parallelism (every rank draws the
/// same full weights from `seed`, then keeps its slices).
pub fn random_weights_model_sharded(
    config: &ModelConfig,
    seed: u64,
    group: Option<&oxmx_core::distributed::Group>,
) -> Result<Box<dyn LanguageModel>> {
    let tied = config.tie_word_embeddings.unwrap_or(false);
    let mut model = build_model(config, tied)?;
    let dtype = config_dtype(config)?;
    random::seed(seed);
    model.visit_params_mut("", &mut |name: &str, a: &mut Array| {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let parent = name.rsplit('.').nth(1).unwrap_or("");
        if parent.contains("norm") || leaf == "bias" {
            *a = a.astype(dtype); // RMSNorm weights start at one, biases at zero
            return;
        }
        *a = random::normal(a.shape(), dtype, 0.0, 0.02, None);
    });
    if let Some(q) = config.quantization.as_ref().and_then(|q| q.default.as_ref()) {
        oxmx_nn::quantize(model.as_dyn_mut(), q.group_size, q.bits, &q.mode, None)?;
    }
    if let Some(g) = group {
        model.shard(g)?;
    }
    let params = model.parameters();
    let arrays: Vec<&Array> = params.values().collect();
    eval(&arrays)?;
    drop(arrays);
    drop(params);
    model.fuse_projections()?;
    Ok(model)
}

fn gb(bytes: usize) -> f64 {
    bytes as f64 / 1e9
}

/// One run over `prompts` (all of one length), generating `opts.generation_tokens` per prompt.
pub fn bench_run(model: &dyn LanguageModel, prompts: &[Vec<u32>], opts: &BenchOptions) -> Result<BenchResult> {
    if prompts.is_empty() || prompts[0].is_empty() || prompts.iter().any(|p| p.len() != prompts[0].len()) {
        return Err(Error::invalid("[bench] prompts must be non-empty and of one length"));
    }
    if opts.generation_tokens == 0 {
        return Err(Error::invalid("[bench] generation_tokens must be positive"));
    }
    let tic = Instant::now();
    if prompts.len() == 1 {
        let mut cache = make_prompt_cache(model, None);
        let gopts = GenerateOptions {
            max_tokens: Some(opts.generation_tokens),
            prefill_step_size: opts.prefill_step_size,
            kv_bits: opts.kv_bits,
            kv_group_size: opts.kv_group_size,
            quantized_kv_start: opts.quantized_kv_start,
            ..GenerateOptions::default()
        };
        let mut it = generate_step(model, &prompts[0], &mut cache, Sampler::greedy(), vec![], gopts)?;
        let mut tokens = Vec::with_capacity(opts.generation_tokens);
        for s in it.by_ref() {
            tokens.push(s?.token);
        }
        let st = it.stats().clone();
        return Ok(BenchResult {
            prompt_tps: st.prompt_tps,
            generation_tps: st.generation_tps,
            peak_memory: gb(st.peak_memory),
            total_time: tic.elapsed().as_secs_f64(),
            tokens,
        });
    }
    batch_run(model, prompts, opts, tic)
}

fn batch_run(model: &dyn LanguageModel, prompts: &[Vec<u32>], opts: &BenchOptions, tic: Instant) -> Result<BenchResult> {
    let (b, len) = (prompts.len(), prompts[0].len());
    let vocab = model.config().vocab_size;
    if let Some(&t) = prompts.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(Error::invalid(format!("[bench] prompt token {t} is outside the vocabulary ({vocab})")));
    }
    if opts.prefill_step_size == 0 {
        return Err(Error::invalid("[bench] prefill_step_size must be positive"));
    }
    let mut cache = make_prompt_cache(model, None);
    let quant = |cache: &mut [Box<dyn crate::cache::KvCache>]| {
        crate::cache::maybe_quantize_kv_cache(cache, opts.kv_bits, opts.kv_group_size, opts.quantized_kv_start)
    };
    if opts.kv_bits.is_some() {
        crate::generate::check_kv_options(
            model,
            &cache,
            &GenerateOptions { kv_bits: opts.kv_bits, kv_group_size: opts.kv_group_size, ..Default::default() },
        )?;
    }
    let cols = |s: usize, e: usize| -> Array {
        let ids: Vec<i32> = prompts.iter().flat_map(|p| p[s..e].iter().map(|&t| t as i32)).collect();
        Array::from_slice(&ids, &[b, e - s])
    };
    memory::reset_peak_memory();
    let start = Instant::now();
    let mut done = 0;
    while len - done > 1 {
        let n = (len - done - 1).min(opts.prefill_step_size);
        let _ = model.forward(&cols(done, done + n), Some(&mut cache));
        quant(&mut cache)?;
        eval_cache(&cache)?;
        memory::clear_cache();
        done += n;
    }
    let step = |x: &Array, cache: &mut [Box<dyn crate::cache::KvCache>]| -> Result<Array> {
        let logits = model.forward(x, Some(&mut *cache));
        quant(cache)?;
        let l = logits.shape()[1] as isize;
        let last = ops::slice_range(&logits, &[0, l - 1, 0], &[b as isize, l, vocab as isize]);
        Ok(ops::reshape(&ops::argmax(&last, Some(-1), false), &[b as isize, 1]).astype(Dtype::Int32))
    };
    let mut y = step(&cols(done, len), &mut cache)?;
    eval(&[&y])?;
    let prompt_time = start.elapsed().as_secs_f64();
    let first = Instant::now();
    for _ in 1..opts.generation_tokens {
        let next = step(&y, &mut cache)?;
        async_eval(&[&next]);
        eval(&[&y])?;
        y = next;
    }
    eval(&[&y])?;
    let gen_time = first.elapsed().as_secs_f64();
    Ok(BenchResult {
        prompt_tps: (b * len) as f64 / prompt_time.max(1e-9),
        generation_tps: if gen_time > 0.0 { (b * (opts.generation_tokens - 1)) as f64 / gen_time } else { 0.0 },
        peak_memory: gb(memory::peak_memory()),
        total_time: tic.elapsed().as_secs_f64(),
        tokens: vec![],
    })
}

/// The averages of mlx-lm's report keys over `results`.
pub fn average(results: &[BenchResult]) -> BenchResult {
    let n = results.len().max(1) as f64;
    let sum = |f: fn(&BenchResult) -> f64| results.iter().map(f).sum::<f64>() / n;
    BenchResult {
        prompt_tps: sum(|r| r.prompt_tps),
        generation_tps: sum(|r| r.generation_tps),
        peak_memory: sum(|r| r.peak_memory),
        total_time: sum(|r| r.total_time),
        tokens: results.last().map(|r| r.tokens.clone()).unwrap_or_default(),
    }
}
