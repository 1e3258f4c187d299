//! Batched generation against one-by-one generation: prompts of different lengths decoded in one
//! batch give each prompt's own greedy tokens (a row stopping early at its EOS or its length
//! leaves the batch), the fallback paths (KV quantization) agree too, seeded sampling is
//! reproducible, and bad input is a clear error.

use oxmx_lm::batch::batch_generate;
use oxmx_lm::bench::random_weights_model;
use oxmx_lm::cache::make_prompt_cache;
use oxmx_lm::config::ModelConfig;
use oxmx_lm::generate::{generate_ids, FinishReason, GenerateOptions};
use oxmx_lm::models::LanguageModel;
use oxmx_lm::sample::{Sampler, SamplerConfig};

fn config() -> ModelConfig {
    ModelConfig::from_json_str(
        r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 300,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32"}"#,
    )
    .unwrap()
}

fn prompts() -> Vec<Vec<u32>> {
    [5usize, 17, 1, 9].iter().enumerate().map(|(i, &n)| (0..n as u32).map(|t| (t * 31 + 7 * i as u32 + 3) % 300).collect()).collect()
}

fn alone(model: &dyn LanguageModel, p: &[u32], opts: GenerateOptions) -> Vec<u32> {
    let mut cache = make_prompt_cache(model, None);
    generate_ids(model, p, &mut cache, Sampler::greedy(), vec![], opts).unwrap().0
}

#[test]
fn a_batch_gives_each_prompt_its_own_greedy_tokens() {
    let model = random_weights_model(&config(), 5).unwrap();
    let opts = GenerateOptions { max_tokens: Some(12), ..Default::default() };
    let want: Vec<Vec<u32>> = prompts().iter().map(|p| alone(model.as_ref(), p, opts.clone())).collect();
    let out = batch_generate(model.as_ref(), &prompts(), &SamplerConfig::default(), opts.clone()).unwrap();
    assert_eq!(out.tokens, want);
    assert!(out.finish_reasons.iter().all(|r| *r == FinishReason::Length));
    assert_eq!(out.stats.generation_tokens, 48);
    // Row 1 stops at its 4th token (an EOS that no earlier token of that row equals): it leaves
    // the batch and the others go on.
    let eos = want[1][3];
    let opts_eos = GenerateOptions { eos_token_ids: [eos].into_iter().collect(), ..opts.clone() };
    let want: Vec<Vec<u32>> = prompts().iter().map(|p| alone(model.as_ref(), p, opts_eos.clone())).collect();
    assert!(want[1].len() <= 4 && *want[1].last().unwrap() == eos);
    let out = batch_generate(model.as_ref(), &prompts(), &SamplerConfig::default(), opts_eos).unwrap();
    assert_eq!(out.tokens, want);
    assert_eq!(out.finish_reasons[1], FinishReason::Stop);
    // KV quantization runs the prompts one by one, as plain generation does.
    let q = GenerateOptions { kv_bits: Some(8), kv_group_size: 32, ..opts };
    let want: Vec<Vec<u32>> = prompts().iter().map(|p| alone(model.as_ref(), p, q.clone())).collect();
    assert_eq!(batch_generate(model.as_ref(), &prompts(), &SamplerConfig::default(), q).unwrap().tokens, want);
}

#[test]
fn seeded_batches_are_reproducible_and_bad_input_is_an_error() {
    let model = random_weights_model(&config(), 6).unwrap();
    let opts = GenerateOptions { max_tokens: Some(8), ..Default::default() };
    let s = SamplerConfig { temp: 0.9, seed: Some(3), ..SamplerConfig::default() };
    let a = batch_generate(model.as_ref(), &prompts(), &s, opts.clone()).unwrap();
    let b = batch_generate(model.as_ref(), &prompts(), &s, opts.clone()).unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert!(a.tokens.iter().all(|t| t.len() == 8));
    let e = batch_generate(model.as_ref(), &[], &SamplerConfig::default(), opts.clone()).err().unwrap();
    assert!(e.message().contains("no prompts"), "{}", e.message());
    let e = batch_generate(model.as_ref(), &[vec![1, 2], vec![]], &SamplerConfig::default(), opts.clone()).err().unwrap();
    assert!(e.message().contains("prompt 1") && e.message().contains("at least one token"), "{}", e.message());
    let e = batch_generate(model.as_ref(), &[vec![1, 300]], &SamplerConfig::default(), opts).err().unwrap();
    assert!(e.message().contains("prompt 0") && e.message().contains("300"), "{}", e.message());
}
