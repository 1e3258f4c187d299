//! Prompt-cache files in mlx-lm's format: oxmx round trips (plain, quantized, rotating caches),
//! generation from a loaded cache equals generation from the full prompt, and interop with
//! mlx-lm itself (python3 + mlx_lm; skipped with a note when `import mlx_lm` fails): a file
//! written by oxmx loads with `mlx_lm.models.cache.load_prompt_cache` and continues there to the
//! same greedy tokens, and a file written by mlx-lm (from a real prefill of the same model, and
//! from mlx's own cache classes) loads in oxmx with the same arrays and offsets.

use oxmx_core::{ops, random, Array, Dtype};
use oxmx_lm::cache::{make_prompt_cache, KVCache, KvCache, PromptCache, QuantizedKVCache, RotatingKVCache};
use oxmx_lm::generate::{generate_ids, prefill_cache, GenerateOptions};
use oxmx_lm::loader::{load, LoadOptions};
use oxmx_lm::prompt_cache::{load_prompt_cache, save_prompt_cache};
use oxmx_lm::sample::Sampler;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected() -> (Vec<u32>, Vec<u32>) {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixture("tiny_llama/expected_generate.json")).unwrap()).unwrap();
    let ids = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<u32>>();
    (ids("prompt"), ids("greedy"))
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("oxmx_prompt_cache_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32s(a: &Array) -> Vec<f32> {
    a.astype(Dtype::Float32).to_vec::<f32>().unwrap()
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_tokens: Some(n), ..Default::default() }
}

