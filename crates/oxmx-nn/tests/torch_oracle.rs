//! Layers, activations and losses against PyTorch (and MLX where the two differ), with oracle
//! data from scripts/gen_nn_fixtures.py; and loading a PyTorch state_dict by name.

use oxmx_core::{Array, Dtype};
use oxmx_nn::activations as act;
use oxmx_nn::losses::{self, CrossEntropy, Reduction};
use oxmx_nn::{load_weights, Embedding, LayerNorm, Linear, LoadMode, Module, RMSNorm, UnaryModule};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn arr(v: &Value) -> Array {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f32> = v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap() as f32).collect();
    Array::from_slice(&data, &shape)
}

/// Integer class indices stored as floats.
fn idx(v: &Value) -> Array {
    arr(v).astype(Dtype::Int32)
}

fn assert_close(got: &Array, want: &Value, tol: f32, ctx: &str) {
    let want_shape: Vec<usize> = want["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    assert_eq!(got.shape(), want_shape.as_slice(), "{ctx}: shape");
    let g = got.astype(Dtype::Float32).to_vec::<f32>().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let w: Vec<f32> = want["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap() as f32).collect();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{ctx}[{i}]: got {a}, want {b}");
    }
}

#[test]
fn layers_match_torch() {
    let f = load("nn.json");
    for c in f["layers"].as_array().unwrap() {
        let kind = c["kind"].as_str().unwrap();
        let x = &c["x"];
        match kind {
            "linear" => {
                let l = Linear::from_weights(arr(&c["weight"]), c.get("bias").map(arr));
                assert_close(&l.forward(&arr(x)), &c["y"], 1e-5, kind);
            }
            "embedding" => {
                let e = Embedding::from_weight(arr(&c["weight"]));
                assert_close(&e.forward(&idx(x)), &c["y"], 0.0, kind);
                assert_close(&e.as_linear(&arr(&c["h"])), &c["as_linear"], 1e-5, "as_linear");
            }
            "layer_norm" => {
                let eps = c["eps"].as_f64().unwrap();
                let mut l = LayerNorm::with_options(8, eps, c.get("weight").is_some(), true);
                if let (Some(w), Some(b)) = (c.get("weight"), c.get("bias")) {
                    l.weight = Some(arr(w));
                    l.bias = Some(arr(b));
                }
                assert_close(&l.forward(&arr(x)), &c["y"], 1e-5, kind);
            }
            "rms_norm" => {
                let mut l = RMSNorm::with_eps(8, c["eps"].as_f64().unwrap());
                l.weight = arr(&c["weight"]);
                assert_close(&l.forward(&arr(x)), &c["y"], 1e-5, kind);
            }
            k => panic!("unknown layer {k}"),
        }
    }
}

#[test]
fn activations_match_torch_and_mlx() {
    let f = load("nn.json");
    let alpha = Array::vec(&[0.25f32]);
    for c in f["activations"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let x = arr(&c["x"]);
        let y = match name {
            "relu" => act::relu(&x),
            "relu6" => act::relu6(&x),
            "leaky_relu" => act::leaky_relu(&x, 0.01),
            "elu" => act::elu(&x, 1.0),
            "selu" => act::selu(&x),
            "celu" => act::celu(&x, 1.0),
            "gelu" => act::gelu(&x),
            "gelu_approx" => act::gelu_approx(&x),
            "gelu_fast_approx" => act::gelu_fast_approx(&x),
            "silu" => act::silu(&x),
            "mish" => act::mish(&x),
            "hardswish" => act::hardswish(&x),
            "hard_tanh" => act::hard_tanh(&x, -1.0, 1.0),
            "hard_shrink" => act::hard_shrink(&x, 0.5),
            "softplus" => act::softplus(&x),
            "softsign" => act::softsign(&x),
            "softshrink" => act::softshrink(&x, 0.5),
            "sigmoid" => act::sigmoid(&x),
            "log_sigmoid" => act::log_sigmoid(&x),
            "tanh" => act::tanh(&x),
            "glu" => act::glu(&x, -1),
            "softmax" => act::softmax(&x, -1),
            "log_softmax" => act::log_softmax(&x, -1),
            "softmin" => act::softmin(&x, -1),
            "prelu" => act::prelu(&x, &alpha),
            "step" => act::step(&x, 0.0),
            n => panic!("unknown activation {n}"),
        };
        assert_close(&y, &c["y"], 2e-6, name);
    }
}

