//! `oxmx._core._lm`: the compiled part of `oxmx.lm` (mlx_lm's Python API). oxmx-lm does the work:
//! loading (folders and GGUF files), tokenizers and chat templates, sampling, logits processors,
//! the generation loop, conversion. Generation runs on a Rust thread; Python waits for each token
//! with the GIL released, and the GIL is taken again only to call Python logits processors.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};

use oxmx_core::{Array, Dtype, Error};
use oxmx_lm::cache::{make_prompt_cache, trim_prompt_cache, PromptCache};
use oxmx_lm::generate::{generate_step, FinishReason, GenerateOptions, GenerationStats};
use oxmx_lm::loader::{load, LoadOptions, LoadedModel};
use oxmx_lm::sample::{FrequencyPenalty, LogitBias, LogitsProcessor, PresencePenalty, RepetitionPenalty, Sampler, SamplerConfig};
use oxmx_lm::speculative::speculative_generate_step;
use oxmx_lm::Tokenizer;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::array::PyArray;
use crate::convert::{ok, to_array, IntoPyResult};

fn poisoned<T>(_: T) -> Error {
    Error::runtime("internal: a lock was poisoned by an earlier panic")
}

fn lock_err<T>(_: T) -> PyErr {
    PyRuntimeError::new_err("internal: a lock was poisoned by an earlier panic")
}

// ---- models

/// A loaded language model (`model(tokens, cache=None) -> logits`).
#[pyclass(name = "_Model", module = "oxmx.lm", frozen)]
pub struct PyModel {
    inner: Arc<LoadedModel>,
}

/// The token ids of `inputs` as an int32 `[B, L]` array, checked against the vocabulary.
fn token_batch(inputs: &Bound<'_, PyAny>, vocab: usize) -> PyResult<Array> {
    let x = to_array(inputs, None)?;
    if !x.dtype().is_integer() {
        return Err(PyTypeError::new_err(format!("[model] token ids must be an integer array, got {}", x.dtype().name())));
    }
    if x.ndim() != 2 {
        return Err(PyValueError::new_err(format!(
            "[model] inputs must be a [batch, length] array of token ids, got shape {:?}",
            x.shape()
        )));
    }
    if x.size() == 0 {
        return Err(PyValueError::new_err("[model] inputs hold no tokens"));
    }
    let x = x.astype(Dtype::Int32);
    let ids = x.to_vec::<i32>().py()?;
    if let Some(&bad) = ids.iter().find(|&&t| t < 0 || t as usize >= vocab) {
        return Err(PyValueError::new_err(format!("[model] token id {bad} is outside the vocabulary ({vocab})")));
    }
    Ok(x)
}

#[pymethods]
impl PyModel {
    #[pyo3(signature = (inputs, cache=None))]
    fn __call__(&self, inputs: &Bound<'_, PyAny>, cache: Option<&Bound<'_, PyAny>>) -> PyResult<PyArray> {
        let m = &self.inner.model;
        let x = token_batch(inputs, m.config().vocab_size)?;
        let logits = match cache.filter(|c| !c.is_none()) {
            Some(c) => {
                let c =
                    c.cast::<PyPromptCache>().map_err(|_| PyTypeError::new_err("[model] cache must come from make_prompt_cache(model)"))?;
                let c = c.get();
                if c.layers != m.num_layers() {
                    return Err(PyValueError::new_err(format!(
                        "[model] the cache has {} layers but the model has {}",
                        c.layers,
                        m.num_layers()
                    )));
                }
                let mut guard = c.cache.lock().map_err(lock_err)?;
                m.forward(&x, Some(&mut guard[..]))
            }
            None => m.forward(&x, None),
        };
        ok(logits)
    }
    #[getter]
    fn num_layers(&self) -> usize {
        self.inner.model.num_layers()
    }
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.model.config().vocab_size
    }
    #[getter]
    fn model_type(&self) -> String {
        self.inner.model.config().model_type.clone()
    }
    #[getter]
    fn eos_token_ids(&self) -> Vec<u32> {
        self.inner.eos_token_ids.clone()
    }
    #[getter]
    fn path(&self) -> String {
        self.inner.path.display().to_string()
    }
    /// config.json (or the GGUF-derived config) as JSON text.
    fn config_json(&self) -> String {
        self.inner.model.config().raw.to_string()
    }
    /// The parameters as `{dotted.path: array}` (quantized layers give their packed weights,
    /// scales and biases).
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, a) in oxmx_nn::Module::parameters(self.inner.model.as_ref()) {
            d.set_item(k, ok(a)?)?;
        }
        Ok(d)
    }
    #[pyo3(signature = (max_kv_size=None))]
    fn make_cache(&self, max_kv_size: Option<usize>) -> PyPromptCache {
        let m = self.inner.model.as_ref();
        PyPromptCache { cache: Arc::new(Mutex::new(make_prompt_cache(m, max_kv_size))), layers: m.num_layers() }
    }
}

