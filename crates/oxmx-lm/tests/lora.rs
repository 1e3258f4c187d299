//! Fine-tuning against mlx-lm (scripts/gen_lora_fixtures.py made the fixtures with mlx-lm's
//! own tuner): adapters trained by mlx-lm load here and give mlx-lm's logits (LoRA, DoRA, full,
//! QLoRA over a 4-bit base); the layers chosen by default are mlx-lm's; adapters trained here
//! load in mlx-lm and give the same logits (live, skipped without python3 + mlx_lm); training
//! drives the loss down; the data formats tokenize as mlx-lm's; batches pad as mlx-lm's; the
//! warm-up schedule matches; a fused model gives the adapted model's outputs.

mod common;

use common::{expected, fixture, max_abs_diff};
use oxmx_core::{Array, Dtype};
use oxmx_lm::loader::{load, LoadOptions, LoadedModel};
use oxmx_lm::lora::data::{iterate_batches, load_jsonl, DataOptions, Dataset};
use oxmx_lm::lora::{self, AdapterConfig, LoraParameters, LrSchedule, Report, TrainArgs, TrainingArgs};
use oxmx_optim::{Adam, LearningRate};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn base(name: &str) -> LoadedModel {
    load(fixture(name), &LoadOptions::default()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxmx-lora-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn logits(m: &LoadedModel, tokens: &Array) -> Array {
    m.model.forward(&tokens.astype(Dtype::Int32), None).astype(Dtype::Float32)
}

/// (adapter fixture, its base model, fine_tune_type, num_layers, lora_parameters) as the script.
fn cases() -> Vec<(&'static str, &'static str, &'static str, i64, Option<LoraParameters>)> {
    let p = |keys: Option<Vec<&str>>| LoraParameters {
        rank: 4,
        dropout: 0.0,
        scale: 10.0,
        keys: keys.map(|k| k.into_iter().map(String::from).collect()),
    };
    vec![
        ("lora", "tiny_qwen2", "lora", 1, Some(p(None))),
        ("dora", "tiny_qwen2", "dora", -1, Some(p(Some(vec!["self_attn.q_proj", "self_attn.v_proj"])))),
        ("full", "tiny_qwen2", "full", 1, None),
        ("qlora", "lora/qbase", "lora", 2, Some(p(None))),
    ]
}

fn adapter_shapes(path: &Path) -> BTreeMap<String, Vec<usize>> {
    lora::apply::read_adapter_file(path).unwrap().into_iter().map(|(k, a)| (k, a.shape().to_vec())).collect()
}

#[test]
fn mlx_lm_adapters_give_mlx_lm_logits() {
    for (name, base_name, ..) in cases() {
        let mut m = base(base_name);
        let cfg = lora::load_adapters(m.model.as_mut(), &fixture(&format!("lora/{name}"))).unwrap();
        m.model.set_eval();
        let (tokens, want) = expected(&format!("lora/{name}"));
        let base_logits = logits(&base(base_name), &tokens);
        let got = logits(&m, &tokens);
        let d = max_abs_diff(&got, &want);
        println!(
            "{name} ({}): max |oxmx - mlx-lm| = {d:e}, adapter moved logits by {:e}",
            cfg.fine_tune_type,
            max_abs_diff(&base_logits, &want)
        );
        assert!(max_abs_diff(&base_logits, &want) > 1e-2, "{name}: the trained adapter should change the logits");
        assert!(d < 1e-3, "{name}: oxmx with mlx-lm's adapter differs from mlx-lm by {d}");
    }
}

#[test]
fn trainable_parameters_are_mlx_lm_s() {
    for (name, base_name, ftt, num_layers, lp) in cases() {
        let mut m = base(base_name);
        let args = TrainArgs { fine_tune_type: ftt.into(), num_layers, lora_parameters: lp, ..Default::default() };
        let n = lora::setup_training(m.model.as_mut(), &args).unwrap();
        let ours: BTreeMap<String, Vec<usize>> = m.model.trainable_parameters().into_iter().map(|(k, a)| (k, a.shape().to_vec())).collect();
        let theirs = adapter_shapes(&fixture(&format!("lora/{name}/adapters.safetensors")));
        assert_eq!(ours, theirs, "{name}: trainable parameters (keys and shapes) differ from mlx-lm's adapter file");
        assert_eq!(n, ours.values().map(|s| s.iter().product::<usize>()).sum::<usize>());
    }
}

#[test]
fn bad_adapters_are_errors_that_name_the_problem() {
    let mut m = base("tiny_qwen2");
    let e = lora::load_adapters(m.model.as_mut(), Path::new("/nonexistent/adapters")).unwrap_err();
    assert!(e.message().contains("does not exist"), "{}", e.message());
    // The QLoRA adapter covers two blocks; the config of the one-block LoRA builds only one.
    let dir = tmp("mismatch");
    std::fs::copy(fixture("lora/lora/adapter_config.json"), dir.join("adapter_config.json")).unwrap();
    std::fs::copy(fixture("lora/qlora/adapters.safetensors"), dir.join("adapters.safetensors")).unwrap();
    let e = lora::load_adapters(m.model.as_mut(), &dir).unwrap_err();
    assert!(e.message().contains("model.layers.0.self_attn.q_proj.lora_a: not an adapter parameter"), "{}", e.message());
    let mut too_many = TrainArgs { num_layers: 3, ..Default::default() };
    too_many.lora_parameters = Some(LoraParameters::default());
    let e = lora::setup_training(base("tiny_qwen2").model.as_mut(), &too_many).unwrap_err();
    assert!(e.message().contains("only has 2 layers"), "{}", e.message());
}

/// A dataset of `n` copies of one token sequence: a task a small adapter can learn.
fn repeated(n: usize) -> Dataset {
    let seq: Vec<u32> = [1].into_iter().chain((10..40).map(|i| (i * 7) % 290 + 3)).chain([2]).collect();
    Dataset { format: None, examples: vec![(seq, 0); n] }
}

fn train_tiny(ftt: &str, base_name: &str, dir: &Path, iters: usize) -> (LoadedModel, Vec<f64>, Vec<f64>) {
    oxmx_core::random::seed(0);
    let mut m = base(base_name);
    let args = TrainArgs {
        fine_tune_type: ftt.into(),
        num_layers: -1,
        lora_parameters: Some(LoraParameters { rank: 4, dropout: 0.0, scale: 10.0, keys: None }),
        ..Default::default()
    };
    lora::setup_training(m.model.as_mut(), &args).unwrap();
    args.save(&dir.join("adapter_config.json")).unwrap();
    let mut opt = Adam::new(1e-3);
    let targs = TrainingArgs {
        batch_size: 4,
        iters,
        val_batches: -1,
        steps_per_report: 5,
        steps_per_eval: 10,
        steps_per_save: 1000,
        max_seq_length: 64,
        adapter_file: dir.join("adapters.safetensors"),
        grad_accumulation_steps: 1,
        grad_checkpoint: false,
        seed: 0,
    };
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let data = repeated(8);
    lora::train(m.model.as_mut(), &mut opt, &data, Some(&repeated(4)), &targs, &mut |r| match r {
        Report::Train { train_loss, tokens_per_sec, .. } => {
            assert!(tokens_per_sec > 0.0);
            train.push(train_loss)
        }
        Report::Val { val_loss, .. } => val.push(val_loss),
        _ => {}
    })
    .unwrap();
    m.model.set_eval();
    (m, train, val)
}

#[test]
fn training_drives_the_loss_down() {
    for ftt in ["lora", "dora"] {
        let dir = tmp(&format!("train-{ftt}"));
        let (_, train, val) = train_tiny(ftt, "tiny_qwen2", &dir, 30);
        println!("{ftt}: train losses {train:?}, validation losses {val:?}");
        assert_eq!(train.len(), 6);
        assert_eq!(val.len(), 4, "validation at iterations 1, 10, 20 and 30");
        assert!(train[5] < 0.3 * train[0], "{ftt}: training loss {} -> {}", train[0], train[5]);
        assert!(val[3] < 0.3 * val[0], "{ftt}: validation loss {} -> {}", val[0], val[3]);
        assert!(dir.join("adapters.safetensors").is_file());
    }
}

/// Runs mlx-lm on an adapter folder and returns its logits for `tokens`, or `None` (with the
/// reason printed) when python3 with mlx_lm is not available.
fn mlx_lm_logits(base_dir: &Path, adapters: &Path, tokens: &Array, out: &Path) -> Option<Array> {
    let tok: Vec<i32> = tokens.astype(Dtype::Int32).to_vec().unwrap();
    let script = format!(
        "import mlx.core as mx\nfrom pathlib import Path\nfrom mlx_lm.utils import load_model\nfrom mlx_lm.tuner.utils import load_adapters\n\
         m, _ = load_model(Path('{}'))\nm.set_dtype(mx.float32)\nload_adapters(m, '{}')\nm.eval()\n\
         t = mx.array({tok:?}, dtype=mx.int32).reshape({}, {})\nmx.save_safetensors('{}', {{'logits': m(t).astype(mx.float32)}})\n",
        base_dir.display(),
        adapters.display(),
        tokens.shape()[0],
        tokens.shape()[1],
        out.display()
    );
    let run = std::process::Command::new("python3").arg("-c").arg(&script).output();
    match run {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("No module named") {
                println!("skipped: python3 has no mlx / mlx_lm ({})", err.lines().last().unwrap_or(""));
                return None;
            }
            panic!("mlx-lm failed on our adapters:\n{err}");
        }
        Err(e) => {
            println!("skipped: cannot run python3: {e}");
            return None;
        }
    }
    let (arrays, _) = oxmx_core::io::load_safetensors(out).unwrap();
    Some(arrays.into_iter().find(|(k, _)| k == "logits").unwrap().1)
}

#[test]
fn oxmx_adapters_load_in_mlx_lm() {
    for (ftt, base_name) in [("lora", "tiny_qwen2"), ("dora", "tiny_qwen2"), ("lora", "lora/qbase")] {
        let dir = tmp(&format!("export-{ftt}-{}", base_name.replace('/', "_")));
        let (m, ..) = train_tiny(ftt, base_name, &dir, 5);
        let (tokens, _) = expected("lora/lora");
        let ours = logits(&m, &tokens);
        let Some(theirs) = mlx_lm_logits(&fixture(base_name), &dir, &tokens, &dir.join("mlx.safetensors")) else { return };
        let d = max_abs_diff(&ours, &theirs);
        println!("{ftt} over {base_name}: max |oxmx - mlx-lm| = {d:e}");
        assert!(max_abs_diff(&ours, &logits(&base(base_name), &tokens)) > 1e-2, "training should change the logits");
        assert!(d < 1e-3, "{ftt} over {base_name}: mlx-lm with our adapter differs by {d}");
        // The config mlx-lm read is ours.
        let cfg = AdapterConfig::load(&dir).unwrap();
        assert_eq!(cfg.fine_tune_type, ftt);
    }
}

#[test]
fn fused_model_equals_base_plus_adapter() {
    // (adapter, base, --dequantize, oracle, tolerance): float16 bases store the fused weight in
    // float16; a 4-bit base is re-quantized, which changes the model, so the oracle there is
    // mlx-lm's own fuse of the same adapter (`fused_expected`).
    for (name, base_name, dequantize, oracle, tol) in [
        ("lora", "tiny_qwen2", false, "expected", 2e-2),
        ("dora", "tiny_qwen2", false, "expected", 2e-2),
        ("qlora", "lora/qbase", true, "expected", 1e-3),
        ("qlora", "lora/qbase", false, "fused_expected", 1e-3),
    ] {
        let dst = tmp(&format!("fused-{name}-{dequantize}")).join("out");
        let mut opts = oxmx_lm::convert::ConvertOptions::new(fixture(base_name), &dst);
        opts.adapter_path = Some(fixture(&format!("lora/{name}")));
        opts.dequantize = dequantize;
        oxmx_lm::convert::convert(&opts, &mut |_| {}).unwrap();
        let fused = load(&dst, &LoadOptions::default()).unwrap();
        let (arrays, _) = oxmx_core::io::load_safetensors(fixture(&format!("lora/{name}/{oracle}.safetensors"))).unwrap();
        let get = |k: &str| arrays.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let (tokens, want) = (get("tokens"), get("logits"));
        let d = max_abs_diff(&logits(&fused, &tokens), &want);
        let quantized_out = std::fs::read_to_string(dst.join("config.json")).unwrap().contains("\"quantization\"");
        println!("fused {name} (dequantize {dequantize}, quantized output {quantized_out}): max |fused - {oracle}| = {d:e}");
        assert_eq!(quantized_out, base_name == "lora/qbase" && !dequantize);
        assert!(d < tol, "{name}: fused model differs from {oracle} by {d}");
    }
}

#[test]
fn data_formats_tokenize_as_mlx_lm() {
    let tok_dir = Path::new("/work/models/smollm2-hf");
    if !tok_dir.join("tokenizer.json").exists() {
        println!("skipped: the SmolLM2 tokenizer is not at {}", tok_dir.display());
        return;
    }
    let tok = oxmx_lm::Tokenizer::from_dir(tok_dir).unwrap();
    let want: BTreeMap<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("lora/data_expected.json")).unwrap()).unwrap();
    for (key, rows) in want {
        let (form, mode) = key.split_once('/').unwrap();
        let o = DataOptions { mask_prompt: mode == "mask", ..Default::default() };
        let ds = load_jsonl(&fixture(&format!("lora/data/{form}/train.jsonl")), &tok, &o).unwrap().unwrap();
        let rows = rows.as_array().unwrap();
        assert_eq!(ds.len(), rows.len());
        for (i, (got, r)) in ds.examples.iter().zip(rows).enumerate() {
            let tokens: Vec<u32> = r["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(got.0, tokens, "{key}[{i}]: tokens");
            assert_eq!(got.1 as u64, r["offset"].as_u64().unwrap(), "{key}[{i}]: offset");
        }
    }
    let e = load_jsonl(&fixture("lora/data/text/train.jsonl"), &tok, &DataOptions { mask_prompt: true, ..Default::default() }).unwrap_err();
    assert!(e.message().contains("prompt masking is not supported for text"), "{}", e.message());
}

