//! `oxmx bench`, `oxmx perplexity`, `oxmx cache-prompt` and `generate --prompt-cache-file` /
//! `--kv-bits`. The bench runs on a config-only folder (`--random-weights`); the others use the
//! default SmolLM2 GGUF when it is present (skipped with a note otherwise).

use std::path::Path;

mod common;
use common::{ok, oxmx, smollm2, tmpdir};

use serde_json::Value;

#[test]
fn bench_with_random_weights_on_a_config_only_folder() {
    let dir = tmpdir("bench");
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "tie_word_embeddings": false}"#,
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let out = ok(&oxmx(&["bench", "--model", d, "--random-weights", "-p", "32", "-g", "8", "-n", "2"]));
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Running warmup..");
    assert_eq!(lines[1], "Timing with prompt_tokens=32, generation_tokens=8, batch_size=1.");
    assert!(lines[2].starts_with("Trial 1:  prompt_tps=") && lines[2].contains("generation_tps=") && lines[2].contains("peak_memory="));
    assert!(lines[3].starts_with("Trial 2:  "));
    assert!(lines[4].starts_with("Averages: prompt_tps="));
    let o = ok(&oxmx(&["bench", "--model", d, "--random-weights", "-p", "16", "-g", "4", "-n", "2", "-b", "2", "--json"]));
    let v: Value = serde_json::from_str(o.trim()).unwrap();
    assert_eq!(v["batch_size"], 2);
    assert_eq!(v["trials"].as_array().unwrap().len(), 2);
    for k in ["prompt_tps", "generation_tps", "peak_memory"] {
        let x = v["average"][k].as_f64().unwrap();
        assert!(x.is_finite() && x > 0.0, "{k} = {x}");
    }
    // Without --random-weights the folder has no weights: a one-line error.
    let o = oxmx(&["bench", "--model", d, "-p", "4", "-g", "2", "-n", "1"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("oxmx: error:") && err.trim_end().lines().count() == 1, "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cache_prompt_then_generate_equals_the_full_prompt() {
    let Some(model) = smollm2() else { return };
    let m = model.to_str().unwrap();
    let dir = tmpdir("cache_prompt");
    let file = dir.join("ctx.safetensors");
    let context = "Here is a short story. A fox lived in a forest near a river and loved to watch the fish.";
    let question = " What did the fox love?";
    let out = ok(&oxmx(&["cache-prompt", "--model", m, "--prompt", context, "--prompt-cache-file", file.to_str().unwrap()]));
    assert!(out.contains("Peak memory:") && out.contains("Saving..."), "{out}");
    // generate reads the model from the file's metadata and continues after the cached prefix.
    let cached = ok(&oxmx(&["generate", "--prompt-cache-file", file.to_str().unwrap(), "--prompt", question, "-m", "24", "--json"]));
    let full = ok(&oxmx(&["generate", "--model", m, "--prompt", &format!("{context}{question}"), "-m", "24", "--json"]));
    let (c, f): (Value, Value) = (serde_json::from_str(cached.trim()).unwrap(), serde_json::from_str(full.trim()).unwrap());
    println!("cached: {}\nfull:   {}", c["text"], f["text"]);
    assert_eq!(c["text"], f["text"]);
    // `tokens` is the list of generated ids, the same both ways and at most -m of them.
    let ids = f["tokens"].as_array().expect("`tokens` is an array of ids");
    assert!(!ids.is_empty() && ids.len() <= 24 && ids.iter().all(|t| t.is_u64()), "{}", f["tokens"]);
    assert_eq!(c["tokens"], f["tokens"]);
    assert!(c["prompt_tokens"].as_u64().unwrap() < f["prompt_tokens"].as_u64().unwrap());
    // A different model than the cache's is refused.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let o = oxmx(&["generate", "--model", other.to_str().unwrap(), "--prompt-cache-file", file.to_str().unwrap(), "--prompt", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("different model"));
    // A quantized prompt cache: --kv-bits must match it.
    let qfile = dir.join("q.safetensors");
    let qf = qfile.to_str().unwrap();
    ok(&oxmx(&[
        "cache-prompt",
        "--model",
        m,
        "--prompt",
        context,
        "--prompt-cache-file",
        qf,
        "--kv-bits",
        "8",
        "--quantized-kv-start",
        "0",
    ]));
    let o = oxmx(&["generate", "--prompt-cache-file", qf, "--prompt", question, "--kv-bits", "4"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--kv-bits does not match"));
    let q = ok(&oxmx(&["generate", "--prompt-cache-file", qf, "--prompt", question, "-m", "24", "--json", "--kv-bits", "8"]));
    let q: Value = serde_json::from_str(q.trim()).unwrap();
    println!("8-bit cache: {}", q["text"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn generate_with_kv_bits() {
    let Some(model) = smollm2() else { return };
    let m = model.to_str().unwrap();
    let run = |extra: &[&str]| -> Value {
        let mut a = vec!["generate", "--model", m, "--prompt", "Write three sentences about the sea.", "-m", "40", "--json"];
        a.extend_from_slice(extra);
        serde_json::from_str(ok(&oxmx(&a)).trim()).unwrap()
    };
    let plain = run(&[]);
    // Below the default start (5000 tokens) the cache is never quantized: identical output.
    assert_eq!(run(&["--kv-bits", "8"])["text"], plain["text"]);
    let q8 = run(&["--kv-bits", "8", "--quantized-kv-start", "0"]);
    let q4 = run(&["--kv-bits", "4", "--kv-group-size", "32", "--quantized-kv-start", "0"]);
    let common =
        |a: &Value| a["text"].as_str().unwrap().chars().zip(plain["text"].as_str().unwrap().chars()).take_while(|(x, y)| x == y).count();
    println!(
        "plain: {}\n8-bit: {} (first {} chars equal)\n4-bit: {} (first {} chars equal)",
        plain["text"],
        q8["text"],
        common(&q8),
        q4["text"],
        common(&q4)
    );
    let o = oxmx(&["generate", "--model", m, "--prompt", "x", "--kv-bits", "7", "--quantized-kv-start", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("kv bits 7"), "{err}");
}

/// `--draft-model`: speculative decoding gives the model's own greedy tokens (the default model
/// as its own draft accepts every proposal); bad combinations are one-line errors.
#[test]
fn generate_with_a_draft_model() {
    let Some(model) = smollm2() else { return };
    let m = model.to_str().unwrap();
    let run = |extra: &[&str]| -> Value {
        let mut a = vec!["generate", "--model", m, "--prompt", "Name three rivers of Europe.", "-m", "32", "--json"];
        a.extend_from_slice(extra);
        serde_json::from_str(ok(&oxmx(&a)).trim()).unwrap()
    };
    let plain = run(&[]);
    for k in ["1", "3"] {
        let spec = run(&["--draft-model", m, "--num-draft-tokens", k]);
        assert_eq!(spec["tokens"], plain["tokens"], "--num-draft-tokens {k}");
        assert_eq!(spec["text"], plain["text"]);
    }
    let o = oxmx(&["generate", "--model", m, "--prompt", "x", "--draft-model", m, "--max-kv-size", "64"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--max-kv-size"), "{err}");
    let o = oxmx(&["generate", "--model", m, "--prompt", "x", "--draft-model", m, "--num-draft-tokens", "0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("num_draft_tokens"), "{err}");
}

#[test]
fn perplexity_command() {
    let Some(model) = smollm2() else { return };
    let dir = tmpdir("ppl");
    let data = dir.join("data.jsonl");
    let lines: Vec<String> = (0..12)
        .map(|i| {
            serde_json::json!({"text": format!("Sentence number {i} talks about the weather, which was sunny and warm on day {i}.")})
                .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let o = ok(&oxmx(&[
        "perplexity",
        "--model",
        model.to_str().unwrap(),
        "--data-path",
        data.to_str().unwrap(),
        "--sequence-length",
        "32",
        "--num-samples",
        "4",
        "--batch-size",
        "2",
        "--json",
    ]));
    let v: Value = serde_json::from_str(o.trim()).unwrap();
    println!("{v}");
    let ppl = v["perplexity"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0 && ppl < 1000.0, "{ppl}");
    assert_eq!(v["samples"], 4);
    assert_eq!(v["tokens"], 4 * 31);
    let text = ok(&oxmx(&[
        "perplexity",
        "--model",
        model.to_str().unwrap(),
        "--data-path",
        data.to_str().unwrap(),
        "--sequence-length",
        "32",
        "--num-samples",
        "-1",
    ]));
    assert!(text.contains("Perplexity: ") && text.contains(" ± ") && text.contains("Tokens per second:"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Path::new(&dir);
}
