//! `convert`: a Hugging Face folder (safetensors, possibly sharded, possibly MLX-quantized) or a
//! GGUF file becomes an MLX-format folder that mlx-lm loads, with mlx_lm.convert's behaviour:
//!
//! * the model is built and loaded first (so `sanitize` has run) and the saved keys are its
//!   parameter paths: Hugging Face names, and `weight` / `scales` / `biases` for quantized layers;
//! * `--dtype` (else the config's `torch_dtype`, else `text_config.dtype`) casts every floating
//!   parameter, quantization scales included, before quantizing;
//! * `--quantize` quantizes every `Linear` / `Embedding` (and MoE `SwitchLinear`) whose input
//!   dimension divides into groups (mlx-lm's rule), optionally with a mixed-bits recipe, else with
//!   the model's own choices (qwen3_moe: router gates at 8 bits); `config.json` gets the
//!   `quantization` block (and its `quantization_config` mirror) with `group_size`, `bits`,
//!   `mode` and one entry per layer keyed by module path where mlx-lm writes one (every layer for
//!   a recipe; every newly quantized layer when the source was already quantized);
//! * `--dequantize` turns quantized layers back into float ones and drops both blocks;
//! * weights go to `model.safetensors`, or to `model-0000N-of-0000M.safetensors` shards of at
//!   most 5 GiB each, always with `model.safetensors.index.json` (`metadata.total_size`,
//!   `metadata.total_parameters`, a sorted `weight_map`) and `{"format": "mlx"}` file metadata;
//! * `config.json` is written with sorted top-level keys (without `_name_or_path` and
//!   `vision_config`; transformers 5's `rope_parameters` also spelled as the top-level
//!   `rope_theta` / `rope_scaling` that mlx-lm's llama reads, and qwen MoE's
//!   `num_local_experts` as the `num_experts` mlx-lm requires), the tokenizer files, `generation_config.json` and any `*.py` files are
//!   copied; a GGUF source gets the `tokenizer.json` built from its vocabulary and a
//!   `tokenizer_config.json` with its chat template and special tokens.
//!
//! The mixed recipes (`mixed_2_6`, `mixed_3_4`, `mixed_3_6`, `mixed_4_6`, affine only) follow the
//! llama.cpp Q4_K_M-style rule mlx-lm uses: the value projections (`v_proj`, `v_a_proj`,
//! `v_b_proj`) and `down_proj` of the first and last eighth of the layers and of every third
//! layer in between, and `lm_head` always, get the high bits; every other layer the low bits.

use crate::loader::{self, LoadOptions};
use crate::models::LanguageModel;
use oxmx_core::primitives::quantized::QuantMode;
use oxmx_core::{io, ops, Array, Dtype, Error, Result};
use oxmx_nn::{Module, QuantSpec};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// mlx-lm's mixed-bits recipes (`--quant-predicate`).
pub const QUANT_RECIPES: &[&str] = &["mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6"];

/// The `--dtype` choices.
pub const CONVERSION_DTYPES: &[&str] = &["float16", "bfloat16", "float32"];

/// The quantization modes (`--q-mode`).
pub const QUANT_MODES: &[&str] = &["affine", "mxfp4", "nvfp4", "mxfp8"];

/// mlx-lm's shard limit: 5 GiB of tensor data per file.
pub const MAX_SHARD_BYTES: u64 = 5 << 30;

/// What to convert, and how (mlx_lm.convert's arguments).
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// The source: a model folder or a `.gguf` file.
    pub hf_path: PathBuf,
    /// The output folder; it must not exist or be empty.
    pub mlx_path: PathBuf,
    pub quantize: bool,
    /// `None`: the mode's default (affine 64, mxfp4 32, nvfp4 16, mxfp8 32).
    pub q_group_size: Option<usize>,
    /// `None`: the mode's default (affine 4, mxfp4 4, nvfp4 4, mxfp8 8).
    pub q_bits: Option<usize>,
    /// `affine`, `mxfp4`, `nvfp4` or `mxfp8`.
    pub q_mode: String,
    /// A mixed recipe of [`QUANT_RECIPES`] (affine only).
    pub quant_predicate: Option<String>,
    /// `float16`, `bfloat16` or `float32` for the floating-point parameters; `None` takes the
    /// config's `torch_dtype` (or `text_config.dtype`), else keeps the source's dtypes.
    pub dtype: Option<String>,
    pub dequantize: bool,
    /// Shard size limit in bytes ([`MAX_SHARD_BYTES`] unless a test wants small shards).
    pub max_shard_bytes: u64,
    /// Adapters to fuse into the weights first (`oxmx fuse`; see `lora::fuse`).
    pub adapter_path: Option<PathBuf>,
}

