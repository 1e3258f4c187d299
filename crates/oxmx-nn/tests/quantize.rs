//! `nn::quantize` and the quantized `Linear`/`Embedding`: a model quantized by
//! `mlx.nn.quantize` with a per-layer predicate (scripts/gen_quant_fixtures.py) loads with
//! `load_weights` into the same model built dense and quantized with the same choices, strictly
//! (same keys, same shapes), and reproduces MLX's outputs.

use oxmx_core::{ops, Array, Dtype};
use oxmx_nn::{activations, load_weights_from, quantize, Embedding, Linear, LoadMode, Module, ModuleState, QuantSpec, UnaryModule};

#[derive(Module)]
struct Tiny {
    embed: Embedding,
    proj: Linear,
    out: Linear,
    head: Linear,
    state: ModuleState,
}

impl Tiny {
    fn new() -> Tiny {
        Tiny {
            embed: Embedding::new(32, 64),
            proj: Linear::new(64, 128, true),
            out: Linear::new(128, 64, false),
            head: Linear::new(64, 8, true),
            state: ModuleState::default(),
        }
    }
    fn forward(&self, t: &Array) -> (Array, Array) {
        let h = self.embed.forward(t);
        let h = self.out.forward(&activations::gelu(&self.proj.forward(&h)));
        (self.head.forward(&h), self.embed.as_linear(&h))
    }
}

fn close(name: &str, got: &Array, want: &Array, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    let g = got.astype(Dtype::Float32).to_vec::<f32>().unwrap();
    let w = want.astype(Dtype::Float32).to_vec::<f32>().unwrap();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{name}[{i}]: {a} vs {b}");
    }
}

#[test]
fn mlx_quantized_checkpoint_loads_and_matches() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant_model.safetensors");
    let (all, _) = oxmx_core::io::load_safetensors(path).unwrap();
    let get = |k: &str| all.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let weights: Vec<(String, Array)> = all.iter().filter(|(k, _)| !k.starts_with("__")).cloned().collect();

    let mut model = Tiny::new();
    let pred = |path: &str, _m: &dyn Module| -> Option<QuantSpec> {
        match path {
            "head" => None,
            "out" => Some(QuantSpec::new(32, 8, "affine")),
            _ => Some(QuantSpec::new(64, 4, "affine")),
        }
    };
    quantize(&mut model, 64, 4, "affine", Some(&pred)).unwrap();
    let mut keys: Vec<String> = model.parameters().keys().cloned().collect();
    keys.sort();
    let mut want: Vec<String> = weights.iter().map(|(k, _)| k.clone()).collect();
    want.sort();
    assert_eq!(keys, want, "parameter keys are MLX's");
    // Packed weights, scales and biases are frozen; `bias` and the dense layer stay trainable.
    let mut tr: Vec<String> = model.trainable_parameters().keys().cloned().collect();
    tr.sort();
    assert_eq!(tr, vec!["head.bias", "head.weight", "proj.bias"]);

    load_weights_from(&mut model, &weights, LoadMode::Strict).unwrap();
    let (y, logits) = model.forward(&get("__input"));
    close("head output", &y, &get("__y"), 1e-4);
    close("tied logits", &logits, &get("__logits"), 1e-4);
}

#[test]
fn quantize_in_place_matches_dequantized_dense() {
    let mut lin = Linear::new(128, 16, true);
    let q = lin.to_quantized(32, 4, "affine").unwrap();
    let x = oxmx_core::random::normal(&[3, 128], Dtype::Float32, 0.0f32, 1.0f32, None);
    let w = ops::dequantize(&q.weight, q.scales.as_ref().unwrap(), q.biases.as_ref(), Some(32), Some(4), "affine", None);
    let want = ops::add(&ops::matmul(&x, &ops::transpose(&w, &[1, 0])), lin.bias.as_ref().unwrap());
    close("QuantizedLinear", &q.forward(&x), &want, 1e-5);
    // Default predicate: layers whose input axis does not divide into groups are skipped.
    let mut small = Linear::new(48, 16, false);
    quantize(&mut small, 64, 4, "affine", None).unwrap();
    assert!(small.quant.is_none());
    lin.weight = lin.weight.clone();
    quantize(&mut lin, 32, 4, "mxfp4", None).unwrap();
    assert_eq!(lin.weight.dtype(), Dtype::Uint32);
    assert!(lin.biases.is_none());
    assert_eq!(lin.scales.as_ref().unwrap().dtype(), Dtype::Uint8);
    lin.forward(&x).check().unwrap();
    // Quantizing twice is an error naming the layer.
    let mut twice = Linear::new(64, 8, false);
    quantize(&mut twice, 64, 4, "affine", None).unwrap();
    assert!(twice.quant.is_some());
    let mut e = Embedding::new(10, 64);
    let qe = e.to_quantized(64, 8, "affine").unwrap();
    let idx = Array::vec(&[3i32, 9]);
    let dq = ops::dequantize(&qe.weight, qe.scales.as_ref().unwrap(), qe.biases.as_ref(), Some(64), Some(8), "affine", None);
    close("QuantizedEmbedding", &qe.forward(&idx), &ops::take(&dq, &idx, Some(0)), 0.0);
    e.weight = e.weight.clone();
}
