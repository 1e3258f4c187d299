//! Where a `--model` argument points: a local folder or GGUF file, or the default model that
//! scripts/setup.sh places. Hub repo ids cannot be fetched (the command works offline), which is
//! said plainly instead of "file not found".

use std::path::PathBuf;

use oxmx_core::{Error, Result};

/// The file scripts/setup.sh downloads.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$OXMX_MODELS_DIR`, else `~/.cache/oxmx/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OXMX_MODELS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("oxmx").join("models")
}

/// The model path for `--model` (or the default).
pub fn resolve_model(arg: Option<&str>) -> Result<PathBuf> {
    let Some(arg) = arg else {
        let p = models_dir().join(DEFAULT_MODEL_FILE);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Error::io(format!("the default model is not at {}: run scripts/setup.sh (or pass --model PATH)", p.display())));
    };
    let p = PathBuf::from(shellexpand_home(arg));
    if p.exists() {
        return Ok(p);
    }
    // A file name alone may live in the models folder.
    let in_models = models_dir().join(arg);
    if in_models.exists() {
        return Ok(in_models);
    }
    let looks_like_repo = {
        let parts: Vec<&str> = arg.split('/').collect();
        parts.len() == 2 && parts.iter().all(|s| !s.is_empty() && !s.starts_with('.')) && !arg.ends_with(".gguf")
    };
    if looks_like_repo {
        return Err(Error::io(format!(
            "'{arg}' is not a local folder or file, and oxmx does not download from the Hugging Face Hub \
             (offline): download the repository (e.g. `huggingface-cli download {arg} --local-dir DIR`) and pass --model DIR"
        )));
    }
    Err(Error::io(format!("model '{arg}' not found: no such file or folder (nor in {})", models_dir().display())))
}

fn shellexpand_home(s: &str) -> String {
    if let Some(rest) = s.strip_prefix("~/") {
        if let Some(h) = std::env::var_os("HOME") {
            return format!("{}/{rest}", h.to_string_lossy());
        }
    }
    s.to_string()
}
