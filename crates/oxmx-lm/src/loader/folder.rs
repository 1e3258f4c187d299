//! A local model folder: `config.json`, optional `generation_config.json` (its `eos_token_id`
//! overrides the config's, as mlx-lm), and the weights in `model*.safetensors` shards (every
//! shard memory-mapped; the index file is not needed).

use super::{build_and_load, LoadOptions, LoadedModel};
use crate::config::{parse_token_ids, ModelConfig};
use oxmx_core::{io, Array, Error, Result};
use std::path::{Path, PathBuf};

/// The safetensors shards of a folder: `model*.safetensors` (mlx-lm's rule), sorted by name.
/// Other safetensors files (adapters, saved activations) are never taken for weights.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::invalid(format!("[load] cannot list {}: {e}", dir.display())))?;
    let mut all: Vec<PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().and_then(|e| e.to_str()) == Some("safetensors")).collect();
    all.sort();
    let model: Vec<PathBuf> =
        all.iter().filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("model"))).cloned().collect();
    if model.is_empty() {
        return Err(Error::invalid(format!("[load] no model*.safetensors weights in {}", dir.display())));
    }
    Ok(model)
}

/// Reads the config with the generation config's EOS override applied.
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let cfg_path = dir.join("config.json");
    if !cfg_path.is_file() {
        return Err(Error::invalid(format!("[load] missing config.json in {}", dir.display())));
    }
    let mut config = ModelConfig::from_file(&cfg_path)?;
    let gen_path = dir.join("generation_config.json");
    if gen_path.is_file() {
        let s =
            std::fs::read_to_string(&gen_path).map_err(|e| Error::invalid(format!("[load] cannot read {}: {e}", gen_path.display())))?;
        let v: serde_json::Value =
            serde_json::from_str(&s).map_err(|e| Error::invalid(format!("[load] {}: invalid JSON: {e}", gen_path.display())))?;
        if let Some(e) = v.get("eos_token_id").filter(|e| !e.is_null()) {
            config.eos_token_ids = parse_token_ids(e, "generation_config.eos_token_id")?;
        }
    }
    Ok(config)
}

pub fn load_folder(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let config = read_config(dir)?;
    let mut weights: Vec<(String, Array)> = Vec::new();
    for f in weight_files(dir)? {
        let (arrays, _meta) = io::safetensors::load_safetensors(&f).map_err(|e| Error::invalid(format!("[load] {}: {e}", f.display())))?;
        weights.extend(arrays);
    }
    let model = build_and_load(&config, weights, opts).map_err(|e| Error::invalid(format!("{e} (model folder {})", dir.display())))?;
    Ok(LoadedModel { eos_token_ids: config.eos_token_ids.clone(), model, config, path: dir.to_path_buf() })
}
