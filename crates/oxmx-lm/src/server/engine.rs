//! The engine thread (DESIGN.md: the server owns one engine thread; HTTP handlers talk to it
//! through channels). It owns the model and runs continuous batching:
//!
//! - one waiting request at a time is prefilled (when a slot is free), reusing the longest stored
//!   prefix from the shared prompt cache; while other requests decode, its prompt runs in chunks
//!   of `INTERLEAVED_PREFILL` tokens between their steps, so a long prompt does not freeze them;
//!   then its first token is sampled and it joins the decode batch;
//! - then one decode step runs for every active sequence together: one `[B, 1]` forward pass over
//!   the batch cache ([`BatchLayer`]), then each sequence samples from its own row;
//! - a sequence leaves the batch when it finishes or when its client has gone (its event
//!   receiver was dropped), which frees its slot at once.
//!
//! Caches that cannot share a batch buffer (`--kv-bits`, `--max-kv-size`, models with their own
//! cache layout or a sliding window) run "solo": each sequence keeps its own cache and the step
//! runs one forward pass per sequence. Requests still interleave step by step.
//!

use super::batch_cache::{join_rows, model_fits_batch_cache, BatchLayer};
use super::prefix_cache::PrefixCache;
use super::sequence::{EngineRequest, Sequence};
use super::vocab::Vocab;
use crate::cache::{eval_cache, make_prompt_cache, maybe_quantize_kv_cache, KvCache, PromptCache};
use crate::models::LanguageModel;
use crate::tokenizer::Tokenizer;
use oxmx_core::{eval, memory, ops, Array, Error, Result};
use std::collections::{BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub max_concurrency: usize,
    pub max_kv_size: Option<usize>,
    pub kv_bits: Option<usize>,
    pub kv_group_size: usize,
    pub quantized_kv_start: usize,
    pub prefill_step_size: usize,
    /// Byte budget of the shared prefix prompt cache (0: off).
    pub prompt_cache_bytes: usize,
    pub eos_token_ids: Vec<u32>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_concurrency: 8,
            max_kv_size: None,
            kv_bits: None,
            kv_group_size: 64,
            quantized_kv_start: 0,
            prefill_step_size: 2048,
            prompt_cache_bytes: 1 << 30,
            eos_token_ids: vec![],
        }
    }
}

/// Counters the HTTP side reads (`/health`).
#[derive(Default)]
pub struct EngineStats {
    pub active: AtomicUsize,
    pub waiting: AtomicUsize,
    pub prompt_cache_bytes: AtomicUsize,
    pub prompt_cache_entries: AtomicUsize,
    /// Largest batch a decode step has run.
    pub max_batch: AtomicUsize,
}

pub struct EngineHandle {
    pub tx: Sender<EngineRequest>,
    pub stats: Arc<EngineStats>,
}

/// Starts the engine thread; it ends when every `EngineHandle` sender is dropped.
pub fn spawn(model: Box<dyn LanguageModel>, tok: Arc<Tokenizer>, cfg: EngineConfig) -> Result<EngineHandle> {
    if cfg.max_concurrency == 0 {
        return Err(Error::invalid("[serve] max_concurrency must be at least 1"));
    }
    if cfg.prefill_step_size == 0 {
        return Err(Error::invalid("[serve] prefill_step_size must be positive"));
    }
    if let Some(b) = cfg.kv_bits {
        crate::cache::quantized::check_kv_quant(cfg.kv_group_size, b, model.config().head_dim)?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let stats = Arc::new(EngineStats::default());
    let st = stats.clone();
    std::thread::Builder::new()
        .name("oxmx-engine".into())
        .spawn(move || run(model.as_ref(), &tok, &cfg, rx, &st))
        .map_err(|e| Error::io(format!("[serve] cannot start the engine thread: {e}")))?;
    Ok(EngineHandle { tx, stats })
}

/// Whether sequences can share one batch buffer (plain growing caches, no window).
fn batchable(model: &dyn LanguageModel, cfg: &EngineConfig) -> bool {
    cfg.kv_bits.is_none() && cfg.max_kv_size.is_none() && model_fits_batch_cache(model)
}

struct Active<'t> {
    seq: Sequence<'t>,
    /// The sequence's own cache when running solo.
    cache: Option<PromptCache>,
}

