//! The MLP classifier of MLX's walk-through, on synthetic data: 10 Gaussian clusters in 64
//! dimensions, a 2-hidden-layer ReLU MLP, cross entropy, SGD. Prints loss and accuracy per epoch.
//!
//! cargo run --release -p oxmx --example mlp

use oxmx::nn::{self, losses, Linear, UnaryModule};
use oxmx::optim::{Optimizer, SGD};
use oxmx::{ops, random, Array, Dtype};
use std::time::Instant;

#[derive(nn::Module)]
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn new(num_layers: usize, input_dim: usize, hidden_dim: usize, output_dim: usize) -> Mlp {
        let mut dims = vec![input_dim];
        dims.extend(std::iter::repeat_n(hidden_dim, num_layers));
        dims.push(output_dim);
        Mlp { layers: dims.windows(2).map(|d| Linear::new(d[0], d[1], true)).collect() }
    }

    fn forward(&self, x: &Array) -> Array {
        let (last, hidden) = self.layers.split_last().expect("at least one layer");
        let h = hidden.iter().fold(x.clone(), |h, l| nn::activations::relu(&l.forward(&h)));
        last.forward(&h)
    }
}

fn loss_fn(model: &Mlp, x: &Array, y: &Array) -> Array {
    losses::cross_entropy(&model.forward(x), y, &losses::CrossEntropy { reduction: losses::Reduction::Mean, ..Default::default() })
}

/// `n` points per class around the 10 `centres`.
fn dataset(centres: &Array, n: usize, dim: usize) -> (Array, Array) {
    let labels = ops::arange(0.0, (10 * n) as f64, 1.0, Some(Dtype::Int32)) % 10;
    let x = ops::take(centres, &labels, Some(0)) + random::normal(&[10 * n, dim], Dtype::Float32, 0.0, 1.5, None);
    (x, labels)
}

fn main() -> oxmx::Result<()> {
    random::seed(0);
    let (batch, epochs, dim) = (256usize, 10usize, 64usize);
    let centres = random::normal(&[10, dim], Dtype::Float32, 0.0, 1.0, None);
    let (train_x, train_y) = dataset(&centres, 1000, dim);
    let (test_x, test_y) = dataset(&centres, 200, dim);
    let mut model = Mlp::new(2, dim, 128, 10);
    let mut opt = SGD::new(0.1);
    let n = train_y.shape()[0];
    let start = Instant::now();
    for epoch in 0..epochs {
        let perm = random::permutation(n, None);
        let (mut total, mut steps) = (0.0f32, 0);
        for s in (0..n).step_by(batch) {
            let idx = ops::slice_range(&perm, &[s as isize], &[(s + batch).min(n) as isize]);
            let (x, y) = (ops::take(&train_x, &idx, Some(0)), ops::take(&train_y, &idx, Some(0)));
            let (loss, grads) = nn::value_and_grad(&mut model, |m| loss_fn(m, &x, &y))?;
            opt.update(&mut model, &grads)?;
            oxmx::optim::eval_step(&model, &opt, &[&loss])?;
            total += loss.item::<f32>()?;
            steps += 1;
        }
        let pred = ops::argmax(&model.forward(&test_x), Some(-1), false);
        let acc = ops::mean(&ops::equal(&pred, &test_y.astype(pred.dtype())), None, false).item::<f32>()?;
        println!("epoch {epoch}: train loss {:.4}, test accuracy {:.3}, {:.2} s", total / steps as f32, acc, start.elapsed().as_secs_f64());
    }
    Ok(())
}
