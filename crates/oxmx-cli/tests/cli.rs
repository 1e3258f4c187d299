//! The `oxmx` binary: prompt building against transformers (fixtures from
//! scripts/gen_tokenizer_fixtures.py), model resolution and one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../oxmx-lm/tests/fixtures/tokenizer")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("tokenizer.json")).unwrap()).unwrap()
}

fn oxmx(args: &[&str], models_dir: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxmx"));
    c.args(args);
    if let Some(d) = models_dir {
        c.env("OXMX_MODELS_DIR", d);
    }
    c.output().unwrap()
}

/// Failure: non-zero exit, exactly one stderr line starting "oxmx: error:", containing `needle`.
fn assert_one_line_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, stdout: {}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(err.trim_end().lines().count(), 1, "stderr should be one line: {err}");
    assert!(err.starts_with("oxmx: error:"), "{err}");
    assert!(err.contains(needle), "missing {needle:?} in: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
}

fn ids_of(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

#[test]
fn tokenize_raw_prompt_matches_transformers() {
    let exp = expected();
    for name in ["bpe_qwen2.gguf", "bpe_llama_bpe.gguf", "spm_llama.gguf"] {
        let model = fixtures().join(name);
        for c in exp["files"][name]["cases"].as_array().unwrap().iter().take(8) {
            let text = c["text"].as_str().unwrap();
            if text.is_empty() || text.contains("\\n") || text.contains("\\t") {
                continue;
            }
            let o = oxmx(&["tokenize", "--model", model.to_str().unwrap(), "--prompt", text], None);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            // No chat template in these files: the raw prompt with the post-processor's specials.
            assert_eq!(ids_of(&v["ids"]), ids_of(&c["ids_add_special"]), "{name}: {text:?}");
        }
    }
}

#[test]
fn default_model_prompt_matches_transformers() {
    let exp = expected();
    let Some(f) = exp.get("smollm2") else {
        eprintln!("skipped: fixtures made without the default model");
        return;
    };
    let dir = std::env::var("OXMX_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/oxmx/models"));
    if !dir.join(f["file"].as_str().unwrap()).is_file() {
        eprintln!("skipped: the default model is not in {} (run scripts/setup.sh)", dir.display());
        return;
    }
    let c = &f["cli_prompt"];
    // No --model: the default model resolves from OXMX_MODELS_DIR.
    let o = oxmx(&["tokenize", "--prompt", c["prompt"].as_str().unwrap()], Some(&dir));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["text"], c["text"]);
    assert_eq!(ids_of(&v["ids"]), ids_of(&c["ids"]));
    let o =
        oxmx(&["tokenize", "--prompt", c["prompt"].as_str().unwrap(), "--system-prompt", c["system_prompt"].as_str().unwrap()], Some(&dir));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ids_of(&v["ids"]), ids_of(&c["ids_with_system"]));
}

#[test]
fn errors_are_one_line() {
    let empty = std::env::temp_dir().join(format!("oxmx-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    // No default model.
    assert_one_line_error(&oxmx(&["generate", "--prompt", "hi"], Some(&empty)), "setup.sh");
    // A Hub repo id that is not in the (empty) cache, offline: a clear error, no network.
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxmx"));
    c.args(["generate", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct"]).env("OXMX_MODELS_DIR", &empty);
    c.env("HF_HUB_OFFLINE", "1").env("HF_HUB_CACHE", empty.join("hf-cache"));
    assert_one_line_error(&c.output().unwrap(), "Hugging Face Hub");
    // A missing path.
    assert_one_line_error(&oxmx(&["generate", "--model", "/nonexistent/model.gguf"], Some(&empty)), "/nonexistent/model.gguf");
    // A file that is not GGUF.
    let bad = empty.join("broken.gguf");
    std::fs::write(&bad, b"this is not a gguf file").unwrap();
    assert_one_line_error(&oxmx(&["generate", "--model", bad.to_str().unwrap()], None), "broken.gguf");
    // A folder without tokenizer.json.
    assert_one_line_error(&oxmx(&["generate", "--model", empty.to_str().unwrap()], None), "tokenizer.json");
    // Bad template arguments.
    let m = fixtures().join("bpe_qwen2.gguf");
    let o = oxmx(&["tokenize", "--model", m.to_str().unwrap(), "--prompt", "x", "--chat-template-config", "{oops"], None);
    // (this file has no template, so the raw prompt is used and the config is never read)
    assert!(o.status.success());
    let o = oxmx(&["generate", "--model", m.to_str().unwrap(), "--extra-eos-token", "not-a-token"], None);
    assert!(!o.status.success());
    std::fs::remove_dir_all(&empty).ok();
}

#[test]
fn stdin_prompt_and_escapes() {
    use std::io::Write;
    let m = fixtures().join("bpe_qwen2.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxmx"))
        .args(["tokenize", "--model", m.to_str().unwrap(), "--prompt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all("line one\\nline two".as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // mlx_lm unescapes a literal \n in the prompt.
    assert_eq!(v["text"], "line one\nline two");
}