impl ConvertOptions {
    /// mlx_lm.convert's defaults: no quantization, affine mode, dtype from the config.
    pub fn new(hf_path: impl Into<PathBuf>, mlx_path: impl Into<PathBuf>) -> ConvertOptions {
        ConvertOptions {
            hf_path: hf_path.into(),
            mlx_path: mlx_path.into(),
            quantize: false,
            q_group_size: None,
            q_bits: None,
            q_mode: "affine".into(),
            quant_predicate: None,
            dtype: None,
            dequantize: false,
            max_shard_bytes: MAX_SHARD_BYTES,
            adapter_path: None,
        }
    }
}

/// What [`convert`] reports while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A step begins or a fact worth a line (`Loading`, `Using dtype: float16`, ...).
    Info(&'a str),
    /// Bytes of tensor data written so far, of the total, and the file being written.
    Writing { file: &'a str, done: u64, total: u64 },
}

/// What [`convert`] wrote.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// The weight files.
    pub shards: Vec<String>,
    /// Bytes of tensor data (`metadata.total_size`).
    pub total_size: u64,
    /// Parameters as mlx-lm counts them (`metadata.total_parameters`).
    pub total_parameters: u64,
    /// Quantized layers in the output.
    pub quantized_layers: usize,
    /// Bits per weight of the output (`total_size * 8 / total_parameters`).
    pub bits_per_weight: f64,
    /// The dtype the floating-point parameters were cast to, if any.
    pub dtype: Option<Dtype>,
}

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::invalid(format!("[convert] {msg}"))
}

fn io_bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::io(format!("[convert] {}: {msg}", path.display()))
}

/// `float16` / `bfloat16` / `float32` -> the dtype.
pub fn parse_dtype(s: &str) -> Option<Dtype> {
    match s {
        "float16" => Some(Dtype::Float16),
        "bfloat16" => Some(Dtype::Bfloat16),
        "float32" => Some(Dtype::Float32),
        _ => None,
    }
}

/// The (group size, bits) a quantization request resolves to, checked against the mode's rules
/// as MLX enforces them (affine: groups 32/64/128 and 2, 3, 4, 5, 6 or 8 bits; mxfp4 32/4,
/// nvfp4 16/4, mxfp8 32/8).
pub fn resolve_quant_params(mode: &str, group_size: Option<usize>, bits: Option<usize>) -> Result<(usize, usize)> {
    let m = QuantMode::parse(mode, "convert")
        .map_err(|_| bad(format!("unsupported --q-mode `{mode}`; choose one of {}", QUANT_MODES.join(", "))))?;
    let (g0, b0) = m.defaults();
    let (g, b) = (group_size.unwrap_or(g0), bits.unwrap_or(b0));
    if m == QuantMode::Affine {
        if ![32, 64, 128].contains(&g) {
            return Err(bad(format!("--q-group-size {g} is not supported for affine quantization (32, 64 or 128)")));
        }
        if ![2, 3, 4, 5, 6, 8].contains(&b) {
            return Err(bad(format!("--q-bits {b} is not supported for affine quantization (2, 3, 4, 5, 6 or 8)")));
        }
    } else {
        if g != g0 {
            return Err(bad(format!("{mode} quantization requires --q-group-size {g0}, got {g}")));
        }
        if b != b0 {
            return Err(bad(format!("{mode} quantization requires --q-bits {b0}, got {b}")));
        }
    }
    Ok((g, b))
}

/// `{"group_size": g, "bits": b, "mode": m}`, as mlx-lm records a layer.
fn quant_entry(s: &QuantSpec) -> Value {
    json!({"group_size": s.group_size, "bits": s.bits, "mode": s.mode})
}

