//! The training loop of mlx-lm's `tuner/trainer.py`: masked cross-entropy, gradient
//! accumulation, periodic reports, validation and adapter checkpoints.

use super::apply::save_adapters;
use super::data::{iterate_batches, Dataset};
use crate::models::LanguageModel;
use crate::perplexity::token_losses;
use oxmx_core::{memory, ops, Array, Dtype, Error, Result};
use oxmx_nn::{Module, Params};
use oxmx_optim::Optimizer;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The loop's settings (mlx-lm's `TrainingArgs`).
#[derive(Clone, Debug)]
pub struct TrainingArgs {
    pub batch_size: usize,
    pub iters: usize,
    /// Validation batches per evaluation; -1: the whole set.
    pub val_batches: i64,
    pub steps_per_report: usize,
    pub steps_per_eval: usize,
    pub steps_per_save: usize,
    pub max_seq_length: usize,
    /// `adapters.safetensors`; checkpoints go beside it as `{iter:07}_adapters.safetensors`.
    pub adapter_file: PathBuf,
    pub grad_accumulation_steps: usize,
    /// Recompute each block's activations in the backward pass (`super::checkpoint`).
    pub grad_checkpoint: bool,
    /// Shuffles the order of the batches.
    pub seed: u64,
}

/// What the loop reports while it runs.
#[derive(Clone, Debug)]
pub enum Report {
    /// Every `steps_per_report` iterations and at the last one; averages since the last report.
    Train {
        iteration: usize,
        train_loss: f64,
        learning_rate: f32,
        it_per_sec: f64,
        tokens_per_sec: f64,
        trained_tokens: u64,
        peak_memory_gb: f64,
    },
    /// At the first iteration, every `steps_per_eval` and at the last one.
    Val {
        iteration: usize,
        val_loss: f64,
        val_time: f64,
    },
    Saved(PathBuf),
    /// Some examples were longer than `max_seq_length` and were cut.
    Truncated {
        longest: usize,
        limit: usize,
    },
}

/// mlx-lm's `default_loss`: the mean cross-entropy of predicting `tokens[:, 1:]` over the
/// positions `offset <= step <= length` (steps count from 1), and that token count. The bound
/// includes `length` itself as mlx-lm's does, i.e. one padding target after each sequence (when
/// there is room for it), so that losses and trained-token counts compare with mlx-lm's.
pub fn default_loss(model: &dyn LanguageModel, tokens: &Array, lengths: &Array) -> (Array, Array) {
    let ce = token_losses(model, tokens);
    let (b, t) = (tokens.shape()[0] as isize, tokens.shape().get(1).copied().unwrap_or(0) as f64);
    let steps = ops::arange(1.0, t, 1.0, Some(Dtype::Int32));
    let offset = ops::slice_range(lengths, &[0, 0], &[b, 1]);
    let length = ops::slice_range(lengths, &[0, 1], &[b, 2]);
    let mask = ops::logical_and(ops::greater_equal(&steps, &offset), ops::less_equal(&steps, &length)).astype(Dtype::Float32);
    let ntoks = ops::sum(&mask, None, false);
    let loss = &ops::sum(&(&ce * &mask), None, false) / &ntoks;
    (loss, ntoks)
}

/// Mean loss per target token over `num_batches` batches (-1: all of `data`), in eval mode.
pub fn evaluate(model: &mut dyn LanguageModel, data: &Dataset, batch_size: usize, num_batches: i64, max_seq_length: usize) -> Result<f64> {
    model.set_eval();
    let take = if num_batches < 0 { usize::MAX } else { num_batches as usize };
    let (mut total, mut ntoks) = (0.0f64, 0.0f64);
    for batch in iterate_batches(data, batch_size, max_seq_length, false, 0)?.take(take) {
        let (loss, toks) = default_loss(model, &batch.tokens, &batch.lengths);
        oxmx_core::eval(&[&loss, &toks])?;
        let n = toks.item::<f32>()? as f64;
        total += loss.item::<f32>()? as f64 * n;
        ntoks += n;
    }
    if ntoks == 0.0 {
        return Err(Error::invalid("[evaluate] no target tokens: the set is empty or every example is masked"));
    }
    Ok(total / ntoks)
}

fn add_grads(a: Params, b: &Params) -> Params {
    a.into_iter().map(|(k, v)| (k.clone(), b.get(&k).map_or(v.clone(), |w| &v + w))).collect()
}

