//! Which layers get adapters (mlx-lm's `linear_to_lora_layers`), what is trained (freeze /
//! unfreeze as `train_model` does), and the adapter files (`load_adapters`, the trainer's save).

use super::config::{AdapterConfig, LoraParameters, TrainArgs};
use crate::models::LanguageModel;
use oxmx_core::{io, Array, Error, Result};
use oxmx_nn::{Linear, LoraSpec, Module, Params};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("[lora] {msg}"))
}

/// The transformer blocks' module paths in order (`model.layers.0`, ...): the `layers.N`
/// children of the one container that holds `num_layers()` of them (mlx-lm's `model.layers`).
pub fn block_paths(model: &dyn LanguageModel) -> Result<Vec<String>> {
    let n = model.num_layers();
    let mut by_parent: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (path, _) in model.named_modules() {
        let (parent, last) = path.rsplit_once('.').unwrap_or(("", path.as_str()));
        let Ok(i) = last.parse::<usize>() else { continue };
        if parent == "layers" || parent.ends_with(".layers") {
            by_parent.entry(parent.to_string()).or_default().push((i, path.clone()));
        }
    }
    let mut found: Vec<Vec<(usize, String)>> = by_parent.into_values().filter(|v| v.len() == n).collect();
    if found.len() != 1 {
        return Err(bad(format!("cannot find the model's {n} transformer blocks (`layers.N`)")));
    }
    let mut blocks = found.remove(0);
    blocks.sort();
    Ok(blocks.into_iter().map(|(_, p)| p).collect())
}

/// The last `num_layers` of `blocks`, sliced as mlx-lm's `layers[-max(num_layers, 0):]`
/// (so 0 and -1 both mean every block).
fn last_blocks(blocks: &[String], num_layers: i64) -> Result<&[String]> {
    if num_layers > blocks.len() as i64 {
        return Err(bad(format!("requested to train {num_layers} layers but the model only has {} layers", blocks.len())));
    }
    let k = num_layers.max(0) as usize;
    Ok(if k == 0 { blocks } else { &blocks[blocks.len() - k..] })
}

/// `path` relative to `base` when it lies strictly below it.
fn below<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    path.strip_prefix(base)?.strip_prefix('.')
}

/// The layer at `path` when it is a `Linear` (dense or quantized).
fn as_linear(m: &mut dyn Module) -> Option<&mut Linear> {
    m.quantizable()?.as_any_mut()?.downcast_mut::<Linear>()
}

/// mlx-lm's `linear_to_lora_layers`: puts a fresh LoRA (or DoRA) adapter on the chosen layers of
/// the last `num_layers` blocks, and on top-level modules whose path is listed in `keys`.
/// Without `keys`, every `Linear` inside a block is chosen (mlx-lm's default; its MoE
/// `SwitchLinear` adapters are not implemented here, which is an error naming the layer).
/// Returns the paths that got an adapter.
pub fn linear_to_lora_layers(model: &mut dyn LanguageModel, num_layers: i64, p: &LoraParameters, dora: bool) -> Result<Vec<String>> {
    let blocks = block_paths(model)?;
    let chosen: Vec<String> = last_blocks(&blocks, num_layers)?.to_vec();
    let keys: BTreeSet<String> = match &p.keys {
        Some(k) => k.iter().cloned().collect(),
        None => {
            let mut k = BTreeSet::new();
            for (path, m) in model.named_modules() {
                let Some(rel) = blocks.iter().find_map(|b| below(&path, b)) else { continue };
                if ["Linear", "SwitchLinear", "Embedding"].contains(&m.type_name()) {
                    k.insert(rel.to_string());
                }
            }
            k
        }
    };
    let spec = LoraSpec { rank: p.rank, scale: p.scale, dropout: p.dropout, dora };
    let mut done = Vec::new();
    let mut result = Ok(());
    model.apply_to_modules(&mut |path, m| {
        if result.is_err() {
            return;
        }
        let in_block = chosen.iter().find_map(|b| below(path, b)).is_some_and(|rel| keys.contains(rel));
        if !in_block && !keys.contains(path) {
            return;
        }
        let ty = m.type_name();
        match as_linear(m) {
            Some(lin) => match lin.add_lora(spec.clone()) {
                Ok(()) => done.push(path.to_string()),
                Err(e) => result = Err(bad(format!("layer `{path}`: {e}"))),
            },
            None => result = Err(bad(format!("layer `{path}` is a `{ty}`; adapters are implemented for Linear layers only"))),
        }
    });
    result?;
    if done.is_empty() {
        return Err(bad("no layer matched the LoRA keys"));
    }
    Ok(done)
}

/// Freezes the packed weights of quantized layers again after an unfreeze (MLX's
/// `QuantizedLinear.unfreeze` keeps them frozen: they are not differentiable).
fn refreeze_packed(model: &mut dyn Module) -> Result<()> {
    let mut result = Ok(());
    model.apply_to_modules(&mut |_, m| {
        let packed = m.quantizable().is_some_and(|q| q.quant_spec().is_some());
        if packed && result.is_ok() {
            let mut names = vec!["weight", "scales"];
            if m.parameters().contains_key("biases") {
                names.push("biases");
            }
            result = m.freeze_paths(&names);
        }
    });
    result
}

