//! Module mechanics: derived parameter paths, freezing, training mode, update, weights files,
//! and value_and_grad over a module (checked by finite differences).

use oxmx_core::{ops, random, Array, Dtype};
use oxmx_nn::{
    load_weights, save_weights, value_and_grad, Dropout, LayerNorm, Linear, LoadMode, Module, ModuleState, Params, ReLU, Sequential, Tree,
    UnaryModule,
};
use std::collections::BTreeMap;

#[derive(Module)]
struct Block {
    #[module(rename = "self_attn")]
    attn: Linear,
    norm: LayerNorm,
    experts: BTreeMap<String, Linear>,
    gate: Option<Linear>,
    #[module(skip)]
    #[allow(dead_code)]
    name: String,
    scale: Array,
    state: ModuleState,
}

#[derive(Module)]
struct Model {
    layers: Vec<Block>,
    head: Linear,
    absent: Option<Linear>,
    dims: usize,
}

fn block(d: usize, gate: bool) -> Block {
    let mut experts = BTreeMap::new();
    experts.insert("up".to_string(), Linear::new(d, d, false));
    experts.insert("down".to_string(), Linear::new(d, d, true));
    Block {
        attn: Linear::new(d, d, true),
        norm: LayerNorm::new(d),
        experts,
        gate: gate.then(|| Linear::new(d, 1, false)),
        name: "b".into(),
        scale: ops::ones(&[d], Dtype::Float32),
        state: ModuleState::default(),
    }
}

fn model() -> Model {
    Model { layers: vec![block(4, true), block(4, false)], head: Linear::new(4, 2, true), absent: None, dims: 4 }
}

#[test]
fn parameter_paths_follow_fields_renames_and_containers() {
    let m = model();
    let keys: Vec<String> = m.parameters().into_keys().collect();
    let want = [
        "head.bias",
        "head.weight",
        "layers.0.experts.down.bias",
        "layers.0.experts.down.weight",
        "layers.0.experts.up.weight",
        "layers.0.gate.weight",
        "layers.0.norm.bias",
        "layers.0.norm.weight",
        "layers.0.scale",
        "layers.0.self_attn.bias",
        "layers.0.self_attn.weight",
        "layers.1.experts.down.bias",
        "layers.1.experts.down.weight",
        "layers.1.experts.up.weight",
        "layers.1.norm.bias",
        "layers.1.norm.weight",
        "layers.1.scale",
        "layers.1.self_attn.bias",
        "layers.1.self_attn.weight",
    ];
    assert_eq!(keys, want);
    let modules: Vec<String> = m.named_modules().into_iter().map(|(p, _)| p).collect();
    assert_eq!(modules[0], "");
    assert!(modules.contains(&"layers.0.self_attn".to_string()));
    assert!(modules.contains(&"layers.0.experts.up".to_string()));
    assert!(!modules.iter().any(|p| p.starts_with("absent")));
    // Per block: self_attn 16+4, norm 4+4, experts up 16 and down 16+4, scale 4; gate 4 in block 0.
    assert_eq!(m.num_parameters(), 2 * (20 + 8 + 36 + 4) + 4 + (8 + 2));
}

#[test]
fn freeze_and_unfreeze_by_path() {
    let mut m = model();
    m.freeze().unwrap();
    assert!(m.trainable_parameters().is_empty());
    m.unfreeze_paths(&["layers.1.self_attn", "head.bias", "layers.0.scale"]).unwrap();
    let keys: Vec<String> = m.trainable_parameters().into_keys().collect();
    assert_eq!(keys, ["head.bias", "layers.0.scale", "layers.1.self_attn.bias", "layers.1.self_attn.weight"]);
    // A path that names nothing is an error and changes nothing.
    let err = m.freeze_paths(&["layers.7"]).unwrap_err().to_string();
    assert!(err.contains("layers.7"), "{err}");
    assert_eq!(m.trainable_parameters().len(), 4);
    // `layers.1` must not match `layers.10...`-style prefixes: only whole segments.
    m.unfreeze().unwrap();
    m.freeze_paths(&["layers.1"]).unwrap();
    assert!(m.trainable_parameters().keys().all(|k| !k.starts_with("layers.1.")));
    assert!(m.trainable_parameters().contains_key("layers.0.scale"));
}