/// Loads a model folder or GGUF file (weights cast to `dtype`, float32 by default), applying
/// LoRA adapters from `adapter_path` when given.
#[pyfunction]
#[pyo3(signature = (path, adapter_path=None, dtype=None))]
fn load_model(py: Python<'_>, path: PathBuf, adapter_path: Option<PathBuf>, dtype: Option<&str>) -> PyResult<PyModel> {
    let dtype = match dtype {
        None => Some(Dtype::Float32),
        Some("auto") | Some("none") => None,
        Some(s) => Some(oxmx_lm::convert::parse_dtype(s).ok_or_else(|| PyValueError::new_err(format!("[load] unsupported dtype `{s}`")))?),
    };
    let opts = LoadOptions { dtype, ..LoadOptions::default() };
    let loaded = py
        .detach(move || -> oxmx_core::Result<LoadedModel> {
            let mut loaded = load(&path, &opts)?;
            if let Some(dir) = adapter_path {
                oxmx_lm::lora::load_adapters(loaded.model.as_mut(), &dir)?;
                oxmx_nn::Module::set_eval(loaded.model.as_mut());
            }
            Ok(loaded)
        })
        .py()?;
    Ok(PyModel { inner: Arc::new(loaded) })
}

// ---- prompt caches

/// A model's KV cache (one entry per layer), kept across calls and generations.
#[pyclass(name = "_PromptCache", module = "oxmx.lm", frozen)]
pub struct PyPromptCache {
    cache: Arc<Mutex<PromptCache>>,
    layers: usize,
}

#[pymethods]
impl PyPromptCache {
    fn __len__(&self) -> usize {
        self.layers
    }
    /// Positions held (the first layer's offset).
    #[getter]
    fn offset(&self) -> PyResult<usize> {
        Ok(self.cache.lock().map_err(lock_err)?.first().map_or(0, |c| c.offset()))
    }
    fn is_trimmable(&self) -> PyResult<bool> {
        Ok(self.cache.lock().map_err(lock_err)?.iter().all(|c| c.is_trimmable()))
    }
    /// Removes the last `n` positions of every layer; returns how many were removed.
    fn trim(&self, n: usize) -> PyResult<usize> {
        Ok(trim_prompt_cache(&mut self.cache.lock().map_err(lock_err)?, n))
    }
    fn nbytes(&self) -> PyResult<usize> {
        Ok(self.cache.lock().map_err(lock_err)?.iter().map(|c| c.nbytes()).sum())
    }
    fn save(&self, py: Python<'_>, path: PathBuf, metadata: std::collections::BTreeMap<String, String>) -> PyResult<()> {
        let cache = self.cache.clone();
        py.detach(move || -> oxmx_core::Result<()> {
            let c = cache.lock().map_err(|_| Error::runtime("poisoned lock"))?;
            oxmx_lm::prompt_cache::save_prompt_cache(&path, &c, &metadata)
        })
        .py()
    }
}