/// mlx-lm's mixed recipe as a per-layer rule: `path -> bits`.
pub struct MixedRecipe {
    low_bits: usize,
    high_bits: usize,
    /// Which dotted component of a module path holds the layer index.
    layer_location: usize,
    num_layers: usize,
}

impl MixedRecipe {
    /// The recipe `name` for a model whose module paths are `paths` and that has `num_layers`
    /// decoder layers. The layer index position is read from the first `down_proj` path.
    pub fn new<'a>(name: &str, paths: impl IntoIterator<Item = &'a str>, num_layers: usize) -> Result<MixedRecipe> {
        let (low_bits, high_bits) = match name {
            "mixed_2_6" => (2, 6),
            "mixed_3_4" => (3, 4),
            "mixed_3_6" => (3, 6),
            "mixed_4_6" => (4, 6),
            _ => return Err(bad(format!("unknown --quant-predicate `{name}`; choose one of {}", QUANT_RECIPES.join(", ")))),
        };
        let first = paths
            .into_iter()
            .find(|p| p.contains("down_proj"))
            .ok_or_else(|| bad(format!("--quant-predicate {name}: the model has no `down_proj` layers to place the recipe")))?;
        let parts: Vec<&str> = first.split('.').collect();
        // The first all-digit component; without one, the last component (as mlx-lm's loop ends).
        let layer_location =
            parts.iter().position(|k| !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit())).unwrap_or(parts.len().saturating_sub(1));
        Ok(MixedRecipe { low_bits, high_bits, layer_location, num_layers })
    }

    /// The bits for the module at `path`.
    pub fn bits_for(&self, path: &str) -> usize {
        let parts: Vec<&str> = path.split('.').collect();
        let index: i64 = parts.get(self.layer_location).and_then(|k| k.parse().ok()).unwrap_or(0);
        let n = self.num_layers as i64;
        let more = index < n / 8 || index >= 7 * n / 8 || (index - n / 8).rem_euclid(3) == 2;
        let value = path.contains("v_proj") || path.contains("v_a_proj") || path.contains("v_b_proj");
        if (value || path.contains("down_proj")) && more || path.contains("lm_head") {
            self.high_bits
        } else {
            self.low_bits
        }
    }
}

/// A model's own per-layer choice when no recipe is given (mlx-lm's `Model.quant_predicate`):
/// qwen3_moe keeps its router gates (`*.mlp.gate`) at 8 bits, group 64, recorded without a mode
/// as mlx-lm records them. `None`: the global parameters.
fn model_quant_override(model_type: &str, path: &str) -> Option<(QuantSpec, Value)> {
    match crate::models::resolve_model_type(model_type) {
        "qwen3_moe" if path.ends_with("mlp.gate") => Some((QuantSpec::new(64, 8, "affine"), json!({"group_size": 64, "bits": 8}))),
        _ => None,
    }
}

/// The quantized layers of a model: module path -> spec.
fn quantized_layers(model: &mut dyn Module) -> BTreeMap<String, QuantSpec> {
    let mut out = BTreeMap::new();
    model.apply_to_modules(&mut |path, m| {
        if let Some(spec) = m.quantizable().and_then(|q| q.quant_spec().cloned()) {
            out.insert(path.to_string(), spec);
        }
    });
    out
}

