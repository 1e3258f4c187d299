//! Fused projections (q/k/v and gate/up as one product at inference, `models/fused.rs`): the
//! fused model's logits equal the unfused model's (prefill and cached decoding, dense and
//! quantized, with and without q/k/v biases); its parameters are unchanged (names, shapes,
//! values); fusing does not grow the memory the model holds; a part replaced or updated
//! afterwards switches that layer back to the separate products.

use oxmx_core::{ops, Array, Dtype};
use oxmx_lm::cache::make_prompt_cache;
use oxmx_lm::config::ModelConfig;
use oxmx_lm::models::base::{DecoderLM, DecoderLayer};
use oxmx_lm::models::{llama, qwen2, LanguageModel};
use oxmx_nn::Module;

fn config(model_type: &str) -> ModelConfig {
    ModelConfig::from_json_str(&format!(
        r#"{{"model_type": "{model_type}", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 160,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 300,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32"}}"#
    ))
    .unwrap()
}

fn random_model(model_type: &str, quantize: Option<usize>) -> DecoderLM<DecoderLayer> {
    // Fusion is on by default; every test of this file says so explicitly (the same value, so
    // the threads setting it agree), in case the environment turned it off.
    std::env::set_var("OXMX_FUSE_PROJECTIONS", "1");
    let c = config(model_type);
    let mut m = match model_type {
        "qwen2" => qwen2::build(&c, false).unwrap(),
        _ => llama::build(&c, false).unwrap(),
    };
    // Explicit keys, not the global seed: the tests run on parallel threads.
    let mut n = 0u64;
    m.visit_params_mut("", &mut |name: &str, a: &mut Array| {
        let scale = if name.contains("norm") { 0.1 } else { 0.3 };
        let base = if name.contains("norm") { 1.0 } else { 0.0 };
        n += 1;
        *a = oxmx_core::random::normal(a.shape(), Dtype::Float32, base, scale, Some(&oxmx_core::random::key(n)));
    });
    if let Some(bits) = quantize {
        oxmx_nn::quantize(&mut m, 32, bits, "affine", None).unwrap();
    }
    let p = m.parameters();
    oxmx_core::eval(&p.values().collect::<Vec<_>>()).unwrap();
    m
}

/// The tests of this file one at a time: one of them reads the allocator's global counters.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn tokens(n: usize, seed: u32) -> Array {
    let ids: Vec<i32> = (0..n as u32).map(|i| ((i * 37 + seed * 11 + 5) % 300) as i32).collect();
    Array::from_slice(&ids, &[1, n])
}

fn assert_close(name: &str, a: &Array, b: &Array) {
    assert_eq!(a.shape(), b.shape(), "{name}: shapes");
    let (x, y) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let scale = y.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        assert!((p - q).abs() <= 2e-5 * scale, "{name}: element {i}: fused {p}, separate {q}");
    }
}

/// Logits for a 7-token prompt (fused: at most 8 rows), a 12-token one (separate) and then 3
/// single-token steps, with a cache.
fn run(m: &dyn LanguageModel) -> Vec<Array> {
    let mut cache = make_prompt_cache(m, None);
    let mut out = vec![m.forward(&tokens(7, 1), Some(&mut cache)), m.forward(&tokens(12, 2), Some(&mut cache))];
    for t in 0..3 {
        out.push(m.forward(&tokens(1, 20 + t), Some(&mut cache)));
    }
    out.push(m.forward(&tokens(5, 3), None));
    out
}

#[test]
fn fused_logits_equal_separate_products() {
    let _serial = serial();
    for (model_type, q) in [("llama", None), ("llama", Some(4)), ("llama", Some(8)), ("qwen2", None), ("qwen2", Some(4))] {
        let separate = random_model(model_type, q);
        let mut fused = separate.clone();
        fused.fuse_projections().unwrap();
        for l in &fused.model.layers {
            assert!(l.self_attn.fused.is_some() && l.mlp.fused.is_some(), "{model_type} {q:?}: not fused");
        }
        for (i, (a, b)) in run(&fused).iter().zip(run(&separate)).enumerate() {
            assert_close(&format!("{model_type} {q:?} call {i}"), a, &b);
        }
        // Parameters unchanged: same names, shapes, dtypes and values.
        let (pf, ps) = (fused.parameters(), separate.parameters());
        assert_eq!(pf.keys().collect::<Vec<_>>(), ps.keys().collect::<Vec<_>>());
        for (k, a) in &pf {
            let b = &ps[k];
            assert_eq!((a.shape(), a.dtype()), (b.shape(), b.dtype()), "{k}");
            assert!(ops::array_equal(a, b, false).item::<bool>().unwrap(), "{model_type} {q:?}: {k} changed");
        }
    }
}

