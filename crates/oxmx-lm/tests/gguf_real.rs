//! Real GGUF models (when present in `$OXMX_MODELS_DIR` or ~/.cache/oxmx/models): the default
//! SmolLM2-135M-Instruct Q4_1 and Qwen2.5-Coder-0.5B-Instruct Q4_K_M (scripts/fetch_qwen_coder.sh):
//! greedy ids for three chat prompts each equal transformers' (its GGUF loader, dequantized
//! float32), recorded by scripts/gen_lm_fixtures.py. Prints load time and tok/s.

use oxmx_lm::cache::make_prompt_cache;
use oxmx_lm::generate::{generate_step, GenerateOptions};
use oxmx_lm::loader::{load, LoadOptions};
use oxmx_lm::sample::Sampler;
use std::path::PathBuf;

mod common;
use common::{qwen_coder_gguf, smollm2_gguf, QWEN_CODER_FILE};

#[test]
fn smollm2_gguf_greedy_matches_transformers() {
    let Some(path) = smollm2_gguf() else {
        eprintln!("skipping: SmolLM2-135M-Instruct.Q4_1.gguf not found (set OXMX_MODELS_DIR)");
        return;
    };
    check_greedy(&path, "smollm2_gguf_greedy.json", 30, &[2]);
}

/// Qwen2.5-Coder-0.5B-Instruct, Q4_K_M mix (Q4_K/Q6_K decoded to float32, Q5_0/Q8_0 kept as
/// exact affine blocks), untied lm_head, qwen2 attention biases.
#[test]
fn qwen_coder_gguf_greedy_matches_transformers() {
    let Some(path) = qwen_coder_gguf() else {
        eprintln!("skipping: {QWEN_CODER_FILE} not found (scripts/fetch_qwen_coder.sh fetches it)");
        return;
    };
    check_greedy(&path, "qwen_coder_gguf_greedy.json", 24, &[151645]);
}

/// Greedy ids for each recorded chat prompt equal transformers'.
fn check_greedy(path: &std::path::Path, fixture: &str, layers: usize, eos: &[u32]) {
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
    let Ok(text) = std::fs::read_to_string(&fx) else {
        eprintln!("skipping: {} absent (run scripts/gen_lm_fixtures.py --only-gguf)", fx.display());
        return;
    };
    let exp: serde_json::Value = serde_json::from_str(&text).unwrap();
    let t0 = std::time::Instant::now();
    let m = load(path, &LoadOptions::default()).unwrap();
    eprintln!("loaded {} in {:.2}s", path.display(), t0.elapsed().as_secs_f64());
    assert_eq!(m.config.num_hidden_layers, layers);
    assert_eq!(m.eos_token_ids, eos);
    for case in exp["cases"].as_array().unwrap() {
        let ids: Vec<u32> = case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let want: Vec<u32> = case["greedy"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut cache = make_prompt_cache(m.model.as_ref(), None);
        let opts = GenerateOptions { max_tokens: Some(want.len()), ..Default::default() };
        let mut it = generate_step(m.model.as_ref(), &ids, &mut cache, Sampler::greedy(), vec![], opts).unwrap();
        let got: Vec<u32> = it.by_ref().map(|s| s.unwrap().token).collect();
        let st = it.stats().clone();
        eprintln!(
            "{:?}: prompt {} tok at {:.1} tok/s, generation {} tok at {:.1} tok/s, peak {:.1} MB",
            case["prompt"].as_str().unwrap(),
            st.prompt_tokens,
            st.prompt_tps,
            st.generation_tokens,
            st.generation_tps,
            st.peak_memory as f64 / 1e6
        );
        assert_eq!(got, want, "prompt {:?}", case["prompt"]);
    }
}
