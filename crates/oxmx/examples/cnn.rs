//! A small CNN (two conv + max-pool stages and a linear head, channels last as in MLX) trained
//! to tell four kinds of line in noisy 16x16 images: a horizontal, vertical, diagonal or
//! anti-diagonal stroke at a random offset. Prints loss and test accuracy per epoch.
//!
//! cargo run --release -p oxmx --example cnn

use oxmx::nn::{self, losses, Conv2d, Linear, MaxPool2d, UnaryModule};
use oxmx::optim::{Adam, Optimizer};
use oxmx::{ops, random, Array};
use std::time::Instant;

const SIDE: usize = 16;

#[derive(nn::Module)]
struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    #[module(skip)]
    pool: MaxPool2d,
    head: Linear,
}

impl Cnn {
    fn new() -> oxmx::Result<Cnn> {
        Ok(Cnn {
            conv1: Conv2d::with_options(1, 8, 3, 1, 1, 1, 1, true)?,
            conv2: Conv2d::with_options(8, 16, 3, 1, 1, 1, 1, true)?,
            pool: MaxPool2d::new(2)?,
            head: Linear::new(16 * (SIDE / 4) * (SIDE / 4), 4, true),
        })
    }

    fn forward(&self, x: &Array) -> Array {
        let h = self.pool.forward(&nn::activations::relu(&self.conv1.forward(x)));
        let h = self.pool.forward(&nn::activations::relu(&self.conv2.forward(&h)));
        self.head.forward(&ops::flatten(&h, 1, -1))
    }
}

/// `n` images `[n, 16, 16, 1]` and their classes, from a fixed-seed generator.
fn dataset(n: usize, seed: u64) -> (Array, Array) {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as usize
    };
    let mut pixels = vec![0f32; n * SIDE * SIDE];
    let mut labels = vec![0i32; n];
    for (i, label) in labels.iter_mut().enumerate() {
        let class = next() % 4;
        let offset = next() % SIDE;
        let img = &mut pixels[i * SIDE * SIDE..(i + 1) * SIDE * SIDE];
        for t in 0..SIDE {
            let (r, c) = match class {
                0 => (offset, t),
                1 => (t, offset),
                2 => (t, (t + offset) % SIDE),
                _ => (t, (SIDE - 1 + offset - t) % SIDE),
            };
            img[r * SIDE + c] = 1.0;
        }
        for p in img.iter_mut() {
            *p += ((next() % 1000) as f32 / 1000.0 - 0.5) * 0.8;
        }
        *label = class as i32;
    }
    (Array::from_slice(&pixels, &[n, SIDE, SIDE, 1]), Array::vec(&labels))
}

fn loss_fn(m: &Cnn, x: &Array, y: &Array) -> Array {
    losses::cross_entropy(&m.forward(x), y, &losses::CrossEntropy { reduction: losses::Reduction::Mean, ..Default::default() })
}

fn main() -> oxmx::Result<()> {
    random::seed(0);
    let (train_x, train_y) = dataset(2048, 1);
    let (test_x, test_y) = dataset(512, 2);
    let mut model = Cnn::new()?;
    let mut opt = Adam::new(3e-3);
    let (n, batch) = (train_y.shape()[0], 64usize);
    let start = Instant::now();
    for epoch in 0..5 {
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
        println!("epoch {epoch}: train loss {:.4}, test accuracy {acc:.3}, {:.1} s", total / steps as f32, start.elapsed().as_secs_f64());
    }
    Ok(())
}