#[pyfunction]
fn load_prompt_cache(py: Python<'_>, path: PathBuf) -> PyResult<(PyPromptCache, std::collections::BTreeMap<String, String>)> {
    let (cache, meta) = py.detach(move || oxmx_lm::prompt_cache::load_prompt_cache(&path)).py()?;
    let layers = cache.len();
    Ok((PyPromptCache { cache: Arc::new(Mutex::new(cache)), layers }, meta))
}

// ---- tokenizers

#[pyclass(name = "_Tokenizer", module = "oxmx.lm", frozen)]
pub struct PyTokenizer {
    tok: Arc<RwLock<Tokenizer>>,
}

impl PyTokenizer {
    fn read(&self) -> PyResult<std::sync::RwLockReadGuard<'_, Tokenizer>> {
        self.tok.read().map_err(lock_err)
    }
}

fn json_arg(s: Option<&str>, what: &str) -> PyResult<Option<serde_json::Value>> {
    s.map(|s| {
        serde_json::from_str(s).map_err(|e| PyValueError::new_err(format!("[apply_chat_template] {what} is not JSON-serialisable: {e}")))
    })
    .transpose()
}

#[pymethods]
impl PyTokenizer {
    /// Loads the tokenizer of a model folder (`tokenizer.json`, ...) or GGUF file.
    #[staticmethod]
    fn from_path(py: Python<'_>, path: PathBuf) -> PyResult<PyTokenizer> {
        let tok = py.detach(move || Tokenizer::from_path(&path)).py()?;
        Ok(PyTokenizer { tok: Arc::new(RwLock::new(tok)) })
    }
    #[pyo3(signature = (text, add_special_tokens=true))]
    fn encode(&self, py: Python<'_>, text: &str, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        let t = self.read()?;
        py.detach(|| t.encode(text, add_special_tokens)).py()
    }
    #[pyo3(signature = (ids, skip_special_tokens=false))]
    fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> PyResult<String> {
        self.read()?.decode(&ids, skip_special_tokens).py()
    }
    #[getter]
    fn vocab_size(&self) -> PyResult<usize> {
        Ok(self.read()?.vocab_size())
    }
    #[getter]
    fn bos_token(&self) -> PyResult<Option<String>> {
        Ok(self.read()?.bos_token().map(str::to_string))
    }
    #[getter]
    fn eos_token(&self) -> PyResult<Option<String>> {
        Ok(self.read()?.eos_token().map(str::to_string))
    }
    #[getter]
    fn bos_token_id(&self) -> PyResult<Option<u32>> {
        Ok(self.read()?.bos_token_id())
    }
    #[getter]
    fn eos_token_ids(&self) -> PyResult<Vec<u32>> {
        Ok(self.read()?.eos_token_ids().to_vec())
    }
    #[getter]
    fn pad_token_id(&self) -> PyResult<Option<u32>> {
        Ok(self.read()?.pad_token_id())
    }
    fn add_eos_token_id(&self, id: u32) -> PyResult<()> {
        let mut t = self.tok.write().map_err(lock_err)?;
        if id as usize >= t.vocab_size() {
            return Err(PyValueError::new_err(format!("[tokenizer] eos token id {id} is outside the vocabulary ({})", t.vocab_size())));
        }
        t.add_eos_token_id(id);
        Ok(())
    }
    fn token_to_id(&self, token: &str) -> PyResult<Option<u32>> {
        Ok(self.read()?.token_to_id(token))
    }
    fn id_to_token(&self, id: u32) -> PyResult<Option<String>> {
        Ok(self.read()?.id_to_token(id))
    }
    fn is_special(&self, id: u32) -> PyResult<bool> {
        Ok(self.read()?.is_special(id))
    }
    #[getter]
    fn has_chat_template(&self) -> PyResult<bool> {
        Ok(self.read()?.has_chat_template())
    }
    /// The default chat template's text.
    #[getter]
    fn chat_template(&self) -> PyResult<Option<String>> {
        let t = self.read()?;
        Ok(match t.chat_template_source() {
            Some(src) => Some(src.select(None).py()?.0.to_string()),
            None => None,
        })
    }
    fn set_chat_template(&self, text: Option<String>) -> PyResult<()> {
        let src = text.map(|t| oxmx_lm::ChatTemplateSource::single(t, "tokenizer.chat_template (set from Python)"));
        self.tok.write().map_err(lock_err)?.set_chat_template(src);
        Ok(())
    }
    /// Renders `messages` (JSON text of a list of {role, content} dicts) with the chat template.
    #[pyo3(signature = (messages_json, add_generation_prompt=false, continue_final_message=false, tools_json=None, documents_json=None, extra_json=None, enable_thinking=None, template_name=None))]
    #[allow(clippy::too_many_arguments)]
    fn apply_chat_template(
        &self,
        messages_json: &str,
        add_generation_prompt: bool,
        continue_final_message: bool,
        tools_json: Option<&str>,
        documents_json: Option<&str>,
        extra_json: Option<&str>,
        enable_thinking: Option<bool>,
        template_name: Option<&str>,
    ) -> PyResult<String> {
        let msgs = match json_arg(Some(messages_json), "messages")? {
            Some(serde_json::Value::Array(v)) => v,
            _ => return Err(PyTypeError::new_err("[apply_chat_template] messages must be a list of dicts")),
        };
        let mut opts = oxmx_lm::chat::ChatOptions { add_generation_prompt, continue_final_message, enable_thinking, ..Default::default() };
        opts.tools = json_arg(tools_json, "tools")?.and_then(|v| v.as_array().cloned());
        opts.documents = json_arg(documents_json, "documents")?.and_then(|v| v.as_array().cloned());
        if let Some(serde_json::Value::Object(m)) = json_arg(extra_json, "template arguments")? {
            opts.extra = m;
        }
        let t = self.read()?;
        let tmpl = t.chat_template(template_name).py()?;
        tmpl.apply(&msgs, &opts).py()
    }
}