/// The config.json of the source: a folder's file (with generation_config.json's
/// `eos_token_id` applied, as mlx-lm's `load_config`), or the one a GGUF file's metadata gives.
fn source_config(src: &Path, loaded: &loader::LoadedModel) -> Result<Map<String, Value>> {
    let mut cfg = if src.is_dir() {
        let p = src.join("config.json");
        let s = std::fs::read_to_string(&p).map_err(|e| io_bad(&p, format!("cannot read: {e}")))?;
        let v: Value = serde_json::from_str(&s).map_err(|e| io_bad(&p, format!("invalid JSON: {e}")))?;
        let Value::Object(mut cfg) = v else { return Err(io_bad(&p, "is not a JSON object")) };
        let g = src.join("generation_config.json");
        if let Some(eos) = std::fs::read_to_string(&g)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v.get("eos_token_id").cloned())
            .filter(truthy)
        {
            cfg.insert("eos_token_id".into(), eos);
        }
        cfg
    } else {
        let mut cfg = loaded.config.raw.as_object().cloned().unwrap_or_default();
        let arch = match crate::models::resolve_model_type(&loaded.config.model_type) {
            "llama" => Some("LlamaForCausalLM"),
            "qwen2" => Some("Qwen2ForCausalLM"),
            "qwen3" => Some("Qwen3ForCausalLM"),
            _ => None,
        };
        if let Some(a) = arch {
            cfg.entry("architectures").or_insert_with(|| json!([a]));
        }
        if let crate::config::RopeScaling::Linear { factor } = loaded.config.rope_scaling {
            cfg.insert("rope_scaling".into(), json!({"type": "linear", "factor": factor}));
        }
        cfg
    };
    cfg.remove("_name_or_path");
    cfg.remove("vision_config");
    legacy_rope_keys(&mut cfg);
    // transformers 5 names qwen MoE's expert count `num_local_experts`; mlx-lm requires
    // `num_experts`.
    let mt = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    if matches!(mt, "qwen3_moe" | "qwen2_moe") && !cfg.contains_key("num_experts") {
        if let Some(n) = cfg.get("num_local_experts").cloned() {
            cfg.insert("num_experts".into(), n);
        }
    }
    Ok(cfg)
}

/// transformers >= 5 nests `rope_theta` and the scaling under `rope_parameters`; mlx-lm's llama
/// family reads only the top-level `rope_theta` / `rope_scaling` (and would silently run plain
/// RoPE at theta 10000). Both keys are added from `rope_parameters` when absent, so mlx-lm reads
/// the model the config describes; `rope_parameters` itself stays for transformers.
fn legacy_rope_keys(cfg: &mut Map<String, Value>) {
    let Some(Value::Object(rp)) = cfg.get("rope_parameters").cloned() else { return };
    if !cfg.contains_key("rope_theta") {
        if let Some(t) = rp.get("rope_theta") {
            cfg.insert("rope_theta".into(), t.clone());
        }
    }
    let ty = rp.get("rope_type").or_else(|| rp.get("type")).and_then(Value::as_str).unwrap_or("default");
    if ty != "default" && cfg.get("rope_scaling").is_none_or(Value::is_null) {
        let mut s = rp.clone();
        s.remove("rope_theta");
        cfg.insert("rope_scaling".into(), Value::Object(s));
    }
}

/// Python's truthiness of a JSON value (mlx-lm tests `if eos_token_id := ...`).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The dtype to cast to: the flag, else `torch_dtype`, else `text_config.dtype` (only the three
/// conversion dtypes count, as mlx-lm).
fn target_dtype(flag: Option<&str>, cfg: &Map<String, Value>) -> Result<Option<Dtype>> {
    if let Some(f) = flag {
        return parse_dtype(f)
            .map(Some)
            .ok_or_else(|| bad(format!("unsupported --dtype `{f}`; choose one of {}", CONVERSION_DTYPES.join(", "))));
    }
    let from_cfg = cfg
        .get("torch_dtype")
        .and_then(Value::as_str)
        .or_else(|| cfg.get("text_config").and_then(|t| t.get("dtype")).and_then(Value::as_str));
    Ok(from_cfg.and_then(parse_dtype))
}

/// Checks that the output folder does not exist or is empty; returns whether it exists.
fn check_output(dst: &Path) -> Result<bool> {
    if !dst.exists() {
        return Ok(false);
    }
    let empty = dst.is_dir() && std::fs::read_dir(dst).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !empty {
        return Err(bad(format!(
            "cannot save to {}: it already exists{}; delete it or choose another --mlx-path",
            dst.display(),
            if dst.is_dir() { " and is not empty" } else { " (a file)" }
        )));
    }
    Ok(true)
}