#[derive(Module)]
struct Stateless {
    w: Array,
}

#[test]
fn freezing_parameters_of_a_module_without_state_is_a_clear_error() {
    let mut s = Stateless { w: Array::vec(&[1.0f32]) };
    let err = s.freeze().unwrap_err().to_string();
    assert!(err.contains("Stateless") && err.contains("ModuleState"), "{err}");
}

#[test]
fn train_and_eval_reach_every_module() {
    let mut seq = Sequential::new().push(Linear::new(3, 3, true)).push(Dropout::new(0.5).unwrap()).push(ReLU);
    assert!(seq.layers[1].training());
    let x = random::normal(&[64, 3], Dtype::Float32, 0.0, 1.0, None);
    seq.set_eval();
    assert!(!seq.layers[1].training());
    let a = seq.forward(&x).to_vec::<f32>().unwrap();
    let b = seq.forward(&x).to_vec::<f32>().unwrap();
    assert_eq!(a, b, "dropout must be the identity in eval mode");
    seq.train(true);
    let d = Dropout::new(0.5).unwrap();
    let y = d.forward(&ops::ones(&[1000], Dtype::Float32)).to_vec::<f32>().unwrap();
    let zeros = y.iter().filter(|v| **v == 0.0).count();
    assert!(y.iter().all(|v| *v == 0.0 || *v == 2.0));
    assert!((350..650).contains(&zeros), "{zeros} of 1000 dropped at p = 0.5");
    assert!(Dropout::new(1.0).is_err());
    let names: Vec<String> = seq.parameters().into_keys().collect();
    assert_eq!(names, ["layers.0.bias", "layers.0.weight"]);
}

#[test]
fn update_checks_keys_and_shapes_and_changes_nothing_on_error() {
    let mut m = model();
    let before = m.head.weight.to_vec::<f32>().unwrap();
    let mut p = Params::new();
    p.insert("head.weight".into(), ops::zeros(&[2, 4], Dtype::Float32));
    p.insert("head.nope".into(), ops::zeros(&[2], Dtype::Float32));
    let err = m.update(&p).unwrap_err().to_string();
    assert!(err.contains("head.nope"), "{err}");
    assert_eq!(m.head.weight.to_vec::<f32>().unwrap(), before);
    let mut p = Params::new();
    p.insert("head.weight".into(), ops::zeros(&[4, 2], Dtype::Float32));
    let err = m.update(&p).unwrap_err().to_string();
    assert!(err.contains("head.weight") && err.contains("[2, 4]") && err.contains("[4, 2]"), "{err}");
    let mut p = Params::new();
    p.insert("head.weight".into(), ops::zeros(&[2, 4], Dtype::Float32));
    m.update(&p).unwrap();
    assert_eq!(m.head.weight.to_vec::<f32>().unwrap(), vec![0.0; 8]);
}