// ---- sampling and logits processors

/// `(temp, top_p, min_p, min_tokens_to_keep, top_k, xtc_probability, xtc_threshold,
/// xtc_special_tokens, seed)`, as `make_sampler` takes them.
type SamplerArgs = (f64, f64, f64, usize, usize, f64, f64, Vec<u32>, Option<u64>);

fn sampler_config(a: &SamplerArgs) -> SamplerConfig {
    SamplerConfig {
        temp: a.0,
        top_p: a.1,
        min_p: a.2,
        min_tokens_to_keep: a.3,
        top_k: a.4,
        xtc_probability: a.5,
        xtc_threshold: a.6,
        xtc_special_tokens: a.7.clone(),
        seed: a.8,
    }
}

/// Checks a sampler's arguments (the ranges mlx_lm checks).
#[pyfunction]
fn check_sampler(args: SamplerArgs) -> PyResult<()> {
    Sampler::new(sampler_config(&args)).py().map(|_| ())
}

/// One draw: `logprobs [B, V] -> token ids [B]` (uint32).
#[pyfunction]
fn sample(args: SamplerArgs, logprobs: &Bound<'_, PyAny>) -> PyResult<PyArray> {
    let lp = to_array(logprobs, None)?;
    if lp.ndim() == 0 {
        return Err(PyValueError::new_err("[sampler] logprobs must have a vocabulary axis"));
    }
    let mut s = Sampler::new(sampler_config(&args)).py()?;
    ok(s.sample(&lp))
}

