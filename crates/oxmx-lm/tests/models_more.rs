//! More architectures and every RoPE variant against transformers (scripts/gen_lm_fixtures.py):
//! phi3 (fused projections, partial rotary, longrope), gemma3_text and its multimodal wrapper
//! gemma3 (sliding/global layers, soft-capping), mixtral and qwen3_moe (MoE, per-expert keys
//! stacked by `sanitize`), and llama with linear, dynamic, yarn and llama3 scaling. Logits equal
//! transformers' float32 logits with and without a KV cache; greedy ids are transformers'.

use oxmx_core::{io, ops, Array};
use oxmx_lm::cache::{make_prompt_cache, PromptCache};
use oxmx_lm::config::{ModelConfig, RopeScaling};
use oxmx_lm::generate::{generate_ids, GenerateOptions};
use oxmx_lm::loader::{load, LoadOptions};
#[allow(unused_imports)]
use oxmx_lm::models::LanguageModel;
use oxmx_lm::sample::Sampler;
use std::path::PathBuf;

mod common;
use common::*;

/// Which caches a fixture is compared with.
#[derive(Clone, Copy, PartialEq)]
enum Caches {
    /// Whole batch, then chunks 5 + 4 through the standard, rotating and model's own caches, then
    /// token-by-token decode.
    All,
    /// Whole batch only: dynamic NTK picks its base from the length of each call, so a 5-token
    /// chunk (under max_position_embeddings) is rotated differently from the 9-token batch —
    /// in transformers as in mlx-lm. Greedy decoding (below) covers the cache there.
    WholeBatchOnly,
}

fn caches_for(m: &dyn LanguageModel) -> Vec<(&'static str, PromptCache)> {
    let mut v = vec![("standard", make_prompt_cache(m, None)), ("rotating", make_prompt_cache(m, Some(64)))];
    if let Some(own) = m.make_cache(None) {
        v.push(("model's own", own));
    }
    v
}

/// Returns the largest logit difference seen.
fn check_model(name: &str, caches: Caches) -> f32 {
    let m = load(fixture(name), &LoadOptions::default()).unwrap();
    let (tokens, want) = expected(name);
    let got = m.model.forward(&tokens, None);
    let mut worst = max_abs_diff(&got, &want);
    assert!(worst < TOL, "{name}: logits differ by {worst}");
    check_forward_last(name, m.model.as_ref(), &tokens, &want);
    if caches == Caches::WholeBatchOnly {
        eprintln!("{name}: max |logit - transformers| = {worst:.2e} (no cache)");
        return worst;
    }
    for (kind, mut cache) in caches_for(m.model.as_ref()) {
        let a = m.model.forward(&cols(&tokens, 0, 5), Some(&mut cache[..]));
        let b = m.model.forward(&cols(&tokens, 5, 9), Some(&mut cache[..]));
        let d = max_abs_diff(&ops::concatenate(&[a, b], 1), &want);
        assert!(d < TOL, "{name} ({kind} cache, 2 chunks): logits differ by {d}");
        assert_eq!(cache[0].offset(), 9);
        worst = worst.max(d);
    }
    for (kind, mut cache) in caches_for(m.model.as_ref()) {
        let mut outs = vec![m.model.forward(&cols(&tokens, 0, 3), Some(&mut cache[..]))];
        for t in 3..9 {
            outs.push(m.model.forward(&cols(&tokens, t, t + 1), Some(&mut cache[..])));
        }
        let d = max_abs_diff(&ops::concatenate(&outs, 1), &want);
        assert!(d < TOL, "{name} ({kind} cache, token by token): logits differ by {d}");
        worst = worst.max(d);
    }
    eprintln!("{name}: max |logit - transformers| = {worst:.2e}");
    worst
}

