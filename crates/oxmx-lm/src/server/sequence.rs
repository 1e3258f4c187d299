//! One request's decoding state inside the engine: its sampler and logits processors (oxmx-lm's,
//! built from the request), the token history, the streaming detokenizer, stop strings (text
//! that could still become a stop string is held back, and the stop string itself is never sent),
//! logprobs, and an optional JSON constraint. The engine only runs forward passes; everything a
//! request decides about its own tokens happens here.

use super::json_mask::JsonMask;
use super::vocab::Vocab;
use crate::sample::{make_logits_processors, LogitsProcessor, ProcessorConfig, Sampler, SamplerConfig};
use crate::tokenizer::{StreamingDetokenizer, Tokenizer};
use oxmx_core::{ops, Array, Result};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// What a request asks the engine to generate.
#[derive(Clone, Debug)]
pub struct GenSpec {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub processors: ProcessorConfig,
    pub stop: Vec<String>,
    /// `Some(n)`: report each token's logprob and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Constrain the output to one JSON object (`response_format`).
    pub json: Option<JsonMask>,
}

/// One request (one choice) as queued for the engine.
pub struct EngineRequest {
    pub spec: GenSpec,
    /// The choice index events are tagged with (a request with `n > 1` queues `n` of these).
    pub index: usize,
    pub tx: UnboundedSender<(usize, Event)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The most likely tokens, most likely first: (text, bytes, logprob).
    pub top: Vec<(String, Vec<u8>, f32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// EOS or a stop string.
    Stop,
    /// `max_tokens` (or the context) reached.
    Length,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Event {
    /// New text (possibly empty when held back for a stop string) and the token's logprobs.
    Delta {
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Done {
        finish: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
        cached_tokens: usize,
    },
    Error {
        message: String,
    },
}

pub struct Sequence<'t> {
    tok: &'t Tokenizer,
    vocab: Arc<Vocab>,
    index: usize,
    tx: UnboundedSender<(usize, Event)>,
    sampler: Sampler,
    processors: Vec<Box<dyn LogitsProcessor>>,
    /// Prompt and generated ids (what the processors see).
    tokens: Vec<u32>,
    prompt_len: usize,
    pub cached_tokens: usize,
    max_tokens: usize,
    eos: &'t BTreeSet<u32>,
    detok: StreamingDetokenizer<'t>,
    /// Bytes of `detok.text()` already sent.
    sent: usize,
    stop: Vec<String>,
    logprobs: Option<usize>,
    json: Option<JsonMask>,
    /// The last sampled id (the next decode step's input).
    pub last: u32,
}

impl<'t> Sequence<'t> {
    pub fn new(tok: &'t Tokenizer, vocab: Arc<Vocab>, eos: &'t BTreeSet<u32>, req: EngineRequest) -> Result<Sequence<'t>> {
        let EngineRequest { spec, index, tx } = req;
        let sampler = Sampler::new(spec.sampler)?;
        Ok(Sequence {
            tok,
            vocab,
            index,
            tx,
            sampler,
            processors: make_logits_processors(&spec.processors),
            prompt_len: spec.prompt.len(),
            tokens: spec.prompt,
            cached_tokens: 0,
            max_tokens: spec.max_tokens,
            eos,
            detok: tok.detokenizer(),
            sent: 0,
            stop: spec.stop,
            logprobs: spec.logprobs,
            json: spec.json,
            last: 0,
        })
    }

    pub fn prompt(&self) -> &[u32] {
        &self.tokens[..self.prompt_len]
    }

    /// The client is gone (its receiver was dropped): the slot can be freed.
    pub fn is_disconnected(&self) -> bool {
        self.tx.is_closed()
    }

    pub fn sender(&self) -> UnboundedSender<(usize, Event)> {
        self.tx.clone()
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn fail(&self, message: &str) {
        let _ = self.tx.send((self.index, Event::Error { message: message.to_string() }));
    }

    /// The lazy graph of the next token from this sequence's last-position logits `[1, V]`, in
    /// `generate_step`'s order: processors, (the JSON mask), logprobs, sampler.
    pub fn next_graph(&mut self, logits: &Array) -> (Array, Array) {
        let mut logits = logits.clone();
        for p in self.processors.iter_mut() {
            logits = p.process(&self.tokens, &logits);
        }
        if let Some(j) = &self.json {
            let v = logits.shape().last().copied().unwrap_or(0);
            logits = &logits + &j.mask(&self.vocab, self.eos, v);
        }
        let logprobs = &logits - &ops::logsumexp(&logits, -1isize, true);
        let next = self.sampler.sample(&logprobs);
        (next, logprobs)
    }

    /// Takes the sampled `token` (its `logprobs` row `[1, V]` evaluated) and sends what it adds.
    /// Returns true when the sequence is finished (or its client is gone).
    pub fn accept(&mut self, token: u32, logprobs: &Array) -> Result<bool> {
        self.tokens.push(token);
        self.last = token;
        let generated = self.tokens.len() - self.prompt_len;
        let lp = match self.logprobs {
            Some(n) => Some(self.token_logprob(token, logprobs, n)?),
            None => None,
        };
        if let Some(j) = &mut self.json {
            j.advance(self.vocab.text(token).unwrap_or(""));
        }
        let mut finish = None;
        let text = if self.eos.contains(&token) {
            // EOS ends the reply without its text (as `oxmx generate`); held-back text goes out.
            finish = Some(Finish::Stop);
            self.flush()
        } else {
            self.detok.add_token(token);
            let (mut t, stopped) = self.take_text();
            if stopped {
                finish = Some(Finish::Stop);
            } else if generated >= self.max_tokens {
                finish = Some(Finish::Length);
                t.push_str(&self.flush());
            }
            t
        };
        let mut ok = self.tx.send((self.index, Event::Delta { text, logprob: lp })).is_ok();
        if let Some(f) = finish {
            let done =
                Event::Done { finish: f, prompt_tokens: self.prompt_len, completion_tokens: generated, cached_tokens: self.cached_tokens };
            ok = self.tx.send((self.index, done)).is_ok() && ok;
        }
        Ok(finish.is_some() || !ok)
    }

    /// Everything not yet sent (the end of the reply).
    fn flush(&mut self) -> String {
        self.detok.finalize();
        let t = self.detok.text();
        let out = t.get(self.sent..).unwrap_or("").to_string();
        self.sent = t.len();
        out
    }

    /// New text up to a stop string (then `true`) or up to what could still start one.
    fn take_text(&mut self) -> (String, bool) {
        let text = self.detok.text();
        let fresh = &text[self.sent..];
        if self.stop.is_empty() {
            let out = fresh.to_string();
            self.sent = text.len();
            return (out, false);
        }
        // A stop string may begin in text still held back, never in text already sent.
        let first = self.stop.iter().filter_map(|s| fresh.find(s.as_str())).min();
        if let Some(at) = first {
            let out = fresh[..at].to_string();
            self.sent = text.len();
            return (out, true);
        }
        let hold =
            fresh.char_indices().map(|(i, _)| i).find(|&i| self.stop.iter().any(|s| s.starts_with(&fresh[i..]))).unwrap_or(fresh.len());
        let out = fresh[..hold].to_string();
        self.sent += hold;
        (out, false)
    }

    fn token_logprob(&self, token: u32, logprobs: &Array, n: usize) -> Result<TokenLogprob> {
        let row = logprobs.to_vec::<f32>()?;
        let entry = |id: u32| -> (String, Vec<u8>) {
            let bytes = self.vocab.bytes(id).to_vec();
            (String::from_utf8_lossy(&bytes).into_owned(), bytes)
        };
        let mut top = Vec::new();
        if n > 0 {
            let mut idx: Vec<u32> = (0..row.len() as u32).collect();
            let n = n.min(idx.len());
            // Most likely first; NaN sorts last.
            let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]);
            idx.select_nth_unstable_by(n.saturating_sub(1), cmp);
            idx.truncate(n);
            idx.sort_by(cmp);
            top = idx
                .into_iter()
                .map(|i| {
                    let (t, b) = entry(i);
                    (t, b, row[i as usize])
                })
                .collect();
        }
        let (t, b) = entry(token);
        let _ = self.tok; // the vocabulary's text comes from this tokenizer
        Ok(TokenLogprob { token: t, bytes: b, logprob: row.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY), top })
    }
}