/// Tokens per prefill chunk while other requests are decoding.
const INTERLEAVED_PREFILL: usize = 256;

/// A request whose prompt is being prefilled.
struct Pending<'t> {
    seq: Sequence<'t>,
    cache: PromptCache,
    prompt: Vec<u32>,
    /// Prompt tokens in `cache`.
    done: usize,
}

enum Progress<'t> {
    More(Pending<'t>),
    Joined(Active<'t>),
    /// Finished at its first token, or failed (its client got the error).
    Ended,
}

struct Engine<'a> {
    model: &'a dyn LanguageModel,
    cfg: &'a EngineConfig,
    batched: bool,
    layers: Vec<BatchLayer>,
    batch_cache: PromptCache,
    prefix: PrefixCache,
    steps: usize,
}

fn run(model: &dyn LanguageModel, tok: &Tokenizer, cfg: &EngineConfig, rx: Receiver<EngineRequest>, stats: &EngineStats) {
    let vocab = Arc::new(Vocab::new(tok, model.config().vocab_size));
    let eos: BTreeSet<u32> = cfg.eos_token_ids.iter().copied().collect();
    let layers: Vec<BatchLayer> = (0..model.num_layers()).map(|_| BatchLayer::default()).collect();
    let mut e = Engine {
        model,
        cfg,
        batched: batchable(model, cfg),
        batch_cache: layers.iter().map(|l| Box::new(l.clone()) as Box<dyn KvCache>).collect(),
        layers,
        prefix: PrefixCache::new(if cfg.max_kv_size.is_none() && model.make_cache(None).is_none() { cfg.prompt_cache_bytes } else { 0 }),
        steps: 0,
    };
    let mut active: Vec<Active> = Vec::new();
    let mut waiting: VecDeque<EngineRequest> = VecDeque::new();
    // The request being prefilled (one at a time, in chunks between decode steps).
    let mut pending: Option<Pending> = None;
    loop {
        if active.is_empty() && waiting.is_empty() && pending.is_none() {
            match rx.recv() {
                Ok(r) => waiting.push_back(r),
                Err(_) => return, // the server is gone
            }
        }
        while let Ok(r) = rx.try_recv() {
            waiting.push_back(r);
        }
        waiting.retain(|r| !r.tx.is_closed());
        if pending.is_none() && active.len() < cfg.max_concurrency {
            if let Some(r) = waiting.pop_front() {
                let (tx, index) = (r.tx.clone(), r.index);
                let fail = |m: String| {
                    let _ = tx.send((index, super::sequence::Event::Error { message: m }));
                };
                match Sequence::new(tok, vocab.clone(), &eos, r) {
                    Ok(seq) => match catch_unwind(AssertUnwindSafe(|| e.begin(seq))) {
                        Ok(p) => pending = p,
                        Err(p) => fail(format!("internal error: {}", panic_text(&p))),
                    },
                    Err(err) => fail(err.message().to_string()),
                }
            }
        }
        if let Some(p) = pending.take() {
            if !p.seq.is_disconnected() {
                // Alone, a prompt runs in full chunks; with streams running, in short ones so
                // their tokens keep flowing.
                let chunk = if active.is_empty() { cfg.prefill_step_size } else { INTERLEAVED_PREFILL.min(cfg.prefill_step_size) };
                let (tx, index) = (p.seq.sender(), p.seq.index());
                match catch_unwind(AssertUnwindSafe(|| e.advance(p, chunk))) {
                    Ok(Progress::More(p)) => pending = Some(p),
                    Ok(Progress::Joined(a)) => active.push(a),
                    Ok(Progress::Ended) => {}
                    Err(p) => {
                        let _ = tx.send((index, super::sequence::Event::Error { message: format!("internal error: {}", panic_text(&p)) }));
                        e.reset(&mut active);
                    }
                }
            }
        }
        // Clients that left free their slots before the step.
        let gone: Vec<usize> = (0..active.len()).filter(|&i| active[i].seq.is_disconnected()).collect();
        e.remove(&mut active, &gone);
        stats.waiting.store(waiting.len(), Ordering::Relaxed);
        stats.active.store(active.len() + usize::from(pending.is_some()), Ordering::Relaxed);
        if !active.is_empty() {
            stats.max_batch.fetch_max(active.len(), Ordering::Relaxed);
            let stepped = catch_unwind(AssertUnwindSafe(|| e.step(&mut active)))
                .unwrap_or_else(|p| Err(Error::invalid(format!("internal error: {}", panic_text(&p)))));
            let finished = match stepped {
                Ok(f) => f,
                Err(err) => {
                    let msg = format!("generation failed: {}", err.message());
                    for a in &active {
                        a.seq.fail(&msg);
                    }
                    (0..active.len()).collect()
                }
            };
            e.remove(&mut active, &finished);
        }
        stats.active.store(active.len() + usize::from(pending.is_some()), Ordering::Relaxed);
        stats.prompt_cache_bytes.store(e.prefix.bytes(), Ordering::Relaxed);
        stats.prompt_cache_entries.store(e.prefix.len(), Ordering::Relaxed);
    }
}

