//! Data and tensor parallelism across MPI ranks on this machine (2 and 4): each test starts
//! `mpirun` on this binary's ignored `worker_*` tests. Every rank also computes the
//! single-process answer itself (same seed, full batch, unsharded layers), so the oracle is
//! plain training and plain layers. Skips without Open MPI's `mpirun`, saying so.

#[path = "../../oxmx-core/tests/common/mpi.rs"]
mod mpi;

use mpi::{mpirun, run_ranks, WORKER_ENV};
use oxmx::distributed::{self as dist, Group};
use oxmx::nn::distributed::{average_gradients, shard_linear, Sharding};
use oxmx::nn::{self, losses, Embedding, Linear, Module, MultiHeadAttention, TransformerEncoder, TransformerOptions, UnaryModule};
use oxmx::optim::{Adam, Optimizer};
use oxmx::{ops, random, Array, Dtype};
use std::time::Duration;

#[test]
fn data_and_tensor_parallel_on_2_and_4_ranks() {
    if mpirun().is_none() {
        return;
    }
    for n in [2, 4] {
        let (ok, out, secs) = run_ranks(n, "worker_parallel", Duration::from_secs(600));
        assert!(ok, "{n} ranks failed:\n{out}");
        assert_eq!(out.matches("worker_parallel ok").count(), n, "every rank reports\n{out}");
        eprintln!("{n} ranks: data- and tensor-parallel checks in {secs:.1}s");
    }
}

/// A tiny causal transformer language model.
#[derive(nn::Module)]
struct TinyLm {
    embedding: Embedding,
    transformer: TransformerEncoder,
    out_proj: Linear,
}

const VOCAB: usize = 17;
const CONTEXT: usize = 8;
const BATCH: usize = 8;

impl TinyLm {
    fn new() -> TinyLm {
        let opts = TransformerOptions { mlp_dims: Some(32), ..Default::default() };
        TinyLm {
            embedding: Embedding::new(VOCAB, 16),
            transformer: TransformerEncoder::with_options(1, 16, 2, &opts).unwrap(),
            out_proj: Linear::new(16, VOCAB, true),
        }
    }
    fn loss(&self, x: &Array, y: &Array) -> Array {
        let mask = MultiHeadAttention::create_additive_causal_mask(x.shape()[1]);
        let logits = self.out_proj.forward(&self.transformer.forward(&self.embedding.forward(x), Some(&mask)));
        losses::cross_entropy(&logits, y, &losses::CrossEntropy { reduction: losses::Reduction::Mean, ..Default::default() })
    }
}

/// Step `step`'s full batch: the same on every rank.
fn batch(step: u64) -> (Array, Array) {
    let seq = random::randint(0, VOCAB as i64, &[BATCH, CONTEXT + 1], Dtype::Int32, Some(&random::key(1000 + step)));
    (
        ops::slice_range(&seq, &[0, 0], &[BATCH as isize, CONTEXT as isize]),
        ops::slice_range(&seq, &[0, 1], &[BATCH as isize, CONTEXT as isize + 1]),
    )
}

fn rows(a: &Array, rank: usize, n: usize) -> Array {
    let k = (a.shape()[0] / n) as isize;
    let mut hi: Vec<isize> = a.shape().iter().map(|&d| d as isize).collect();
    let mut lo = vec![0isize; a.ndim()];
    lo[0] = rank as isize * k;
    hi[0] = lo[0] + k;
    ops::slice_range(a, &lo, &hi)
}

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// Each rank trains on its share of every batch and averages the gradients; the loss curve
/// (mean over ranks of the shard losses) and the final weights match one process training on
/// the full batches.
fn data_parallel(g: &Group) {
    let (rank, n) = (g.rank(), g.size());
    random::seed(3);
    let mut dp = TinyLm::new();
    let mut full = TinyLm::new();
    full.update(&dp.parameters()).unwrap();
    let (mut opt_dp, mut opt_full) = (Adam::new(1e-2), Adam::new(1e-2));
    let mut curves = (vec![], vec![]);
    for step in 0..8 {
        let (x, y) = batch(step);
        let (loss, grads) = nn::value_and_grad(&mut dp, |m| m.loss(&rows(&x, rank, n), &rows(&y, rank, n))).unwrap();
        let grads = average_gradients(&grads, Some(g), 32 << 20).unwrap();
        opt_dp.update(&mut dp, &grads).unwrap();
        let mean_loss = &dist::all_sum(&loss, Some(g)) / n as f64;
        curves.0.push(mean_loss.item::<f32>().unwrap());
        let (loss, grads) = nn::value_and_grad(&mut full, |m| m.loss(&x, &y)).unwrap();
        opt_full.update(&mut full, &grads).unwrap();
        curves.1.push(loss.item::<f32>().unwrap());
    }
    for (a, b) in curves.0.iter().zip(&curves.1) {
        assert!(close(*a, *b, 1e-4), "rank {rank}: data-parallel losses {:?} vs full batch {:?}", curves.0, curves.1);
    }
    assert!(curves.1[7] < curves.1[0], "the loss goes down: {:?}", curves.1);
    let (p, q) = (dp.parameters(), full.parameters());
    for (k, a) in &p {
        let ok = ops::allclose(a, &q[k], 1e-3, 1e-4, false).item::<bool>().unwrap();
        assert!(ok, "rank {rank}: parameter {k} after data-parallel training differs from full-batch training");
    }
    // The trained weights are identical on every rank.
    let w = &p["out_proj.weight"];
    let spread = ops::max(&ops::abs(&(&dist::all_max(w, Some(g)) - &dist::all_min(w, Some(g)))), None, false).item::<f32>().unwrap();
    assert_eq!(spread, 0.0, "ranks hold the same weights");
}