fn reduction(p: &Value) -> Reduction {
    match p["reduction"].as_str().unwrap() {
        "none" => Reduction::None,
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        r => panic!("reduction {r}"),
    }
}

#[test]
fn losses_match_torch_and_mlx() {
    let f = load("nn.json");
    for c in f["losses"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let p = &c["params"];
        let i = |k: &str| arr(&c["inputs"][k]);
        let num = |k: &str, d: f64| p.get(k).and_then(Value::as_f64).unwrap_or(d);
        let red = reduction(p);
        let y = match name {
            "cross_entropy" => {
                let t = &c["inputs"]["targets"];
                let logits = i("logits");
                let targets = if t["shape"].as_array().unwrap().len() == logits.ndim() { arr(t) } else { idx(t) };
                let opts = CrossEntropy {
                    weights: c["inputs"].get("weights").map(arr),
                    axis: p.get("axis").and_then(Value::as_i64).unwrap_or(-1) as isize,
                    label_smoothing: num("label_smoothing", 0.0),
                    reduction: red,
                };
                losses::cross_entropy(&logits, &targets, &opts)
            }
            "binary_cross_entropy" => {
                losses::binary_cross_entropy(&i("inputs"), &i("targets"), None, p["with_logits"].as_bool().unwrap(), red)
            }
            "nll_loss" => losses::nll_loss(&i("inputs"), &idx(&c["inputs"]["targets"]), -1, red),
            "kl_div_loss" => losses::kl_div_loss(&i("inputs"), &i("targets"), -1, red),
            "mse_loss" => losses::mse_loss(&i("predictions"), &i("targets"), red),
            "l1_loss" => losses::l1_loss(&i("predictions"), &i("targets"), red),
            "smooth_l1_loss" => losses::smooth_l1_loss(&i("predictions"), &i("targets"), num("beta", 1.0), red),
            "huber_loss" => losses::huber_loss(&i("inputs"), &i("targets"), num("delta", 1.0), red),
            "margin_ranking_loss" => losses::margin_ranking_loss(&i("inputs1"), &i("inputs2"), &i("targets"), num("margin", 0.0), red),
            "gaussian_nll_loss" => {
                losses::gaussian_nll_loss(&i("inputs"), &i("targets"), &i("vars"), p["full"].as_bool().unwrap(), 1e-6, red)
            }
            "log_cosh_loss" => losses::log_cosh_loss(&i("inputs"), &i("targets"), red),
            "hinge_loss" => losses::hinge_loss(&i("inputs"), &i("targets"), red),
            "triplet_loss" => losses::triplet_loss(&i("anchors"), &i("positives"), &i("negatives"), -1, 2.0, num("margin", 1.0), 1e-6, red),
            "cosine_similarity_loss" => losses::cosine_similarity_loss(&i("x1"), &i("x2"), 1, 1e-8, red),
            n => panic!("unknown loss {n}"),
        };
        assert_close(&y, &c["y"], 1e-5, &format!("{name} ({})", c["oracle"]));
    }
}

#[test]
fn loss_shape_errors_name_the_shapes() {
    let a = Array::from_slice(&[0.0f32; 6], &[2, 3]);
    let b = Array::from_slice(&[0.0f32; 4], &[2, 2]);
    let e = losses::mse_loss(&a, &b, Reduction::Mean).check().unwrap_err().to_string();
    assert!(e.contains("mse_loss") && e.contains("[2, 3]") && e.contains("[2, 2]"), "{e}");
    let bad = Array::from_slice(&[0i32; 3], &[3]);
    let e = losses::cross_entropy(&a, &bad, &CrossEntropy::default()).check().unwrap_err().to_string();
    assert!(e.contains("targets shape [3]"), "{e}");
    let ls = CrossEntropy { label_smoothing: 1.0, ..Default::default() };
    assert!(losses::cross_entropy(&a, &Array::from_slice(&[0i32, 1], &[2]), &ls).check().is_err());
}