/// Converts `opts.hf_path` into an MLX folder at `opts.mlx_path`.
pub fn convert(opts: &ConvertOptions, progress: &mut dyn FnMut(Progress)) -> Result<ConvertReport> {
    // Validate everything that needs no loading first.
    if opts.quantize && opts.dequantize {
        return Err(bad("choose either --quantize or --dequantize, not both"));
    }
    let (group_size, bits) = if opts.quantize { resolve_quant_params(&opts.q_mode, opts.q_group_size, opts.q_bits)? } else { (0, 0) };
    if let Some(r) = &opts.quant_predicate {
        if !QUANT_RECIPES.contains(&r.as_str()) {
            return Err(bad(format!("unknown --quant-predicate `{r}`; choose one of {}", QUANT_RECIPES.join(", "))));
        }
        if opts.q_mode != "affine" {
            return Err(bad(format!("--quant-predicate {r} supports only affine quantization, not --q-mode {}", opts.q_mode)));
        }
    }
    if let Some(d) = &opts.dtype {
        if parse_dtype(d).is_none() {
            return Err(bad(format!("unsupported --dtype `{d}`; choose one of {}", CONVERSION_DTYPES.join(", "))));
        }
    }
    let src = &opts.hf_path;
    if !src.exists() {
        return Err(bad(format!("the source model {} does not exist", src.display())));
    }
    let dst = &opts.mlx_path;
    check_output(dst)?;

    progress(Progress::Info("Loading"));
    let lopts = LoadOptions { dtype: None, keep_quantized: true, tensor_parallel: None };
    let mut loaded = loader::load(src, &lopts)?;
    let mut cfg = source_config(src, &loaded)?;
    let model: &mut dyn LanguageModel = loaded.model.as_mut();
    if let Some(dir) = &opts.adapter_path {
        progress(Progress::Info("Fusing adapters"));
        crate::lora::load_adapters(model, dir)?;
        crate::lora::fuse::fuse_model(model.as_dyn_mut(), opts.dequantize)?;
    }

    // The quantization block of the source: config.json's, or for a GGUF file one that names
    // every layer kept quantized (global values: the commonest layer parameters).
    let already = quantized_layers(model.as_dyn_mut());
    let mut quant: Option<Map<String, Value>> = match cfg.get("quantization") {
        Some(Value::Object(q)) => Some(q.clone()),
        _ if !already.is_empty() => {
            let mut counts: BTreeMap<(usize, usize, &str), usize> = BTreeMap::new();
            for s in already.values() {
                *counts.entry((s.group_size, s.bits, s.mode.as_str())).or_default() += 1;
            }
            let (&(g, b, m), _) = counts.iter().max_by_key(|(_, n)| **n).expect("non-empty");
            let mut q = Map::new();
            q.insert("group_size".into(), g.into());
            q.insert("bits".into(), b.into());
            q.insert("mode".into(), m.into());
            for (p, s) in &already {
                q.insert(p.clone(), quant_entry(s));
            }
            Some(q)
        }
        _ => None,
    };

    // dtype: every floating parameter (quantization scales and biases too).
    let dtype = target_dtype(opts.dtype.as_deref(), &cfg)?;
    if let Some(dt) = dtype {
        progress(Progress::Info(&format!("Using dtype: {}", dt.name())));
        let cast: oxmx_nn::Params = model
            .parameters()
            .into_iter()
            .filter(|(_, a)| a.dtype().is_float() && a.dtype() != dt)
            .map(|(k, a)| (k, a.astype(dt)))
            .collect();
        model.update(&cast)?;
    }

    if opts.quantize {
        progress(Progress::Info("Quantizing"));
        let global = QuantSpec::new(group_size, bits, &opts.q_mode);
        let fine_grained = quant.is_some();
        let mut q = quant.take().unwrap_or_else(|| {
            let mut q = Map::new();
            q.insert("group_size".into(), group_size.into());
            q.insert("bits".into(), bits.into());
            q.insert("mode".into(), opts.q_mode.clone().into());
            q
        });
        if !q.contains_key("bits") {
            q.insert("group_size".into(), group_size.into());
            q.insert("bits".into(), bits.into());
            q.insert("mode".into(), opts.q_mode.clone().into());
        }
        let recipe = match &opts.quant_predicate {
            Some(r) => {
                let paths: Vec<String> = model.named_modules().into_iter().map(|(p, _)| p).collect();
                Some(MixedRecipe::new(r, paths.iter().map(String::as_str), model.num_layers())?)
            }
            None => None,
        };
        let model_type = model.config().model_type.clone();
        let mut result = Ok(());
        model.as_dyn_mut().apply_to_modules(&mut |path, m| {
            if result.is_err() {
                return;
            }
            let Some(layer) = m.quantizable() else { return };
            // mlx-lm's rule: a layer that can be quantized and whose input divides into groups.
            if !layer.can_quantize(&global) {
                return;
            }
            let (spec, entry) = match &recipe {
                Some(r) => {
                    let s = QuantSpec::new(group_size, r.bits_for(path), "affine");
                    let e = quant_entry(&s);
                    (s, Some(e))
                }
                None => match model_quant_override(&model_type, path) {
                    Some((s, e)) => (s, Some(e)),
                    None => (global.clone(), fine_grained.then(|| quant_entry(&global))),
                },
            };
            if let Err(e) = layer.quantize_in_place(&spec) {
                result = Err(bad(format!("layer `{path}`: {e}")));
                return;
            }
            if let Some(e) = entry {
                q.insert(path.to_string(), e);
            }
        });
        result?;
        quant = Some(q);
    }

    let mut specs = quantized_layers(model.as_dyn_mut());
    let mut weights: Vec<(String, Array)> = Vec::new();
    model.visit_params("", &mut |k, a| weights.push((k.to_string(), a.clone())));
    if opts.dequantize {
        progress(Progress::Info("Dequantizing"));
        quant = None;
        weights = dequantize_weights(weights, &specs)?;
        specs.clear();
    }
    match quant {
        Some(q) => {
            cfg.insert("quantization".into(), Value::Object(q.clone()));
            cfg.insert("quantization_config".into(), Value::Object(q));
        }
        None => {
            cfg.remove("quantization");
            cfg.remove("quantization_config");
        }
    }
    let total_parameters = count_parameters(&weights, &specs);
    let total_size: u64 = weights.iter().map(|(_, a)| a.nbytes() as u64).sum();
    let bits_per_weight = if total_parameters > 0 { total_size as f64 * 8.0 / total_parameters as f64 } else { 0.0 };
    if opts.quantize {
        progress(Progress::Info(&format!("Quantized model with {bits_per_weight:.3} bits per weight.")));
    }

    // Write; on failure remove what was written (and the folder if this call made it).
    let existed = dst.exists();
    std::fs::create_dir_all(dst).map_err(|e| io_bad(dst, format!("cannot create the folder: {e}")))?;
    let mut files = Vec::new();
    let written = write_all(src, dst, &loaded, &cfg, weights, total_size, total_parameters, opts.max_shard_bytes, &mut files, progress);
    match written {
        Ok(shards) => {
            Ok(ConvertReport { files, shards, total_size, total_parameters, quantized_layers: specs.len(), bits_per_weight, dtype })
        }
        Err(e) => {
            for f in &files {
                let _ = std::fs::remove_file(f);
            }
            if !existed {
                let _ = std::fs::remove_dir_all(dst);
            }
            Err(e)
        }
    }
}

