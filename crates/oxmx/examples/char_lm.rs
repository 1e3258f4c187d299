//! A small character-level transformer language model trained on the Apache-2.0 licence text
//! shipped in the repository (LICENSE-APACHE), until its validation loss falls below a target.
//! Structure as MLX's transformer_lm example: token + learned position embeddings, a pre-norm
//! causal TransformerEncoder, and a linear head; AdamW; cross entropy per character (nats).
//!
//! cargo run --release -p oxmx --example char_lm

use oxmx::nn::{self, losses, Embedding, Linear, Module, MultiHeadAttention, TransformerEncoder, TransformerOptions, UnaryModule};
use oxmx::optim::{AdamW, Optimizer};
use oxmx::{ops, random, Array, Dtype};
use std::time::Instant;

/// Validation loss (nats per character) at which training stops. A character unigram model of
/// this text scores about 3.0; the bigram statistics about 2.4.
const TARGET_LOSS: f32 = 1.6;
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

fn main() -> oxmx::Result<()> {
    random::seed(0);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../LICENSE-APACHE");
    let text = std::fs::read_to_string(path).map_err(|e| oxmx::Error::invalid(format!("{path}: {e}")))?;
    let mut vocab: Vec<char> = text.chars().collect();
    vocab.sort_unstable();
    vocab.dedup();
    let ids: Vec<i32> = text.chars().map(|c| vocab.binary_search(&c).unwrap() as i32).collect();
    let split = ids.len() * 9 / 10;
    let (train, valid) = (Array::vec(&ids[..split]), Array::vec(&ids[split..]));
    println!("{} characters, vocabulary {}", ids.len(), vocab.len());

    let mut model = CharLm::new(vocab.len(), 128, 4, 2)?;
    let mut opt = AdamW::new(3e-3).weight_decay(0.01);
    let start = Instant::now();
    for step in 1..=3000 {
        let (x, y) = batch(&train, split);
        let (loss, grads) = nn::value_and_grad(&mut model, |m| loss_fn(m, &x, &y))?;
        opt.update(&mut model, &grads)?;
        oxmx::optim::eval_step(&model, &opt, &[&loss])?;
        if step % 50 == 0 {
            model.set_eval();
            let (vx, vy) = batch(&valid, ids.len() - split);
            let v = loss_fn(&model, &vx, &vy).item::<f32>()?;
            model.train(true);
            println!("step {step}: train {:.3}, valid {v:.3} nats/char, {:.1} s", loss.item::<f32>()?, start.elapsed().as_secs_f64());
            if v < TARGET_LOSS {
                println!("validation loss {v:.3} < {TARGET_LOSS}: done");
                return Ok(());
            }
        }
    }
    Err(oxmx::Error::invalid(format!("validation loss did not reach {TARGET_LOSS}")))
}
