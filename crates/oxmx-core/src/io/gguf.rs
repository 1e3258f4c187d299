//! GGUF (llama.cpp) reading and writing.
//!
//! A GGUF file is: magic `GGUF`, version (2 or 3), tensor count and metadata count (u64),
//! metadata key/values, tensor infos (name, dims with `ne[0]` the fastest axis, ggml type, data
//! offset), padding to `general.alignment` (default 32), then the data section.
//! Plain tensors load as arrays in NumPy axis order (dims reversed); quantized tensors load as
//! their raw blocks: a `uint8` array of shape `[rows, bytes_per_row]`, with the ggml type in
//! [`GgufTensorInfo::ggml_type`].

use super::{array_from_le_bytes, array_from_map, array_le_bytes, io_err, map_file};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_ARRAY_DEPTH: usize = 16;
/// Counts read from the file only pre-size vectors up to this: an entry is larger in memory
/// than its smallest encoding, so trusting a lying count could allocate many times the file.
const PREALLOC_MAX: u64 = 4096;

/// The type tag of a metadata value.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GgufType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl GgufType {
    pub fn from_u32(v: u32) -> Option<GgufType> {
        use GgufType::*;
        Some(match v {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type and elements (all of that type).
    Array(GgufType, Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    pub fn ty(&self) -> GgufType {
        match self {
            GgufValue::U8(_) => GgufType::U8,
            GgufValue::I8(_) => GgufType::I8,
            GgufValue::U16(_) => GgufType::U16,
            GgufValue::I16(_) => GgufType::I16,
            GgufValue::U32(_) => GgufType::U32,
            GgufValue::I32(_) => GgufType::I32,
            GgufValue::F32(_) => GgufType::F32,
            GgufValue::Bool(_) => GgufType::Bool,
            GgufValue::String(_) => GgufType::String,
            GgufValue::Array(..) => GgufType::Array,
            GgufValue::U64(_) => GgufType::U64,
            GgufValue::I64(_) => GgufType::I64,
            GgufValue::F64(_) => GgufType::F64,
        }
    }
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// Metadata key/values in file order.
pub type GgufMetadata = Vec<(String, GgufValue)>;

/// `(elements per block, bytes per block)` of a ggml tensor type; `None` for unknown types.
pub fn ggml_block_size(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (1, 4),
        1 => (1, 2),
        2 => (32, 18),
        3 => (32, 20),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        9 => (32, 40),
        10 => (256, 84),
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        15 => (256, 292),
        16 => (256, 66),
        17 => (256, 74),
        18 => (256, 98),
        19 => (256, 50),
        20 => (32, 18),
        21 => (256, 110),
        22 => (256, 82),
        23 => (256, 136),
        24 => (1, 1),
        25 => (1, 2),
        26 => (1, 4),
        27 => (1, 8),
        28 => (1, 8),
        29 => (256, 56),
        30 => (1, 2),
        34 => (256, 54),
        35 => (256, 66),
        39 => (32, 17),
        _ => return None,
    })
}

/// The array dtype of a plain (unquantized) ggml type.
pub fn ggml_plain_dtype(ggml_type: u32) -> Option<Dtype> {
    Some(match ggml_type {
        0 => Dtype::Float32,
        1 => Dtype::Float16,
        24 => Dtype::Int8,
        25 => Dtype::Int16,
        26 => Dtype::Int32,
        27 => Dtype::Int64,
        28 => Dtype::Float64,
        30 => Dtype::Bfloat16,
        _ => return None,
    })
}

fn ggml_type_of(d: Dtype) -> Option<u32> {
    Some(match d {
        Dtype::Float32 => 0,
        Dtype::Float16 => 1,
        Dtype::Int8 => 24,
        Dtype::Int16 => 25,
        Dtype::Int32 => 26,
        Dtype::Int64 => 27,
        Dtype::Float64 => 28,
        Dtype::Bfloat16 => 30,
        _ => return None,
    })
}

/// One tensor's description.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml dims: `dims[0]` is the fastest-varying axis.
    pub dims: Vec<u64>,
    /// The ggml type id (0 = F32, 1 = F16, 2 = Q4_0, …).
    pub ggml_type: u32,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub nbytes: u64,
}

impl GgufTensorInfo {
    /// The shape in NumPy order (reversed dims).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    /// Whether the type is quantized (loaded as raw blocks).
    pub fn is_quantized(&self) -> bool {
        ggml_plain_dtype(self.ggml_type).is_none()
    }
}

/// A parsed GGUF file, memory-mapped.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: GgufMetadata,
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    map: Arc<memmap2::Mmap>,
}