/// Float weights in place of the packed ones; `scales`/`biases` of quantized layers dropped.
fn dequantize_weights(weights: Vec<(String, Array)>, specs: &BTreeMap<String, QuantSpec>) -> Result<Vec<(String, Array)>> {
    let map: BTreeMap<String, Array> = weights.iter().cloned().collect();
    let mut out = Vec::with_capacity(weights.len());
    for (k, a) in weights {
        let (base, leaf) = k.rsplit_once('.').unwrap_or(("", k.as_str()));
        let Some(s) = specs.get(base) else {
            out.push((k, a));
            continue;
        };
        match leaf {
            "scales" | "biases" => {}
            "weight" => {
                let scales = map.get(&format!("{base}.scales")).ok_or_else(|| bad(format!("`{base}` is quantized but has no scales")))?;
                let biases = map.get(&format!("{base}.biases"));
                let w = ops::dequantize(&a, scales, biases, Some(s.group_size), Some(s.bits), &s.mode, None);
                w.check().map_err(|e| bad(format!("dequantizing `{base}`: {e}")))?;
                out.push((k, w));
            }
            _ => out.push((k, a)),
        }
    }
    Ok(out)
}

/// mlx-lm's parameter count: a quantized layer counts its unpacked weight (`size * 32 / bits`)
/// and its bias, every other parameter its size.
fn count_parameters(weights: &[(String, Array)], specs: &BTreeMap<String, QuantSpec>) -> u64 {
    weights
        .iter()
        .map(|(k, a)| {
            let (base, leaf) = k.rsplit_once('.').unwrap_or(("", k.as_str()));
            match (specs.get(base), leaf) {
                (Some(s), "weight") => a.size() as u64 * 32 / s.bits as u64,
                (Some(_), "scales" | "biases") => 0,
                _ => a.size() as u64,
            }
        })
        .sum()
}

