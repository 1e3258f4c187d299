//! Speculative decoding against plain generation: with greedy sampling every emitted token is
//! the main model's own choice, so the ids must equal plain greedy generation's whatever the
//! draft (the model itself: everything accepted; its 8- and 4-bit copies: some accepted; an
//! unrelated model: mostly rejected), for several draft lengths, with a length limit, an EOS and a
//! logits processor; the caches end where plain generation leaves them. Seeded sampling is
//! reproducible; bad setups are clear errors.

use oxmx_lm::bench::random_weights_model;
use oxmx_lm::cache::make_prompt_cache;
use oxmx_lm::config::ModelConfig;
use oxmx_lm::generate::{generate_ids, FinishReason, GenerateOptions};
use oxmx_lm::models::LanguageModel;
use oxmx_lm::sample::{LogitsProcessor, RepetitionPenalty, Sampler, SamplerConfig};
use oxmx_lm::speculative::speculative_generate_step;

fn config(vocab: usize, quantized: bool) -> ModelConfig {
    let q = if quantized { r#", "quantization": {"group_size": 32, "bits": 4}"# } else { "" };
    ModelConfig::from_json_str(&format!(
        r#"{{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": {vocab},
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "float32"{q}}}"#
    ))
    .unwrap()
}

/// Random weights come from the process-wide generator: tests that make models take turns, so
/// each model (and what its drafts accept) is the same on every run.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn prompt() -> Vec<u32> {
    (0..11u32).map(|i| (i * 37 + 5) % 300).collect()
}

struct Run {
    ids: Vec<u32>,
    from_draft: Vec<bool>,
    finish: Option<FinishReason>,
    cache_offset: usize,
}

fn speculative(
    model: &dyn LanguageModel,
    draft: &dyn LanguageModel,
    opts: GenerateOptions,
    k: usize,
    sampler: Sampler,
    processors: Vec<Box<dyn LogitsProcessor>>,
) -> Run {
    let mut cache = make_prompt_cache(model, None);
    let mut dcache = make_prompt_cache(draft, None);
    let it = speculative_generate_step(model, draft, &prompt(), &mut cache, &mut dcache, sampler, processors, opts, k).unwrap();
    let (mut ids, mut from_draft, mut finish) = (Vec::new(), Vec::new(), None);
    for s in it {
        let s = s.unwrap();
        assert_eq!(s.logprobs.shape(), &[300]);
        ids.push(s.token);
        from_draft.push(s.from_draft);
        finish = s.finish_reason;
    }
    Run { ids, from_draft, finish, cache_offset: cache[0].offset() }
}

fn plain(model: &dyn LanguageModel, opts: GenerateOptions, processors: Vec<Box<dyn LogitsProcessor>>) -> (Vec<u32>, usize) {
    let mut cache = make_prompt_cache(model, None);
    let (ids, _) = generate_ids(model, &prompt(), &mut cache, Sampler::greedy(), processors, opts).unwrap();
    (ids, cache[0].offset())
}

#[test]
fn greedy_speculative_decoding_equals_plain_greedy_decoding() {
    let _turn = turn();
    let model = random_weights_model(&config(300, false), 1).unwrap();
    // The model's own weights in 8 and 4 bits: drafts that agree often, or now and then.
    let copy = |bits: usize| {
        let mut d = random_weights_model(&config(300, false), 9).unwrap();
        d.update(&model.parameters()).unwrap();
        oxmx_nn::quantize(d.as_dyn_mut(), 32, bits, "affine", None).unwrap();
        d
    };
    let (q8, q4) = (copy(8), copy(4));
    let unrelated = random_weights_model(&config(300, false), 2).unwrap();
    let opts = GenerateOptions { max_tokens: Some(24), ..Default::default() };
    let (want, want_offset) = plain(model.as_ref(), opts.clone(), vec![]);
    assert_eq!(want.len(), 24);
    let drafts =
        [("same model", model.as_ref()), ("8-bit copy", q8.as_ref()), ("4-bit copy", q4.as_ref()), ("unrelated", unrelated.as_ref())];
    let mut partial = false;
    for (name, draft) in drafts {
        for k in [1usize, 2, 3, 5] {
            let r = speculative(model.as_ref(), draft, opts.clone(), k, Sampler::greedy(), vec![]);
            let accepted = r.from_draft.iter().filter(|&&d| d).count();
            println!("draft {name}, k={k}: {accepted} of {} tokens from the draft", r.ids.len());
            assert_eq!(r.ids, want, "draft {name}, k={k}");
            assert_eq!(r.finish, Some(FinishReason::Length));
            assert_eq!(r.cache_offset, want_offset, "draft {name}, k={k}: the cache ends where plain generation leaves it");
            partial |= accepted > 0 && accepted < r.ids.len() * k / (k + 1);
            if name == "same model" {
                // Every round accepts all k drafts and adds the main model's next token.
                assert!(accepted >= 24 * k / (k + 1) - 1, "draft {name}, k={k}: only {accepted} accepted");
            }
        }
    }
    assert!(partial, "no run mixed accepted and rejected drafts: the trimming paths went untested");
}

