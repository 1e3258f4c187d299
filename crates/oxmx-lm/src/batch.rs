//! Batched generation (mlx-lm's `batch_generate`): several prompts decoded together, one
//! forward pass per step for the whole batch. Each prompt runs alone to its first token, then
//! joins the server's batch cache (rows right-aligned, each rotated at its own positions, so a
//! sequence computes what it would alone); every row samples with its own sampler (seeded rows
//! get `seed + row`) and leaves the batch when it finishes.
//!
//! Models the batch cache cannot hold (sliding windows, model-made caches) and KV quantization
//! run the prompts one after another through plain generation, with the same results.

use crate::cache::{make_prompt_cache, KvCache, PromptCache};
use crate::generate::{check_inputs, generate_step, prefill_but_last, FinishReason, GenerateOptions, GenerationStats};
use crate::models::LanguageModel;
use crate::sample::{Sampler, SamplerConfig};
use crate::server::batch_cache::{join_rows, model_fits_batch_cache, BatchLayer};
use oxmx_core::{eval, memory, ops, Array, Error, Result};
use std::time::Instant;

/// What [`batch_generate`] returns, one entry per prompt in order.
#[derive(Clone, Debug)]
pub struct BatchOutput {
    /// Generated ids (an EOS that ended a row included).
    pub tokens: Vec<Vec<u32>>,
    pub finish_reasons: Vec<FinishReason>,
    /// All prompts' tokens over the time to every prompt's first token; the later tokens over
    /// the batched decoding time.
    pub stats: GenerationStats,
}

fn row_sampler(config: &SamplerConfig, row: usize) -> Result<Sampler> {
    Sampler::new(SamplerConfig { seed: config.seed.map(|s| s.wrapping_add(row as u64)), ..config.clone() })
}

