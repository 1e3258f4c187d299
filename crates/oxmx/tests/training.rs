//! nn + optim together: a derived module trained by an optimizer learns, frozen parameters stay
//! put, and optimizer state is keyed by parameter path.

use oxmx::nn::{self, losses, Linear, Module, UnaryModule};
use oxmx::optim::{Adam, Optimizer, SGD};
use oxmx::{ops, random, Array, Dtype};

#[derive(nn::Module)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

fn loss(m: &Mlp, x: &Array, y: &Array) -> Array {
    let logits = m.out.forward(&nn::activations::relu(&m.hidden.forward(x)));
    losses::cross_entropy(&logits, y, &losses::CrossEntropy { reduction: losses::Reduction::Mean, ..Default::default() })
}

fn step(m: &mut Mlp, opt: &mut dyn Optimizer, x: &Array, y: &Array) -> f32 {
    let (l, g) = nn::value_and_grad(m, |m| loss(m, x, y)).unwrap();
    opt.update(m, &g).unwrap();
    oxmx::optim::eval_step(&*m, &*opt, &[&l]).unwrap();
    l.item::<f32>().unwrap()
}

/// Two well-separated classes: the sign of the first feature.
fn data() -> (Array, Array) {
    let x = random::normal(&[128, 8], Dtype::Float32, 0.0, 1.0, None);
    let y = ops::greater(&ops::slice_range(&x, &[0, 0], &[128, 1]), 0.0).astype(Dtype::Int32);
    (x, ops::reshape(&y, &[128]))
}

#[test]
fn an_mlp_learns_with_sgd_and_adam() {
    random::seed(3);
    let (x, y) = data();
    for adam in [false, true] {
        let mut m = Mlp { hidden: Linear::new(8, 16, true), out: Linear::new(16, 2, true) };
        let mut opt: Box<dyn Optimizer> = if adam { Box::new(Adam::new(0.01)) } else { Box::new(SGD::new(0.5)) };
        let first = step(&mut m, opt.as_mut(), &x, &y);
        let mut last = first;
        for _ in 0..150 {
            last = step(&mut m, opt.as_mut(), &x, &y);
        }
        assert!(last < 0.25 * first, "adam={adam}: loss {first} -> {last}");
        if adam {
            let keys: Vec<String> = opt.state().into_keys().collect();
            assert!(keys.contains(&"hidden.weight.m".to_string()) && keys.contains(&"out.bias.v".to_string()), "{keys:?}");
        }
    }
}

#[test]
fn frozen_parameters_are_not_updated() {
    random::seed(4);
    let (x, y) = data();
    let mut m = Mlp { hidden: Linear::new(8, 16, true), out: Linear::new(16, 2, true) };
    m.hidden.freeze().unwrap();
    let before = m.hidden.weight.to_vec::<f32>().unwrap();
    let out_before = m.out.weight.to_vec::<f32>().unwrap();
    let mut opt = SGD::new(0.5);
    for _ in 0..3 {
        step(&mut m, &mut opt, &x, &y);
    }
    assert_eq!(m.hidden.weight.to_vec::<f32>().unwrap(), before);
    assert_ne!(m.out.weight.to_vec::<f32>().unwrap(), out_before);
}