/// `(prompt, greedy ids)` of a fixture.
fn greedy_fixture(name: &str) -> (Vec<u32>, Vec<u32>) {
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected_generate.json")).unwrap()).unwrap();
    let ids = |k: &str| -> Vec<u32> { exp[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
    (ids("prompt"), ids("greedy"))
}

fn check_greedy(name: &str, prefill_steps: &[usize]) {
    let m = load(fixture(name), &LoadOptions::default()).unwrap();
    let (prompt, want) = greedy_fixture(name);
    for &prefill_step_size in prefill_steps {
        let mut caches = vec![make_prompt_cache(m.model.as_ref(), None)];
        caches.extend(m.model.make_cache(None));
        for mut cache in caches {
            let opts = GenerateOptions { max_tokens: Some(want.len()), prefill_step_size, ..Default::default() };
            let (got, _) = generate_ids(m.model.as_ref(), &prompt, &mut cache, Sampler::greedy(), vec![], opts).unwrap();
            assert_eq!(got, want, "{name}, prefill step {prefill_step_size}");
        }
    }
}

#[test]
fn tiny_phi3_longrope_matches_transformers() {
    // The 9-token batch fits the 16-position original context: short factors, in every cache.
    check_model("tiny_phi3", Caches::All);
    // The 18-token greedy prompt is past it: long factors. (Prefilled in one step: 3-token chunks
    // would start inside the original context with the short factors, where transformers rotates
    // the whole prompt with the long ones.)
    check_greedy("tiny_phi3", &[2048]);
}

#[test]
fn tiny_gemma3_text_matches_transformers() {
    check_model("tiny_gemma3_text", Caches::All);
    check_greedy("tiny_gemma3_text", &[2048, 3]);
}

#[test]
fn tiny_gemma3_multimodal_wrapper_matches_transformers() {
    // transformers 4.x config style inside `text_config`, `model.language_model.*` keys and
    // vision-tower keys to drop: the same weights and logits as tiny_gemma3_text.
    let m = load(fixture("tiny_gemma3"), &LoadOptions::default()).unwrap();
    assert_eq!(m.config.model_type, "gemma3");
    assert_eq!(m.eos_token_ids, vec![2, 7]);
    assert!(m.model.parameters().keys().all(|k| k.starts_with("language_model.model.")), "mlx-lm's key layout");
    check_model("tiny_gemma3", Caches::All);
    check_greedy("tiny_gemma3", &[2048]);
}

#[test]
fn tiny_mixtral_matches_transformers() {
    check_model("tiny_mixtral", Caches::All);
    check_greedy("tiny_mixtral", &[2048, 3]);
}

#[test]
fn tiny_qwen3_moe_matches_transformers() {
    check_model("tiny_qwen3_moe", Caches::All);
    check_greedy("tiny_qwen3_moe", &[2048, 3]);
}

#[test]
fn llama_rope_variants_match_transformers() {
    for name in ["tiny_llama_linear", "tiny_llama_yarn", "tiny_llama_llama3"] {
        check_model(name, Caches::All);
        check_greedy(name, &[2048, 3]);
    }
    // Dynamic NTK: the whole batch (9 > max_position_embeddings = 6 positions), and greedy
    // decoding as transformers runs it — the whole prompt in one call, then one token per call,
    // each call's base from its length. (`generate_ids` prefills all but the last prompt token
    // first, as mlx-lm does, which gives those 8 positions the base of length 8, not 9.)
    check_model("tiny_llama_dynamic", Caches::WholeBatchOnly);
    let m = load(fixture("tiny_llama_dynamic"), &LoadOptions::default()).unwrap();
    let (prompt, want) = greedy_fixture("tiny_llama_dynamic");
    let mut cache = make_prompt_cache(m.model.as_ref(), None);
    let last = |logits: &Array| -> u32 {
        let l = logits.shape()[1] as isize;
        let row = ops::slice_range(logits, &[0, l - 1, 0], &[1, l, logits.shape()[2] as isize]);
        ops::argmax(&row, Some(-1), false).to_vec::<u32>().unwrap()[0]
    };
    let ids: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
    let mut next = last(&m.model.forward(&Array::from_slice(&ids, &[1, ids.len()]), Some(&mut cache[..])));
    let mut got = vec![next];
    while got.len() < want.len() {
        next = last(&m.model.forward(&Array::from_slice(&[next as i32], &[1, 1]), Some(&mut cache[..])));
        got.push(next);
    }
    assert_eq!(got, want, "tiny_llama_dynamic greedy");
}

#[test]
fn rope_configs_parse() {
    let cfg = |rope: serde_json::Value, extra: serde_json::Value| {
        let mut v = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "intermediate_size": 8,
            "num_attention_heads": 4, "vocab_size": 10, "max_position_embeddings": 4096, "rope_scaling": rope});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        ModelConfig::from_value(v)
    };
    let none = serde_json::json!({});
    let c = cfg(serde_json::json!({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}), none.clone()).unwrap();
    match c.rope_scaling {
        RopeScaling::Yarn { factor, original_max_position_embeddings, beta_fast, beta_slow, attention_factor, truncate } => {
            assert_eq!((factor, original_max_position_embeddings, beta_fast, beta_slow, truncate), (4.0, 1024.0, 32.0, 1.0, true));
            assert!((attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
        }
        ref r => panic!("{r:?}"),
    }
    // Phi-3's "su" with the original context at the top level, and partial rotary features.
    let c = cfg(
        serde_json::json!({"type": "su", "short_factor": [1.0, 1.0], "long_factor": [2.0, 3.0]}),
        serde_json::json!({"original_max_position_embeddings": 1024, "partial_rotary_factor": 0.25}),
    )
    .unwrap();
    match &c.rope_scaling {
        RopeScaling::LongRope { original_max_position_embeddings, long_mscale, .. } => {
            assert_eq!(*original_max_position_embeddings, 1024.0);
            assert!((long_mscale - (1.0 + 4f64.ln() / 1024f64.ln()).sqrt()).abs() < 1e-12);
        }
        r => panic!("{r:?}"),
    }
    assert_eq!(c.partial_rotary_factor, 0.25);
    let c = cfg(serde_json::json!({"rope_type": "dynamic", "factor": 2.0}), none.clone()).unwrap();
    assert_eq!(c.rope_scaling, RopeScaling::Dynamic { factor: 2.0, max_position_embeddings: 4096.0 });
    let e = cfg(serde_json::json!({"rope_type": "foo", "factor": 2.0}), none.clone()).unwrap_err().to_string();
    assert!(e.contains("foo") && e.contains("yarn") && e.contains("longrope"), "{e}");
    let e = cfg(serde_json::json!({"rope_type": "longrope", "short_factor": [1.0]}), none.clone()).unwrap_err().to_string();
    assert!(e.contains("long_factor"), "{e}");
    let e = cfg(serde_json::json!({"rope_type": "linear"}), none).unwrap_err().to_string();
    assert!(e.contains("factor"), "{e}");
}

#[test]
fn gemma3_config_defaults_from_text_config() {
    // mlx-community gemma-3 configs give only a few text keys; the rest are transformers' defaults.
    let c = ModelConfig::from_value(serde_json::json!({
        "model_type": "gemma3", "eos_token_id": [1, 106],
        "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34,
                        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024}
    }))
    .unwrap();
    assert_eq!((c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.vocab_size), (2560, 8, 4, 256, 262208));
    assert_eq!(c.rope_theta, 1_000_000.0);
    assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 8.0 });
    assert_eq!(c.eos_token_ids, vec![1, 106]);
    assert_eq!(c.arch_usize("sliding_window").unwrap(), Some(1024));
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxmx_models_more_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of fixture `name` with its weights rewritten by `f`.
fn with_weights(name: &str, tag: &str, f: impl FnOnce(Vec<(String, Array)>) -> Vec<(String, Array)>) -> PathBuf {
    let d = tmp_dir(tag);
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
    }
    let (w, _) = io::load_safetensors(d.join("model.safetensors")).unwrap();
    io::save_safetensors_file(d.join("model.safetensors"), &f(w), None).unwrap();
    d
}

