//! The prefix prompt cache shared by all requests: after a prompt is prefilled its per-layer
//! keys/values are kept under its token ids; a later prompt that starts with the same tokens
//! reuses the longest stored prefix and prefills only the rest (what agent and chat clients,
//! which resend the whole conversation, need most; mlx-lm's `LRUPromptCache`).
//!
//! Entries are plain `KVCache` states cut to their length. Arrays are immutable handles, so a
//! hit shares the stored buffers without copying: the request's cache appends with a functional
//! `slice_update` and never writes into them. Eviction is least-recently-used under a byte
//! budget; an entry that is a prefix of a newer one is dropped (the newer one covers it).

use crate::cache::{KVCache, KvCache, PromptCache};
use oxmx_core::{ops, Array, Result, SliceSpec};

struct Entry {
    tokens: Vec<u32>,
    /// Per layer `(keys, values)`, `[1, Hkv, tokens.len(), D]`.
    layers: Vec<(Array, Array)>,
    bytes: usize,
    last_used: u64,
}

pub struct PrefixCache {
    entries: Vec<Entry>,
    budget: usize,
    clock: u64,
}

/// A cache built from a stored prefix, and how many prompt tokens it covers.
pub struct Hit {
    pub cache: PromptCache,
    pub tokens: usize,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn seq(a: &Array, stop: usize) -> Array {
    ops::slice(a, &[SliceSpec::FULL, SliceSpec::FULL, SliceSpec::new(Some(0), Some(stop as isize), 1), SliceSpec::FULL])
}

impl PrefixCache {
    /// `budget` bytes in all (0 turns the cache off).
    pub fn new(budget: usize) -> PrefixCache {
        PrefixCache { entries: Vec::new(), budget, clock: 0 }
    }

    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The longest stored prefix of `prompt`, at most `max_tokens` long (a request must leave at
    /// least its last token to compute, for the logits of its first reply token).
    pub fn lookup(&mut self, prompt: &[u32], max_tokens: usize) -> Result<Option<Hit>> {
        let best =
            self.entries.iter().enumerate().map(|(i, e)| (i, common_prefix(&e.tokens, prompt).min(max_tokens))).max_by_key(|&(_, n)| n);
        let Some((i, n)) = best.filter(|&(_, n)| n > 0) else { return Ok(None) };
        self.clock += 1;
        let e = &mut self.entries[i];
        e.last_used = self.clock;
        let mut cache: PromptCache = Vec::with_capacity(e.layers.len());
        for (k, v) in &e.layers {
            cache.push(Box::new(KVCache::from_state(Some(seq(k, n)), Some(seq(v, n)), n)?));
        }
        Ok(Some(Hit { cache, tokens: n }))
    }

    /// Stores `cache` (plain `KVCache` layers holding exactly `tokens`), evicting as the budget
    /// needs. Caches of other layouts (quantized, rotating) are not stored.
    pub fn insert(&mut self, tokens: &[u32], cache: &[Box<dyn KvCache>]) {
        if self.budget == 0 || tokens.is_empty() {
            return;
        }
        let mut layers = Vec::with_capacity(cache.len());
        for c in cache {
            if c.class_name() != "KVCache" || c.offset() != tokens.len() {
                return;
            }
            let st = c.state();
            let [k, v] = st.as_slice() else { return };
            layers.push((seq(k, tokens.len()), seq(v, tokens.len())));
        }
        let bytes: usize = layers.iter().map(|(k, v)| k.nbytes() + v.nbytes()).sum();
        if bytes > self.budget {
            return;
        }
        // An existing entry that this one extends (or equals) is redundant.
        self.entries.retain(|e| !(e.tokens.len() <= tokens.len() && tokens.starts_with(&e.tokens)));
        if self.entries.iter().any(|e| e.tokens.starts_with(tokens)) {
            return; // already covered by a longer entry
        }
        while self.bytes() + bytes > self.budget {
            let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i) else { break };
            self.entries.swap_remove(oldest);
        }
        self.clock += 1;
        self.entries.push(Entry { tokens: tokens.to_vec(), layers, bytes, last_used: self.clock });
    }
}
