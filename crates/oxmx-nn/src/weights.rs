//! `load_weights` / `save_weights`: a checkpoint is the module's flattened parameters by path.

use crate::module::{Module, Params};
use oxmx_core::{io, Array, Error, Result};
use std::path::Path;

/// How `load_weights` treats keys that do not line up with the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Every parameter must be given and every given key must be a parameter (MLX's default).
    Strict,
    /// Load the keys that match; ignore the rest. Shapes must still match.
    NonStrict,
}

/// Loads `weights` (path → array) into `module`. Errors name every missing, unexpected and
/// mis-shaped key; on error the module is unchanged.
pub fn load_weights_from(module: &mut dyn Module, weights: &[(String, Array)], mode: LoadMode) -> Result<()> {
    let own = module.parameters();
    let mut missing: Vec<&str> = Vec::new();
    let mut unexpected: Vec<&str> = Vec::new();
    let mut misshaped: Vec<String> = Vec::new();
    let mut update = Params::new();
    for (k, v) in weights {
        match own.get(k) {
            None => unexpected.push(k),
            Some(p) if p.shape() != v.shape() => misshaped.push(format!("`{k}`: expected shape {:?}, received {:?}", p.shape(), v.shape())),
            Some(_) => {
                update.insert(k.clone(), v.clone());
            }
        }
    }
    if mode == LoadMode::Strict {
        // A set, not a scan per key: MoE checkpoints have tens of thousands of tensors.
        let given: std::collections::BTreeSet<&str> = weights.iter().map(|(k, _)| k.as_str()).collect();
        missing = own.keys().map(String::as_str).filter(|k| !given.contains(k)).collect();
    } else {
        unexpected.clear();
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing parameters: {}", quote_list(&missing)));
    }
    if !unexpected.is_empty() {
        problems.push(format!("parameters not in the model: {}", quote_list(&unexpected)));
    }
    if !misshaped.is_empty() {
        problems.push(format!("mis-shaped parameters: {}", misshaped.join("; ")));
    }
    if !problems.is_empty() {
        return Err(Error::invalid(format!("[load_weights] {}: {}", module.type_name(), problems.join(". "))));
    }
    module.update(&update)
}

/// Loads a `.safetensors` or `.npz` file into `module`.
pub fn load_weights(module: &mut dyn Module, path: impl AsRef<Path>, mode: LoadMode) -> Result<()> {
    let path = path.as_ref();
    let arrays = io::load(path)?
        .into_arrays()
        .ok_or_else(|| Error::invalid(format!("[load_weights] {}: expected named arrays (.safetensors or .npz)", path.display())))?;
    load_weights_from(module, &arrays, mode).map_err(|e| Error::invalid(format!("{e} (file {})", path.display())))
}

/// Saves the module's parameters by path as `.safetensors` or `.npz`, chosen by the extension.
pub fn save_weights(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let arrays: Vec<(String, Array)> = module.parameters().into_iter().collect();
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => io::save_safetensors_file(path, &arrays, None),
        Some("npz") => io::savez(path, &arrays),
        _ => Err(Error::invalid(format!("[save_weights] {}: unsupported extension; use .safetensors or .npz", path.display()))),
    }
}

fn quote_list(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}
