//! A small character-level transformer language model trained on the Apache-2.0 licence text
//! shipped in the repository (LICENSE-APACHE), until its training loss (a running average) falls
//! below a target; the loss on the held-out last tenth is printed beside it.
//! Structure as MLX's transformer_lm example: token + learned position embeddings, a pre-norm
//! causal TransformerEncoder, and a linear head; AdamW; cross entropy per character (nats).
//!
//! cargo run --release -p oxmx --example char_lm
//!
//! Data-parallel across N processes (each rank trains on its share of every batch and the
//! gradients are averaged, so the run follows the single-process one):
//! `oxmx launch -n 2 -- target/release/examples/char_lm`

use oxmx::nn::distributed::average_gradients;
use oxmx::nn::{self, losses, Embedding, Linear, Module, MultiHeadAttention, TransformerEncoder, TransformerOptions, UnaryModule};
use oxmx::optim::{AdamW, Optimizer};
use oxmx::{ops, random, Array, Dtype};
use std::time::Instant;

/// Running-average training loss (nats per character) at which training stops. A character
/// unigram model of this text scores about 3.0 and bigram statistics about 2.4, so the model
/// must use its context to get there. (PyTorch with the same model and optimizer gets there in
/// about the same number of steps.)
const TARGET_LOSS: f32 = 1.2;
const CONTEXT: usize = 64;
const BATCH: usize = 32;

#[derive(nn::Module)]
struct CharLm {
    embedding: Embedding,
    positions: Embedding,
    transformer: TransformerEncoder,
    out_proj: Linear,
}

impl CharLm {
    fn new(vocab: usize, dims: usize, heads: usize, layers: usize) -> oxmx::Result<CharLm> {
        let opts = TransformerOptions { mlp_dims: Some(4 * dims), ..Default::default() };
        Ok(CharLm {
            embedding: Embedding::new(vocab, dims),
            positions: Embedding::new(CONTEXT, dims),
            transformer: TransformerEncoder::with_options(layers, dims, heads, &opts)?,
            out_proj: Linear::new(dims, vocab, true),
        })
    }

    fn forward(&self, tokens: &Array) -> Array {
        let len = tokens.shape()[1];
        let pos = ops::arange(0.0, len as f64, 1.0, Some(Dtype::Int32));
        let x = self.embedding.forward(tokens) + self.positions.forward(&pos);
        let mask = MultiHeadAttention::create_additive_causal_mask(len);
        self.out_proj.forward(&self.transformer.forward(&x, Some(&mask)))
    }
}

fn loss_fn(model: &CharLm, x: &Array, y: &Array) -> Array {
    losses::cross_entropy(&model.forward(x), y, &losses::CrossEntropy { reduction: losses::Reduction::Mean, ..Default::default() })
}

/// `BATCH` random windows of `data` (inputs and next-character targets).
fn batch(data: &Array, n: usize) -> (Array, Array) {
    let starts = random::randint(0, (n - CONTEXT - 1) as i64, &[BATCH, 1], Dtype::Int32, None);
    let idx = starts + ops::arange(0.0, CONTEXT as f64, 1.0, Some(Dtype::Int32));
    (ops::take(data, &idx, None), ops::take(data, &(idx + 1), None))
}

/// This rank's share of the batch's rows.
fn shard(a: &Array, rank: usize, n: usize) -> Array {
    let k = (BATCH / n) as isize;
    oxmx::ops::slice_range(a, &[rank as isize * k, 0], &[(rank as isize + 1) * k, CONTEXT as isize])
}

fn main() -> oxmx::Result<()> {
    // Alone: a group of one. Under `oxmx launch`: every rank draws the same model and batches
    // (same seed) and trains on its share.
    let group = oxmx::distributed::init(false, "any")?;
    let (rank, n) = (group.rank(), group.size());
    if BATCH % n != 0 {
        return Err(oxmx::Error::invalid(format!("the batch of {BATCH} does not split across {n} ranks")));
    }
    let say = |s: String| {
        if rank == 0 {
            println!("{s}")
        }
    };
    random::seed(0);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../LICENSE-APACHE");
    let text = std::fs::read_to_string(path).map_err(|e| oxmx::Error::invalid(format!("{path}: {e}")))?;
    let mut vocab: Vec<char> = text.chars().collect();
    vocab.sort_unstable();
    vocab.dedup();
    let ids: Vec<i32> = text.chars().map(|c| vocab.binary_search(&c).unwrap() as i32).collect();
    let split = ids.len() * 9 / 10;
    let (train, valid) = (Array::vec(&ids[..split]), Array::vec(&ids[split..]));
    say(format!("{} characters, vocabulary {}, {n} rank(s)", ids.len(), vocab.len()));

    let mut model = CharLm::new(vocab.len(), 64, 4, 2)?;
    // MLX's AdamW skips bias correction by default; at this learning rate its oversized first
    // steps leave the model stuck at bigram statistics, so turn it on (as PyTorch always does).
    let mut opt = AdamW::new(1e-2).weight_decay(0.01).bias_correction(true);
    let start = Instant::now();
    let mut running = f32::NAN;
    for step in 1..=3000 {
        let (x, y) = batch(&train, split);
        let (x, y) = (shard(&x, rank, n), shard(&y, rank, n));
        let (loss, grads) = nn::value_and_grad(&mut model, |m| loss_fn(m, &x, &y))?;
        let grads = average_gradients(&grads, Some(&group), 32 << 20)?;
        opt.update(&mut model, &grads)?;
        let loss = &oxmx::distributed::all_sum(&loss, Some(&group)) / n as f64;
        oxmx::optim::eval_step(&model, &opt, &[&loss])?;
        let l = loss.item::<f32>()?;
        running = if running.is_nan() { l } else { 0.9 * running + 0.1 * l };
        if step % 50 == 0 || running < TARGET_LOSS {
            model.set_eval();
            let (vx, vy) = batch(&valid, ids.len() - split);
            let v = loss_fn(&model, &vx, &vy).item::<f32>()?;
            model.train(true);
            say(format!("step {step}: train {running:.3}, held-out {v:.3} nats/char, {:.1} s", start.elapsed().as_secs_f64()));
        }
        if running < TARGET_LOSS {
            say(format!("training loss {running:.3} < {TARGET_LOSS} after {step} steps, {:.1} s", start.elapsed().as_secs_f64()));
            return Ok(());
        }
    }
    Err(oxmx::Error::invalid(format!("training loss did not reach {TARGET_LOSS}")))
}