#[test]
fn speculative_decoding_stops_at_eos_and_applies_processors_per_position() {
    let _turn = turn();
    let model = random_weights_model(&config(300, false), 3).unwrap();
    let draft = random_weights_model(&config(300, true), 3).unwrap();
    let opts = GenerateOptions { max_tokens: Some(20), ..Default::default() };
    let (free, _) = plain(model.as_ref(), opts.clone(), vec![]);
    // The 7th token as EOS: both runs stop there with it included.
    let eos = free[6];
    let first = free.iter().position(|&t| t == eos).unwrap();
    let opts_eos = GenerateOptions { eos_token_ids: [eos].into_iter().collect(), ..opts.clone() };
    let (want, want_offset) = plain(model.as_ref(), opts_eos.clone(), vec![]);
    assert_eq!(want.len(), first + 1);
    // The EOS proposed by the draft (the model itself) or corrected by the model (unrelated draft).
    for (name, d) in [("itself", model.as_ref()), ("unrelated", draft.as_ref())] {
        for k in [2usize, 4] {
            let r = speculative(model.as_ref(), d, opts_eos.clone(), k, Sampler::greedy(), vec![]);
            assert_eq!(r.ids, want, "draft {name}, k={k}");
            assert_eq!(r.finish, Some(FinishReason::Stop));
            assert_eq!(r.cache_offset, want_offset, "draft {name}, k={k}: the EOS is in the cache, as plain generation leaves it");
        }
    }
    // A repetition penalty sees each position's own history.
    let penalty = || -> Vec<Box<dyn LogitsProcessor>> { vec![Box::new(RepetitionPenalty { penalty: 1.5, context_size: 20 })] };
    let (want, _) = plain(model.as_ref(), opts.clone(), penalty());
    let r = speculative(model.as_ref(), draft.as_ref(), opts, 3, Sampler::greedy(), penalty());
    assert_eq!(r.ids, want, "with a repetition penalty");
}

#[test]
fn seeded_speculative_sampling_is_reproducible_and_bad_setups_are_errors() {
    let _turn = turn();
    let model = random_weights_model(&config(300, false), 4).unwrap();
    let draft = random_weights_model(&config(300, true), 4).unwrap();
    let opts = GenerateOptions { max_tokens: Some(16), ..Default::default() };
    let sampler = || Sampler::new(SamplerConfig { temp: 0.8, seed: Some(7), ..SamplerConfig::default() }).unwrap();
    let a = speculative(model.as_ref(), draft.as_ref(), opts.clone(), 3, sampler(), vec![]);
    let b = speculative(model.as_ref(), draft.as_ref(), opts.clone(), 3, sampler(), vec![]);
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.ids.len(), 16);

    let err = |draft: &dyn LanguageModel, k: usize, max_kv: Option<usize>| {
        let mut cache = make_prompt_cache(model.as_ref(), max_kv);
        let mut dcache = make_prompt_cache(draft, None);
        speculative_generate_step(model.as_ref(), draft, &prompt(), &mut cache, &mut dcache, Sampler::greedy(), vec![], opts.clone(), k)
            .err()
            .expect("an error")
            .message()
            .to_string()
    };
    let other_vocab = random_weights_model(&config(301, false), 4).unwrap();
    let e = err(other_vocab.as_ref(), 3, None);
    assert!(e.contains("vocabulary (301)") && e.contains("(300)"), "{e}");
    let e = err(draft.as_ref(), 0, None);
    assert!(e.contains("num_draft_tokens"), "{e}");
    let e = err(draft.as_ref(), 3, Some(8));
    assert!(e.contains("cannot be trimmed"), "{e}");
}