/// An all-to-sharded layer followed by a sharded-to-all one equals the dense pair, forward and
/// backward (input and weight gradients), plain and 4-bit quantized.
fn tensor_parallel(g: &Group) {
    let (rank, n) = (g.rank(), g.size());
    random::seed(5);
    let l1 = Linear::new(128, 256, true);
    let l2 = Linear::new(256, 128, true);
    let x = random::normal(&[3, 128], Dtype::Float32, 0.0, 1.0, None);
    let dense = |a: &Linear, b: &Linear, x: &Array| ops::sum(&ops::square(&b.forward(&nn::activations::gelu(&a.forward(x)))), None, false);
    let s1 = shard_linear(&l1, Sharding::AllToSharded, 1, g).unwrap();
    let s2 = shard_linear(&l2, Sharding::ShardedToAll, 1, g).unwrap();
    assert_eq!(s1.weight.shape(), &[256 / n, 128]);
    assert_eq!(s2.weight.shape(), &[128, 256 / n]);
    let want = dense(&l1, &l2, &x);
    let got = dense(&s1, &s2, &x);
    assert!(close(got.item::<f32>().unwrap(), want.item::<f32>().unwrap(), 1e-4), "rank {rank}: sharded {got} vs dense {want}");
    // Gradients with respect to the input (replicated: sum_gradients collects every rank's part)
    // and to the weights (this rank's slice of the dense gradient).
    let gx = |a: &Linear, b: &Linear| oxmx::grad(|v: Vec<Array>| dense(a, b, &v[0]))(vec![x.clone()]).remove(0);
    assert!(ops::allclose(&gx(&s1, &s2), &gx(&l1, &l2), 1e-4, 1e-4, false).item::<bool>().unwrap(), "rank {rank}: input gradient");
    let mut pair_dense = (l1.clone(), l2.clone());
    let mut pair_sharded = (s1.clone(), s2.clone());
    #[derive(nn::Module, Clone)]
    struct Pair {
        a: Linear,
        b: Linear,
    }
    let mut pd = Pair { a: pair_dense.0.clone(), b: pair_dense.1.clone() };
    let mut ps = Pair { a: pair_sharded.0.clone(), b: pair_sharded.1.clone() };
    let (_, gd) = nn::value_and_grad(&mut pd, |m| dense(&m.a, &m.b, &x)).unwrap();
    let (_, gs) = nn::value_and_grad(&mut ps, |m| dense(&m.a, &m.b, &x)).unwrap();
    let block = |a: &Array, axis: usize| {
        let k = a.shape()[axis] / n;
        let mut lo = vec![0isize; a.ndim()];
        let mut hi: Vec<isize> = a.shape().iter().map(|&d| d as isize).collect();
        lo[axis] = (rank * k) as isize;
        hi[axis] = lo[axis] + k as isize;
        ops::slice_range(a, &lo, &hi)
    };
    for (k, want) in [
        ("a.weight", block(&gd["a.weight"], 0)),
        ("a.bias", block(&gd["a.bias"], 0)),
        ("b.weight", block(&gd["b.weight"], 1)),
        ("b.bias", gd["b.bias"].clone()),
    ] {
        assert!(ops::allclose(&gs[k], &want, 1e-4, 1e-4, false).item::<bool>().unwrap(), "rank {rank}: gradient of {k}");
    }
    pair_dense.0 = l1.to_quantized(32, 4, "affine").unwrap();
    pair_dense.1 = l2.to_quantized(32, 4, "affine").unwrap();
    pair_sharded.0 = shard_linear(&pair_dense.0, Sharding::AllToSharded, 1, g).unwrap();
    pair_sharded.1 = shard_linear(&pair_dense.1, Sharding::ShardedToAll, 1, g).unwrap();
    let (want, got) = (dense(&pair_dense.0, &pair_dense.1, &x), dense(&pair_sharded.0, &pair_sharded.1, &x));
    assert!(close(got.item::<f32>().unwrap(), want.item::<f32>().unwrap(), 1e-4), "rank {rank}: quantized sharded {got} vs {want}");
    // A fused q/k/v-style weight: 3 segments, each split across ranks.
    let qkv = Linear::new(16, 3 * 8 * n, false);
    let s = shard_linear(&qkv, Sharding::AllToSharded, 3, g).unwrap();
    let y = qkv.forward(&first_cols(&x, 16));
    let parts: Vec<Array> =
        (0..3).map(|k| block(&ops::slice_range(&y, &[0, (k * 8 * n) as isize], &[3, ((k + 1) * 8 * n) as isize]), 1)).collect();
    let ys = s.forward(&first_cols(&x, 16));
    assert!(ops::allclose(&ys, &ops::concatenate(&parts, 1), 1e-5, 1e-5, false).item::<bool>().unwrap(), "rank {rank}: segments");
}

/// The first `d` features of each row.
fn first_cols(a: &Array, d: usize) -> Array {
    ops::slice_range(a, &[0, 0], &[a.shape()[0] as isize, d as isize])
}

#[test]
#[ignore]
fn worker_parallel() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let g = dist::init(true, "mpi").expect("MPI starts under mpirun");
    data_parallel(&g);
    tensor_parallel(&g);
    println!("worker_parallel ok rank {}", g.rank());
}
