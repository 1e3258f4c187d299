//! Training-step workloads over oxmx-nn and oxmx-optim: one step = forward, backward, optimizer
//! update and evaluation of the new parameters and optimizer state. Mirrored in scripts/bench.py
//! (`train_*`) for PyTorch and MLX.

use crate::report;
use oxmx_core::prelude::*;
use oxmx_core::{random, Dtype};
use oxmx_nn::losses::{cross_entropy, CrossEntropy, Reduction};
use oxmx_nn::{self as nn, Embedding, Linear, Module, MultiHeadAttention, TransformerEncoder, TransformerOptions, UnaryModule};
use oxmx_optim::{AdamW, Optimizer, SGD};
use std::time::Instant;

#[derive(nn::Module)]
struct Mlp {
    layers: Vec<Linear>,
}

#[derive(nn::Module)]
struct TinyLm {
    embedding: Embedding,
    positions: Embedding,
    transformer: TransformerEncoder,
    out_proj: Linear,
}

fn mean_ce(logits: &Array, y: &Array) -> Array {
    cross_entropy(logits, y, &CrossEntropy { reduction: Reduction::Mean, ..Default::default() })
}

fn mlp_loss(m: &Mlp, x: &Array, y: &Array) -> Array {
    let (last, hidden) = m.layers.split_last().unwrap();
    let h = hidden.iter().fold(x.clone(), |h, l| nn::activations::relu(&l.forward(&h)));
    mean_ce(&last.forward(&h), y)
}

fn lm_loss(m: &TinyLm, x: &Array, y: &Array, mask: &Array) -> Array {
    let pos = ops::arange(0.0, x.shape()[1] as f64, 1.0, Some(Dtype::Int32));
    let h = m.embedding.forward(x) + m.positions.forward(&pos);
    mean_ce(&m.out_proj.forward(&m.transformer.forward(&h, Some(mask))), y)
}

/// Median seconds of `steps` training steps after two warm-up steps.
fn time_steps<M: Module>(model: &mut M, opt: &mut dyn Optimizer, steps: usize, loss: impl Fn(&M) -> Array) -> f64 {
    let mut step = |model: &mut M| {
        let (l, grads) = nn::value_and_grad(model, &loss).expect("value_and_grad");
        opt.update(model, &grads).expect("optimizer update");
        oxmx_optim::eval_step(&*model, &*opt, &[&l]).expect("training step failed");
    };
    step(model);
    step(model);
    let mut t: Vec<f64> = (0..steps)
        .map(|_| {
            let st = Instant::now();
            step(model);
            st.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

/// MLP 784→512→512→10 (ReLU), batch 256, cross entropy, SGD.
pub const MLP_TRAIN: [usize; 4] = [784, 512, 512, 10];
/// Transformer LM: vocab 96, context 64, dims 128, 4 heads, 2 pre-norm layers, MLP 512, batch 32.
pub const LM: (usize, usize, usize, usize, usize, usize) = (96, 64, 128, 4, 2, 32);

pub fn run(want: &dyn Fn(&str) -> bool) {
    random::seed(0);
    if want("train_mlp") {
        let mut m = Mlp { layers: MLP_TRAIN.windows(2).map(|d| Linear::new(d[0], d[1], true)).collect() };
        let x = random::normal(&[256, MLP_TRAIN[0]], Dtype::Float32, 0.0, 1.0, None);
        let y = random::randint(0, 10, &[256], Dtype::Int32, None);
        oxmx_core::eval(&[&x, &y]).unwrap();
        let mut opt = SGD::new(0.01);
        let flops: f64 = MLP_TRAIN.windows(2).map(|d| 6.0 * (256 * d[0] * d[1]) as f64).sum();
        let t = time_steps(&mut m, &mut opt, 20, |m| mlp_loss(m, &x, &y));
        report("train_mlp_step_b256_784x512x512x10", t, 0.0, flops);
    }
    if want("train_transformer") {
        let (vocab, ctx, dims, heads, layers, batch) = LM;
        let opts = TransformerOptions { mlp_dims: Some(4 * dims), ..Default::default() };
        let mut m = TinyLm {
            embedding: Embedding::new(vocab, dims),
            positions: Embedding::new(ctx, dims),
            transformer: TransformerEncoder::with_options(layers, dims, heads, &opts).unwrap(),
            out_proj: Linear::new(dims, vocab, true),
        };
        let x = random::randint(0, vocab as i64, &[batch, ctx], Dtype::Int32, None);
        let y = random::randint(0, vocab as i64, &[batch, ctx], Dtype::Int32, None);
        let mask = MultiHeadAttention::create_additive_causal_mask(ctx);
        oxmx_core::eval(&[&x, &y, &mask]).unwrap();
        let mut opt = AdamW::new(1e-3);
        let t = time_steps(&mut m, &mut opt, 20, |m| lm_loss(m, &x, &y, &mask));
        report("train_transformer_step_b32_l64_d128x2", t, 0.0, 0.0);
    }
}