/// Generates after every prompt in `prompts` (`opts.max_tokens` each, stopping a row at an EOS).
pub fn batch_generate(
    model: &dyn LanguageModel,
    prompts: &[Vec<u32>],
    sampler: &SamplerConfig,
    opts: GenerateOptions,
) -> Result<BatchOutput> {
    if prompts.is_empty() {
        return Err(Error::invalid("[batch_generate] no prompts were given"));
    }
    for (i, p) in prompts.iter().enumerate() {
        check_inputs(model, p, &make_prompt_cache(model, None), &opts)
            .map_err(|e| Error::invalid(format!("[batch_generate] prompt {i}: {}", e.message())))?;
    }
    if opts.kv_bits.is_some() || !model_fits_batch_cache(model) {
        return one_by_one(model, prompts, sampler, opts);
    }
    let started = Instant::now();
    memory::reset_peak_memory();
    let layers: Vec<BatchLayer> = (0..model.num_layers()).map(|_| BatchLayer::default()).collect();
    let mut batch_cache: PromptCache = layers.iter().map(|l| Box::new(l.clone()) as Box<dyn KvCache>).collect();
    let mut tokens = vec![Vec::new(); prompts.len()];
    let mut finish = vec![FinishReason::Length; prompts.len()];
    let mut stats = GenerationStats { prompt_tokens: prompts.iter().map(Vec::len).sum(), ..Default::default() };
    // Each prompt runs alone to its first token (its cache then holds the whole prompt), then
    // joins the batch. Rows: (prompt index, sampler, last token).
    let mut rows: Vec<(usize, Sampler, u32)> = Vec::with_capacity(prompts.len());
    if opts.max_tokens != Some(0) {
        for (i, p) in prompts.iter().enumerate() {
            let mut cache = make_prompt_cache(model, None);
            let last = prefill_but_last(model, &mut cache, p, &opts)?;
            let logits = model.forward(&Array::from_slice(&[last as i32], &[1, 1]), Some(&mut cache));
            let v = logits.shape().last().copied().unwrap_or(0) as isize;
            let row = ops::reshape(&logits, &[1, v]);
            let mut sampler = row_sampler(sampler, i)?;
            let t = sampler.sample(&(&row - &ops::logsumexp(&row, -1isize, true)));
            eval(&[&t])?;
            let t = t.to_vec::<u32>()?[0];
            tokens[i].push(t);
            match opts.finish_reason(t, 1) {
                Some(r) => finish[i] = r,
                None => {
                    join_rows(&layers, &cache)?;
                    rows.push((i, sampler, t));
                }
            }
        }
    }
    let first_at = Instant::now();
    stats.prompt_time = (first_at - started).as_secs_f64();
    stats.prompt_tps = stats.prompt_tokens as f64 / stats.prompt_time.max(1e-9);
    let mut steps = 0usize;
    while !rows.is_empty() && opts.max_tokens != Some(0) {
        let b = rows.len();
        let ids: Vec<i32> = rows.iter().map(|r| r.2 as i32).collect();
        let logits = model.forward(&Array::from_slice(&ids, &[b, 1]), Some(&mut batch_cache));
        let v = logits.shape().last().copied().unwrap_or(0) as isize;
        let logits = ops::reshape(&logits, &[b as isize, v]);
        let next: Vec<Array> = rows
            .iter_mut()
            .enumerate()
            .map(|(j, r)| {
                let row = ops::slice_range(&logits, &[j as isize, 0], &[j as isize + 1, v]);
                r.1.sample(&(&row - &ops::logsumexp(&row, -1isize, true)))
            })
            .collect();
        eval(&next.iter().collect::<Vec<_>>())?;
        let mut done = Vec::new();
        for (j, (r, t)) in rows.iter_mut().zip(&next).enumerate() {
            let t = t.to_vec::<u32>()?[0];
            tokens[r.0].push(t);
            r.2 = t;
            if let Some(reason) = opts.finish_reason(t, tokens[r.0].len()) {
                finish[r.0] = reason;
                done.push(j);
            }
        }
        if !done.is_empty() {
            for l in &layers {
                l.remove_rows(&done);
            }
            let mut j = 0;
            rows.retain(|_| {
                let keep = !done.contains(&j);
                j += 1;
                keep
            });
        }
        steps += 1;
        if steps % 256 == 0 {
            memory::clear_cache();
        }
    }
    let generated: usize = tokens.iter().map(Vec::len).sum();
    stats.generation_tokens = generated;
    stats.generation_time = first_at.elapsed().as_secs_f64();
    // Tokens after each row's first, as a single sequence's figure counts them.
    let after_first = generated.saturating_sub(prompts.len());
    stats.generation_tps = if stats.generation_time > 0.0 { after_first as f64 / stats.generation_time } else { 0.0 };
    stats.peak_memory = memory::peak_memory();
    Ok(BatchOutput { tokens, finish_reasons: finish, stats })
}

/// The prompts one after another through plain generation (what the batch cache cannot hold).
fn one_by_one(model: &dyn LanguageModel, prompts: &[Vec<u32>], sampler: &SamplerConfig, opts: GenerateOptions) -> Result<BatchOutput> {
    let mut out = BatchOutput { tokens: Vec::new(), finish_reasons: Vec::new(), stats: GenerationStats::default() };
    let (mut prompt_time, mut gen_time) = (0.0, 0.0);
    for (i, p) in prompts.iter().enumerate() {
        let mut cache = make_prompt_cache(model, None);
        let mut it = generate_step(model, p, &mut cache, row_sampler(sampler, i)?, vec![], opts.clone())?;
        let (mut ids, mut reason) = (Vec::new(), FinishReason::Length);
        for s in it.by_ref() {
            let s = s?;
            ids.push(s.token);
            if let Some(r) = s.finish_reason {
                reason = r;
            }
        }
        let st = it.stats();
        prompt_time += st.prompt_time;
        gen_time += st.generation_time;
        out.stats.peak_memory = out.stats.peak_memory.max(st.peak_memory);
        out.tokens.push(ids);
        out.finish_reasons.push(reason);
    }
    let s = &mut out.stats;
    s.prompt_tokens = prompts.iter().map(Vec::len).sum();
    s.prompt_time = prompt_time;
    s.prompt_tps = s.prompt_tokens as f64 / prompt_time.max(1e-9);
    s.generation_tokens = out.tokens.iter().map(Vec::len).sum();
    s.generation_time = gen_time;
    s.generation_tps = if gen_time > 0.0 { s.generation_tokens.saturating_sub(prompts.len()) as f64 / gen_time } else { 0.0 };
    Ok(out)
}