#[test]
fn loaded_cache_continues_like_the_full_prompt() {
    let (prompt, want) = expected();
    let m = load(fixture("tiny_llama"), &LoadOptions::default()).unwrap();
    let model = m.model.as_ref();
    let (full, _) =
        generate_ids(model, &prompt, &mut make_prompt_cache(model, None), Sampler::greedy(), vec![], greedy(want.len())).unwrap();
    assert_eq!(full, want);
    let dir = tmpdir("continue");
    for split in [1usize, 4, 6, 8] {
        let mut cache = make_prompt_cache(model, None);
        let st =
            prefill_cache(model, &prompt[..split], &mut cache, GenerateOptions { prefill_step_size: 3, ..Default::default() }).unwrap();
        assert_eq!(st.prompt_tokens, split);
        assert!(cache.iter().all(|c| c.offset() == split));
        let file = dir.join(format!("c{split}.safetensors"));
        let mut meta = BTreeMap::new();
        meta.insert("model".to_string(), "tiny_llama".to_string());
        meta.insert("tokens".to_string(), serde_json::to_string(&prompt[..split]).unwrap());
        save_prompt_cache(&file, &cache, &meta).unwrap();
        let (mut loaded, lmeta) = load_prompt_cache(&file).unwrap();
        assert_eq!(lmeta, meta);
        assert_eq!(loaded.len(), cache.len());
        for (a, b) in cache.iter().zip(&loaded) {
            assert_eq!(b.class_name(), "KVCache");
            assert_eq!(a.offset(), b.offset());
        }
        let (ids, _) = generate_ids(model, &prompt[split..], &mut loaded, Sampler::greedy(), vec![], greedy(want.len())).unwrap();
        assert_eq!(ids, want, "continuing from a cache of {split} prompt tokens");
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn rand(shape: &[usize], seed: u64) -> Array {
    random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(&random::key(seed)))
}

#[test]
fn quantized_and_rotating_caches_round_trip() {
    let mut q = QuantizedKVCache::new(64, 4);
    q.update_and_fetch(&rand(&[1, 2, 7, 64], 1), &rand(&[1, 2, 7, 64], 2));
    q.update_and_fetch(&rand(&[1, 2, 1, 64], 3), &rand(&[1, 2, 1, 64], 4));
    let mut r = RotatingKVCache::new(6, 2);
    r.update_and_fetch(&rand(&[1, 2, 4, 8], 5), &rand(&[1, 2, 4, 8], 6));
    for i in 0..5 {
        r.update_and_fetch(&rand(&[1, 2, 1, 8], 10 + i), &rand(&[1, 2, 1, 8], 20 + i));
    }
    let mut k = KVCache::new();
    k.update_and_fetch(&rand(&[1, 2, 3, 8], 7), &rand(&[1, 2, 3, 8], 8));
    let cache: PromptCache = vec![Box::new(q.clone()), Box::new(r.clone()), Box::new(k.clone()), Box::new(KVCache::new())];
    let dir = tmpdir("roundtrip");
    // The extension is added as mx.save_safetensors does.
    save_prompt_cache(dir.join("rt"), &cache, &BTreeMap::new()).unwrap();
    let (loaded, meta) = load_prompt_cache(dir.join("rt.safetensors")).unwrap();
    assert!(meta.is_empty());
    let names: Vec<&str> = loaded.iter().map(|c| c.class_name()).collect();
    assert_eq!(names, ["QuantizedKVCache", "RotatingKVCache", "KVCache", "KVCache"]);
    for (a, b) in cache.iter().zip(&loaded) {
        assert_eq!(a.offset(), b.offset());
        let (sa, sb) = (a.file_state(), b.file_state());
        assert_eq!(
            format!("{:?}", sa.iter().map(|s| matches!(s, oxmx_lm::cache::StateItem::None)).collect::<Vec<_>>()),
            format!("{:?}", sb.iter().map(|s| matches!(s, oxmx_lm::cache::StateItem::None)).collect::<Vec<_>>())
        );
        for (x, y) in a.state().iter().zip(b.state().iter()) {
            let n = y.shape()[2];
            let x = ops::slice_range(x, &[0, 0, 0, 0], &[x.shape()[0] as isize, x.shape()[1] as isize, n as isize, x.shape()[3] as isize]);
            assert_eq!(f32s(&x), f32s(y));
        }
    }
    assert_eq!(loaded[0].quantization(), Some((64, 4)));
    // Both continue identically.
    let (mut a, mut b) = (cache, loaded);
    for (i, (x, y)) in a.iter_mut().zip(b.iter_mut()).enumerate().take(3) {
        let d = if i == 0 { 64 } else { 8 };
        let nk = rand(&[1, 2, 1, d], 99);
        let (ka, _) = x.update_and_fetch(&nk, &nk);
        let (kb, _) = y.update_and_fetch(&nk, &nk);
        assert_eq!(f32s(&ka), f32s(&kb), "layer {i}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn corrupt_files_are_errors() {
    let dir = tmpdir("corrupt");
    let f = dir.join("x.safetensors");
    oxmx_core::io::save_safetensors_file(&f, &[("a", Array::vec(&[1.0f32]))], None).unwrap();
    let e = load_prompt_cache(&f).err().unwrap();
    assert!(e.message().contains("no cache classes"), "{}", e.message());
    let mut meta = BTreeMap::new();
    meta.insert("1.0".to_string(), "ArraysCache".to_string());
    meta.insert("2.0".to_string(), String::new());
    oxmx_core::io::save_safetensors_file(&f, &[("0.0", Array::vec(&[1.0f32]))], Some(&meta)).unwrap();
    let e = load_prompt_cache(&f).err().unwrap();
    assert!(e.message().contains("ArraysCache"), "{}", e.message());
    assert!(load_prompt_cache(dir.join("missing.safetensors")).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

// ---- interop with mlx-lm ----

fn have_mlx_lm() -> bool {
    let ok = Command::new("python3").args(["-c", "import mlx_lm, mlx.core"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("skipping mlx-lm interop: `import mlx_lm` failed (python3 with mlx-lm is not installed)");
    }
    ok
}

fn python(script: &str, args: &[&str]) -> Value {
    let o = Command::new("python3").arg("-c").arg(script).args(args).output().unwrap();
    assert!(o.status.success(), "python failed:\n{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap_or("null")).unwrap_or_else(|e| panic!("bad python output {out}: {e}"))
}

/// The fixture model as mlx-lm reads it: its config's `rope_parameters` (transformers 5) spelled
/// as `rope_scaling` + `rope_theta`, which mlx-lm's llama understands.
const MLX_MODEL: &str = r#"
import json, pathlib, shutil, sys
def mlx_model_dir(src, dst):
    dst = pathlib.Path(dst); dst.mkdir(parents=True, exist_ok=True)
    for f in ("model.safetensors", "generation_config.json"):
        shutil.copy(pathlib.Path(src) / f, dst / f)
    c = json.load(open(pathlib.Path(src) / "config.json"))
    rp = c.pop("rope_parameters", None)
    if rp:
        c["rope_theta"] = rp.pop("rope_theta")
        c["rope_scaling"] = rp
    json.dump(c, open(dst / "config.json", "w"))
    from mlx_lm.utils import load_model
    return load_model(dst)[0]
"#;

#[test]
fn mlx_lm_loads_an_oxmx_prompt_cache() {
    if !have_mlx_lm() {
        return;
    }
    let (prompt, want) = expected();
    let m = load(fixture("tiny_llama"), &LoadOptions::default()).unwrap();
    let model = m.model.as_ref();
    let dir = tmpdir("to_mlx");
    let split = 6;
    let mut cache = make_prompt_cache(model, None);
    prefill_cache(model, &prompt[..split], &mut cache, GenerateOptions::default()).unwrap();
    let mut meta = BTreeMap::new();
    meta.insert("model".to_string(), fixture("tiny_llama").display().to_string());
    meta.insert("tokenizer_config".to_string(), "{\"trust_remote_code\": false}".to_string());
    let file = dir.join("oxmx.safetensors");
    save_prompt_cache(&file, &cache, &meta).unwrap();
    // A quantized and a rotating cache too (head_dim 64 for the quantized one).
    let mut q = QuantizedKVCache::new(64, 8);
    let (k, v) = (rand(&[1, 2, 5, 64], 1), rand(&[1, 2, 5, 64], 2));
    q.update_and_fetch(&k, &v);
    let mut r = RotatingKVCache::new(4, 1);
    for i in 0..6 {
        r.update_and_fetch(&rand(&[1, 2, 1, 8], 30 + i), &rand(&[1, 2, 1, 8], 40 + i));
    }
    let other: PromptCache = vec![Box::new(q.clone()), Box::new(r.clone())];
    let file2 = dir.join("oxmx_qr.safetensors");
    save_prompt_cache(&file2, &other, &BTreeMap::new()).unwrap();

    let script = format!(
        r#"{MLX_MODEL}
import mlx.core as mx, numpy as np
from mlx_lm.models.cache import load_prompt_cache, save_prompt_cache
from mlx_lm.generate import generate_step
model = mlx_model_dir(sys.argv[1], sys.argv[2] + "/mlx_model")
cache, meta = load_prompt_cache(sys.argv[3], return_metadata=True)
offsets = [c.offset for c in cache]
suffix = json.loads(sys.argv[5])
out = [int(t) for t, _ in generate_step(mx.array(suffix), model, max_tokens=int(sys.argv[6]), prompt_cache=cache)]
qr = load_prompt_cache(sys.argv[4])
q, r = qr
qk = mx.dequantize(*q.keys, group_size=q.group_size, bits=q.bits)[..., :q.offset, :]
save_prompt_cache(sys.argv[2] + "/mlx_resaved.safetensors", qr, {{"from": "mlx"}})
print(json.dumps({{"classes": [type(c).__name__ for c in cache] + [type(c).__name__ for c in qr],
    "offsets": offsets, "meta": meta, "greedy": out,
    "q": [q.offset, q.group_size, q.bits], "qk": np.array(qk).reshape(-1).tolist(),
    "r": [r.offset, r.keep, r.max_size, r._idx], "rk": np.array(r.keys).reshape(-1).tolist()}}))
"#
    );
    let suffix = serde_json::to_string(&prompt[split..]).unwrap();
    let n = want.len().to_string();
    let out = python(
        &script,
        &[fixture("tiny_llama").to_str().unwrap(), dir.to_str().unwrap(), file.to_str().unwrap(), file2.to_str().unwrap(), &suffix, &n],
    );
    println!("mlx-lm read the oxmx file: classes {}, offsets {}, greedy {}", out["classes"], out["offsets"], out["greedy"]);
    assert_eq!(out["classes"], serde_json::json!(["KVCache", "KVCache", "QuantizedKVCache", "RotatingKVCache"]));
    assert_eq!(out["offsets"], serde_json::json!([split, split]));
    assert_eq!(out["meta"]["model"], Value::String(fixture("tiny_llama").display().to_string()));
    let got: Vec<u32> = out["greedy"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    assert_eq!(got, want, "mlx-lm continuing from oxmx's cache");
    assert_eq!(out["q"], serde_json::json!([5, 64, 8]));
    let fetched = q.fetched().unwrap().dequantized().0;
    let qk: Vec<f32> = out["qk"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(qk, f32s(&fetched));
    assert_eq!(out["r"], serde_json::json!([6, 1, 4, 3]));
    let rk: Vec<f32> = out["rk"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(rk, f32s(&r.state()[0]));
    // mlx re-saved what it loaded; oxmx reads that back identically.
    let (back, meta) = load_prompt_cache(dir.join("mlx_resaved.safetensors")).unwrap();
    assert_eq!(meta.get("from").map(String::as_str), Some("mlx"));
    assert_eq!(back[0].quantization(), Some((64, 8)));
    assert_eq!(back[0].offset(), 5);
    let packed = |c: &dyn KvCache| match &c.file_state()[0] {
        oxmx_lm::cache::StateItem::Arrays(t) => t[0].to_vec::<u32>().unwrap(),
        other => panic!("not a quantized state: {other:?}"),
    };
    assert_eq!(packed(back[0].as_ref()), packed(&q));
    assert_eq!(back[1].file_state().len(), 6);
    assert_eq!(f32s(&back[1].state()[0]), f32s(&r.state()[0]));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn oxmx_loads_mlx_lm_prompt_caches() {
    if !have_mlx_lm() {
        return;
    }
    let (prompt, want) = expected();
    let dir = tmpdir("from_mlx");
    let split = 5;
    let script = format!(
        r#"{MLX_MODEL}
import mlx.core as mx, numpy as np
from mlx_lm.models.cache import make_prompt_cache, save_prompt_cache, KVCache, RotatingKVCache
from mlx_lm.generate import generate_step
model = mlx_model_dir(sys.argv[1], sys.argv[2] + "/mlx_model")
prefix = json.loads(sys.argv[3])
cache = make_prompt_cache(model)
for _ in generate_step(mx.array(prefix), model, max_tokens=0, prompt_cache=cache):
    pass
save_prompt_cache(sys.argv[2] + "/mlx_prefill.safetensors", cache, {{"model": "tiny", "tokenizer_config": "{{}}"}})
layer0_k = np.array(cache[0].keys[..., :cache[0].offset, :]).reshape(-1).tolist()
# mlx's own classes from numpy arrays: plain, quantized (to_quantized), rotating.
rng = np.random.default_rng(0)
k = rng.standard_normal((1, 2, 7, 64)).astype(np.float32); v = rng.standard_normal((1, 2, 7, 64)).astype(np.float32)
plain = KVCache(); plain.update_and_fetch(mx.array(k), mx.array(v))
quant = KVCache(); quant.update_and_fetch(mx.array(k), mx.array(v)); quant = quant.to_quantized(group_size=32, bits=4)
rot = RotatingKVCache(max_size=5, keep=2)
for i in range(7):
    rot.update_and_fetch(mx.array(k[:, :, i:i+1]), mx.array(v[:, :, i:i+1]))
save_prompt_cache(sys.argv[2] + "/mlx_classes.safetensors", [plain, quant, rot], {{"note": "numpy"}})
np.save(sys.argv[2] + "/k.npy", k); np.save(sys.argv[2] + "/v.npy", v)
print(json.dumps({{"offsets": [c.offset for c in cache], "layer0_k": layer0_k,
                   "rot": [rot.offset, rot.keep, rot.max_size, rot._idx], "rot_k": np.array(rot.keys).reshape(-1).tolist()}}))
"#
    );
    let out = python(
        &script,
        &[fixture("tiny_llama").to_str().unwrap(), dir.to_str().unwrap(), &serde_json::to_string(&prompt[..split]).unwrap()],
    );
    // 1. A real mlx-lm prefill of the same model: same arrays and offsets, and oxmx continues it to
    //    the fixture's greedy tokens.
    let (mut cache, meta) = load_prompt_cache(dir.join("mlx_prefill.safetensors")).unwrap();
    assert_eq!(meta.get("model").map(String::as_str), Some("tiny"));
    assert_eq!(cache.len(), 2);
    assert!(cache.iter().all(|c| c.class_name() == "KVCache" && c.offset() == split));
    let m = load(fixture("tiny_llama"), &LoadOptions::default()).unwrap();
    let model = m.model.as_ref();
    let mut own = make_prompt_cache(model, None);
    prefill_cache(model, &prompt[..split], &mut own, GenerateOptions::default()).unwrap();
    let mlx_k: Vec<f32> = out["layer0_k"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let oxmx_k = f32s(
        &KvCache::file_state(own[0].as_ref())
            .first()
            .and_then(|s| match s {
                oxmx_lm::cache::StateItem::Array(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap(),
    );
    let loaded_k = f32s(&match &cache[0].file_state()[0] {
        oxmx_lm::cache::StateItem::Array(a) => a.clone(),
        _ => panic!(),
    });
    assert_eq!(loaded_k, mlx_k, "the loaded keys are mlx-lm's");
    let worst = mlx_k.iter().zip(&oxmx_k).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    // mlx-lm computes in the checkpoint's float16, oxmx in float32: half-precision rounding apart.
    println!("mlx-lm (float16) vs oxmx (float32) layer-0 keys after a {split}-token prefill: max |diff| {worst:.2e}");
    assert!(worst < 1e-2, "mlx-lm and oxmx compute the same keys ({worst})");
    let (ids, _) = generate_ids(model, &prompt[split..], &mut cache, Sampler::greedy(), vec![], greedy(want.len())).unwrap();
    assert_eq!(ids, want, "oxmx continuing from mlx-lm's cache");

    // 2. mlx's cache classes built from numpy arrays.
    let (c, meta) = load_prompt_cache(dir.join("mlx_classes.safetensors")).unwrap();
    assert_eq!(meta.get("note").map(String::as_str), Some("numpy"));
    let names: Vec<&str> = c.iter().map(|x| x.class_name()).collect();
    assert_eq!(names, ["KVCache", "QuantizedKVCache", "RotatingKVCache"]);
    let k = oxmx_core::io::load_npy(dir.join("k.npy")).unwrap();
    let v = oxmx_core::io::load_npy(dir.join("v.npy")).unwrap();
    assert_eq!(c[0].offset(), 7);
    let plain = match (&c[0].file_state()[0], &c[0].file_state()[1]) {
        (oxmx_lm::cache::StateItem::Array(a), oxmx_lm::cache::StateItem::Array(b)) => (a.clone(), b.clone()),
        _ => panic!("plain state"),
    };
    assert_eq!(f32s(&plain.0), f32s(&k));
    assert_eq!(f32s(&plain.1), f32s(&v));
    assert_eq!(c[1].offset(), 7);
    assert_eq!(c[1].quantization(), Some((32, 4)));
    // oxmx's quantize is bit-identical to mx.quantize: the loaded triples are quantize(k).
    let (wq, _, _) = ops::quantize(&k, Some(32), Some(4), "affine");
    match &c[1].file_state()[0] {
        oxmx_lm::cache::StateItem::Arrays(t) => assert_eq!(t[0].to_vec::<u32>().unwrap(), wq.to_vec::<u32>().unwrap()),
        other => panic!("not a quantized state: {other:?}"),
    }
    assert_eq!(c[2].offset(), 7);
    let rot: Vec<usize> = out["rot"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    let fs = c[2].file_state();
    let ints: Vec<i64> = fs[2..].iter().map(|s| s.as_int("x").unwrap()).collect();
    assert_eq!(ints, [rot[0] as i64, rot[1] as i64, rot[2] as i64, rot[3] as i64]);
    let rk: Vec<f32> = out["rot_k"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(f32s(&c[2].state()[0]), rk);
    println!("oxmx read mlx-lm's files: prefill offsets {}, classes {names:?}, rotating state {rot:?}", out["offsets"]);
    let _ = std::fs::remove_dir_all(dir);
}
