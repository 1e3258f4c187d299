//! Loading a model: a local folder (config.json + `model*.safetensors`, memory-mapped) or a GGUF
//! file (config from metadata, tensor names mapped to Hugging Face's, llama's Q/K rows
//! un-permuted, blocks dequantized to float32).

pub mod folder;
pub mod gguf;

use crate::config::ModelConfig;
use crate::models::LanguageModel;
use oxmx_core::{Array, Dtype, Error, Result};
use oxmx_nn::{load_weights_from, LoadMode};
use std::path::{Path, PathBuf};

/// A loaded model with what generation needs from its files.
pub struct LoadedModel {
    pub model: Box<dyn LanguageModel>,
    pub config: ModelConfig,
    /// The EOS set: `generation_config.json` overrides `config.json` (mlx-lm); GGUF metadata.
    pub eos_token_ids: Vec<u32>,
    pub path: PathBuf,
}

/// How weights are brought in.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Cast floating-point weights to this dtype (`None` keeps the file's). Default float32: the
    /// CPU backend's fast path.
    pub dtype: Option<Dtype>,
    /// GGUF blocks with an exact MLX affine form (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) stay quantized
    /// (`quantized_matmul` reads the packed bytes); `false` decodes every tensor to float.
    pub keep_quantized: bool,
    /// Tensor parallelism: shard the model over this group after loading (each rank keeps its
    /// slice of every layer; see `LanguageModel::shard`).
    pub tensor_parallel: Option<oxmx_core::distributed::Group>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { dtype: Some(Dtype::Float32), keep_quantized: true, tensor_parallel: None }
    }
}

/// Loads a folder or a `.gguf` file.
pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<LoadedModel> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::invalid(format!("[load] {} does not exist", path.display())));
    }
    if path.is_dir() {
        folder::load_folder(path, opts)
    } else if path.extension().and_then(|e| e.to_str()) == Some("gguf") {
        gguf::load_gguf_model(path, opts)
    } else {
        Err(Error::invalid(format!("[load] {} is neither a model folder nor a .gguf file", path.display())))
    }
}

/// Builds the model for `config`, sanitizes and casts `weights`, and loads them strictly (errors
/// name missing, unexpected and mis-shaped keys with both shapes).
pub fn build_and_load(config: &ModelConfig, weights: Vec<(String, Array)>, opts: &LoadOptions) -> Result<Box<dyn LanguageModel>> {
    let has_head = weights.iter().any(|(k, _)| k == "lm_head.weight");
    let tied = config.tie_word_embeddings == Some(true) || !has_head;
    let mut model = crate::models::build_model(config, tied)?;
    quantize_like_checkpoint(model.as_dyn_mut(), config, &weights)?;
    let weights = model.sanitize(weights);
    let weights: Vec<(String, Array)> = weights
        .into_iter()
        .map(|(k, a)| {
            let a = match opts.dtype {
                Some(dt) if a.dtype().is_float() && a.dtype() != dt => a.astype(dt),
                _ => a,
            };
            (k, a)
        })
        .collect();
    load_weights_from(model.as_dyn_mut(), &weights, LoadMode::Strict)?;
    // The model holds its own handles now: dropping the list lets the fusion below free each
    // part's copy as soon as it is replaced by a view (one layer's worth extra at a time).
    drop(weights);
    if let Some(group) = &opts.tensor_parallel {
        model.shard(group)?;
    }
    // Materialise once (casts, dequantized blocks) so the first forward does not pay for it.
    let params = model.parameters();
    let arrays: Vec<&Array> = params.values().collect();
    oxmx_core::eval(&arrays)?;
    drop(arrays);
    drop(params);
    model.fuse_projections()?;
    Ok(model)
}

/// As mlx-lm: every layer whose `<path>.scales` is in the checkpoint becomes quantized with the
/// config's `quantization` block (per-layer override, else the default) before the weights load.
fn quantize_like_checkpoint(model: &mut dyn oxmx_nn::Module, config: &ModelConfig, weights: &[(String, Array)]) -> Result<()> {
    let paths: std::collections::BTreeSet<&str> = weights.iter().filter_map(|(k, _)| k.strip_suffix(".scales")).collect();
    let Some(first) = paths.iter().next() else { return Ok(()) };
    let Some(q) = &config.quantization else {
        return Err(Error::invalid(format!("[load] `{first}.scales` is in the weights but config.json has no `quantization` block")));
    };
    let spec = |p: &crate::config::QuantParams| oxmx_nn::QuantSpec::new(p.group_size, p.bits, &p.mode);
    let predicate = |path: &str, _: &dyn oxmx_nn::Module| -> Option<oxmx_nn::QuantSpec> {
        if !paths.contains(path) {
            return None;
        }
        match q.overrides.get(path) {
            Some(over) => over.as_ref().map(spec),
            None => q.default.as_ref().map(spec),
        }
    };
    oxmx_nn::quantize(model, 64, 4, "affine", Some(&predicate))
}