/// Per-expert `...experts.{e}.{name}.weight` grouped by (layer block, name), experts in order.
fn expert_groups(w: &[(String, Array)]) -> std::collections::BTreeMap<(String, String), Vec<(usize, Array)>> {
    let mut g: std::collections::BTreeMap<(String, String), Vec<(usize, Array)>> = Default::default();
    for (k, a) in w {
        if let Some((block, rest)) = k.split_once(".experts.") {
            let p: Vec<&str> = rest.split('.').collect();
            g.entry((block.to_string(), p[1].to_string())).or_default().push((p[0].parse().unwrap(), a.clone()));
        }
    }
    for v in g.values_mut() {
        v.sort_by_key(|(e, _)| *e);
    }
    g
}

#[test]
fn moe_accepts_mlx_lm_stacked_and_fused_expert_keys() {
    let (tokens, want) = expected("tiny_mixtral");
    // mlx-lm's sanitized layout: switch_mlp.{gate,up,down}_proj.weight stacked on the expert axis.
    let d = with_weights("tiny_mixtral", "stacked", |w| {
        let groups = expert_groups(&w);
        let mut out: Vec<(String, Array)> = w.into_iter().filter(|(k, _)| !k.contains(".experts.")).collect();
        for ((block, name), mats) in groups {
            let proj = match name.as_str() {
                "w1" => "gate_proj",
                "w2" => "down_proj",
                _ => "up_proj",
            };
            let mats: Vec<Array> = mats.into_iter().map(|(_, a)| a).collect();
            out.push((format!("{block}.switch_mlp.{proj}.weight"), ops::stack(&mats, 0)));
        }
        out
    });
    let m = load(&d, &LoadOptions::default()).unwrap();
    let diff = max_abs_diff(&m.model.forward(&tokens, None), &want);
    assert!(diff < TOL, "stacked: {diff}");

    // transformers 5's in-memory layout: experts.gate_up_proj [E, 2I, D] and experts.down_proj.
    let (tokens, want) = expected("tiny_qwen3_moe");
    let d = with_weights("tiny_qwen3_moe", "fused", |w| {
        let groups = expert_groups(&w);
        let mut out: Vec<(String, Array)> = w.into_iter().filter(|(k, _)| !k.contains(".experts.")).collect();
        let stacked = |block: &str, name: &str| {
            let mats: Vec<Array> = groups[&(block.to_string(), name.to_string())].iter().map(|(_, a)| a.clone()).collect();
            ops::stack(&mats, 0)
        };
        let blocks: std::collections::BTreeSet<String> = groups.keys().map(|(b, _)| b.clone()).collect();
        for b in blocks {
            let gate_up = ops::concatenate(&[stacked(&b, "gate_proj"), stacked(&b, "up_proj")], 1);
            out.push((format!("{b}.experts.gate_up_proj"), gate_up));
            out.push((format!("{b}.experts.down_proj"), stacked(&b, "down_proj")));
        }
        out
    });
    let m = load(&d, &LoadOptions::default()).unwrap();
    let diff = max_abs_diff(&m.model.forward(&tokens, None), &want);
    assert!(diff < TOL, "fused: {diff}");
}