/// Tensors in order, split so no file's data exceeds `max` bytes (a larger tensor gets a file
/// of its own), as mlx-lm's `make_shards`.
fn make_shards(weights: Vec<(String, Array)>, max: u64) -> Vec<Vec<(String, Array)>> {
    let mut shards: Vec<Vec<(String, Array)>> = Vec::new();
    let mut size = 0u64;
    for (k, a) in weights {
        let n = a.nbytes() as u64;
        if shards.is_empty() || size + n > max {
            shards.push(Vec::new());
            size = 0;
        }
        size += n;
        shards.last_mut().expect("pushed").push((k, a));
    }
    shards
}

fn pretty_json(v: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser).map_err(|e| bad(format!("cannot serialise JSON: {e}")))?;
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8], files: &mut Vec<PathBuf>) -> Result<()> {
    files.push(path.to_path_buf());
    std::fs::write(path, bytes).map_err(|e| io_bad(path, format!("cannot write: {e}")))
}

#[allow(clippy::too_many_arguments)]
fn write_all(
    src: &Path,
    dst: &Path,
    loaded: &loader::LoadedModel,
    cfg: &Map<String, Value>,
    weights: Vec<(String, Array)>,
    total_size: u64,
    total_parameters: u64,
    max_shard_bytes: u64,
    files: &mut Vec<PathBuf>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<String>> {
    let shards = make_shards(weights, max_shard_bytes.max(1));
    let count = shards.len();
    let mut names = Vec::with_capacity(count);
    let mut weight_map: BTreeMap<String, String> = BTreeMap::new();
    let mut done = 0u64;
    for (i, shard) in shards.into_iter().enumerate() {
        let name = if count > 1 { format!("model-{:05}-of-{:05}.safetensors", i + 1, count) } else { "model.safetensors".to_string() };
        let path = dst.join(&name);
        files.push(path.clone());
        for (k, _) in &shard {
            weight_map.insert(k.clone(), name.clone());
        }
        write_safetensors(&path, shard, &mut |n| {
            done += n;
            progress(Progress::Writing { file: &name, done, total: total_size });
        })?;
        names.push(name);
    }
    let index = json!({
        "metadata": {"total_size": total_size, "total_parameters": total_parameters},
        "weight_map": weight_map,
    });
    write_file(&dst.join("model.safetensors.index.json"), &pretty_json(&index)?, files)?;

    let mut sorted: Vec<(&String, &Value)> = cfg.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let cfg_sorted: Map<String, Value> = sorted.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    write_file(&dst.join("config.json"), &pretty_json(&Value::Object(cfg_sorted))?, files)?;

    if src.is_dir() {
        copy_side_files(src, dst, files, progress)?;
    } else {
        write_gguf_tokenizer(src, dst, loaded, files)?;
    }
    Ok(names)
}

/// Writes one safetensors file tensor by tensor (each evaluated as it is written, so the
/// whole shard is never held twice), with MLX's `{"format": "mlx"}` metadata.
fn write_safetensors(path: &Path, tensors: Vec<(String, Array)>, wrote: &mut dyn FnMut(u64)) -> Result<()> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "mlx"}));
    let mut off = 0u64;
    for (k, a) in &tensors {
        let n = a.nbytes() as u64;
        header.insert(
            k.clone(),
            json!({"dtype": oxmx_core::io::safetensors_dtype_name(a.dtype()), "shape": a.shape(), "data_offsets": [off, off + n]}),
        );
        off += n;
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).map_err(|e| bad(format!("cannot serialise a header: {e}")))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let f = std::fs::File::create(path).map_err(|e| io_bad(path, format!("cannot create: {e}")))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let werr = |e: std::io::Error| io_bad(path, format!("cannot write: {e}"));
    w.write_all(&(h.len() as u64).to_le_bytes()).map_err(werr)?;
    w.write_all(&h).map_err(werr)?;
    for (k, a) in tensors {
        let bytes = io::array_le_bytes(&a).map_err(|e| bad(format!("tensor `{k}`: {e}")))?;
        if bytes.len() as u64 != a.nbytes() as u64 {
            return Err(bad(format!("tensor `{k}`: {} bytes of data for {} expected", bytes.len(), a.nbytes())));
        }
        w.write_all(&bytes).map_err(werr)?;
        drop(a);
        wrote(bytes.len() as u64);
    }
    w.flush().map_err(werr)
}

