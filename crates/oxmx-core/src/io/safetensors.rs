//! safetensors reading (memory-mapped, zero-copy where aligned) and writing.
//!
//! Layout: an 8-byte little-endian header length `N`, `N` bytes of JSON
//! (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`),
//! then the data section that the offsets index.

use super::{array_from_le_bytes, array_from_map, array_le_bytes, checked_nbytes, io_err, map_file};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Header length limit (the reference implementation uses 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// The safetensors name of a dtype (`F32`, `BF16`, `U32`, ...), for writers that stream tensors.
pub fn st_name(d: Dtype) -> &'static str {
    match d {
        Dtype::Bool => "BOOL",
        Dtype::Uint8 => "U8",
        Dtype::Uint16 => "U16",
        Dtype::Uint32 => "U32",
        Dtype::Uint64 => "U64",
        Dtype::Int8 => "I8",
        Dtype::Int16 => "I16",
        Dtype::Int32 => "I32",
        Dtype::Int64 => "I64",
        Dtype::Float16 => "F16",
        Dtype::Bfloat16 => "BF16",
        Dtype::Float32 => "F32",
        Dtype::Float64 => "F64",
        Dtype::Complex64 => "C64",
    }
}

fn st_dtype(s: &str) -> Option<Dtype> {
    crate::dtype::ALL_DTYPES.iter().copied().find(|&d| st_name(d) == s)
}

/// Serialises named arrays (and optional string metadata) as safetensors bytes.
pub fn save_safetensors_bytes(arrays: &[(impl AsRef<str>, Array)], metadata: Option<&BTreeMap<String, String>>) -> Result<Vec<u8>> {
    let mut header = Map::new();
    if let Some(m) = metadata {
        let mm: Map<String, Value> = m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        header.insert("__metadata__".into(), Value::Object(mm));
    }
    let mut datas = Vec::with_capacity(arrays.len());
    let mut off = 0usize;
    for (name, a) in arrays {
        let name = name.as_ref();
        if name == "__metadata__" || header.contains_key(name) {
            return Err(crate::error::Error::io(format!("[save_safetensors] duplicate or reserved tensor name '{name}'")));
        }
        let bytes = array_le_bytes(a)?;
        let mut t = Map::new();
        t.insert("dtype".into(), Value::String(st_name(a.dtype()).into()));
        t.insert("shape".into(), Value::Array(a.shape().iter().map(|&d| Value::from(d as u64)).collect()));
        t.insert("data_offsets".into(), Value::Array(vec![Value::from(off as u64), Value::from((off + bytes.len()) as u64)]));
        header.insert(name.to_string(), Value::Object(t));
        off += bytes.len();
        datas.push(bytes);
    }
    let mut json = serde_json::to_vec(&Value::Object(header)).map_err(|e| crate::error::Error::io(format!("[save_safetensors] {e}")))?;
    // Pad with spaces so the data section starts 8-byte aligned, as the Python package does.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + off);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for d in datas {
        out.extend_from_slice(&d);
    }
    Ok(out)
}

/// Saves named arrays (in the given order) and optional metadata as a safetensors file.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    arrays: &[(impl AsRef<str>, Array)],
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = save_safetensors_bytes(arrays, metadata).map_err(|e| e.context(path.display()))?;
    std::fs::write(path, bytes).map_err(|e| io_err(path, format!("cannot write: {e}")))
}

struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

type Parsed = (Vec<Entry>, BTreeMap<String, String>, usize);

/// Parses and validates the header; returns the entries, metadata and the data section start.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    if bytes.len() < 8 {
        return Err(io_err(path, "truncated safetensors file (no header length)"));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if n > MAX_HEADER || n > (bytes.len() - 8) as u64 {
        return Err(io_err(
            path,
            format!("safetensors header length {n} exceeds the file size {} (truncated or not a safetensors file)", bytes.len()),
        ));
    }
    let start = 8 + n as usize;
    let json: Value =
        serde_json::from_slice(&bytes[8..start]).map_err(|e| io_err(path, format!("invalid safetensors header JSON: {e}")))?;
    let Value::Object(obj) = json else { return Err(io_err(path, "safetensors header is not a JSON object")) };
    let data_len = bytes.len() - start;
    let mut meta = BTreeMap::new();
    let mut entries = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            // MLX writes `"__metadata__": null` when there is none.
            if v.is_null() {
                continue;
            }
            let Value::Object(m) = v else { return Err(io_err(path, "__metadata__ is not an object")) };
            for (k, v) in m {
                let Value::String(s) = v else { return Err(io_err(path, format!("metadata value of '{k}' is not a string"))) };
                meta.insert(k, s);
            }
            continue;
        }
        let bad = |what: &str| io_err(path, format!("tensor '{name}': {what}"));
        let dt = v.get("dtype").and_then(Value::as_str).ok_or_else(|| bad("missing dtype"))?;
        let dtype = st_dtype(dt).ok_or_else(|| bad(&format!("unknown or unsupported dtype '{dt}'")))?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("shape entries must be non-negative integers"))?;
        let offs = v.get("data_offsets").and_then(Value::as_array).ok_or_else(|| bad("missing data_offsets"))?;
        let (begin, end) = match offs.as_slice() {
            [b, e] => (
                b.as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(|| bad("bad data_offsets"))?,
                e.as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(|| bad("bad data_offsets"))?,
            ),
            _ => return Err(bad("data_offsets must have two entries")),
        };
        if begin > end || end > data_len {
            return Err(bad(&format!("data offsets [{begin}, {end}] out of bounds of the {data_len}-byte data section")));
        }
        let nbytes = checked_nbytes(&shape, dtype).ok_or_else(|| bad(&format!("shape {shape:?} is too large")))?;
        if nbytes != end - begin {
            return Err(bad(&format!("shape {shape:?} of {dtype} needs {nbytes} bytes but data_offsets span {}", end - begin)));
        }
        entries.push(Entry { name, dtype, shape, begin, end });
    }
    Ok((entries, meta, start))
}

/// Loads a safetensors file: arrays in header order, plus the `__metadata__` strings. The file is
/// memory-mapped and tensors whose data is aligned for their dtype are not copied.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<(Vec<(String, Array)>, BTreeMap<String, String>)> {
    let path = path.as_ref();
    let map = map_file(path)?;
    let (entries, meta, start) = parse_header(path, &map)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let a = array_from_map(path, &map, start + e.begin, e.end - e.begin, e.dtype, e.shape)?;
        out.push((e.name, a));
    }
    drop::<Arc<_>>(map);
    Ok((out, meta))
}

/// Parses safetensors bytes (copies the data).
pub fn load_safetensors_bytes(bytes: &[u8]) -> Result<(Vec<(String, Array)>, BTreeMap<String, String>)> {
    let path = Path::new("<safetensors bytes>");
    let (entries, meta, start) = parse_header(path, bytes)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let a = array_from_le_bytes(path, &bytes[start + e.begin..start + e.end], e.dtype, e.shape)?;
        out.push((e.name, a));
    }
    Ok((out, meta))
}
