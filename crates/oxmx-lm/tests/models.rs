//! Tiny random-weight llama / qwen2 / qwen3 checkpoints (scripts/gen_lm_fixtures.py): our logits
//! equal transformers' (float32) for a token batch, with and without a KV cache in chunks, and
//! greedy generation reproduces transformers' ids. Loader errors name the problem.

use oxmx_core::ops;
use oxmx_lm::cache::{make_prompt_cache, KVCache, KvCache, PromptCache, RotatingKVCache};
use oxmx_lm::generate::{generate_ids, GenerateOptions};
use oxmx_lm::loader::{load, LoadOptions};
#[allow(unused_imports)]
use oxmx_lm::models::LanguageModel;
use oxmx_lm::sample::Sampler;
use std::path::PathBuf;

mod common;
use common::*;

fn check_model(name: &str) {
    let m = load(fixture(name), &LoadOptions::default()).unwrap();
    let (tokens, want) = expected(name);
    // Whole batch, no cache.
    let got = m.model.forward(&tokens, None);
    let d = max_abs_diff(&got, &want);
    assert!(d < TOL, "{name}: logits differ by {d}");
    check_forward_last(name, m.model.as_ref(), &tokens, &want);
    // KV cache, two chunks (5 + 4), then per-token decode of the standard and rotating caches.
    let caches: Vec<(&str, PromptCache)> =
        vec![("standard", make_prompt_cache(m.model.as_ref(), None)), ("rotating", make_prompt_cache(m.model.as_ref(), Some(64)))];
    for (kind, mut cache) in caches {
        let a = m.model.forward(&cols(&tokens, 0, 5), Some(&mut cache[..]));
        let b = m.model.forward(&cols(&tokens, 5, 9), Some(&mut cache[..]));
        let got = ops::concatenate(&[a, b], 1);
        let d = max_abs_diff(&got, &want);
        assert!(d < TOL, "{name} ({kind} cache, 2 chunks): logits differ by {d}");
        assert_eq!(cache[0].offset(), 9);
    }
    let mut cache = make_prompt_cache(m.model.as_ref(), None);
    let mut outs = vec![m.model.forward(&cols(&tokens, 0, 3), Some(&mut cache[..]))];
    for t in 3..9 {
        outs.push(m.model.forward(&cols(&tokens, t, t + 1), Some(&mut cache[..])));
    }
    let d = max_abs_diff(&ops::concatenate(&outs, 1), &want);
    assert!(d < TOL, "{name} (token-by-token decode): logits differ by {d}");
}

#[test]
fn tiny_llama_logits_match_transformers() {
    check_model("tiny_llama");
}

#[test]
fn tiny_qwen2_logits_match_transformers() {
    check_model("tiny_qwen2");
}

