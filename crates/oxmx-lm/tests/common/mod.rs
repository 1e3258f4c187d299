//! Helpers shared by the oxmx-lm integration tests (each test file includes this module; not every
//! file uses every helper).
#![allow(dead_code)]

use oxmx_core::{io, ops, Array};
use std::path::PathBuf;

/// Logit tolerance against transformers' float32 logits.
pub const TOL: f32 = 2e-4;

/// A fixture folder under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The fixture's token batch and transformers' logits for it.
pub fn expected(name: &str) -> (Array, Array) {
    let (arrays, _) = io::load_safetensors(fixture(name).join("expected.safetensors")).unwrap();
    let get = |k: &str| arrays.iter().find(|(n, _)| n == k).unwrap().1.clone();
    (get("tokens"), get("logits"))
}

pub fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let (x, y) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max)
}

/// Columns `lo..hi` of a `[B, L, ...]` array.
pub fn cols(a: &Array, lo: usize, hi: usize) -> Array {
    let s = a.shape();
    ops::slice_range(a, &[0, lo as isize], &[s[0] as isize, hi as isize])
}

/// The default model (SmolLM2-135M-Instruct Q4_1 GGUF) when scripts/setup.sh has placed it.
pub fn smollm2_gguf() -> Option<PathBuf> {
    oxmx_lm::models_dir::default_model()
}

/// Qwen2.5-Coder-0.5B-Instruct's GGUF as scripts/fetch_qwen_coder.sh names it.
pub const QWEN_CODER_FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

/// The second real model when scripts/fetch_qwen_coder.sh has placed it.
pub fn qwen_coder_gguf() -> Option<PathBuf> {
    let p = oxmx_lm::models_dir::models_dir().join(QWEN_CODER_FILE);
    p.is_file().then_some(p)
}

/// `forward_last` (the generator's first step runs the head on one row) equals the last
/// position of the reference logits `want: [B, L, vocab]`.
pub fn check_forward_last(name: &str, model: &dyn oxmx_lm::models::LanguageModel, tokens: &Array, want: &Array) {
    let l = want.shape()[1];
    let last = model.forward_last(tokens, None);
    assert_eq!(last.shape(), &[want.shape()[0], 1, want.shape()[2]], "{name}: forward_last shape");
    let dl = max_abs_diff(&last, &cols(want, l - 1, l));
    assert!(dl < TOL, "{name}: last-position logits differ by {dl}");
}