#[test]
fn batches_pad_and_truncate_as_mlx_lm() {
    let ex = |n: usize, off: usize| ((1..=n as u32).collect::<Vec<u32>>(), off);
    let data = Dataset { format: None, examples: vec![ex(70, 0), ex(3, 1), ex(40, 2), ex(5, 0), ex(9, 0)] };
    let mut seen: Vec<(Vec<usize>, Vec<i32>)> = iterate_batches(&data, 2, 2048, false, 0)
        .unwrap()
        .map(|b| (b.tokens.shape().to_vec(), b.lengths.to_vec::<i32>().unwrap()))
        .collect();
    seen.sort();
    // Sorted by length and grouped in twos (3, 5) (9, 40); the odd one out (70) is dropped.
    assert_eq!(seen, vec![(vec![2, 33], vec![1, 3, 0, 5]), (vec![2, 65], vec![0, 9, 2, 40])]);
    let b: Vec<_> = iterate_batches(&data, 5, 50, false, 0).unwrap().collect();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].tokens.shape(), &[5, 50]);
    assert_eq!(b[0].truncated, 1);
    assert_eq!(b[0].lengths.to_vec::<i32>().unwrap(), vec![1, 3, 0, 5, 0, 9, 2, 40, 0, 50]);
    let row: Vec<i32> = oxmx_core::ops::slice_range(&b[0].tokens, &[0, 0], &[1, 50]).to_vec().unwrap();
    assert_eq!(&row[..4], &[1, 2, 3, 0], "zero padding after the tokens");
    let e = iterate_batches(&data, 6, 2048, false, 0).err().unwrap();
    assert!(e.message().contains("at least batch_size=6"), "{}", e.message());
}

