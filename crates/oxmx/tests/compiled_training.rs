//! `compile` over a whole training step that carries state: the module's parameters, the
//! optimizer's state (Adam's moments and step count) and a random key go in and come out of
//! the compiled function each step, as MLX's compiled training loops pass them. The compiled
//! step must give the plain step's losses, parameters, optimizer state and keys, and trace once
//! per state structure (the optimizer state has no moments before the first step). The step
//! count and learning rate are state too: a compiled step that froze them at their traced
//! values would apply step 1's bias correction forever.

use oxmx::nn::{self, losses, Linear, Module, UnaryModule};
use oxmx::optim::{schedule, Adam, Optimizer};
use oxmx::{compile, ops, random, Array, Dtype};
use std::collections::BTreeMap;

type Params = BTreeMap<String, Array>;

#[derive(nn::Module)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

fn mlp() -> Mlp {
    Mlp { hidden: Linear::new(8, 16, true), out: Linear::new(16, 2, true) }
}

fn loss(m: &Mlp, x: &Array, y: &Array) -> Array {
    let logits = m.out.forward(&nn::activations::gelu_approx(&m.hidden.forward(x)));
    losses::cross_entropy(&logits, y, &losses::CrossEntropy { reduction: losses::Reduction::Mean, ..Default::default() })
}

#[track_caller]
fn assert_close(what: &str, got: &Array, want: &Array) {
    let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    assert_eq!(g.len(), w.len(), "{what}: size");
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{what}[{i}]: compiled {a} vs plain {b}");
    }
}

#[test]
fn a_compiled_step_carries_parameters_optimizer_state_and_key() {
    random::seed(11);
    let x = random::normal(&[64, 8], Dtype::Float32, 0.0, 1.0, None);
    let y = ops::reshape(&ops::greater(&ops::slice_range(&x, &[0, 0], &[64, 1]), 0.0).astype(Dtype::Int32), &[64]);
    let (xc, yc) = (x.clone(), y.clone());
    // The step as a function of its state: load it into a module and an optimizer, add noise
    // drawn from the key to the batch, take one Adam step, and return the new state.
    let step = move |(params, opt_state, key): (Params, Params, Array)| -> (Params, Params, Array, Array) {
        let mut m = mlp();
        m.update(&params).unwrap();
        let mut opt = Adam::new(0.01);
        opt.set_state(&opt_state).unwrap();
        let keys = random::split(&key, 2);
        let (next, sub) = (
            ops::reshape(&ops::slice_range(&keys, &[0, 0], &[1, 2]), &[2]),
            ops::reshape(&ops::slice_range(&keys, &[1, 0], &[2, 2]), &[2]),
        );
        let noisy = &xc + random::normal(xc.shape(), Dtype::Float32, 0.0, 0.05, Some(&sub));
        let (l, g) = nn::value_and_grad(&mut m, |m| loss(m, &noisy, &yc)).unwrap();
        opt.update(&mut m, &g).unwrap();
        (m.parameters(), opt.state(), next, l)
    };
    let compiled = compile(step.clone());
    let start = mlp().parameters();
    let fresh = Adam::new(0.01).state();
    let (mut p, mut s, mut k) = (start.clone(), fresh.clone(), random::key(7));
    let (mut p0, mut s0, mut k0) = (start, fresh, random::key(7));
    let mut losses = Vec::new();
    for i in 0..6 {
        if i == 3 {
            // MLX keeps the learning rate in the state: a new one reaches the compiled step.
            s.insert("learning_rate".into(), Array::scalar(0.003f32));
            s0.insert("learning_rate".into(), Array::scalar(0.003f32));
        }
        let (np, ns, nk, l) = compiled.call((p, s, k));
        let (np0, ns0, nk0, l0) = step((p0, s0, k0));
        assert_close(&format!("loss {i}"), &l, &l0);
        assert_eq!(nk.to_vec::<u32>().unwrap(), nk0.to_vec::<u32>().unwrap(), "key {i}");
        assert_eq!(np.keys().collect::<Vec<_>>(), np0.keys().collect::<Vec<_>>());
        assert_eq!(ns.keys().collect::<Vec<_>>(), ns0.keys().collect::<Vec<_>>());
        for (name, v) in &np {
            assert_close(&format!("step {i} {name}"), v, &np0[name]);
        }
        assert_eq!(ns["step"].to_vec::<u64>().unwrap(), vec![i as u64 + 1], "step count {i}");
        assert_eq!(ns["step"].to_vec::<u64>().unwrap(), ns0["step"].to_vec::<u64>().unwrap());
        for (name, v) in &ns {
            assert_close(&format!("step {i} optimizer {name}"), v, &ns0[name]);
        }
        losses.push(l.item::<f32>().unwrap());
        (p, s, k, p0, s0, k0) = (np, ns, nk, np0, ns0, nk0);
    }
    assert!(losses[5] < losses[0], "the compiled loop trains: {losses:?}");
    assert!(s.contains_key("hidden.weight.m") && s.contains_key("out.bias.v"), "{:?}", s.keys().collect::<Vec<_>>());
    // One trace with the fresh optimizer state, one with Adam's moments.
    assert_eq!(compiled.trace_count(), 2);
}

#[test]
fn a_schedule_over_a_traced_step_count_is_an_error_not_a_frozen_value() {
    let w = Array::from_slice(&[1.0f32, 2.0], &[2]);
    let step = |(w, state): (Array, Params)| -> Array {
        let mut opt = Adam::new(schedule::exponential_decay(0.1, 0.5));
        opt.set_state(&state).unwrap();
        let mut p = Params::new();
        p.insert("w".into(), w.clone());
        match opt.apply_gradients(&p.clone(), &p) {
            Ok(new) => new["w"].clone(),
            Err(e) => Array::error(e),
        }
    };
    let state = Adam::new(0.1).state();
    // Eagerly the schedule runs on the host step count.
    assert!(step((w.clone(), state.clone())).check().is_ok());
    let err = compile(step).call((w, state)).check().unwrap_err().to_string();
    assert!(err.contains("schedule") && err.contains("'step' is traced"), "{err}");
}
