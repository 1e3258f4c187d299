//! The MLX-style entry points: `load` dispatches on the file extension, the `save*` functions
//! append the format's extension when the path lacks it (as `mx.save`, `mx.savez`, … do).

use super::gguf::{load_gguf, save_gguf, GgufMetadata, GgufValue};
use super::npy::{load_npy, save_npy};
use super::npz::{load_npz, save_npz};
use super::safetensors::{load_safetensors, save_safetensors};
use crate::array::Array;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What [`load`] returns: one array (`.npy`) or named arrays in file order (the other formats).
#[derive(Debug)]
pub enum Loaded {
    Array(Array),
    Arrays(Vec<(String, Array)>),
}

impl Loaded {
    /// The single array of a `.npy` file.
    pub fn into_array(self) -> Option<Array> {
        match self {
            Loaded::Array(a) => Some(a),
            Loaded::Arrays(_) => None,
        }
    }
    /// The named arrays of an archive / tensor file.
    pub fn into_arrays(self) -> Option<Vec<(String, Array)>> {
        match self {
            Loaded::Arrays(v) => Some(v),
            Loaded::Array(_) => None,
        }
    }
}

/// File metadata (`mx.load(path, return_metadata=True)`): safetensors `__metadata__` strings or
/// GGUF key/values; `.npy`/`.npz` have none.
#[derive(Debug, Clone, PartialEq)]
pub enum Metadata {
    None,
    Safetensors(BTreeMap<String, String>),
    Gguf(GgufMetadata),
}

fn extension(path: &Path) -> Result<String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) => Ok(e.to_ascii_lowercase()),
        None => Err(Error::invalid(format!(
            "[load] {}: cannot infer the file format without an extension (.npy, .npz, .safetensors, .gguf)",
            path.display()
        ))),
    }
}

/// Loads a file, choosing the format by extension.
pub fn load(path: impl AsRef<Path>) -> Result<Loaded> {
    Ok(load_with_metadata(path)?.0)
}

/// Loads a file and its metadata, choosing the format by extension.
pub fn load_with_metadata(path: impl AsRef<Path>) -> Result<(Loaded, Metadata)> {
    let path = path.as_ref();
    match extension(path)?.as_str() {
        "npy" => Ok((Loaded::Array(load_npy(path)?), Metadata::None)),
        "npz" => Ok((Loaded::Arrays(load_npz(path)?), Metadata::None)),
        "safetensors" => {
            let (a, m) = load_safetensors(path)?;
            Ok((Loaded::Arrays(a), Metadata::Safetensors(m)))
        }
        "gguf" => {
            let (a, m) = load_gguf(path)?;
            Ok((Loaded::Arrays(a), Metadata::Gguf(m)))
        }
        e => Err(Error::invalid(format!(
            "[load] {}: unknown file extension '.{e}' (expected .npy, .npz, .safetensors or .gguf)",
            path.display()
        ))),
    }
}

/// `path` with `.ext` appended unless it already ends with it.
fn with_ext(path: &Path, ext: &str) -> PathBuf {
    if path.extension().and_then(|e| e.to_str()) == Some(ext) {
        path.to_path_buf()
    } else {
        let mut s = path.as_os_str().to_os_string();
        s.push(".");
        s.push(ext);
        PathBuf::from(s)
    }
}

/// Saves one array as `.npy` (`mx.save`).
pub fn save(path: impl AsRef<Path>, a: &Array) -> Result<()> {
    save_npy(with_ext(path.as_ref(), "npy"), a)
}

/// Saves named arrays as an uncompressed `.npz` (`mx.savez`).
pub fn savez(path: impl AsRef<Path>, arrays: &[(impl AsRef<str>, Array)]) -> Result<()> {
    save_npz(with_ext(path.as_ref(), "npz"), arrays, false)
}

/// Saves named arrays as a deflate-compressed `.npz` (`mx.savez_compressed`).
pub fn savez_compressed(path: impl AsRef<Path>, arrays: &[(impl AsRef<str>, Array)]) -> Result<()> {
    save_npz(with_ext(path.as_ref(), "npz"), arrays, true)
}

/// `mx.save_safetensors(path, arrays, metadata)`: appends `.safetensors` when missing.
pub fn save_safetensors_file(
    path: impl AsRef<Path>,
    arrays: &[(impl AsRef<str>, Array)],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    save_safetensors(with_ext(path.as_ref(), "safetensors"), arrays, metadata)
}

/// `mx.save_gguf(path, arrays, metadata)`: appends `.gguf` when missing.
pub fn save_gguf_file(path: impl AsRef<Path>, arrays: &[(impl AsRef<str>, Array)], metadata: &[(String, GgufValue)]) -> Result<()> {
    save_gguf(with_ext(path.as_ref(), "gguf"), arrays, metadata)
}