/// A built-in processor from its spec: `("logit_bias", {id: bias})`, `("repetition_penalty",
/// penalty, context)`, `("presence_penalty", ...)`, `("frequency_penalty", ...)`.
fn builtin_processor(spec: &Bound<'_, PyTuple>) -> PyResult<Box<dyn LogitsProcessor>> {
    let kind: String = spec.get_item(0)?.extract()?;
    let pen = |what: &str| -> PyResult<(f64, usize)> {
        let p: f64 = spec.get_item(1)?.extract()?;
        let c: usize = spec.get_item(2)?.extract()?;
        if what == "repetition_penalty" && p < 0.0 {
            return Err(PyValueError::new_err(format!("[{what}] penalty must be a non-negative float, got {p}")));
        }
        Ok((p, c))
    };
    Ok(match kind.as_str() {
        "logit_bias" => {
            let pairs: Vec<(u32, f32)> = spec.get_item(1)?.extract()?;
            Box::new(LogitBias { ids: pairs.iter().map(|p| p.0).collect(), values: pairs.iter().map(|p| p.1).collect() })
        }
        "repetition_penalty" => {
            let (penalty, context_size) = pen(&kind)?;
            Box::new(RepetitionPenalty { penalty, context_size })
        }
        "presence_penalty" => {
            let (penalty, context_size) = pen(&kind)?;
            Box::new(PresencePenalty { penalty, context_size })
        }
        "frequency_penalty" => {
            let (penalty, context_size) = pen(&kind)?;
            Box::new(FrequencyPenalty { penalty, context_size })
        }
        other => return Err(PyValueError::new_err(format!("unknown logits processor `{other}`"))),
    })
}

/// Applies a built-in processor once: `(tokens, logits [B, V]) -> logits`.
#[pyfunction]
fn apply_processor(spec: &Bound<'_, PyTuple>, tokens: Vec<u32>, logits: &Bound<'_, PyAny>) -> PyResult<PyArray> {
    let mut p = builtin_processor(spec)?;
    let l = to_array(logits, None)?;
    if l.ndim() != 2 {
        return Err(PyValueError::new_err(format!("[logits processor] logits must be [batch, vocab], got shape {:?}", l.shape())));
    }
    ok(p.process(&tokens, &l))
}

/// A Python callable `f(tokens, logits) -> logits` run from the generation thread.
struct PyProcessor {
    f: Py<PyAny>,
    error: Arc<Mutex<Option<PyErr>>>,
}

impl LogitsProcessor for PyProcessor {
    fn process(&mut self, tokens: &[u32], logits: &Array) -> Array {
        Python::attach(|py| {
            let run = || -> PyResult<Array> {
                let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
                let t = Bound::new(py, PyArray::new(Array::vec(&ids)))?;
                let l = Bound::new(py, PyArray::new(logits.clone()))?;
                let out = self.f.bind(py).call1((t, l))?;
                to_array(&out, None)
            };
            match run() {
                Ok(a) => a,
                Err(e) => {
                    let msg = e.to_string();
                    self.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    Array::error(Error::runtime(format!("[logits processor] {msg}")))
                }
            }
        })
    }
}

// ---- generation

/// One response, as the Python side builds `GenerationResponse` from it.
struct Response {
    text: String,
    token: u32,
    logprobs: Array,
    from_draft: bool,
    stats: GenerationStats,
    finish: Option<&'static str>,
}

enum Msg {
    Response(Response),
    Error(Error),
}

/// The token iterator of either loop.
struct Token {
    token: u32,
    logprobs: Array,
    from_draft: bool,
    finish: Option<FinishReason>,
}

/// `stream_generate`'s iterator: responses from the generation thread.
#[pyclass(name = "_GenerationStream", module = "oxmx.lm")]
pub struct PyGenerationStream {
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<PyErr>>>,
}

impl Drop for PyGenerationStream {
    fn drop(&mut self) {
        // The thread stops at its next token (its sends fail once the receiver is gone).
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[pymethods]
impl PyGenerationStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }
    /// `(text, token, logprobs, from_draft, prompt_tokens, prompt_tps, generation_tokens,
    /// generation_tps, peak_memory_bytes, finish_reason)`, or StopIteration.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(rx) = self.rx.lock().map_err(lock_err)?.take() else {
            return Ok(None);
        };
        let (rx, msg) = py.detach(move || {
            let m = rx.recv();
            (rx, m)
        });
        let py_error = self.error.lock().map_err(lock_err)?.take();
        if let Some(e) = py_error {
            self.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        match msg {
            Err(_) => Ok(None), // the thread finished
            Ok(Msg::Error(e)) => Err(crate::convert::to_pyerr(e)),
            Ok(Msg::Response(r)) => {
                if r.finish.is_none() {
                    *self.rx.lock().map_err(lock_err)? = Some(rx);
                }
                let s = &r.stats;
                let lp = Bound::new(py, PyArray::new(r.logprobs))?.into_any();
                let items: Vec<Bound<'py, PyAny>> = vec![
                    PyString::new(py, &r.text).into_any(),
                    r.token.into_pyobject(py)?.into_any(),
                    lp,
                    pyo3::types::PyBool::new(py, r.from_draft).to_owned().into_any(),
                    s.prompt_tokens.into_pyobject(py)?.into_any(),
                    s.prompt_tps.into_pyobject(py)?.into_any(),
                    s.generation_tokens.into_pyobject(py)?.into_any(),
                    s.generation_tps.into_pyobject(py)?.into_any(),
                    s.peak_memory.into_pyobject(py)?.into_any(),
                    r.finish.into_pyobject(py)?.into_any(),
                ];
                Ok(Some(PyTuple::new(py, items)?))
            }
        }
    }
}

