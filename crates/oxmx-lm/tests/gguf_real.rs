//! SmolLM2-135M-Instruct Q4_1 GGUF (when present: `$OXMX_MODELS_DIR` or ~/.cache/oxmx/models):
//! greedy ids for three chat prompts equal transformers' (its GGUF loader, dequantized float32),
//! recorded by scripts/gen_lm_fixtures.py. Prints load time and decode tok/s (float32 weights).

use oxmx_lm::cache::make_prompt_cache;
use oxmx_lm::generate::{generate_step, GenerateOptions};
use oxmx_lm::loader::{load, LoadOptions};
use oxmx_lm::sample::Sampler;
use std::path::PathBuf;

mod common;
use common::smollm2_gguf;

#[test]
fn smollm2_gguf_greedy_matches_transformers() {
    let Some(path) = smollm2_gguf() else {
        eprintln!("skipping: SmolLM2-135M-Instruct.Q4_1.gguf not found (set OXMX_MODELS_DIR)");
        return;
    };
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_gguf_greedy.json");
    let Ok(text) = std::fs::read_to_string(&fx) else {
        eprintln!("skipping: {} absent (run scripts/gen_lm_fixtures.py --only-gguf)", fx.display());
        return;
    };
    let exp: serde_json::Value = serde_json::from_str(&text).unwrap();
    let t0 = std::time::Instant::now();
    let m = load(&path, &LoadOptions::default()).unwrap();
    eprintln!("loaded {} in {:.2}s", path.display(), t0.elapsed().as_secs_f64());
    assert_eq!(m.config.num_hidden_layers, 30);
    assert_eq!(m.eos_token_ids, vec![2]);
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