/// A panic's message (a bug, not bad input: the engine keeps serving the other requests).
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
}

impl<'a> Engine<'a> {
    /// After a panic mid-admission the batch may hold a partial row: every active request fails
    /// and the batch starts empty.
    fn reset(&mut self, active: &mut Vec<Active>) {
        for a in active.iter() {
            a.seq.fail("generation failed: the batch was reset after an internal error");
        }
        active.clear();
        for l in &self.layers {
            let all: Vec<usize> = (0..l.len()).collect();
            l.remove_rows(&all);
        }
    }

    fn maybe_quantize(&self, cache: &mut [Box<dyn KvCache>]) -> Result<()> {
        maybe_quantize_kv_cache(cache, self.cfg.kv_bits, self.cfg.kv_group_size, self.cfg.quantized_kv_start)
    }

    /// Starts a request: its cache, from the longest stored prefix of its prompt when there is
    /// one. `None` when it failed (its client got the error).
    fn begin<'t>(&mut self, seq: Sequence<'t>) -> Option<Pending<'t>> {
        let prompt = seq.prompt().to_vec();
        if prompt.is_empty() {
            seq.fail("the prompt has no tokens");
            return None;
        }
        let (cache, cached) = match self.prefix.lookup(&prompt, prompt.len() - 1) {
            Ok(Some(hit)) => (hit.cache, hit.tokens),
            Ok(None) => (make_prompt_cache(self.model, self.cfg.max_kv_size), 0),
            Err(e) => {
                seq.fail(&e.message().to_string());
                return None;
            }
        };
        let mut seq = seq;
        seq.cached_tokens = cached;
        Some(Pending { seq, cache, prompt, done: cached })
    }

    /// Runs one prefill chunk of at most `chunk` tokens; once only the last prompt token is
    /// left, runs it, samples the first token and puts the request in the batch.
    fn advance<'t>(&mut self, mut p: Pending<'t>, chunk: usize) -> Progress<'t> {
        let r = (|| -> Result<Option<bool>> {
            let rest = &p.prompt[p.done..];
            if rest.len() > 1 {
                let n = (rest.len() - 1).min(chunk.max(1));
                let ids: Vec<i32> = rest[..n].iter().map(|&t| t as i32).collect();
                let _ = self.model.forward(&Array::from_slice(&ids, &[1, n]), Some(&mut p.cache));
                self.maybe_quantize(&mut p.cache)?;
                eval_cache(&p.cache)?;
                memory::clear_cache();
                p.done += n;
                return Ok(None);
            }
            let last = Array::from_slice(&[rest[0] as i32], &[1, 1]);
            let logits = self.model.forward(&last, Some(&mut p.cache));
            self.maybe_quantize(&mut p.cache)?;
            let v = logits.shape().last().copied().unwrap_or(0);
            let (next, lp) = p.seq.next_graph(&ops::reshape(&logits, &[1, v as isize]));
            eval(&[&next, &lp])?;
            eval_cache(&p.cache)?;
            self.prefix.insert(&p.prompt, &p.cache);
            let token = next.to_vec::<u32>()?[0];
            Ok(Some(p.seq.accept(token, &lp)?))
        })();
        match r {
            Ok(None) => Progress::More(p),
            Ok(Some(true)) => Progress::Ended,
            Ok(Some(false)) => match self.join(p.seq, p.cache) {
                Some(a) => Progress::Joined(a),
                None => Progress::Ended,
            },
            Err(e) => {
                p.seq.fail(&e.message().to_string());
                Progress::Ended
            }
        }
    }

    /// Puts a prefilled sequence into the decode batch (or keeps its own cache when solo).
    fn join<'t>(&mut self, seq: Sequence<'t>, cache: PromptCache) -> Option<Active<'t>> {
        if !self.batched {
            return Some(Active { seq, cache: Some(cache) });
        }
        if let Err(e) = join_rows(&self.layers, &cache) {
            seq.fail(&format!("cannot join the batch: {}", e.message()));
            return None;
        }
        Some(Active { seq, cache: None })
    }

    /// One decode step for every active sequence; returns the indices that finished.
    fn step(&mut self, active: &mut [Active]) -> Result<Vec<usize>> {
        let mut outs: Vec<(Array, Array)> = Vec::with_capacity(active.len());
        if self.batched {
            let b = active.len();
            let ids: Vec<i32> = active.iter().map(|a| a.seq.last as i32).collect();
            let logits = self.model.forward(&Array::from_slice(&ids, &[b, 1]), Some(&mut self.batch_cache));
            let v = logits.shape().last().copied().unwrap_or(0) as isize;
            let logits = ops::reshape(&logits, &[b as isize, v]);
            for (i, a) in active.iter_mut().enumerate() {
                let row = ops::slice_range(&logits, &[i as isize, 0], &[i as isize + 1, v]);
                outs.push(a.seq.next_graph(&row));
            }
        } else {
            for a in active.iter_mut() {
                let cache = a.cache.as_mut().ok_or_else(|| Error::invalid("[serve] a solo sequence without its cache"))?;
                let logits = self.model.forward(&Array::from_slice(&[a.seq.last as i32], &[1, 1]), Some(&mut *cache));
                maybe_quantize_kv_cache(cache, self.cfg.kv_bits, self.cfg.kv_group_size, self.cfg.quantized_kv_start)?;
                let v = logits.shape().last().copied().unwrap_or(0) as isize;
                outs.push(a.seq.next_graph(&ops::reshape(&logits, &[1, v])));
            }
        }
        let refs: Vec<&Array> = outs.iter().flat_map(|(n, l)| [n, l]).collect();
        eval(&refs)?;
        let mut finished = Vec::new();
        for (i, (a, (next, lp))) in active.iter_mut().zip(outs.iter()).enumerate() {
            let token = next.to_vec::<u32>()?[0];
            if a.seq.accept(token, lp)? {
                finished.push(i);
            }
        }
        self.steps += 1;
        if self.steps % 256 == 0 {
            memory::clear_cache();
        }
        Ok(finished)
    }

    /// Drops `rows` from the active list and the batch cache.
    fn remove(&mut self, active: &mut Vec<Active>, rows: &[usize]) {
        if rows.is_empty() {
            return;
        }
        if self.batched {
            for l in &self.layers {
                l.remove_rows(rows);
            }
        }
        let mut i = 0;
        active.retain(|_| {
            let keep = !rows.contains(&i);
            i += 1;
            keep
        });
        if active.is_empty() {
            memory::clear_cache();
        }
    }
}