#[test]
fn quantized_experts_run_through_gather_qmm() {
    let mut m = load(fixture("tiny_qwen3_moe"), &LoadOptions::default()).unwrap();
    let (tokens, want) = expected("tiny_qwen3_moe");
    // Only the experts: a quantized router can flip a near-tied top-k choice, which moves the
    // logits by far more than the 8-bit rounding.
    let experts = |p: &str, _: &dyn oxmx_nn::Module| p.contains("switch_mlp").then(|| oxmx_nn::QuantSpec::new(32, 8, "affine"));
    oxmx_nn::quantize(m.model.as_dyn_mut(), 32, 8, "affine", Some(&experts)).unwrap();
    let keys: Vec<String> = m.model.parameters().keys().cloned().collect();
    for proj in ["gate_proj", "up_proj", "down_proj"] {
        assert!(keys.iter().any(|k| *k == format!("model.layers.0.mlp.switch_mlp.{proj}.scales")), "{keys:?}");
    }
    let got = m.model.forward(&tokens, None);
    let d = max_abs_diff(&got, &want);
    // 8-bit experts: close to the float logits, not equal (measured 0.047).
    assert!(d > 0.0 && d < 0.15, "8-bit logits differ by {d}");
}

#[test]
fn unknown_model_type_lists_the_new_architectures() {
    let d = with_weights("tiny_llama_linear", "unknown", |w| w);
    let p = d.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v["model_type"] = "foo".into();
    std::fs::write(&p, v.to_string()).unwrap();
    let e = match load(&d, &LoadOptions::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    for name in ["foo", "phi3", "gemma3_text", "gemma3", "mixtral", "qwen3_moe", "llama", "qwen2", "qwen3"] {
        assert!(e.contains(name), "`{name}` missing from: {e}");
    }
}

#[test]
fn inconsistent_configs_are_errors_naming_the_field() {
    let edit = |name: &str, tag: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let d = with_weights(name, tag, |w| w);
        let p = d.join("config.json");
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, v.to_string()).unwrap();
        match load(&d, &LoadOptions::default()) {
            Ok(_) => panic!("{tag}: expected an error"),
            Err(e) => e.to_string(),
        }
    };
    let e = edit("tiny_mixtral", "noexperts", &|v| {
        v.as_object_mut().unwrap().remove("num_local_experts");
    });
    assert!(e.contains("num_local_experts"), "{e}");
    let e = edit("tiny_mixtral", "topk", &|v| v["num_experts_per_tok"] = 9.into());
    assert!(e.contains("num_experts_per_tok"), "{e}");
    let e = edit("tiny_gemma3_text", "layertypes", &|v| v["layer_types"] = serde_json::json!(["sliding_attention"]));
    assert!(e.contains("layer_types"), "{e}");
    let e = edit("tiny_phi3", "factors", &|v| v["rope_parameters"]["long_factor"] = serde_json::json!([1.0, 2.0]));
    assert!(e.contains("long_factor"), "{e}");
}