/// Starts generating after `prompt` on a Rust thread.
///
/// `processors`: built-in specs (tuples) or Python callables `f(tokens, logits)`. `draft`:
/// `(draft model, its cache or None, num_draft_tokens)` for speculative decoding.
#[pyfunction]
#[pyo3(signature = (model, tokenizer, prompt, sampler, processors, max_tokens, eos_token_ids, cache=None, max_kv_size=None, prefill_step_size=2048, kv_bits=None, kv_group_size=64, quantized_kv_start=0, draft=None))]
#[allow(clippy::too_many_arguments)]
fn start_generation(
    model: &Bound<'_, PyModel>,
    tokenizer: Option<&Bound<'_, PyTokenizer>>,
    prompt: Vec<u32>,
    sampler: SamplerArgs,
    processors: &Bound<'_, PyList>,
    max_tokens: Option<usize>,
    eos_token_ids: Vec<u32>,
    cache: Option<&Bound<'_, PyPromptCache>>,
    max_kv_size: Option<usize>,
    prefill_step_size: usize,
    kv_bits: Option<usize>,
    kv_group_size: usize,
    quantized_kv_start: usize,
    draft: Option<(Bound<'_, PyModel>, Option<Bound<'_, PyPromptCache>>, usize)>,
) -> PyResult<PyGenerationStream> {
    let model = model.get().inner.clone();
    let tok = tokenizer.map(|t| t.get().tok.clone());
    let sampler = Sampler::new(sampler_config(&sampler)).py()?;
    let error: Arc<Mutex<Option<PyErr>>> = Arc::new(Mutex::new(None));
    let mut procs: Vec<Box<dyn LogitsProcessor>> = vec![];
    for p in processors.iter() {
        if let Ok(t) = p.cast::<PyTuple>() {
            procs.push(builtin_processor(t)?);
        } else if p.is_callable() {
            procs.push(Box::new(PyProcessor { f: p.clone().unbind(), error: error.clone() }));
        } else {
            return Err(PyTypeError::new_err("[generate] each logits processor must be callable as f(tokens, logits)"));
        }
    }
    let n_layers = model.model.num_layers();
    let cache = match cache {
        Some(c) => {
            let c = c.get();
            if c.layers != n_layers {
                return Err(PyValueError::new_err(format!(
                    "[generate] the prompt cache has {} layers but the model has {n_layers}",
                    c.layers
                )));
            }
            c.cache.clone()
        }
        None => Arc::new(Mutex::new(make_prompt_cache(model.model.as_ref(), max_kv_size))),
    };
    let draft = match draft {
        Some((m, c, k)) => {
            let dm = m.get().inner.clone();
            if k == 0 {
                return Err(PyValueError::new_err("[generate] num_draft_tokens must be positive"));
            }
            let dc = match c {
                Some(c) => c.get().cache.clone(),
                None => Arc::new(Mutex::new(make_prompt_cache(dm.model.as_ref(), None))),
            };
            Some((dm, dc, k))
        }
        None => None,
    };
    let opts = GenerateOptions {
        max_tokens,
        prefill_step_size,
        eos_token_ids: eos_token_ids.iter().copied().collect::<BTreeSet<u32>>(),
        kv_bits,
        kv_group_size,
        quantized_kv_start,
    };
    let (tx, rx) = mpsc::sync_channel::<Msg>(1);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_t = stop.clone();
    let device = oxmx_core::default_device();
    std::thread::Builder::new()
        .name("oxmx-generate".into())
        .spawn(move || {
            oxmx_core::set_default_device(device);
            if let Err(e) = run_generation(&model, tok.as_deref(), &prompt, sampler, procs, opts, &cache, draft, &tx, &stop_t) {
                let _ = tx.send(Msg::Error(e));
            }
        })
        .map_err(|e| PyRuntimeError::new_err(format!("[generate] cannot start the generation thread: {e}")))?;
    Ok(PyGenerationStream { rx: Mutex::new(Some(rx)), stop, error })
}