#[derive(Module)]
struct TorchMlp {
    layers: Vec<Linear>,
    norm: LayerNorm,
}

#[test]
fn loads_a_pytorch_state_dict_by_name() {
    let mut m = TorchMlp { layers: vec![Linear::new(6, 8, true), Linear::new(8, 3, true)], norm: LayerNorm::new(8) };
    let path = format!("{}/tests/fixtures/torch_mlp.safetensors", env!("CARGO_MANIFEST_DIR"));
    load_weights(&mut m, &path, LoadMode::Strict).unwrap();
    let io = load("torch_mlp.json");
    let y = m.layers[1].forward(&m.norm.forward(&act::relu(&m.layers[0].forward(&arr(&io["x"])))));
    assert_close(&y, &io["y"], 1e-5, "torch mlp");
    // The same file into a model with a mis-sized layer names the key and both shapes.
    let mut wrong = TorchMlp { layers: vec![Linear::new(6, 8, true), Linear::new(8, 4, true)], norm: LayerNorm::new(8) };
    let e = load_weights(&mut wrong, &path, LoadMode::Strict).unwrap_err().to_string();
    assert!(e.contains("`layers.1.weight`: expected shape [4, 8], received [3, 8]"), "{e}");
}

#[test]
fn initialisers_match_mlx_statistics() {
    use oxmx_nn::init::{self, FanMode};
    oxmx_core::random::seed(11);
    let f = load("nn.json");
    for c in f["init"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let shape: Vec<usize> = c["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let dt = Dtype::Float32;
        let a = match name {
            "glorot_normal" => init::glorot_normal(&shape, dt, 1.0),
            "glorot_uniform" => init::glorot_uniform(&shape, dt, 2.0),
            "he_normal" => init::he_normal(&shape, dt, FanMode::FanIn, 1.0),
            "he_normal_fan_out" => init::he_normal(&shape, dt, FanMode::FanOut, 1.0),
            "he_uniform" => init::he_uniform(&shape, dt, FanMode::FanIn, 1.0),
            "normal" => init::normal(&shape, dt, 0.5, 2.0),
            "uniform" => init::uniform(&shape, dt, -0.3, 0.7),
            n => panic!("unknown initialiser {n}"),
        };
        assert_eq!(a.shape(), shape.as_slice());
        let v: Vec<f64> = a.to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (want_mean, want_std) = (c["mean"].as_f64().unwrap(), c["std"].as_f64().unwrap());
        assert!((mean - want_mean).abs() < 6.0 * want_std / n.sqrt(), "{name}: mean {mean} vs MLX {want_mean}");
        assert!((std / want_std - 1.0).abs() < 0.02, "{name}: std {std} vs MLX {want_std}");
        if name.contains("uniform") {
            let (lo, hi) = (v.iter().cloned().fold(f64::MAX, f64::min), v.iter().cloned().fold(f64::MIN, f64::max));
            let (wlo, whi) = (c["min"].as_f64().unwrap(), c["max"].as_f64().unwrap());
            let tol = 0.01 * (whi - wlo);
            assert!((lo - wlo).abs() < tol && (hi - whi).abs() < tol, "{name}: range [{lo}, {hi}] vs MLX [{wlo}, {whi}]");
        }
    }
    assert_eq!(init::fans(&[64, 3, 3, 32]), (288, 576));
    assert!(init::identity(&[2, 3], Dtype::Float32).check().is_err());
    assert_eq!(init::identity(&[2, 2], Dtype::Float32).to_vec::<f32>().unwrap(), vec![1.0, 0.0, 0.0, 1.0]);
}