/// Whether a source file is one `convert` carries over: tokenizer files, chat templates,
/// `generation_config.json` and custom-code `*.py` files.
fn is_side_file(name: &str) -> bool {
    const NAMED: &[&str] = &[
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "tokenizer.model",
        "tiktoken.model",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
        "generation_config.json",
    ];
    NAMED.contains(&name) || name.ends_with(".tiktoken") || name.ends_with(".py") || name.ends_with(".jinja")
}

fn copy_side_files(src: &Path, dst: &Path, files: &mut Vec<PathBuf>, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let rd = std::fs::read_dir(src).map_err(|e| io_bad(src, format!("cannot list: {e}")))?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_side_file(n))
        .collect();
    names.sort();
    if !names.iter().any(|n| n == "tokenizer.json" || n == "tokenizer.model" || n == "vocab.json" || n.ends_with(".tiktoken")) {
        progress(Progress::Info(&format!("No tokenizer files in {}: the output has none either", src.display())));
    }
    for n in names {
        let (from, to) = (src.join(&n), dst.join(&n));
        files.push(to.clone());
        std::fs::copy(&from, &to).map_err(|e| io_bad(&from, format!("cannot copy to {}: {e}", to.display())))?;
    }
    Ok(())
}

/// A GGUF source: `tokenizer.json` from the tokenizer its metadata describes, and a
/// `tokenizer_config.json` with the chat template and special tokens.
fn write_gguf_tokenizer(src: &Path, dst: &Path, loaded: &loader::LoadedModel, files: &mut Vec<PathBuf>) -> Result<()> {
    let f = io::GgufFile::open(src)?;
    let tok = crate::Tokenizer::from_gguf(&f)?;
    let tj = tok.inner().to_string(false).map_err(|e| bad(format!("cannot serialise the GGUF tokenizer: {e}")))?;
    let tj_value: Value = serde_json::from_str(&tj).map_err(|e| bad(format!("the GGUF tokenizer's JSON: {e}")))?;
    write_file(&dst.join("tokenizer.json"), &pretty_json(&tj_value)?, files)?;

    let mut tc = Map::new();
    let unk = tj_value.get("model").and_then(|m| m.get("unk_token")).and_then(Value::as_str).map(str::to_string);
    let pad = tok.pad_token_id().and_then(|i| tok.id_to_token(i));
    for (k, v) in [
        ("bos_token", tok.bos_token().map(str::to_string)),
        ("eos_token", tok.eos_token().map(str::to_string)),
        ("unk_token", unk),
        ("pad_token", pad),
    ] {
        if let Some(v) = v {
            tc.insert(k.into(), v.into());
        }
    }
    if let Some(src) = tok.chat_template_source() {
        let names = src.names();
        let value = if names.len() == 1 {
            Value::String(src.select(None)?.0.to_string())
        } else {
            let mut list = Vec::new();
            for n in names {
                list.push(json!({"name": n, "template": src.select(Some(n))?.0}));
            }
            Value::Array(list)
        };
        tc.insert("chat_template".into(), value);
    }
    tc.insert("clean_up_tokenization_spaces".into(), false.into());
    if let Some(n) = loaded.config.max_position_embeddings {
        tc.insert("model_max_length".into(), n.into());
    }
    tc.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    write_file(&dst.join("tokenizer_config.json"), &pretty_json(&Value::Object(tc))?, files)
}