type DraftParts = (Arc<LoadedModel>, Arc<Mutex<PromptCache>>, usize);

/// The generation thread: mlx_lm's `stream_generate` over oxmx-lm's loop. An EOS token ends the
/// run without its text; the last response carries the finish reason.
#[allow(clippy::too_many_arguments)]
fn run_generation(
    model: &LoadedModel,
    tok: Option<&RwLock<Tokenizer>>,
    prompt: &[u32],
    sampler: Sampler,
    procs: Vec<Box<dyn LogitsProcessor>>,
    opts: GenerateOptions,
    cache: &Mutex<PromptCache>,
    draft: Option<DraftParts>,
    tx: &mpsc::SyncSender<Msg>,
    stop: &AtomicBool,
) -> oxmx_core::Result<()> {
    let tok = match tok {
        Some(t) => Some(t.read().map_err(poisoned)?),
        None => None,
    };
    // No tokenizer (generate_step): tokens only, no text.
    let mut detok = tok.as_ref().map(|t| t.detokenizer());
    let eos = opts.eos_token_ids.clone();
    let mut cache = cache.lock().map_err(poisoned)?;
    let mut last: Option<Response> = None;
    let speculative = draft.is_some();
    let mut emit = |t: Token, stats: &GenerationStats| -> bool {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let is_eos = eos.contains(&t.token);
        if !is_eos {
            if let Some(d) = detok.as_mut() {
                d.add_token(t.token);
            }
        }
        let finish = if is_eos {
            Some("stop")
        } else {
            match t.finish {
                Some(FinishReason::Stop) => Some("stop"),
                Some(FinishReason::Length) => Some("length"),
                None => None,
            }
        };
        let text = match detok.as_mut() {
            Some(d) => {
                if finish.is_some() {
                    d.finalize();
                }
                d.last_segment().to_string()
            }
            None => String::new(),
        };
        let r = Response { text, token: t.token, logprobs: t.logprobs, from_draft: t.from_draft, stats: stats.clone(), finish };
        if finish.is_some() {
            // Sent after the loop, once the cache is complete.
            last = Some(r);
            return false;
        }
        tx.send(Msg::Response(r)).is_ok()
    };
    match draft {
        None => {
            let mut it = generate_step(model.model.as_ref(), prompt, &mut cache[..], sampler, procs, opts)?;
            while let Some(step) = it.next() {
                let s = step?;
                let t = Token { token: s.token, logprobs: s.logprobs, from_draft: false, finish: s.finish_reason };
                if !emit(t, it.stats()) {
                    break;
                }
            }
        }
        Some((dm, dc, k)) => {
            let mut dcache = dc.lock().map_err(poisoned)?;
            let mut it = speculative_generate_step(
                model.model.as_ref(),
                dm.model.as_ref(),
                prompt,
                &mut cache[..],
                &mut dcache[..],
                sampler,
                procs,
                opts,
                k,
            )?;
            while let Some(step) = it.next() {
                let s = step?;
                let t = Token { token: s.token, logprobs: s.logprobs, from_draft: s.from_draft, finish: s.finish_reason };
                if !emit(t, it.stats()) {
                    break;
                }
            }
        }
    }
    if let Some(r) = last {
        // mlx_lm's loop has run the last token through the cache when max_tokens ends a run
        // (its next step is built before the token is handed out); oxmx-lm's stops one short.
        // Do the same here so that a prompt cache reused for the next turn holds every token.
        if r.finish == Some("length") && !speculative {
            let _ = model.model.forward(&Array::from_slice(&[r.token as i32], &[1, 1]), Some(&mut cache[..]));
            oxmx_lm::cache::eval_cache(&cache)?;
        }
        let _ = tx.send(Msg::Response(r));
    }
    Ok(())
}

