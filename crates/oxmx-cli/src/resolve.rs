//! Where a `--model` argument points: a local folder or GGUF file, the default model that
//! scripts/setup.sh places, or a Hugging Face Hub repo id (`org/name`), which resolves through the
//! standard Hugging Face cache and downloads into it when the network allows (`oxmx_lm::hub`;
//! `HF_HUB_OFFLINE=1` keeps to the cache, `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN` as usual).

use std::path::PathBuf;

use oxmx_core::{Error, Result};
pub use oxmx_lm::models_dir::{models_dir, DEFAULT_MODEL_FILE};

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
    if oxmx_lm::hub::is_repo_id(arg) {
        return oxmx_lm::hub::resolve_repo(arg, &oxmx_lm::hub::HubOptions::from_env());
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