struct Reader<'a> {
    path: &'a Path,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| io_err(self.path, format!("truncated GGUF file reading {what}")))?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(io_err(self.path, format!("truncated GGUF file reading {what} at offset {}", self.pos)));
        };
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().unwrap())
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn remaining(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| io_err(self.path, format!("{what} is not valid UTF-8")))
    }
    fn value(&mut self, ty: GgufType, key: &str, depth: usize) -> Result<GgufValue> {
        use GgufValue as V;
        Ok(match ty {
            GgufType::U8 => V::U8(self.arr::<1>(key)?[0]),
            GgufType::I8 => V::I8(self.arr::<1>(key)?[0] as i8),
            GgufType::U16 => V::U16(u16::from_le_bytes(self.arr(key)?)),
            GgufType::I16 => V::I16(i16::from_le_bytes(self.arr(key)?)),
            GgufType::U32 => V::U32(u32::from_le_bytes(self.arr(key)?)),
            GgufType::I32 => V::I32(i32::from_le_bytes(self.arr(key)?)),
            GgufType::F32 => V::F32(f32::from_le_bytes(self.arr(key)?)),
            GgufType::U64 => V::U64(u64::from_le_bytes(self.arr(key)?)),
            GgufType::I64 => V::I64(i64::from_le_bytes(self.arr(key)?)),
            GgufType::F64 => V::F64(f64::from_le_bytes(self.arr(key)?)),
            GgufType::Bool => match self.arr::<1>(key)?[0] {
                0 => V::Bool(false),
                1 => V::Bool(true),
                b => return Err(io_err(self.path, format!("metadata '{key}': invalid bool byte {b}"))),
            },
            GgufType::String => V::String(self.string(key)?),
            GgufType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(io_err(self.path, format!("metadata '{key}': arrays nested too deeply")));
                }
                let et = self.u32(key)?;
                let et = GgufType::from_u32(et)
                    .ok_or_else(|| io_err(self.path, format!("metadata '{key}': unknown array element type {et}")))?;
                let n = self.u64(key)?;
                // Every element takes at least one byte: cap the allocation by what is left.
                if n > self.remaining() {
                    return Err(io_err(self.path, format!("metadata '{key}': array of {n} elements exceeds the file size")));
                }
                let mut v = Vec::with_capacity(n.min(PREALLOC_MAX) as usize);
                for _ in 0..n {
                    v.push(self.value(et, key, depth + 1)?);
                }
                V::Array(et, v)
            }
        })
    }
}

impl GgufFile {
    /// Maps and parses a GGUF file (tensor data is read lazily by [`GgufFile::tensor`]).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let map = map_file(path)?;
        let h = parse_header(path, &map)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: h.version,
            metadata: h.metadata,
            tensors: h.tensors,
            alignment: h.alignment,
            data_offset: h.data_offset,
            map,
        })
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The data of one tensor: plain types as arrays in NumPy axis order, quantized types as raw
    /// blocks (`uint8`, shape: the NumPy shape with the last axis replaced by its bytes per row).
    pub fn tensor(&self, info: &GgufTensorInfo) -> Result<Array> {
        let (start, len, dtype, shape) = tensor_layout(&self.path, self.data_offset, info)?;
        array_from_map(&self.path, &self.map, start, len, dtype, shape).map_err(|e| e.context(format!("tensor '{}'", info.name)))
    }

    /// The raw little-endian bytes of one tensor's data (its ggml blocks for quantized types).
    pub fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<&[u8]> {
        let (start, len, _, _) = tensor_layout(&self.path, self.data_offset, info)?;
        start
            .checked_add(len)
            .and_then(|end| self.map.get(start..end))
            .ok_or_else(|| io_err(&self.path, format!("tensor '{}': data is beyond the file size {}", info.name, self.map.len())))
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> Result<Vec<(String, Array)>> {
        self.tensors.iter().map(|t| Ok((t.name.clone(), self.tensor(t)?))).collect()
    }
}

struct Header {
    version: u32,
    metadata: GgufMetadata,
    tensors: Vec<GgufTensorInfo>,
    alignment: u64,
    data_offset: u64,
}

