//! `convert` (mlx_lm.convert): float round trips give bit-identical logits, quantized folders
//! hold exactly oxmx's `quantize` output under mlx-lm's keys and config blocks, `--dequantize`
//! gives `dequantize`'s floats, shards and their index load back, bad requests fail clearly, and,
//! when python3 has mlx_lm, mlx-lm reads our folders (same greedy ids) and we read its folders
//! (same greedy ids, same bytes as our own conversion).

use oxmx_core::{io, ops, Array, Dtype};
use oxmx_lm::convert::{convert, ConvertOptions, ConvertReport, MixedRecipe, Progress};
use oxmx_lm::loader::{load, LoadOptions};
#[allow(unused_imports)]
use oxmx_lm::models::LanguageModel;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;
use common::smollm2_gguf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A unique folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "oxmx-convert-test-{}-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            nanos
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    /// A path inside that does not exist yet.
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(opts: &ConvertOptions) -> ConvertReport {
    let mut saw_write = false;
    let r = convert(opts, &mut |p| {
        if let Progress::Writing { done, total, .. } = p {
            assert!(done <= total);
            saw_write = true;
        }
    })
    .unwrap_or_else(|e| panic!("convert {} -> {}: {e}", opts.hf_path.display(), opts.mlx_path.display()));
    assert!(saw_write, "no progress while writing");
    r
}

fn opts(src: &Path, dst: &Path) -> ConvertOptions {
    ConvertOptions::new(src, dst)
}

/// The fixture's token batch `[B, L]` (int32).
fn tokens(name: &str) -> Array {
    let (arrays, _) = io::load_safetensors(fixture(name).join("expected.safetensors")).unwrap();
    let t = arrays.into_iter().find(|(n, _)| n == "tokens").unwrap().1;
    t.astype(Dtype::Int32)
}

fn token_rows(t: &Array) -> Vec<Vec<i32>> {
    let s = t.shape().to_vec();
    let v = t.to_vec::<i32>().unwrap();
    v.chunks(s[1]).map(|c| c.to_vec()).collect()
}

fn logits(path: &Path, t: &Array) -> Array {
    let m = load(path, &LoadOptions::default()).unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    let l = m.model.forward(t, None);
    oxmx_core::eval(&[&l]).unwrap();
    l
}

fn greedy(path: &Path, t: &Array) -> Vec<Vec<u32>> {
    let l = logits(path, t);
    let ids = ops::argmax(&l, Some(-1), false).astype(Dtype::Int32);
    let s = ids.shape().to_vec();
    ids.to_vec::<i32>().unwrap().chunks(s[1]).map(|c| c.iter().map(|&x| x as u32).collect()).collect()
}

fn bytes(a: &Array) -> Vec<u8> {
    io::array_le_bytes(a).unwrap()
}

/// All tensors of a folder's `model*.safetensors` files.
fn tensors(dir: &Path) -> BTreeMap<String, Array> {
    let mut out = BTreeMap::new();
    for f in oxmx_lm::loader::folder::weight_files(dir).unwrap() {
        let (arrays, meta) = io::load_safetensors(&f).unwrap();
        assert_eq!(meta.get("format").map(String::as_str), Some("mlx"), "{}: metadata {meta:?}", f.display());
        out.extend(arrays);
    }
    out
}