#[test]
fn tiny_qwen3_logits_match_transformers() {
    check_model("tiny_qwen3");
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in ["tiny_llama", "tiny_qwen2", "tiny_qwen3"] {
        let m = load(fixture(name), &LoadOptions::default()).unwrap();
        let exp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected_generate.json")).unwrap()).unwrap();
        let prompt: Vec<u32> = exp["prompt"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let want: Vec<u32> = exp["greedy"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        for prefill_step_size in [2048, 3] {
            let mut cache = make_prompt_cache(m.model.as_ref(), None);
            let opts = GenerateOptions { max_tokens: Some(want.len()), prefill_step_size, ..Default::default() };
            let (ids, stats) = generate_ids(m.model.as_ref(), &prompt, &mut cache, Sampler::greedy(), vec![], opts).unwrap();
            assert_eq!(ids, want, "{name}, prefill step {prefill_step_size}");
            assert_eq!(stats.generation_tokens, want.len());
            assert_eq!(stats.prompt_tokens, prompt.len());
        }
    }
}

#[test]
fn eos_from_generation_config_overrides_config() {
    let m = load(fixture("tiny_llama"), &LoadOptions::default()).unwrap();
    assert_eq!(m.eos_token_ids, vec![2, 7]);
    assert_eq!(m.config.model_type, "llama");
}

#[test]
fn generation_stops_at_eos() {
    let m = load(fixture("tiny_qwen2"), &LoadOptions::default()).unwrap();
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_qwen2").join("expected_generate.json")).unwrap()).unwrap();
    let prompt: Vec<u32> = exp["prompt"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let want: Vec<u32> = exp["greedy"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    // Declare the 4th greedy token an EOS id: generation ends there, EOS included.
    let mut cache = make_prompt_cache(m.model.as_ref(), None);
    let opts = GenerateOptions { max_tokens: Some(50), eos_token_ids: [want[3]].into_iter().collect(), ..Default::default() };
    let mut it = oxmx_lm::generate::generate_step(m.model.as_ref(), &prompt, &mut cache, Sampler::greedy(), vec![], opts).unwrap();
    let steps: Vec<_> = it.by_ref().map(|s| s.unwrap()).collect();
    let first_eos = want.iter().position(|&t| t == want[3]).unwrap();
    assert_eq!(steps.len(), first_eos + 1);
    assert_eq!(steps.last().unwrap().finish_reason, Some(oxmx_lm::generate::FinishReason::Stop));
    // logprobs are normalised
    let lp = steps[0].logprobs.to_vec::<f32>().unwrap();
    let total: f64 = lp.iter().map(|&x| (x as f64).exp()).sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
}

#[test]
fn rotating_cache_keeps_max_size() {
    // Decoding past max_kv_size keeps the window bounded and keeps running.
    let m = load(fixture("tiny_llama"), &LoadOptions::default()).unwrap();
    let mut cache = make_prompt_cache(m.model.as_ref(), Some(8));
    let prompt: Vec<u32> = (10..30).collect();
    let opts = GenerateOptions { max_tokens: Some(12), prefill_step_size: 5, ..Default::default() };
    let (ids, _) = generate_ids(m.model.as_ref(), &prompt, &mut cache, Sampler::greedy(), vec![], opts).unwrap();
    assert_eq!(ids.len(), 12);
    assert_eq!(cache[0].offset(), prompt.len() + 11);
    let st = cache[0].state();
    assert!(st[0].shape()[2] <= 8 + 5, "{:?}", st[0].shape());
}

#[test]
fn kv_cache_unit() {
    let mut c = KVCache::new();
    let k = ops::ones(&[1, 2, 3, 4], oxmx_core::Dtype::Float32);
    let (kk, _) = c.update_and_fetch(&k, &k);
    assert_eq!(kk.shape(), &[1, 2, 3, 4]);
    let (kk, _) =
        c.update_and_fetch(&ops::ones(&[1, 2, 1, 4], oxmx_core::Dtype::Float32), &ops::ones(&[1, 2, 1, 4], oxmx_core::Dtype::Float32));
    assert_eq!(kk.shape(), &[1, 2, 4, 4]);
    assert_eq!(c.trim(2), 2);
    assert_eq!(c.offset(), 2);
    let mut r = RotatingKVCache::new(4, 1);
    for i in 0..6 {
        let x = ops::full(&[1, 1, 1, 2], i as f64, Some(oxmx_core::Dtype::Float32));
        let (kk, _) = r.update_and_fetch(&x, &x);
        assert_eq!(kk.shape()[2], (i + 1).min(4));
    }
    // Ring after 6 tokens with keep=1: token 0 kept, then the newest three (5 overwrote 1's slot..).
    let mut v = r.state()[0].to_vec::<f32>().unwrap();
    v.dedup();
    let mut s: Vec<i32> = v.iter().map(|&x| x as i32).collect();
    s.sort();
    assert_eq!(s, vec![0, 3, 4, 5]);
}

fn tmp_copy(name: &str, tag: &str) -> PathBuf {
    let dst = std::env::temp_dir().join(format!("oxmx_lm_test_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

fn edit_config(dir: &PathBuf, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

fn err_of(r: oxmx_core::Result<oxmx_lm::loader::LoadedModel>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn loader_errors_name_the_problem() {
    let d = tmp_copy("tiny_llama", "unknown");
    edit_config(&d, |v| v["model_type"] = "foo".into());
    let e = err_of(load(&d, &LoadOptions::default()));
    assert!(e.contains("foo") && e.contains("llama") && e.contains("qwen2"), "{e}");

    let d = tmp_copy("tiny_llama", "alias");
    edit_config(&d, |v| v["model_type"] = "mistral".into());
    assert!(load(&d, &LoadOptions::default()).is_ok());

    let d = tmp_copy("tiny_llama", "shape");
    edit_config(&d, |v| v["intermediate_size"] = 80.into());
    let e = err_of(load(&d, &LoadOptions::default()));
    assert!(e.contains("mlp.gate_proj.weight") && e.contains("[80, 64]") && e.contains("[96, 64]"), "{e}");

    let d = tmp_copy("tiny_llama", "noconfig");
    std::fs::remove_file(d.join("config.json")).unwrap();
    let e = err_of(load(&d, &LoadOptions::default()));
    assert!(e.contains("config.json"), "{e}");

    let d = tmp_copy("tiny_llama", "trunc");
    let w = d.join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(load(&d, &LoadOptions::default()));
    assert!(e.contains("model.safetensors"), "{e}");

    let d = tmp_copy("tiny_llama", "noweights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    let e = err_of(load(&d, &LoadOptions::default()));
    assert!(e.contains("safetensors"), "{e}");

    let e = err_of(load("/nonexistent/model/dir", &LoadOptions::default()));
    assert!(e.contains("does not exist"), "{e}");
}