/// `train_model`'s setup: freezes the model, then adds adapters (lora / dora) or unfreezes the
/// last `num_layers` blocks (full). Returns the trainable parameter count.
pub fn setup_training(model: &mut dyn LanguageModel, args: &TrainArgs) -> Result<usize> {
    model.freeze()?;
    match args.fine_tune_type.as_str() {
        "full" => {
            let blocks = block_paths(model)?;
            let chosen: Vec<String> = last_blocks(&blocks, args.num_layers)?.to_vec();
            let refs: Vec<&str> = chosen.iter().map(String::as_str).collect();
            model.unfreeze_paths(&refs)?;
            refreeze_packed(model.as_dyn_mut())?;
        }
        t @ ("lora" | "dora") => {
            let p = args.lora_parameters.clone().unwrap_or_default();
            let paths = linear_to_lora_layers(model, args.num_layers, &p, t == "dora")?;
            let mut names = Vec::new();
            for path in &paths {
                names.push(format!("{path}.lora_a"));
                names.push(format!("{path}.lora_b"));
                if t == "dora" {
                    names.push(format!("{path}.m"));
                }
            }
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            model.unfreeze_paths(&refs)?;
        }
        other => return Err(bad(format!("unknown fine_tune_type `{other}`"))),
    }
    Ok(model.trainable_parameters().values().map(Array::size).sum())
}

/// Writes the trainable parameters as mlx-lm's `adapters.safetensors` (`{"format": "mlx"}`).
pub fn save_adapters(model: &dyn Module, path: &Path) -> Result<()> {
    let arrays: Vec<(String, Array)> = model.trainable_parameters().into_iter().collect();
    let meta = BTreeMap::from([("format".to_string(), "mlx".to_string())]);
    io::save_safetensors_file(path, &arrays, Some(&meta))
}

/// Reads an adapter file's tensors.
pub fn read_adapter_file(path: &Path) -> Result<Params> {
    if !path.exists() {
        return Err(Error::io(format!("[adapters] {} does not exist", path.display())));
    }
    let arrays = io::load(path)?.into_arrays().ok_or_else(|| bad(format!("{} does not hold named arrays", path.display())))?;
    Ok(arrays.into_iter().collect())
}

/// Loads adapter weights into a model that already has the adapter layers, checking as
/// mlx-lm's `load_adapters` does that every tensor is an adapter leaf (`lora_a`, `lora_b`, `m`;
/// any parameter for a full fine-tune) of the same shape. Floating tensors are cast to the
/// model parameter's dtype.
pub fn load_adapter_weights(model: &mut dyn Module, weights: &Params, full: bool, origin: &str) -> Result<()> {
    let params = model.parameters();
    let mut errors = Vec::new();
    let mut update = Params::new();
    for (name, w) in weights {
        let leaf = name.rsplit('.').next().unwrap_or(name);
        match params.get(name) {
            Some(p) if full || ["lora_a", "lora_b", "m"].contains(&leaf) => {
                if p.shape() != w.shape() {
                    errors.push(format!("  {name}: adapter shape {:?} does not match model parameter shape {:?}", w.shape(), p.shape()));
                } else if w.dtype() != p.dtype() && w.dtype().is_float() && p.dtype().is_float() {
                    update.insert(name.clone(), w.astype(p.dtype()));
                } else {
                    update.insert(name.clone(), w.clone());
                }
            }
            _ => errors.push(format!("  {name}: not an adapter parameter in the model")),
        }
    }
    if !errors.is_empty() {
        return Err(Error::invalid(format!("[adapters] {origin} contains incompatible tensors:\n{}", errors.join("\n"))));
    }
    model.update(&update)
}

/// mlx-lm's `load_adapters`: reads `<dir>/adapter_config.json`, builds the same adapter layers
/// and loads `<dir>/adapters.safetensors` into them.
pub fn load_adapters(model: &mut dyn LanguageModel, dir: &Path) -> Result<AdapterConfig> {
    if !dir.exists() {
        return Err(Error::io(format!("[adapters] the adapter path does not exist: {}", dir.display())));
    }
    let cfg = AdapterConfig::load(dir)?;
    let full = cfg.fine_tune_type == "full";
    if !full {
        let p = cfg.lora_parameters.clone().unwrap_or_default();
        linear_to_lora_layers(model, cfg.num_layers, &p, cfg.fine_tune_type == "dora")?;
    }
    let file = dir.join("adapters.safetensors");
    let weights = read_adapter_file(&file)?;
    load_adapter_weights(model.as_dyn_mut(), &weights, full, &file.display().to_string())?;
    Ok(cfg)
}

/// The parameter count as mlx-lm's `get_total_parameters` reports it: a quantized layer counts
/// the values its packed weight holds (`size · 32 / bits`) plus its bias, not the packed words,
/// scales and biases.
pub fn count_parameters(model: &mut dyn Module) -> usize {
    let mut n = 0;
    model.apply_to_modules(&mut |path, m| {
        let mut local = BTreeMap::new();
        m.visit_local_params(path, &mut |p, a| {
            local.insert(p.rsplit('.').next().unwrap_or(p).to_string(), a.size());
        });
        let bits = m.quantizable().and_then(|q| q.quant_spec().map(|s| s.bits)).filter(|b| *b > 0);
        n += match bits {
            Some(b) => local.get("weight").map_or(0, |w| w * 32 / b) + local.get("bias").copied().unwrap_or(0),
            None => local.values().sum(),
        };
    });
    n
}
