//! Prompt-cache files in mlx-lm's format (`save_prompt_cache` / `load_prompt_cache`), so a cache
//! written by either side loads in the other.
//!
//! One safetensors file. Its tensors are the layers' `state` tuples flattened with dotted indices:
//! layer `i`, state entry `j` is `"i.j"` (an array), or `"i.j.k"` for a tuple entry (a quantized
//! cache's `(packed, scales, biases)`). Scalars in the state (offsets, sizes) are stored as 0-d
//! arrays, strings as int32 code points and `None` as an empty array. The `__metadata__` strings
//! are the flattening of `[user_metadata, class_names, scalars]`:
//!
//! * `"0.<key>"`: user metadata (`cache-prompt` writes `model`, `tokenizer_config`, `tokens`);
//! * `"1.<i>"`: layer `i`'s class name (`KVCache`, `RotatingKVCache`, `QuantizedKVCache`);
//! * `"2.0"` is `""`, then `"2.<m>.0"` names a tensor that holds a scalar and `"2.<m>.1"` says
//!   which kind (`scalar`, `string` or `none`).
//!
//! Older mlx-lm releases wrote `[meta_states, user_metadata, class_names]` (`"0.i.k"`, `"1.key"`,
//! `"2.i"`) with state tuples of arrays only; those files load too.