fn save_checkpoint(model: &dyn Module, file: &Path, it: usize) -> Result<PathBuf> {
    save_adapters(model, file)?;
    let ckpt = file.parent().unwrap_or(Path::new(".")).join(format!("{it:07}_adapters.safetensors"));
    save_adapters(model, &ckpt)?;
    Ok(ckpt)
}

/// mlx-lm's `train`: `iters` optimizer steps over looping batches of `train_set`, validation on
/// `valid` when given, checkpoints every `steps_per_save`, and the final adapters written to
/// `adapter_file`. The model must already be set up (`setup_training`).
pub fn train(
    model: &mut dyn LanguageModel,
    opt: &mut dyn Optimizer,
    train_set: &Dataset,
    valid: Option<&Dataset>,
    args: &TrainingArgs,
    report: &mut dyn FnMut(Report),
) -> Result<()> {
    if args.grad_accumulation_steps == 0 {
        return Err(Error::invalid("[train] grad_accumulation_steps must be at least 1"));
    }
    if model.trainable_parameters().is_empty() {
        return Err(Error::invalid("[train] the model has no trainable parameters"));
    }
    let valid = valid.filter(|v| !v.is_empty());
    let mut batches = iterate_batches(train_set, args.batch_size, args.max_seq_length, true, args.seed)?;
    model.train(true);
    memory::reset_peak_memory();
    let (mut losses, mut n_tokens, mut steps, mut trained_tokens, mut train_time) = (0.0f64, 0u64, 0usize, 0u64, 0.0f64);
    let mut accumulated: Option<Params> = None;
    let mut warned = false;
    for it in 1..=args.iters {
        let batch = batches.next().ok_or_else(|| Error::invalid("[train] the batch iterator ended"))?;
        if batch.truncated > 0 && !warned {
            warned = true;
            let longest_example = train_set.examples.iter().map(|e| e.0.len()).max().unwrap_or(0);
            report(Report::Truncated { longest: longest_example, limit: args.max_seq_length });
        }
        if let Some(v) = valid {
            if it == 1 || it % args.steps_per_eval == 0 || it == args.iters {
                let tic = Instant::now();
                let val_loss = evaluate(model, v, args.batch_size, args.val_batches, args.max_seq_length)?;
                model.train(true);
                report(Report::Val { iteration: it, val_loss, val_time: tic.elapsed().as_secs_f64() });
            }
        }
        let tic = Instant::now();
        let (tokens, lengths) = (batch.tokens.clone(), batch.lengths.clone());
        let checkpointing = super::checkpoint::scoped(args.grad_checkpoint);
        let ((loss, toks), grads) = oxmx_nn::value_and_grad(model, |m| default_loss(m, &tokens, &lengths))?;
        drop(checkpointing);
        let grads = match accumulated.take() {
            Some(prev) => add_grads(grads, &prev),
            None => grads,
        };
        if it % args.grad_accumulation_steps == 0 {
            let k = args.grad_accumulation_steps as f64;
            let grads = if k > 1.0 { grads.into_iter().map(|(n, g)| (n, g * (1.0 / k))).collect() } else { grads };
            opt.update(model.as_dyn_mut(), &grads)?;
        } else {
            accumulated = Some(grads);
        }
        let mut extra: Vec<&Array> = vec![&loss, &toks];
        if let Some(a) = &accumulated {
            extra.extend(a.values());
        }
        oxmx_optim::eval_step(model.as_dyn(), opt, &extra)?;
        let l = loss.item::<f32>()? as f64;
        if !l.is_finite() {
            return Err(Error::invalid(format!("[train] the loss is {l} at iteration {it}; lower the learning rate")));
        }
        losses += l;
        n_tokens += toks.item::<f32>()? as u64;
        steps += 1;
        train_time += tic.elapsed().as_secs_f64();

        if it % args.steps_per_report == 0 || it == args.iters {
            trained_tokens += n_tokens;
            report(Report::Train {
                iteration: it,
                train_loss: losses / steps as f64,
                learning_rate: opt.learning_rate(),
                it_per_sec: steps as f64 / train_time,
                tokens_per_sec: n_tokens as f64 / train_time,
                trained_tokens,
                peak_memory_gb: memory::peak_memory() as f64 / 1e9,
            });
            (losses, n_tokens, steps, train_time) = (0.0, 0, 0, 0.0);
        }
        if it % args.steps_per_save == 0 {
            report(Report::Saved(save_checkpoint(model.as_dyn(), &args.adapter_file, it)?));
        }
    }
    save_adapters(model.as_dyn(), &args.adapter_file)?;
    report(Report::Saved(args.adapter_file.clone()));
    Ok(())
}