#[test]
fn warmup_schedule_matches_mlx() {
    let f: Value = serde_json::from_str(&std::fs::read_to_string(fixture("lora/schedule.json")).unwrap()).unwrap();
    let s: LrSchedule = serde_json::from_value(f["config"].clone()).unwrap();
    let LearningRate::Scheduled(sched) = s.build().unwrap() else { panic!("a schedule") };
    for (i, want) in f["values"].as_array().unwrap().iter().enumerate() {
        let (got, want) = (sched(i as u64) as f64, want.as_f64().unwrap());
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1e-6), "step {i}: {got} vs mlx {want}");
    }
    let bad = LrSchedule { name: "nope".into(), arguments: vec![1e-3], warmup: 0, warmup_init: 0.0 };
    assert!(bad.build().err().unwrap().message().contains("unknown schedule `nope`"));
}

#[test]
fn arguments_resolve_and_round_trip() {
    let yaml = serde_json::json!({"lora_parameters": {"rank": 16}, "iters": 50, "learning_rate": 1e-4});
    let cli = serde_json::json!({"iters": 7});
    let a = TrainArgs::resolve(&[yaml.as_object().unwrap().clone(), cli.as_object().unwrap().clone()]).unwrap();
    assert_eq!(a.iters, 7, "the command line wins over the config file");
    assert_eq!(a.learning_rate, 1e-4);
    assert_eq!(a.lora_parameters, Some(LoraParameters { rank: 16, dropout: 0.0, scale: 20.0, keys: None }));
    assert_eq!((a.batch_size, a.num_layers, a.steps_per_eval), (4, 16, 200), "mlx-lm's defaults");
    let e = TrainArgs::resolve(&[serde_json::json!({"fine_tune_type": "qlora"}).as_object().unwrap().clone()]).unwrap_err();
    assert!(e.message().contains("unknown fine_tune_type `qlora`"), "{}", e.message());
    let e = TrainArgs::resolve(&[serde_json::json!({"batch_size": "four"}).as_object().unwrap().clone()]).unwrap_err();
    assert!(e.message().contains("invalid configuration"), "{}", e.message());
    // Ours reads back, and so does mlx-lm's (extra keys such as report_to are kept).
    let dir = tmp("config");
    a.save(&dir.join("adapter_config.json")).unwrap();
    let c = AdapterConfig::load(&dir).unwrap();
    assert_eq!((c.fine_tune_type.as_str(), c.num_layers, c.lora_parameters.unwrap().rank), ("lora", 16, 16));
    let theirs: TrainArgs = serde_json::from_str(&std::fs::read_to_string(fixture("lora/lora/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(theirs.extra.get("report_to"), Some(&Value::Null));
    assert_eq!(AdapterConfig::load(&fixture("lora/full")).unwrap().lora_parameters, None);
}

#[test]
fn grad_checkpoint_gives_the_same_loss_and_gradients() {
    let mut m = base("tiny_qwen2");
    let args = TrainArgs { num_layers: -1, ..Default::default() };
    lora::setup_training(m.model.as_mut(), &args).unwrap();
    let data = repeated(4);
    let b = iterate_batches(&data, 4, 64, false, 0).unwrap().next().unwrap();
    let run = |m: &mut LoadedModel| {
        let ((loss, _), grads) =
            oxmx_nn::value_and_grad(m.model.as_mut(), |mm| lora::train::default_loss(mm, &b.tokens, &b.lengths)).unwrap();
        (loss.item::<f32>().unwrap(), grads)
    };
    let (l1, g1) = run(&mut m);
    let (l2, g2) = {
        let _on = lora::checkpoint::scoped(true);
        assert!(lora::checkpoint::enabled());
        run(&mut m)
    };
    assert!(!lora::checkpoint::enabled(), "the guard restores the setting");
    assert!((l1 - l2).abs() < 1e-6, "loss {l1} vs checkpointed {l2}");
    assert_eq!(g1.len(), 28);
    assert_eq!(g1.keys().collect::<Vec<_>>(), g2.keys().collect::<Vec<_>>());
    for (k, a) in &g1 {
        let d = max_abs_diff(a, &g2[k]);
        let scale = a.to_vec::<f32>().unwrap().iter().fold(0f32, |s, v| s.max(v.abs()));
        assert!(d <= 1e-5 * (1.0 + scale), "{k}: gradients differ by {d} with checkpointing");
    }
}

/// Training throughput on the repository's example data (examples/lora/data) with the 4-bit
/// SmolLM2 MLX folder, for comparison with `mlx_lm.lora` on the same data and settings (see
/// examples/lora/README.md). Run: cargo test --workspace --test lora -- --ignored --nocapture
#[test]
#[ignore]
fn bench_training_tokens_per_second() {
    let model_dir = std::env::var("OXMX_LORA_BENCH_MODEL").unwrap_or_else(|_| "/work/models/smollm2-mlx-q4g64".into());
    if !Path::new(&model_dir).join("config.json").exists() {
        println!("skipped: no model at {model_dir}");
        return;
    }
    let data_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lora/data");
    let tok = oxmx_lm::Tokenizer::from_dir(&model_dir).unwrap();
    let (train, ..) = lora::load_local_dataset(&data_dir, &tok, &DataOptions::default()).unwrap();
    oxmx_core::random::seed(0);
    let mut m = load(&model_dir, &LoadOptions::default()).unwrap();
    let args = TrainArgs { num_layers: 16, ..Default::default() };
    lora::setup_training(m.model.as_mut(), &args).unwrap();
    let dir = tmp("bench");
    let iters: usize = std::env::var("OXMX_LORA_BENCH_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let targs = TrainingArgs {
        batch_size: 4,
        iters,
        val_batches: 0,
        steps_per_report: 10,
        steps_per_eval: 1000,
        steps_per_save: 100000,
        max_seq_length: 2048,
        adapter_file: dir.join("adapters.safetensors"),
        grad_accumulation_steps: 1,
        grad_checkpoint: false,
        seed: 0,
    };
    let mut opt = Adam::new(1e-5);
    lora::train(m.model.as_mut(), &mut opt, &train.unwrap(), None, &targs, &mut |r| println!("{r:?}")).unwrap();
}