#[test]
fn a_part_changed_after_fusion_runs_separately() {
    let _serial = serial();
    let mut m = random_model("llama", Some(4));
    m.fuse_projections().unwrap();
    // Replace layer 0's k_proj with another quantized matrix and layer 1's up_proj with a dense
    // one: those layers must use the new weights (the fused product still holds the old ones).
    let mut want = random_model("llama", Some(4));
    let other = random_model("llama", Some(8));
    let dense = random_model("llama", None);
    want.model.layers[0].self_attn.k_proj = other.model.layers[0].self_attn.k_proj.clone();
    want.model.layers[1].mlp.up_proj = dense.model.layers[1].mlp.up_proj.clone();
    m.model.layers[0].self_attn.k_proj = other.model.layers[0].self_attn.k_proj.clone();
    m.model.layers[1].mlp.up_proj = dense.model.layers[1].mlp.up_proj.clone();
    for (i, (a, b)) in run(&m).iter().zip(run(&want)).enumerate() {
        assert_close(&format!("after replacing parts, call {i}"), a, &b);
    }
    // The same with weights changed in place through `update`-style parameter visits.
    let mut m = random_model("llama", None);
    m.fuse_projections().unwrap();
    let mut want = random_model("llama", None);
    for model in [&mut m, &mut want] {
        model.visit_params_mut("", &mut |name: &str, a: &mut Array| {
            if name == "model.layers.1.self_attn.q_proj.weight" || name == "model.layers.0.mlp.gate_proj.weight" {
                *a = &*a * 2.0;
            }
        });
    }
    for (i, (a, b)) in run(&m).iter().zip(run(&want)).enumerate() {
        assert_close(&format!("after updating weights, call {i}"), a, &b);
    }
}

#[test]
fn parts_read_through_their_views_give_the_same_products() {
    let _serial = serial();
    use oxmx_nn::UnaryModule;
    for q in [None, Some(4)] {
        let separate = random_model("llama", q);
        let mut fused = separate.clone();
        fused.fuse_projections().unwrap();
        let x = oxmx_core::random::normal(&[1, 3, 64], Dtype::Float32, 0.0, 1.0, Some(&oxmx_core::random::key(99)));
        let (a, b) = (&fused.model.layers[0].self_attn, &separate.model.layers[0].self_attn);
        for (name, p, s) in [("q", &a.q_proj, &b.q_proj), ("k", &a.k_proj, &b.k_proj), ("v", &a.v_proj, &b.v_proj)] {
            assert_close(&format!("{q:?} {name}_proj through its view"), &p.forward(&x), &s.forward(&x));
        }
        let (a, b) = (&fused.model.layers[1].mlp, &separate.model.layers[1].mlp);
        assert_close(&format!("{q:?} up_proj through its view"), &a.up_proj.forward(&x), &b.up_proj.forward(&x));
    }
}

#[test]
fn fusing_does_not_grow_the_models_memory() {
    let _serial = serial();
    for q in [None, Some(4)] {
        let mut m = random_model("llama", q);
        // As when a previous layer's parts were just freed: blocks half again the size of each
        // array fusion will make wait in the allocator's cache (which handed out blocks up to
        // twice the size asked for until the thirty-first session; the model would keep the
        // slack).
        let mut sizes = Vec::new();
        for l in &m.model.layers {
            let (a, p) = (&l.self_attn, &l.mlp);
            for group in [vec![&a.q_proj, &a.k_proj, &a.v_proj], vec![&p.gate_proj, &p.up_proj]] {
                sizes.push(group.iter().map(|x| x.weight.nbytes()).sum::<usize>());
                if let Some(s0) = group[0].scales.as_ref() {
                    sizes.push(s0.nbytes() * group.len());
                    sizes.push(s0.nbytes() * group.len());
                }
            }
        }
        let blocks: Vec<Array> =
            sizes.iter().map(|&n| oxmx_core::random::normal(&[(n * 3 / 2).div_ceil(4)], Dtype::Float32, 0.0, 1.0, None)).collect();
        oxmx_core::eval(&blocks.iter().collect::<Vec<_>>()).unwrap();
        drop(blocks);
        let before = oxmx_core::memory::active_memory();
        m.fuse_projections().unwrap();
        let after = oxmx_core::memory::active_memory();
        // The fused arrays replace the parts' (each part becomes a view): at most the
        // allocator's rounding may differ.
        let slack = 4096 * sizes.len();
        assert!(after <= before + slack, "{q:?}: active memory {before} -> {after} bytes after fusing");
    }
}