/// Parses and validates everything before the data section; every tensor's data range is
/// checked against the file length.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let mut r = Reader { path, b: bytes, pos: 0 };
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err(io_err(path, "not a GGUF file (bad magic)"));
    }
    r.pos = 4;
    let version = r.u32("version")?;
    if version != 2 && version != 3 {
        return Err(io_err(path, format!("unsupported GGUF version {version} (2 and 3 are supported)")));
    }
    let n_tensors = r.u64("tensor count")?;
    let n_kv = r.u64("metadata count")?;
    // Each entry takes more than one byte, so counts above the bytes left are lies.
    if n_kv > r.remaining() || n_tensors > r.remaining() {
        return Err(io_err(path, format!("truncated GGUF header: {n_kv} metadata entries and {n_tensors} tensors cannot fit the file")));
    }
    let mut metadata = Vec::with_capacity(n_kv.min(PREALLOC_MAX) as usize);
    for _ in 0..n_kv {
        let key = r.string("metadata key")?;
        let t = r.u32(&key)?;
        let ty = GgufType::from_u32(t).ok_or_else(|| io_err(path, format!("metadata '{key}': unknown value type {t}")))?;
        let v = r.value(ty, &key, 0)?;
        metadata.push((key, v));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        Some((_, v)) => v
            .as_u64()
            .filter(|a| *a > 0 && a.is_power_of_two() && *a <= u32::MAX as u64)
            .ok_or_else(|| io_err(path, format!("metadata 'general.alignment': invalid value {v:?} (a power of two is required)")))?,
        None => DEFAULT_ALIGNMENT,
    };
    let mut tensors = Vec::with_capacity(n_tensors.min(PREALLOC_MAX) as usize);
    for _ in 0..n_tensors {
        let name = r.string("tensor name")?;
        let nd = r.u32(&name)?;
        if nd > 8 {
            return Err(io_err(path, format!("tensor '{name}': {nd} dimensions (at most 8)")));
        }
        let mut dims = Vec::with_capacity(nd as usize);
        for _ in 0..nd {
            dims.push(r.u64(&name)?);
        }
        let ggml_type = r.u32(&name)?;
        let offset = r.u64(&name)?;
        let (blk, bsz) =
            ggml_block_size(ggml_type).ok_or_else(|| io_err(path, format!("tensor '{name}': unknown ggml type {ggml_type}")))?;
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0 % blk != 0 {
            return Err(io_err(path, format!("tensor '{name}': first dimension {ne0} is not a multiple of the block size {blk}")));
        }
        let numel = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).filter(|&n| n <= isize::MAX as u64);
        let nbytes = numel.and_then(|n| (n / blk).checked_mul(bsz)).filter(|&b| b <= isize::MAX as u64);
        let nbytes = nbytes.ok_or_else(|| io_err(path, format!("tensor '{name}': dims {dims:?} are too large")))?;
        if offset % alignment != 0 {
            return Err(io_err(path, format!("tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}")));
        }
        tensors.push(GgufTensorInfo { name, dims, ggml_type, offset, nbytes });
    }
    let data_offset = (r.pos as u64).div_ceil(alignment).checked_mul(alignment).ok_or_else(|| io_err(path, "bad alignment"))?;
    let file_len = bytes.len() as u64;
    for t in &tensors {
        let end = data_offset.checked_add(t.offset).and_then(|s| s.checked_add(t.nbytes));
        if end.is_none_or(|e| e > file_len) {
            return Err(io_err(
                path,
                format!(
                    "tensor '{}': data at offset {} ({} bytes) is beyond the file size {file_len} (truncated file?)",
                    t.name, t.offset, t.nbytes
                ),
            ));
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}

/// Where a tensor's bytes are and how they load: (absolute start, length, dtype, shape).
fn tensor_layout(path: &Path, data_offset: u64, info: &GgufTensorInfo) -> Result<(usize, usize, Dtype, Vec<usize>)> {
    let bad = |m: &str| io_err(path, format!("tensor '{}': {m}", info.name));
    let start = data_offset.checked_add(info.offset).and_then(|s| usize::try_from(s).ok()).ok_or_else(|| bad("data offset overflows"))?;
    let len = usize::try_from(info.nbytes).map_err(|_| bad("too large"))?;
    let dims: Vec<usize> =
        info.dims.iter().map(|&d| usize::try_from(d)).collect::<std::result::Result<_, _>>().map_err(|_| bad("dims too large"))?;
    if let Some(dt) = ggml_plain_dtype(info.ggml_type) {
        return Ok((start, len, dt, dims.into_iter().rev().collect()));
    }
    // Quantized: keep the outer axes, the innermost (ggml ne[0]) becomes its bytes per row so a
    // later dequantization layer can decode each row's blocks.
    let (blk, bsz) = ggml_block_size(info.ggml_type).ok_or_else(|| bad(&format!("unknown ggml type {}", info.ggml_type)))?;
    let ne0 = dims.first().copied().unwrap_or(1) as u64;
    let row = usize::try_from((ne0 / blk).checked_mul(bsz).ok_or_else(|| bad("row too large"))?).map_err(|_| bad("row too large"))?;
    let mut shape: Vec<usize> = dims.iter().skip(1).rev().copied().collect();
    shape.push(row);
    Ok((start, len, Dtype::Uint8, shape))
}

/// Parses GGUF bytes (copies the tensor data): tensors in file order and the metadata.
pub fn load_gguf_bytes(bytes: &[u8]) -> Result<(Vec<(String, Array)>, GgufMetadata)> {
    let path = Path::new("<gguf bytes>");
    let h = parse_header(path, bytes)?;
    let mut out = Vec::with_capacity(h.tensors.len());
    for t in &h.tensors {
        let (start, len, dtype, shape) = tensor_layout(path, h.data_offset, t)?;
        let data = start
            .checked_add(len)
            .and_then(|e| bytes.get(start..e))
            .ok_or_else(|| io_err(path, format!("tensor '{}': data out of range", t.name)))?;
        out.push((t.name.clone(), array_from_le_bytes(path, data, dtype, shape).map_err(|e| e.context(format!("tensor '{}'", t.name)))?));
    }
    Ok((out, h.metadata))
}

/// Loads every tensor of a GGUF file and its metadata.
pub fn load_gguf(path: impl AsRef<Path>) -> Result<(Vec<(String, Array)>, GgufMetadata)> {
    let f = GgufFile::open(path)?;
    let t = f.tensors()?;
    Ok((t, f.metadata))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) -> Result<()> {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.push(*x as u8),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Array(et, items) => {
            out.extend_from_slice(&(*et as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                if it.ty() != *et {
                    return Err(Error::io(format!("[save_gguf] array of {et:?} holds a {:?}", it.ty())));
                }
                put_value(out, it)?;
            }
        }
    }
    Ok(())
}

/// Writes a GGUF version 3 file. Tensors must be float32/float16/bfloat16/float64 or
/// int8/int16/int32/int64. `general.alignment` in `metadata` sets the alignment (default 32).
pub fn save_gguf(path: impl AsRef<Path>, tensors: &[(impl AsRef<str>, Array)], metadata: &[(String, GgufValue)]) -> Result<()> {
    let path = path.as_ref();
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        Some((_, v)) => v
            .as_u64()
            .filter(|a| *a > 0 && a.is_power_of_two())
            .ok_or_else(|| io_err(path, format!("[save_gguf] invalid general.alignment {v:?}")))? as usize,
        None => DEFAULT_ALIGNMENT as usize,
    };
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut out, k);
        out.extend_from_slice(&(v.ty() as u32).to_le_bytes());
        put_value(&mut out, v).map_err(|e| e.context(path.display()))?;
    }
    let mut datas = Vec::with_capacity(tensors.len());
    let mut off = 0usize;
    for (name, a) in tensors {
        let name = name.as_ref();
        let t = ggml_type_of(a.dtype())
            .ok_or_else(|| io_err(path, format!("[save_gguf] tensor '{name}': dtype {} has no GGUF type", a.dtype())))?;
        let bytes = array_le_bytes(a)?;
        put_str(&mut out, name);
        out.extend_from_slice(&(a.ndim() as u32).to_le_bytes());
        for &d in a.shape().iter().rev() {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&(off as u64).to_le_bytes());
        off = (off + bytes.len()).div_ceil(alignment) * alignment;
        datas.push(bytes);
    }
    out.resize(out.len().div_ceil(alignment) * alignment, 0);
    for d in datas {
        let n = d.len();
        out.extend_from_slice(&d);
        out.resize(out.len() + (n.div_ceil(alignment) * alignment - n), 0);
    }
    std::fs::write(path, out).map_err(|e| io_err(path, format!("cannot write: {e}")))
}
