//! Helpers shared by the `oxmx` command tests: running the binary, checking its outcome, scratch
//! folders and the default model (skipped with a note when absent).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn oxmx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxmx")).args(args).output().unwrap()
}

/// Stdout of a successful run (the failure shows both streams).
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "oxmx failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Stderr of a run that must fail.
pub fn err(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure, got: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A fresh, empty folder for one test of this process.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxmx_cli_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The default model's GGUF as `scripts/setup.sh` installs it, or `None` (with a note).
pub fn smollm2() -> Option<PathBuf> {
    let found = oxmx_lm::models_dir::default_model();
    if found.is_none() {
        let p = oxmx_lm::models_dir::models_dir().join(oxmx_lm::models_dir::DEFAULT_MODEL_FILE);
        eprintln!("skipped: the default model is not at {} (run scripts/setup.sh)", p.display());
    }
    found
}