use crate::cache::{KVCache, KvCache, PromptCache, QuantizedKVCache, RotatingKVCache, StateItem};
use oxmx_core::io::{load_safetensors, save_safetensors_file};
use oxmx_core::{Array, Dtype, Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

fn scalar_array(item: &StateItem) -> Option<(Array, &'static str)> {
    match item {
        StateItem::Int(i) => Some((Array::scalar(*i as i32), "scalar")),
        StateItem::Float(f) => Some((Array::scalar(*f as f32), "scalar")),
        StateItem::Str(s) => {
            let codes: Vec<i32> = s.chars().map(|c| c as i32).collect();
            Some((Array::vec(&codes), "string"))
        }
        StateItem::None => Some((Array::from_slice::<f32>(&[], &[0]), "none")),
        _ => None,
    }
}

/// The tensors and `__metadata__` of a prompt-cache file for `cache` (mlx-lm's layout).
pub fn prompt_cache_tensors(
    cache: &[Box<dyn KvCache>],
    metadata: &BTreeMap<String, String>,
) -> Result<(Vec<(String, Array)>, BTreeMap<String, String>)> {
    let mut arrays: Vec<(String, Array)> = Vec::new();
    let mut scalars: Vec<(String, &'static str)> = Vec::new();
    let mut meta = BTreeMap::new();
    for (i, c) in cache.iter().enumerate() {
        for (j, item) in c.file_state().into_iter().enumerate() {
            let key = format!("{i}.{j}");
            match &item {
                StateItem::Array(a) => arrays.push((key, a.clone())),
                StateItem::Arrays(v) => {
                    for (k, a) in v.iter().enumerate() {
                        arrays.push((format!("{key}.{k}"), a.clone()));
                    }
                }
                other => {
                    let (a, kind) =
                        scalar_array(other).ok_or_else(|| Error::runtime("[save_prompt_cache] internal: unserializable state"))?;
                    arrays.push((key.clone(), a));
                    scalars.push((key, kind));
                }
            }
        }
        meta.insert(format!("1.{i}"), c.class_name().to_string());
    }
    for (k, v) in metadata {
        if k.is_empty() || k.contains('.') {
            return Err(Error::invalid(format!("[save_prompt_cache] metadata key '{k}' must be non-empty and contain no '.'")));
        }
        meta.insert(format!("0.{k}"), v.clone());
    }
    meta.insert("2.0".into(), String::new());
    for (m, (key, kind)) in scalars.into_iter().enumerate() {
        meta.insert(format!("2.{}.0", m + 1), key);
        meta.insert(format!("2.{}.1", m + 1), kind.to_string());
    }
    Ok((arrays, meta))
}

/// Saves `cache` (one safetensors file, mlx-lm's format; `.safetensors` is appended when the
/// name lacks it, as `mx.save_safetensors` does) with string `metadata`.
pub fn save_prompt_cache(path: impl AsRef<Path>, cache: &[Box<dyn KvCache>], metadata: &BTreeMap<String, String>) -> Result<()> {
    let path = path.as_ref();
    let (arrays, meta) = prompt_cache_tensors(cache, metadata)?;
    save_safetensors_file(path, &arrays, Some(&meta)).map_err(|e| Error::io(format!("[save_prompt_cache] {}: {e}", path.display())))
}

/// One layer's state as read back: entries by index, each an array or a tuple of arrays.
#[derive(Default)]
struct LayerState {
    items: BTreeMap<usize, Entry>,
}

enum Entry {
    One(Array),
    Many(BTreeMap<usize, Array>),
}

fn parse_index(s: &str, key: &str) -> Result<usize> {
    s.parse::<usize>().map_err(|_| Error::invalid(format!("[load_prompt_cache] unexpected tensor key '{key}'")))
}

fn scalar_item(a: &Array, kind: &str, key: &str) -> Result<StateItem> {
    match kind {
        "scalar" => {
            if a.size() != 1 {
                return Err(Error::invalid(format!("[load_prompt_cache] scalar '{key}' has shape {:?}", a.shape())));
            }
            if a.dtype().is_float() {
                Ok(StateItem::Float(a.astype(Dtype::Float64).item::<f64>()?))
            } else {
                Ok(StateItem::Int(a.astype(Dtype::Int64).item::<i64>()?))
            }
        }
        "string" => {
            let codes = a.astype(Dtype::Int32).to_vec::<i32>()?;
            let s: Option<String> = codes.iter().map(|&c| char::from_u32(c as u32)).collect();
            s.map(StateItem::Str).ok_or_else(|| Error::invalid(format!("[load_prompt_cache] string '{key}' has invalid code points")))
        }
        "none" => Ok(StateItem::None),
        other => Err(Error::invalid(format!("[load_prompt_cache] unknown scalar kind '{other}' for '{key}'"))),
    }
}

/// Rebuilds a layer's cache from its class name and state (`<Class>.from_state`).
pub fn cache_from_state(class: &str, state: &[StateItem]) -> Result<Box<dyn KvCache>> {
    let need = |n: usize| -> Result<()> {
        if state.len() != n {
            return Err(Error::invalid(format!("[load_prompt_cache] {class} needs {n} state entries, the file has {}", state.len())));
        }
        Ok(())
    };
    let arrays = |item: &StateItem, what: &str| -> Result<Option<Vec<Array>>> {
        match item {
            StateItem::Arrays(v) => Ok(Some(v.clone())),
            StateItem::None => Ok(None),
            other => Err(Error::invalid(format!("[load_prompt_cache] {class} {what} must be a tuple of arrays, got {other:?}"))),
        }
    };
    match class {
        "KVCache" => {
            need(3)?;
            let c = KVCache::from_state(state[0].as_array("keys")?, state[1].as_array("values")?, state[2].as_usize("offset")?)?;
            Ok(Box::new(c))
        }
        "RotatingKVCache" => {
            need(6)?;
            let c = RotatingKVCache::from_state(
                state[0].as_array("keys")?,
                state[1].as_array("values")?,
                state[2].as_usize("offset")?,
                state[3].as_usize("keep")?,
                state[4].as_usize("max_size")?,
                state[5].as_usize("_idx")?,
            )?;
            Ok(Box::new(c))
        }
        "QuantizedKVCache" => {
            need(5)?;
            let c = QuantizedKVCache::from_state(
                arrays(&state[0], "keys")?,
                arrays(&state[1], "values")?,
                state[2].as_usize("offset")?,
                state[3].as_usize("group_size")?,
                state[4].as_usize("bits")?,
            )?;
            Ok(Box::new(c))
        }
        other => Err(Error::invalid(format!(
            "[load_prompt_cache] cache class '{other}' is not supported (KVCache, RotatingKVCache, QuantizedKVCache)"
        ))),
    }
}

/// Old layout: arrays only in the state, scalars in per-layer meta-state strings.
fn legacy_state(class: &str, mut items: Vec<StateItem>, meta: &[String]) -> Result<Vec<StateItem>> {
    let num = |k: usize, what: &str| -> Result<StateItem> {
        let s = meta.get(k).ok_or_else(|| Error::invalid(format!("[load_prompt_cache] {class}: missing meta state '{what}'")))?;
        s.trim()
            .parse::<i64>()
            .map(StateItem::Int)
            .map_err(|_| Error::invalid(format!("[load_prompt_cache] {class}: meta state '{what}' is not an integer: '{s}'")))
    };
    match class {
        "KVCache" => {
            let offset = match items.first() {
                Some(StateItem::Array(k)) if k.ndim() == 4 => k.shape()[2] as i64,
                _ => 0,
            };
            items.resize(2, StateItem::None);
            items.push(StateItem::Int(offset));
            Ok(items)
        }
        "RotatingKVCache" => {
            items.resize(2, StateItem::None);
            // meta_state: keep, max_size, step, offset, _idx (older) or keep, max_size, offset, _idx.
            let (o, i) = if meta.len() >= 5 { (3, 4) } else { (2, 3) };
            items.extend([num(o, "offset")?, num(0, "keep")?, num(1, "max_size")?, num(i, "_idx")?]);
            Ok(items)
        }
        "QuantizedKVCache" => {
            items.resize(2, StateItem::None);
            items.extend([num(0, "offset")?, num(1, "group_size")?, num(2, "bits")?]);
            Ok(items)
        }
        _ => Ok(items),
    }
}

/// Loads a prompt-cache file written by mlx-lm or by [`save_prompt_cache`]: the per-layer
/// caches and the user metadata.
pub fn load_prompt_cache(path: impl AsRef<Path>) -> Result<(PromptCache, BTreeMap<String, String>)> {
    let path = path.as_ref();
    let (arrays, meta) = load_safetensors(path).map_err(|e| Error::io(format!("[load_prompt_cache] {}: {e}", path.display())))?;
    let ctx = |e: Error| Error::invalid(format!("{} ({})", e.message(), path.display()));
    prompt_cache_from_tensors(arrays, &meta).map_err(ctx)
}

/// [`load_prompt_cache`] on tensors and metadata already read.
pub fn prompt_cache_from_tensors(
    arrays: Vec<(String, Array)>,
    meta: &BTreeMap<String, String>,
) -> Result<(PromptCache, BTreeMap<String, String>)> {
    // New layout: "2.0" == "" and classes under "1.i"; old: classes under "2.i".
    let legacy = !meta.contains_key("2.0") || meta.get("2.0").is_some_and(|s| !s.is_empty());
    let (user_p, class_p) = if legacy { ("1.", "2.") } else { ("0.", "1.") };
    let mut user = BTreeMap::new();
    let mut classes: BTreeMap<usize, String> = BTreeMap::new();
    let mut scalar_kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut scalar_pos: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut legacy_meta: BTreeMap<usize, BTreeMap<usize, String>> = BTreeMap::new();
    for (k, v) in meta {
        if let Some(rest) = k.strip_prefix(user_p) {
            user.insert(rest.to_string(), v.clone());
        } else if let Some(rest) = k.strip_prefix(class_p) {
            classes.insert(parse_index(rest, k)?, v.clone());
        } else if !legacy {
            if let Some(rest) = k.strip_prefix("2.") {
                let parts: Vec<&str> = rest.split('.').collect();
                if let [m, f] = parts[..] {
                    let e = scalar_pos.entry(parse_index(m, k)?).or_default();
                    match f {
                        "0" => e.0 = Some(v.clone()),
                        "1" => e.1 = Some(v.clone()),
                        _ => return Err(Error::invalid(format!("[load_prompt_cache] unexpected metadata key '{k}'"))),
                    }
                }
            }
        } else if let Some(rest) = k.strip_prefix("0.") {
            let parts: Vec<&str> = rest.split('.').collect();
            if let [i, j] = parts[..] {
                legacy_meta.entry(parse_index(i, k)?).or_default().insert(parse_index(j, k)?, v.clone());
            }
        }
    }
    for (_, (pos, kind)) in scalar_pos {
        match (pos, kind) {
            (Some(p), Some(t)) => {
                scalar_kinds.insert(p, t);
            }
            _ => return Err(Error::invalid("[load_prompt_cache] incomplete scalar entry in the metadata")),
        }
    }
    if classes.is_empty() {
        return Err(Error::invalid("[load_prompt_cache] not a prompt-cache file: no cache classes in the metadata"));
    }
    let n = classes.len();
    if classes.keys().copied().ne(0..n) {
        return Err(Error::invalid("[load_prompt_cache] cache class indices are not 0..n"));
    }
    let mut layers: Vec<LayerState> = (0..n).map(|_| LayerState::default()).collect();
    let mut scalars: BTreeMap<String, StateItem> = BTreeMap::new();
    for (key, a) in arrays {
        if let Some(kind) = scalar_kinds.get(&key) {
            scalars.insert(key.clone(), scalar_item(&a, kind, &key)?);
        }
        let parts: Vec<&str> = key.split('.').collect();
        let (i, j, k) = match parts[..] {
            [i, j] => (parse_index(i, &key)?, parse_index(j, &key)?, None),
            [i, j, k] => (parse_index(i, &key)?, parse_index(j, &key)?, Some(parse_index(k, &key)?)),
            _ => return Err(Error::invalid(format!("[load_prompt_cache] unexpected tensor key '{key}'"))),
        };
        let layer =
            layers.get_mut(i).ok_or_else(|| Error::invalid(format!("[load_prompt_cache] tensor '{key}' names layer {i} of {n}")))?;
        match k {
            None => {
                layer.items.insert(j, Entry::One(a));
            }
            Some(k) => match layer.items.entry(j).or_insert_with(|| Entry::Many(BTreeMap::new())) {
                Entry::Many(m) => {
                    m.insert(k, a);
                }
                Entry::One(_) => return Err(Error::invalid(format!("[load_prompt_cache] '{key}' mixes an array and a tuple"))),
            },
        }
    }
    let mut cache: PromptCache = Vec::with_capacity(n);
    for (i, layer) in layers.into_iter().enumerate() {
        let len = layer.items.keys().next_back().map_or(0, |m| m + 1);
        let mut items = Vec::with_capacity(len);
        for j in 0..len {
            let key = format!("{i}.{j}");
            let item = match (scalars.remove(&key), layer.items.get(&j)) {
                (Some(s), _) => s,
                (None, Some(Entry::One(a))) => StateItem::Array(a.clone()),
                (None, Some(Entry::Many(m))) => {
                    if m.keys().copied().ne(0..m.len()) {
                        return Err(Error::invalid(format!("[load_prompt_cache] tuple '{key}' has gaps")));
                    }
                    StateItem::Arrays(m.values().cloned().collect())
                }
                (None, None) => return Err(Error::invalid(format!("[load_prompt_cache] state entry '{key}' is missing"))),
            };
            items.push(item);
        }
        let class = &classes[&i];
        if legacy {
            let m: Vec<String> = legacy_meta.remove(&i).map(|m| m.into_values().collect()).unwrap_or_default();
            items = legacy_state(class, items, &m)?;
        }
        cache.push(cache_from_state(class, &items).map_err(|e| Error::invalid(format!("{} (layer {i})", e.message())))?);
    }
    Ok((cache, user))
}
