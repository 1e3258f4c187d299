//! The model side of the commands: load (oxmx-lm's loader), keep a KV cache across calls (so
//! `oxmx chat` feeds only each new turn), run oxmx-lm's generation loop.

use std::collections::BTreeSet;
use std::path::Path;

use oxmx_core::Result;
use oxmx_lm::cache::{make_prompt_cache, PromptCache};
use oxmx_lm::generate::{generate_step, GenerateOptions};
use oxmx_lm::loader::{load, LoadOptions, LoadedModel};
use oxmx_lm::sample::{Sampler, SamplerConfig};
use oxmx_lm::speculative::speculative_generate_step;

/// What `generate` needs besides the prompt.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub temp: f64,
    pub top_p: f64,
    pub min_p: f64,
    pub top_k: usize,
    pub seed: Option<u64>,
    pub max_tokens: usize,
    pub eos_token_ids: Vec<u32>,
    /// KV-cache quantization (`--kv-bits`, `--kv-group-size`, `--quantized-kv-start`).
    pub kv_bits: Option<usize>,
    pub kv_group_size: usize,
    pub quantized_kv_start: usize,
}

/// mlx_lm's statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub prompt_tokens: usize,
    pub prompt_tps: f64,
    pub generation_tps: f64,
    pub peak_memory: usize,
}

impl Stats {
    pub fn peak_memory_gb(&self) -> f64 {
        self.peak_memory as f64 / 1e9
    }
}

pub struct Engine {
    loaded: LoadedModel,
    cache: PromptCache,
    max_kv_size: Option<usize>,
    /// Speculative decoding: the draft model, its cache and tokens proposed per round.
    draft: Option<(LoadedModel, PromptCache, usize)>,
}

impl Engine {
    pub fn load(path: &Path, max_kv_size: Option<usize>) -> Result<Engine> {
        Engine::load_with(path, max_kv_size, &LoadOptions::default())
    }
    pub fn load_with(path: &Path, max_kv_size: Option<usize>, opts: &LoadOptions) -> Result<Engine> {
        let loaded = load(path, opts)?;
        let cache = make_prompt_cache(loaded.model.as_ref(), max_kv_size);
        Ok(Engine { loaded, cache, max_kv_size, draft: None })
    }
    /// Loads a draft model for speculative decoding (`--draft-model`): it must share the
    /// model's vocabulary, and caches must be trimmable (no `max_kv_size`).
    pub fn load_draft(&mut self, path: &Path, num_draft: usize) -> Result<()> {
        let draft = load(path, &LoadOptions::default())?;
        let (vm, vd) = (self.loaded.model.config().vocab_size, draft.model.config().vocab_size);
        if vm != vd {
            return Err(oxmx_core::Error::invalid(format!(
                "the draft model {} has a vocabulary of {vd} but the model's is {vm}: they must share a tokenizer",
                path.display()
            )));
        }
        if self.max_kv_size.is_some() {
            return Err(oxmx_core::Error::invalid(
                "--draft-model cannot be combined with --max-kv-size (a rotating cache cannot be trimmed)",
            ));
        }
        let cache = make_prompt_cache(draft.model.as_ref(), None);
        self.draft = Some((draft, cache, num_draft));
        Ok(())
    }
    /// Applies trained adapters (`oxmx lora`'s output) and puts the model in eval mode.
    pub fn load_adapters(&mut self, dir: &Path) -> Result<()> {
        oxmx_lm::lora::load_adapters(self.loaded.model.as_mut(), dir)?;
        oxmx_nn::Module::set_eval(self.loaded.model.as_mut());
        Ok(())
    }
    /// Replaces the KV cache (a prompt cache loaded from a file); its layer count must match.
    pub fn set_cache(&mut self, cache: PromptCache) -> Result<()> {
        let n = self.loaded.model.num_layers();
        if cache.len() != n {
            return Err(oxmx_core::Error::invalid(format!("the prompt cache has {} layers but the model has {n}", cache.len())));
        }
        self.cache = cache;
        Ok(())
    }
    pub fn cache(&self) -> &PromptCache {
        &self.cache
    }
    /// Runs `prompt` into the cache without generating (cache-prompt).
    pub fn prefill(&mut self, prompt: &[u32], opts: GenerateOptions) -> Result<Stats> {
        let st = oxmx_lm::generate::prefill_cache(self.loaded.model.as_ref(), prompt, &mut self.cache, opts)?;
        Ok(Stats { prompt_tokens: st.prompt_tokens, prompt_tps: st.prompt_tps, generation_tps: 0.0, peak_memory: st.peak_memory })
    }
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.loaded.eos_token_ids
    }
    pub fn reset_cache(&mut self) {
        self.cache = make_prompt_cache(self.loaded.model.as_ref(), self.max_kv_size);
        if let Some((d, c, _)) = &mut self.draft {
            *c = make_prompt_cache(d.model.as_ref(), None);
        }
    }
    /// Generates after `prompt` (continuing the cache), calling `on_token` for every id.
    pub fn generate(&mut self, prompt: &[u32], p: &GenParams, on_token: &mut dyn FnMut(u32) -> Result<()>) -> Result<Stats> {
        let sampler = Sampler::new(SamplerConfig {
            temp: p.temp,
            top_p: p.top_p,
            min_p: p.min_p,
            top_k: p.top_k,
            seed: p.seed,
            ..SamplerConfig::default()
        })?;
        let opts = GenerateOptions {
            max_tokens: Some(p.max_tokens),
            eos_token_ids: p.eos_token_ids.iter().copied().collect::<BTreeSet<u32>>(),
            kv_bits: p.kv_bits,
            kv_group_size: p.kv_group_size,
            quantized_kv_start: p.quantized_kv_start,
            ..GenerateOptions::default()
        };
        let st = if let Some((draft, dcache, k)) = &mut self.draft {
            let model = self.loaded.model.as_ref();
            let mut it =
                speculative_generate_step(model, draft.model.as_ref(), prompt, &mut self.cache, dcache, sampler, vec![], opts, *k)?;
            for step in it.by_ref() {
                on_token(step?.token)?;
            }
            it.stats().clone()
        } else {
            let mut it = generate_step(self.loaded.model.as_ref(), prompt, &mut self.cache, sampler, vec![], opts)?;
            for step in it.by_ref() {
                on_token(step?.token)?;
            }
            it.stats().clone()
        };
        Ok(Stats {
            prompt_tokens: st.prompt_tokens,
            prompt_tps: st.prompt_tps,
            generation_tps: st.generation_tps,
            peak_memory: st.peak_memory,
        })
    }
}
