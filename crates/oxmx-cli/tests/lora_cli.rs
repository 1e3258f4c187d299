//! `oxmx lora` / `oxmx fuse` / `oxmx generate --adapter-path` end to end on the default SmolLM2
//! GGUF (QLoRA over its 4-bit weights) with the repository's example data; skipped with a note
//! when the model is absent. Argument errors need no model.

use std::path::Path;

mod common;
use common::{err, ok, oxmx, smollm2, tmpdir};

fn data_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lora/data").display().to_string()
}

#[test]
fn argument_errors_name_the_problem() {
    let e = err(&oxmx(&["lora", "--model", "/nonexistent.gguf"]));
    assert!(e.contains("at least one of --train or --test"), "{e}");
    let dir = tmpdir("badcfg");
    let cfg = dir.join("c.yaml");
    std::fs::write(&cfg, "batch_size: four\n").unwrap();
    let e = err(&oxmx(&["lora", "--train", "-c", cfg.to_str().unwrap()]));
    assert!(e.contains("invalid configuration") && e.contains("batch_size"), "{e}");
}

#[test]
fn train_test_generate_and_fuse_on_the_default_model() {
    let Some(model) = smollm2() else { return };
    let model = model.to_str().unwrap().to_string();
    let dir = tmpdir("run");
    let adapters = dir.join("adapters");
    let ad = adapters.to_str().unwrap();
    // YAML sets the rank and 3 iterations; the command line overrides the iterations.
    let cfg = dir.join("config.yaml");
    std::fs::write(&cfg, "iters: 3\nlora_parameters:\n  rank: 4\n  scale: 20.0\nlearning_rate: 2e-4\n").unwrap();
    let data = data_dir();
    let out = ok(&oxmx(&[
        "lora",
        "--train",
        "--model",
        &model,
        "--data",
        &data,
        "-c",
        cfg.to_str().unwrap(),
        "--iters",
        "4",
        "--batch-size",
        "2",
        "--num-layers",
        "2",
        "--steps-per-report",
        "2",
        "--steps-per-eval",
        "2",
        "--val-batches",
        "1",
        "--save-every",
        "2",
        "--max-seq-length",
        "128",
        "--mask-prompt",
        "--adapter-path",
        ad,
    ]));
    println!("{out}");
    assert!(out.contains("Trainable parameters: "), "{out}");
    for line in ["Iter 1: Val loss ", "Iter 2: Train loss ", "Iter 4: Train loss ", "Iter 4: Val loss "] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(out.contains("Tokens/sec") && out.contains("Peak mem"), "{out}");
    for f in ["adapters.safetensors", "0000002_adapters.safetensors", "0000004_adapters.safetensors", "adapter_config.json"] {
        assert!(adapters.join(f).is_file(), "{f} was not written");
    }
    let c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapters.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(c["iters"], 4, "the command line wins over the YAML file");
    assert_eq!(c["lora_parameters"]["rank"], 4, "the YAML file wins over the defaults");
    assert_eq!(c["learning_rate"], 2e-4);
    assert_eq!((c["fine_tune_type"].as_str(), c["num_layers"].as_i64(), c["mask_prompt"].as_bool()), (Some("lora"), Some(2), Some(true)));

    let out = ok(&oxmx(&["lora", "--test", "--model", &model, "--data", &data, "--adapter-path", ad, "--batch-size", "2"]));
    let line = out.lines().find(|l| l.starts_with("Test loss ")).unwrap_or_else(|| panic!("no test line in:\n{out}"));
    let loss: f64 = line["Test loss ".len()..].split(',').next().unwrap().parse().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{line}");

    let out = ok(&oxmx(&["generate", "--model", &model, "--adapter-path", ad, "-p", "Who is the mascot of oxmx?", "-m", "4"]));
    assert!(!out.trim().is_empty());

    // Re-quantized to the base's 4 bits (as mlx-lm's fuse): a working model folder.
    let fused = dir.join("fused");
    ok(&oxmx(&["fuse", "--model", &model, "--adapter-path", ad, "--save-path", fused.to_str().unwrap()]));
    assert!(fused.join("config.json").is_file() && fused.join("tokenizer.json").is_file());
    let cfg = std::fs::read_to_string(fused.join("config.json")).unwrap();
    assert!(cfg.contains("\"quantization\""), "a quantized base stays quantized");
    ok(&oxmx(&["generate", "--model", fused.to_str().unwrap(), "-p", "hi", "-m", "2"]));
    // Dequantized (which --export-gguf implies), the fused weights are the adapted ones: the
    // same greedy tokens; the float16 GGUF written beside them (llama.cpp's names, q/k rows in
    // its rotary order, the base GGUF's tokenizer) gives them too when oxmx loads it back.
    let plain = dir.join("fused_float");
    let out = ok(&oxmx(&["fuse", "--model", &model, "--adapter-path", ad, "--save-path", plain.to_str().unwrap(), "--export-gguf"]));
    assert!(out.contains("GGUF written to"), "{out}");
    assert!(!std::fs::read_to_string(plain.join("config.json")).unwrap().contains("\"quantization\""));
    let gguf = plain.join("ggml-model-f16.gguf");
    assert!(gguf.is_file());
    let a = ok(&oxmx(&["generate", "--model", &model, "--adapter-path", ad, "-p", "What is oxmx?", "-m", "8", "--json"]));
    let b = ok(&oxmx(&["generate", "--model", plain.to_str().unwrap(), "-p", "What is oxmx?", "-m", "8", "--json"]));
    let c = ok(&oxmx(&["generate", "--model", gguf.to_str().unwrap(), "-p", "What is oxmx?", "-m", "8", "--json"]));
    let tokens = |s: &str| serde_json::from_str::<serde_json::Value>(s.trim()).unwrap()["tokens"].clone();
    println!("adapter: {a}\nfused:   {b}\ngguf:    {c}");
    assert_eq!(tokens(&a), tokens(&b), "the dequantized fused model and base + adapter disagree");
    assert_eq!(tokens(&b), tokens(&c), "the exported GGUF and the fused folder disagree");
}