fn config(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// The Linear/Embedding module paths of a source checkpoint (keys with a 2-D `.weight`).
fn layer_paths(src: &BTreeMap<String, Array>) -> Vec<String> {
    src.iter().filter(|(k, a)| k.ends_with(".weight") && a.ndim() == 2).map(|(k, _)| k.trim_end_matches(".weight").to_string()).collect()
}

/// Checks a quantized output against `ops::quantize` of the source weights: layers whose input
/// divides into groups hold exactly quantize's packed weight, scales and biases with
/// `bits_of(path)` bits; the others stay float and equal the source.
fn check_quantized(src_dir: &Path, out: &Path, group_size: usize, bits_of: &dyn Fn(&str) -> usize) -> usize {
    let src = tensors_any(src_dir);
    let got = tensors(out);
    let mut n = 0;
    for p in layer_paths(&src) {
        let w = &src[&format!("{p}.weight")];
        if w.shape()[1] % group_size == 0 {
            let (wq, s, b) = ops::quantize(w, Some(group_size), Some(bits_of(&p)), "affine");
            assert_eq!(bytes(&got[&format!("{p}.weight")]), bytes(&wq), "{p}.weight");
            assert_eq!(got[&format!("{p}.scales")].dtype(), s.dtype(), "{p}.scales dtype");
            assert_eq!(bytes(&got[&format!("{p}.scales")]), bytes(&s), "{p}.scales");
            assert_eq!(bytes(&got[&format!("{p}.biases")]), bytes(&b.unwrap()), "{p}.biases");
            n += 1;
        } else {
            assert!(!got.contains_key(&format!("{p}.scales")), "{p} must stay float (input {} % {group_size} != 0)", w.shape()[1]);
            assert_eq!(bytes(&got[&format!("{p}.weight")]), bytes(w), "{p}.weight (float)");
        }
    }
    n
}

/// Tensors of a source folder (any safetensors names).
fn tensors_any(dir: &Path) -> BTreeMap<String, Array> {
    let mut out = BTreeMap::new();
    for f in oxmx_lm::loader::folder::weight_files(dir).unwrap() {
        out.extend(io::load_safetensors(&f).unwrap().0);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// float round trips

fn float32_round_trip(name: &str) {
    let tmp = TempDir::new(name);
    let out = tmp.join("mlx");
    let mut o = opts(&fixture(name), &out);
    o.dtype = Some("float32".into());
    let rep = run(&o);
    assert_eq!(rep.shards, vec!["model.safetensors".to_string()]);
    assert_eq!(rep.quantized_layers, 0);
    for f in ["model.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Same keys as the source (the fixtures are already sanitized), all float32.
    let src = tensors_any(&fixture(name));
    let got = tensors(&out);
    assert_eq!(src.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (k, a) in &got {
        assert_eq!(a.dtype(), Dtype::Float32, "{k}");
        assert_eq!(bytes(a), bytes(&src[k].astype(Dtype::Float32)), "{k}");
    }
    // config: the source's, top-level keys sorted, eos from generation_config.json, no quantization.
    let cfg = config(&out);
    let keys: Vec<&String> = cfg.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(cfg["eos_token_id"], json!([2, 7]));
    assert!(cfg.get("quantization").is_none() && cfg.get("quantization_config").is_none());
    assert_eq!(cfg["model_type"], config(&fixture(name))["model_type"]);
    // Index: total size and a sorted weight map naming the one file.
    let idx: Value = serde_json::from_str(&std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap()).unwrap();
    let total: u64 = got.values().map(|a| a.nbytes() as u64).sum();
    assert_eq!(idx["metadata"]["total_size"], json!(total));
    assert_eq!(idx["metadata"]["total_parameters"], json!(got.values().map(|a| a.size() as u64).sum::<u64>()));
    let wm = idx["weight_map"].as_object().unwrap();
    assert_eq!(wm.len(), got.len());
    assert!(wm.values().all(|v| v == "model.safetensors"));
    // Bit-identical logits.
    let t = tokens(name);
    assert_eq!(bytes(&logits(&fixture(name), &t)), bytes(&logits(&out, &t)), "{name}: logits differ after conversion");
}

#[test]
fn float32_tiny_llama_bit_identical() {
    float32_round_trip("tiny_llama");
}

#[test]
fn float32_tiny_qwen3_bit_identical() {
    float32_round_trip("tiny_qwen3");
}

#[test]
fn dtype_defaults_and_casts() {
    // No --dtype and no torch_dtype: the source's float16 stays; --dtype bfloat16 casts.
    let tmp = TempDir::new("dtype");
    let a = tmp.join("a");
    run(&opts(&fixture("tiny_llama"), &a));
    assert!(tensors(&a).values().all(|t| t.dtype() == Dtype::Float16));
    let b = tmp.join("b");
    let mut o = opts(&fixture("tiny_llama"), &b);
    o.dtype = Some("bfloat16".into());
    run(&o);
    assert!(tensors(&b).values().all(|t| t.dtype() == Dtype::Bfloat16));
    // torch_dtype in the config is the default.
    let src = tmp.join("src");
    copy_fixture("tiny_llama", &src);
    let mut cfg = config(&src);
    cfg["torch_dtype"] = json!("float32");
    std::fs::write(src.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let c = tmp.join("c");
    run(&opts(&src, &c));
    assert!(tensors(&c).values().all(|t| t.dtype() == Dtype::Float32));
}

#[test]
fn sharded_output_loads_back() {
    let tmp = TempDir::new("shards");
    let out = tmp.join("mlx");
    let mut o = opts(&fixture("tiny_llama"), &out);
    o.dtype = Some("float32".into());
    o.max_shard_bytes = 100_000;
    let rep = run(&o);
    let n = rep.shards.len();
    assert!(n > 2, "expected several shards, got {:?}", rep.shards);
    for (i, s) in rep.shards.iter().enumerate() {
        assert_eq!(s, &format!("model-{:05}-of-{:05}.safetensors", i + 1, n));
    }
    let idx: Value = serde_json::from_str(&std::fs::read_to_string(out.join("model.safetensors.index.json")).unwrap()).unwrap();
    let wm = idx["weight_map"].as_object().unwrap();
    let keys: Vec<&String> = wm.keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "weight_map is sorted");
    for (k, f) in wm {
        let (arrays, _) = io::load_safetensors(out.join(f.as_str().unwrap())).unwrap();
        assert!(arrays.iter().any(|(n, _)| n == k), "{k} not in {f}");
    }
    let t = tokens("tiny_llama");
    assert_eq!(bytes(&logits(&fixture("tiny_llama"), &t)), bytes(&logits(&out, &t)));
}

// ---------------------------------------------------------------------------------------------
// quantize / dequantize

#[test]
fn quantize_4bit_g64() {
    for name in ["tiny_llama", "tiny_qwen3"] {
        let tmp = TempDir::new("q4");
        let out = tmp.join("mlx");
        let mut o = opts(&fixture(name), &out);
        o.quantize = true;
        let rep = run(&o);
        let cfg = config(&out);
        let block = json!({"group_size": 64, "bits": 4, "mode": "affine"});
        assert_eq!(cfg["quantization"], block, "{name}");
        assert_eq!(cfg["quantization_config"], block, "{name}");
        let n = check_quantized(&fixture(name), &out, 64, &|_| 4);
        assert_eq!(n, rep.quantized_layers);
        // down_proj (input 96) and, for qwen3, o_proj (input 96) stay float.
        assert!(!tensors(&out).contains_key("model.layers.0.mlp.down_proj.scales"));
        let t = tokens(name);
        let l = logits(&out, &t);
        assert!(l.to_vec::<f32>().unwrap().iter().all(|x| x.is_finite()));
    }
}

#[test]
fn quantize_8bit_g32() {
    for name in ["tiny_llama", "tiny_qwen3"] {
        let tmp = TempDir::new("q8");
        let out = tmp.join("mlx");
        let mut o = opts(&fixture(name), &out);
        o.quantize = true;
        o.q_bits = Some(8);
        o.q_group_size = Some(32);
        let rep = run(&o);
        let cfg = config(&out);
        let block = json!({"group_size": 32, "bits": 8, "mode": "affine"});
        assert_eq!(cfg["quantization"], block);
        assert_eq!(cfg["quantization_config"], block);
        let n = check_quantized(&fixture(name), &out, 32, &|_| 8);
        assert_eq!(n, rep.quantized_layers);
        // Every layer divides into groups of 32.
        assert_eq!(n, layer_paths(&tensors_any(&fixture(name))).len());
        // 8-bit is close to the float model.
        let t = tokens(name);
        let (a, b) = (logits(&fixture(name), &t), logits(&out, &t));
        let d = ops::max(&ops::abs(&ops::subtract(&a, &b)), None::<isize>, false).item::<f32>().unwrap();
        let m = ops::max(&ops::abs(&a), None::<isize>, false).item::<f32>().unwrap();
        assert!(d < 0.05 * m, "{name}: 8-bit logits differ by {d} (largest |logit| {m})");
    }
}

#[test]
fn quantize_mixed_recipes() {
    for (name, recipe, low, high) in
        [("tiny_llama", "mixed_3_6", 3, 6), ("tiny_qwen3", "mixed_2_6", 2, 6), ("tiny_llama", "mixed_3_4", 3, 4)]
    {
        let tmp = TempDir::new("mixed");
        let out = tmp.join("mlx");
        let mut o = opts(&fixture(name), &out);
        o.quantize = true;
        o.quant_predicate = Some(recipe.into());
        run(&o);
        // 2 layers: n/8 = 0, 7n/8 = 1, so layer 1 is "important", layer 0 is not.
        let bits_of = |p: &str| {
            let important = p.starts_with("model.layers.1.");
            if ((p.contains("v_proj") || p.contains("down_proj")) && important) || p.contains("lm_head") {
                high
            } else {
                low
            }
        };
        check_quantized(&fixture(name), &out, 64, &bits_of);
        let q = &config(&out)["quantization"];
        assert_eq!(q["group_size"], json!(64));
        assert_eq!(q["bits"], json!(4));
        assert_eq!(q["mode"], json!("affine"));
        assert_eq!(config(&out)["quantization_config"], *q);
        // Every quantized layer is recorded with its bits; the others are not.
        let src = tensors_any(&fixture(name));
        for p in layer_paths(&src) {
            if src[&format!("{p}.weight")].shape()[1] % 64 == 0 {
                assert_eq!(q[&p], json!({"group_size": 64, "bits": bits_of(&p), "mode": "affine"}), "{recipe} {p}");
            } else {
                assert!(q.get(&p).is_none(), "{p}");
            }
        }
        assert!(q.get("model.layers.1.self_attn.v_proj").is_some());
        let l = logits(&out, &tokens(name));
        assert!(l.to_vec::<f32>().unwrap().iter().all(|x| x.is_finite()));
    }
}

#[test]
fn mixed_recipe_rule() {
    let paths = ["model.embed_tokens", "model.layers.0.mlp.down_proj", "lm_head"];
    let r = MixedRecipe::new("mixed_4_6", paths.iter().copied(), 32).unwrap();
    // 32 layers: 0..4 and 28..32 important, then every third from 4: 6, 9, 12, ...
    let v = |i: usize| r.bits_for(&format!("model.layers.{i}.self_attn.v_proj"));
    let important: Vec<usize> = (0..32).filter(|&i| v(i) == 6).collect();
    assert_eq!(important, vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    assert_eq!(r.bits_for("model.layers.5.mlp.down_proj"), 4);
    assert_eq!(r.bits_for("model.layers.6.mlp.down_proj"), 6);
    assert_eq!(r.bits_for("model.layers.6.mlp.up_proj"), 4);
    assert_eq!(r.bits_for("lm_head"), 6);
    assert_eq!(r.bits_for("model.embed_tokens"), 4);
    assert!(MixedRecipe::new("mixed_9_9", paths.iter().copied(), 32).is_err());
    assert!(MixedRecipe::new("mixed_2_6", ["model.embed_tokens"].iter().copied(), 32).is_err());
}

#[test]
fn dequantize_gives_dequantize_output() {
    let tmp = TempDir::new("deq");
    let q = tmp.join("q");
    let mut o = opts(&fixture("tiny_qwen3"), &q);
    o.quantize = true;
    o.q_group_size = Some(32);
    run(&o);
    let d = tmp.join("d");
    let mut o = opts(&q, &d);
    o.dequantize = true;
    let rep = run(&o);
    assert_eq!(rep.quantized_layers, 0);
    let cfg = config(&d);
    assert!(cfg.get("quantization").is_none() && cfg.get("quantization_config").is_none());
    let (qt, dt) = (tensors(&q), tensors(&d));
    assert!(!dt.keys().any(|k| k.ends_with(".scales") || k.ends_with(".biases")));
    let src = tensors_any(&fixture("tiny_qwen3"));
    assert_eq!(dt.keys().collect::<Vec<_>>(), src.keys().collect::<Vec<_>>());
    for (k, a) in &dt {
        let base = k.trim_end_matches(".weight");
        if let Some(s) = qt.get(&format!("{base}.scales")) {
            let want = ops::dequantize(&qt[k], s, qt.get(&format!("{base}.biases")), Some(32), Some(4), "affine", None);
            assert_eq!(a.dtype(), Dtype::Float16, "{k}");
            assert_eq!(a.shape(), src[k].shape(), "{k}");
            assert_eq!(bytes(a), bytes(&want), "{k}");
        } else {
            assert_eq!(bytes(a), bytes(&qt[k]), "{k}");
        }
    }
    let l = logits(&d, &tokens("tiny_qwen3"));
    assert!(l.to_vec::<f32>().unwrap().iter().all(|x| x.is_finite()));
}

#[test]
fn requantizing_a_partly_quantized_model_records_new_layers() {
    // g64 leaves the 96-wide inputs float; a second pass at g32 quantizes just those and names
    // them (mlx-lm's fine-grained config), keeping the global block.
    let tmp = TempDir::new("reqq");
    let a = tmp.join("a");
    let mut o = opts(&fixture("tiny_llama"), &a);
    o.quantize = true;
    o.dtype = Some("float32".into());
    run(&o);
    let b = tmp.join("b");
    let mut o = opts(&a, &b);
    o.quantize = true;
    o.q_group_size = Some(32);
    let rep = run(&o);
    let q = config(&b)["quantization"].clone();
    let want = json!({
        "group_size": 64, "bits": 4, "mode": "affine",
        "model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 4, "mode": "affine"},
        "model.layers.1.mlp.down_proj": {"group_size": 32, "bits": 4, "mode": "affine"},
    });
    assert_eq!(q, want);
    let src = tensors_any(&fixture("tiny_llama"));
    assert_eq!(rep.quantized_layers, layer_paths(&src).len());
    let t = tokens("tiny_llama");
    assert!(logits(&b, &t).to_vec::<f32>().unwrap().iter().all(|x| x.is_finite()));
    if let Some(py) = python_mlx() {
        assert_eq!(mlx_greedy(&py, &b, &t), greedy(&b, &t), "mlx_lm vs oxmx greedy ids on a fine-grained folder");
    }
}

// ---------------------------------------------------------------------------------------------
// bad requests

#[test]
fn missing_source_is_an_error() {
    let tmp = TempDir::new("bad");
    let out = tmp.join("mlx");
    let e = convert(&opts(&tmp.join("no-such-model"), &out), &mut |_| {}).unwrap_err();
    assert!(e.message().contains("does not exist"), "{}", e.message());
    assert!(!out.exists());
    // A folder without config.json.
    let empty = tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(convert(&opts(&empty, &out), &mut |_| {}).is_err());
    assert!(!out.exists(), "a failed conversion leaves no output folder");
}

#[test]
fn unsupported_quantization_parameters_are_errors() {
    let tmp = TempDir::new("badq");
    let out = tmp.join("mlx");
    let case = |mode: &str, g: Option<usize>, b: Option<usize>, pred: Option<&str>| {
        let mut o = opts(&fixture("tiny_llama"), &out);
        o.quantize = true;
        o.q_mode = mode.into();
        o.q_group_size = g;
        o.q_bits = b;
        o.quant_predicate = pred.map(str::to_string);
        convert(&o, &mut |_| {}).unwrap_err().message().to_string()
    };
    let m = case("affine", None, Some(7), None);
    assert!(m.contains("--q-bits 7") && m.contains("affine"), "{m}");
    let m = case("affine", Some(48), None, None);
    assert!(m.contains("--q-group-size 48"), "{m}");
    let m = case("mxfp4", None, Some(8), None);
    assert!(m.contains("mxfp4 quantization requires --q-bits 4"), "{m}");
    let m = case("nvfp4", Some(32), None, None);
    assert!(m.contains("nvfp4 quantization requires --q-group-size 16"), "{m}");
    let m = case("mxfp8", None, Some(4), None);
    assert!(m.contains("mxfp8 quantization requires --q-bits 8"), "{m}");
    let m = case("int4", None, None, None);
    assert!(m.contains("--q-mode"), "{m}");
    let m = case("mxfp4", None, None, Some("mixed_3_6"));
    assert!(m.contains("affine"), "{m}");
    let m = case("affine", None, None, Some("mixed_5_7"));
    assert!(m.contains("mixed_5_7"), "{m}");
    let mut o = opts(&fixture("tiny_llama"), &out);
    o.quantize = true;
    o.dequantize = true;
    assert!(convert(&o, &mut |_| {}).unwrap_err().message().contains("not both"));
    let mut o = opts(&fixture("tiny_llama"), &out);
    o.dtype = Some("float64".into());
    assert!(convert(&o, &mut |_| {}).unwrap_err().message().contains("--dtype"));
    assert!(!out.exists());
}

#[test]
fn existing_output_folder_is_refused() {
    let tmp = TempDir::new("exists");
    let out = tmp.join("mlx");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = convert(&opts(&fixture("tiny_llama"), &out), &mut |_| {}).unwrap_err();
    assert!(e.message().contains("already exists"), "{}", e.message());
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    // A file in the way, too.
    let file = tmp.join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(convert(&opts(&fixture("tiny_llama"), &file), &mut |_| {}).unwrap_err().message().contains("already exists"));
    // An existing empty folder is fine.
    let empty = tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    run(&opts(&fixture("tiny_llama"), &empty));
    assert!(empty.join("model.safetensors").is_file());
}

// ---------------------------------------------------------------------------------------------
// GGUF

#[test]
fn gguf_source_converts_with_its_tokenizer() {
    let Some(gguf) = smollm2_gguf() else {
        eprintln!("skipping: SmolLM2-135M-Instruct.Q4_1.gguf not found (set OXMX_MODELS_DIR)");
        return;
    };
    let tmp = TempDir::new("gguf");
    let out = tmp.join("mlx");
    let rep = run(&opts(&gguf, &out));
    assert!(rep.quantized_layers > 0, "Q4_1 layers stay quantized");
    let cfg = config(&out);
    let q = &cfg["quantization"];
    assert_eq!(q["group_size"], json!(32));
    assert_eq!(q["bits"], json!(4));
    assert_eq!(cfg["quantization_config"], *q);
    assert_eq!(cfg["model_type"], json!("llama"));
    // The tokenizer written from the GGUF vocabulary encodes as the GGUF one does, and keeps the
    // chat template and special tokens.
    let a = oxmx_lm::Tokenizer::from_path(&gguf).unwrap();
    let b = oxmx_lm::Tokenizer::from_dir(&out).unwrap();
    let text = "Hello world! <|im_start|>user\nWhat is 2+2?<|im_end|>";
    assert_eq!(a.encode(text, true).unwrap(), b.encode(text, true).unwrap());
    assert_eq!(a.eos_token(), b.eos_token());
    assert_eq!(a.bos_token(), b.bos_token());
    assert_eq!(
        a.chat_template_source().map(|s| s.select(None).unwrap().0.to_string()),
        b.chat_template_source().map(|s| s.select(None).unwrap().0.to_string())
    );
    assert_eq!(a.eos_token_ids(), b.eos_token_ids());
    // Same weights, same logits.
    let ids: Vec<i32> = a.encode("The capital of France is", true).unwrap().iter().map(|&x| x as i32).collect();
    let t = Array::from_slice(&ids, &[1, ids.len()]);
    assert_eq!(bytes(&logits(&gguf, &t)), bytes(&logits(&out, &t)));
    if let Some(py) = python_mlx() {
        assert_eq!(mlx_greedy(&py, &out, &t), greedy(&out, &t), "mlx_lm vs oxmx greedy ids on the converted GGUF");
    }
}

// ---------------------------------------------------------------------------------------------
// interop with mlx-lm (python3 + mlx_lm when available)

/// `python3` when it can import mlx_lm; `None` (with a note) otherwise.
fn python_mlx() -> Option<String> {
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&py).args(["-c", "import mlx_lm, mlx.core"]).output() {
        Ok(o) if o.status.success() => Some(py),
        _ => {
            eprintln!("note: skipping the mlx-lm interop check ({py} cannot import mlx_lm)");
            None
        }
    }
}

const MLX_GREEDY: &str = r#"
import json, sys
from pathlib import Path
import mlx.core as mx
from mlx_lm.utils import load_model
model, _ = load_model(Path(sys.argv[1]))
tokens = mx.array(json.loads(sys.argv[2]), dtype=mx.int32)
logits = model(tokens)
print(json.dumps(mx.argmax(logits, axis=-1).tolist()))
"#;

fn mlx_greedy(py: &str, dir: &Path, t: &Array) -> Vec<Vec<u32>> {
    let toks = serde_json::to_string(&token_rows(t)).unwrap();
    let o = Command::new(py).args(["-c", MLX_GREEDY, dir.to_str().unwrap(), &toks]).output().unwrap();
    assert!(o.status.success(), "mlx_lm failed on {}:\n{}", dir.display(), String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("mlx_lm output {out:?}: {e}"))
}

#[test]
fn mlx_lm_loads_our_folders() {
    let Some(py) = python_mlx() else { return };
    type Setup = fn(&mut ConvertOptions);
    let cases: Vec<(&str, &str, Setup)> = vec![
        ("tiny_llama", "float32", |_| {}),
        ("tiny_qwen3", "float32", |_| {}),
        ("tiny_llama", "q4 g64", |o| o.quantize = true),
        ("tiny_qwen3", "q8 g32", |o| {
            o.quantize = true;
            o.q_bits = Some(8);
            o.q_group_size = Some(32);
        }),
        ("tiny_qwen3", "mixed_3_6", |o| {
            o.quantize = true;
            o.quant_predicate = Some("mixed_3_6".into());
        }),
        ("tiny_llama", "sharded q4 g32", |o| {
            o.quantize = true;
            o.q_group_size = Some(32);
            o.max_shard_bytes = 20_000;
        }),
        ("tiny_llama", "mxfp4", |o| {
            o.quantize = true;
            o.q_mode = "mxfp4".into();
        }),
        ("tiny_qwen3", "mxfp8", |o| {
            o.quantize = true;
            o.q_mode = "mxfp8".into();
        }),
        ("tiny_llama", "nvfp4", |o| {
            o.quantize = true;
            o.q_mode = "nvfp4".into();
        }),
        ("tiny_qwen3_moe", "q4 g32, router gates 8-bit", |o| {
            o.quantize = true;
            o.q_group_size = Some(32);
        }),
    ];
    for (name, what, setup) in cases {
        if !fixture(name).is_dir() {
            eprintln!("note: fixture {name} absent, case skipped");
            continue;
        }
        let tmp = TempDir::new("interop");
        let out = tmp.join("mlx");
        let mut o = opts(&fixture(name), &out);
        o.dtype = Some("float32".into());
        setup(&mut o);
        run(&o);
        let t = tokens(name);
        let (ours, theirs) = (greedy(&out, &t), mlx_greedy(&py, &out, &t));
        eprintln!("{name} {what}: oxmx {ours:?} mlx_lm {theirs:?}");
        assert_eq!(ours, theirs, "{name} ({what}): greedy ids differ between oxmx and mlx_lm");
    }
}

/// A copy of a fixture with a small word-level tokenizer (mlx_lm.convert loads one).
fn copy_fixture(name: &str, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixture(name).join(f), dst.join(f)).unwrap();
    }
    // mlx-lm's llama reads only the top-level rope keys, not transformers 5's rope_parameters.
    let mut cfg = config(dst);
    if let Some(rp) = cfg.get("rope_parameters").cloned() {
        cfg["rope_theta"] = rp["rope_theta"].clone();
        if rp["rope_type"] != json!("default") {
            cfg["rope_scaling"] = rp;
        }
        cfg.as_object_mut().unwrap().remove("rope_parameters");
        // ... and qwen3_moe needs `num_experts` (transformers 5 writes `num_local_experts`).
        if cfg["model_type"] == json!("qwen3_moe") && cfg.get("num_experts").is_none() {
            cfg["num_experts"] = cfg["num_local_experts"].clone();
        }
        std::fs::write(dst.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    }
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), json!(0));
    for i in 1..300 {
        vocab.insert(format!("t{i}"), json!(i));
    }
    let tj = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    std::fs::write(dst.join("tokenizer.json"), tj.to_string()).unwrap();
    let tc = json!({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>"});
    std::fs::write(dst.join("tokenizer_config.json"), tc.to_string()).unwrap();
}

#[test]
fn oxmx_loads_mlx_lm_folders() {
    let Some(py) = python_mlx() else { return };
    // (fixture, mlx_lm.convert keyword arguments, our options)
    type Setup = fn(&mut ConvertOptions);
    let cases: Vec<(&str, &str, Setup)> = vec![
        ("tiny_llama", "quantize=True, q_group_size=32, q_bits=4", |o| {
            o.quantize = true;
            o.q_group_size = Some(32);
            o.q_bits = Some(4);
        }),
        ("tiny_qwen3", "quantize=True", |o| o.quantize = true),
        // mlx-lm records `"group_size": null` per layer when no group size is given.
        ("tiny_qwen3", "quantize=True, quant_predicate='mixed_3_6'", |o| {
            o.quantize = true;
            o.quant_predicate = Some("mixed_3_6".into());
        }),
        ("tiny_llama", "quantize=True, q_mode='mxfp4'", |o| {
            o.quantize = true;
            o.q_mode = "mxfp4".into();
        }),
        // The model's own predicate: router gates at 8 bits, group 64.
        ("tiny_qwen3_moe", "quantize=True, q_group_size=32", |o| {
            o.quantize = true;
            o.q_group_size = Some(32);
        }),
    ];
    for (name, kwargs, setup) in cases {
        if !fixture(name).is_dir() {
            eprintln!("note: fixture {name} absent, case skipped");
            continue;
        }
        let tmp = TempDir::new("reverse");
        let src = tmp.join("src");
        copy_fixture(name, &src);
        let theirs = tmp.join("theirs");
        let script =
            format!("import sys\nfrom mlx_lm.convert import convert\nconvert(sys.argv[1], sys.argv[2], dtype='float32', {kwargs})\n");
        let o = Command::new(&py).args(["-c", &script, src.to_str().unwrap(), theirs.to_str().unwrap()]).output().unwrap();
        assert!(o.status.success(), "mlx_lm.convert failed:\n{}", String::from_utf8_lossy(&o.stderr));
        let t = tokens(name);
        let (a, b) = (greedy(&theirs, &t), mlx_greedy(&py, &theirs, &t));
        eprintln!("{name} mlx_lm.convert({kwargs}): oxmx {a:?} mlx_lm {b:?}");
        assert_eq!(a, b, "{name} ({kwargs}): greedy ids differ on mlx_lm's folder");
        // Our conversion of the same source with the same flags: same tensors, byte for byte,
        // and the same quantization block (up to mlx-lm's null group sizes).
        let ours = tmp.join("ours");
        let mut o = opts(&src, &ours);
        o.dtype = Some("float32".into());
        setup(&mut o);
        run(&o);
        let (tt, to) = (tensors(&theirs), tensors(&ours));
        assert_eq!(tt.keys().collect::<Vec<_>>(), to.keys().collect::<Vec<_>>());
        for (k, x) in &tt {
            assert_eq!(x.dtype(), to[k].dtype(), "{k}");
            assert_eq!(x.shape(), to[k].shape(), "{k}");
            assert_eq!(bytes(x), bytes(&to[k]), "{name} ({kwargs}): {k} differs from mlx_lm's");
        }
        let (ct, co) = (config(&theirs), config(&ours));
        let mut qt = ct["quantization"].clone();
        for v in qt.as_object_mut().unwrap().values_mut() {
            if let Some(g) = v.get_mut("group_size").filter(|g| g.is_null()) {
                *g = json!(64);
            }
        }
        assert_eq!(qt, co["quantization"], "{name} ({kwargs}): quantization blocks differ");
        assert_eq!(ct["eos_token_id"], co["eos_token_id"]);
        for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            assert!(ours.join(f).is_file(), "{f} not copied");
        }
        let it: Value = serde_json::from_str(&std::fs::read_to_string(theirs.join("model.safetensors.index.json")).unwrap()).unwrap();
        let io_: Value = serde_json::from_str(&std::fs::read_to_string(ours.join("model.safetensors.index.json")).unwrap()).unwrap();
        assert_eq!(it, io_, "{name} ({kwargs}): index files differ");
    }
}
