//! Where `scripts/setup.sh` places models, the default one (SmolLM2-135M-Instruct Q4_1 GGUF)
//! first: the command line's default `--model` and the tests that run the real model share it.

use std::path::PathBuf;

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

/// The default model's path when it is there.
pub fn default_model() -> Option<PathBuf> {
    let p = models_dir().join(DEFAULT_MODEL_FILE);
    p.is_file().then_some(p)
}