// ---- conversion

/// `convert(hf_path, mlx_path, ...)`: returns the progress lines (mlx_lm prints them).
#[pyfunction]
#[pyo3(signature = (hf_path, mlx_path, quantize=false, q_group_size=None, q_bits=None, q_mode="affine".to_string(), dtype=None, dequantize=false, quant_predicate=None))]
#[allow(clippy::too_many_arguments)]
fn convert(
    py: Python<'_>,
    hf_path: PathBuf,
    mlx_path: PathBuf,
    quantize: bool,
    q_group_size: Option<usize>,
    q_bits: Option<usize>,
    q_mode: String,
    dtype: Option<String>,
    dequantize: bool,
    quant_predicate: Option<String>,
) -> PyResult<Vec<String>> {
    let mut opts = oxmx_lm::convert::ConvertOptions::new(hf_path, mlx_path);
    opts.quantize = quantize;
    opts.q_group_size = q_group_size;
    opts.q_bits = q_bits;
    opts.q_mode = q_mode;
    opts.dtype = dtype;
    opts.dequantize = dequantize;
    opts.quant_predicate = quant_predicate;
    py.detach(move || {
        let mut lines = vec![];
        let report = oxmx_lm::convert::convert(&opts, &mut |p| {
            if let oxmx_lm::convert::Progress::Info(s) = p {
                lines.push(s.to_string());
            }
        })?;
        if report.quantized_layers > 0 {
            lines.push(format!("Quantized model with {:.3} bits per weight.", report.bits_per_weight));
        }
        Ok(lines)
    })
    .py()
}

// ---- model paths

/// Where the CLI looks for models (`$OXMX_MODELS_DIR`, else ~/.cache/oxmx/models) and the
/// default model's file name.
#[pyfunction]
fn models_dir() -> (String, &'static str) {
    (oxmx_lm::models_dir::models_dir().display().to_string(), oxmx_lm::models_dir::DEFAULT_MODEL_FILE)
}

/// A Hugging Face repo id resolved through the local Hub cache (downloading when allowed).
#[pyfunction]
fn resolve_repo(py: Python<'_>, repo: String) -> PyResult<Option<String>> {
    if !oxmx_lm::hub::is_repo_id(&repo) {
        return Ok(None);
    }
    let p = py.detach(move || oxmx_lm::hub::resolve_repo(&repo, &oxmx_lm::hub::HubOptions::from_env())).py()?;
    Ok(Some(p.display().to_string()))
}

pub fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let m = PyModule::new(parent.py(), "_lm")?;
    m.add_class::<PyModel>()?;
    m.add_class::<PyPromptCache>()?;
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyGenerationStream>()?;
    m.add_function(wrap_pyfunction!(load_model, &m)?)?;
    m.add_function(wrap_pyfunction!(load_prompt_cache, &m)?)?;
    m.add_function(wrap_pyfunction!(check_sampler, &m)?)?;
    m.add_function(wrap_pyfunction!(sample, &m)?)?;
    m.add_function(wrap_pyfunction!(apply_processor, &m)?)?;
    m.add_function(wrap_pyfunction!(start_generation, &m)?)?;
    m.add_function(wrap_pyfunction!(convert, &m)?)?;
    m.add_function(wrap_pyfunction!(models_dir, &m)?)?;
    m.add_function(wrap_pyfunction!(resolve_repo, &m)?)?;
    parent.add_submodule(&m)?;
    Ok(())
}