#[test]
fn weights_round_trip_and_load_errors_name_the_keys() {
    let dir = std::env::temp_dir().join(format!("oxmx_nn_weights_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = model();
    for ext in ["safetensors", "npz"] {
        let path = dir.join(format!("m.{ext}"));
        save_weights(&src, &path).unwrap();
        let mut dst = model();
        load_weights(&mut dst, &path, LoadMode::Strict).unwrap();
        for (k, v) in src.parameters() {
            assert_eq!(dst.parameters()[&k].to_vec::<f32>().unwrap(), v.to_vec::<f32>().unwrap(), "{k} via {ext}");
        }
    }
    // A model with a gate in block 1 has a key the file lacks; one without head bias has an extra.
    let path = dir.join("m.safetensors");
    let mut other = Model { layers: vec![block(4, true), block(4, true)], head: Linear::new(4, 2, false), absent: None, dims: 4 };
    let before = other.parameters()["layers.0.self_attn.weight"].to_vec::<f32>().unwrap();
    let err = load_weights(&mut other, &path, LoadMode::Strict).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains("`layers.1.gate.weight`"), "{err}");
    assert!(err.contains("not in the model") && err.contains("`head.bias`"), "{err}");
    assert!(err.contains("m.safetensors"), "{err}");
    assert_eq!(other.parameters()["layers.0.self_attn.weight"].to_vec::<f32>().unwrap(), before, "unchanged on error");
    load_weights(&mut other, &path, LoadMode::NonStrict).unwrap();
    assert_eq!(
        other.parameters()["layers.0.self_attn.weight"].to_vec::<f32>().unwrap(),
        src.parameters()["layers.0.self_attn.weight"].to_vec::<f32>().unwrap()
    );
    let mut wide = Model { layers: vec![block(4, true), block(4, false)], head: Linear::new(4, 3, true), absent: None, dims: 4 };
    let err = load_weights(&mut wide, &path, LoadMode::NonStrict).unwrap_err().to_string();
    assert!(err.contains("`head.weight`: expected shape [3, 4], received [2, 4]"), "{err}");
    assert!(save_weights(&src, dir.join("m.bin")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[derive(Module)]
struct Mlp {
    l1: Linear,
    l2: Linear,
}

fn mlp_loss(m: &Mlp, x: &Array, y: &Array) -> Array {
    let h = oxmx_nn::activations::gelu(&m.l1.forward(x));
    oxmx_nn::losses::mse_loss(&m.l2.forward(&h), y, oxmx_nn::losses::Reduction::Mean)
}

#[test]
fn value_and_grad_over_a_module_matches_finite_differences() {
    random::seed(7);
    let to64 = |a: &Array| a.astype(Dtype::Float64);
    let mut m = Mlp { l1: Linear::new(3, 5, true), l2: Linear::new(5, 2, true) };
    m.update(&m.parameters().iter().map(|(k, v)| (k.clone(), to64(v))).collect()).unwrap();
    m.l2.freeze().unwrap();
    let x = random::normal(&[6, 3], Dtype::Float64, 0.0, 1.0, None);
    let y = random::normal(&[6, 2], Dtype::Float64, 0.0, 1.0, None);
    let (loss, grads) = value_and_grad(&mut m, |m| mlp_loss(m, &x, &y)).unwrap();
    let keys: Vec<&String> = grads.keys().collect();
    assert_eq!(keys, ["l1.bias", "l1.weight"], "frozen l2 gets no gradient");
    assert!((loss.item::<f64>().unwrap() - mlp_loss(&m, &x, &y).item::<f64>().unwrap()).abs() < 1e-12);
    let eps = 1e-6;
    for (k, g) in &grads {
        let p = m.parameters()[k].clone();
        let flat = p.to_vec::<f64>().unwrap();
        let g = g.to_vec::<f64>().unwrap();
        for i in 0..flat.len() {
            let mut probe = |d: f64| {
                let mut v = flat.clone();
                v[i] += d;
                let mut upd = Params::new();
                upd.insert(k.clone(), Array::from_slice(&v, p.shape()));
                m.update(&upd).unwrap();
                let l = mlp_loss(&m, &x, &y).item::<f64>().unwrap();
                m.update(&[(k.clone(), p.clone())].into_iter().collect()).unwrap();
                l
            };
            let fd = (probe(eps) - probe(-eps)) / (2.0 * eps);
            assert!((fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()), "{k}[{i}]: fd {fd} vs grad {}", g[i]);
        }
    }
}

#[derive(Tree, Clone)]
struct Pair {
    a: Array,
    rest: Vec<Array>,
    #[tree(skip)]
    tag: u32,
}

#[test]
fn derived_tree_works_with_transforms() {
    let p = Pair { a: Array::vec(&[1.0f32, 2.0]), rest: vec![Array::vec(&[3.0f32])], tag: 9 };
    let g = oxmx_core::grad(|p: Pair| ops::sum(&(ops::square(&p.a) + ops::sum(&p.rest[0], None, false)), None, false))(p.clone());
    assert_eq!(g.a.to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
    assert_eq!(g.rest[0].to_vec::<f32>().unwrap(), vec![2.0]);
    assert_eq!(g.tag, 9);
    assert_eq!(oxmx_core::transforms::tree_flatten(&p).len(), 2);
}
