//! File formats: `.npy`, `.npz`, safetensors, GGUF.
//!
//! Every reader validates lengths and offsets with checked arithmetic and returns an
//! [`ErrorKind::Io`](crate::ErrorKind::Io) error naming the file and the problem on malformed
//! input; none of them panics on corrupt data.

pub mod api;
pub mod gguf;
pub mod gguf_affine;
pub mod gguf_blocks;
pub mod npy;
pub mod npz;
pub mod safetensors;

pub use api::{load, load_with_metadata, save, save_gguf_file, save_safetensors_file, savez, savez_compressed, Loaded, Metadata};
pub use gguf::{
    ggml_block_size, ggml_plain_dtype, load_gguf, load_gguf_bytes, save_gguf, GgufFile, GgufMetadata, GgufTensorInfo, GgufType, GgufValue,
};
pub use gguf_affine::{ggml_affine_bits, ggml_to_affine, gguf_affine, AffineWeights};
pub use gguf_blocks::{dequantize_ggml, dequantize_ggml_into, ggml_can_dequantize, ggml_type_name};
pub use npy::{load_npy, load_npy_bytes, save_npy, save_npy_bytes};
pub use npz::{load_npz, load_npz_bytes, save_npz};
pub use safetensors::{
    load_safetensors, load_safetensors_bytes, save_safetensors, save_safetensors_bytes, st_name as safetensors_dtype_name,
};

use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::graph::Data;
use crate::memory::Buffer;
use std::path::Path;
use std::sync::Arc;

/// An I/O error whose message names the file.
#[track_caller]
pub(crate) fn io_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::io(format!("{}: {msg}", path.display()))
}

/// Element count of `shape`, `None` on overflow.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Byte size of an array of `shape` and `dtype`, `None` on overflow (also when the element
/// count would not fit an `isize` stride).
pub(crate) fn checked_nbytes(shape: &[usize], dtype: Dtype) -> Option<usize> {
    let n = checked_numel(shape)?;
    // An empty array may still have huge other dims; their strides must not overflow either.
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    if nonzero > isize::MAX as usize {
        return None;
    }
    let b = n.checked_mul(dtype.size())?;
    if b > isize::MAX as usize {
        return None;
    }
    Some(b)
}

pub(crate) fn dtype_align(dtype: Dtype) -> usize {
    crate::dispatch!(dtype, T => std::mem::align_of::<T>())
}

/// The row-major little-endian bytes of an array (evaluates it).
pub fn array_le_bytes(a: &Array) -> Result<Vec<u8>> {
    let d = a.data()?.to_row_contiguous()?;
    let isz = d.dtype.size();
    let n = d.size();
    if n == 0 {
        return Ok(Vec::new());
    }
    let start = d.offset as usize * isz;
    let bytes = &d.buffer.bytes()[start..start + n * isz];
    let mut v = bytes.to_vec();
    if cfg!(target_endian = "big") {
        swap_elements(&mut v, d.dtype);
    }
    Ok(v)
}

/// Reverses the byte order of every scalar (complex: each half) in place.
pub(crate) fn swap_elements(bytes: &mut [u8], dtype: Dtype) {
    let w = if dtype == Dtype::Complex64 { 4 } else { dtype.size() };
    if w > 1 {
        for c in bytes.chunks_exact_mut(w) {
            c.reverse();
        }
    }
}

/// A dense array copied from little-endian `bytes` (exactly `shape`×`dtype` long).
pub(crate) fn array_from_le_bytes(path: &Path, bytes: &[u8], dtype: Dtype, shape: Vec<usize>) -> Result<Array> {
    let nbytes = checked_nbytes(&shape, dtype).ok_or_else(|| io_err(path, format!("shape {shape:?} is too large")))?;
    if bytes.len() != nbytes {
        return Err(io_err(path, format!("shape {shape:?} of {dtype} needs {nbytes} bytes of data, found {}", bytes.len())));
    }
    let mut buf = Buffer::alloc(nbytes)?;
    buf.bytes_mut().copy_from_slice(bytes);
    if dtype == Dtype::Bool {
        for b in buf.bytes_mut() {
            *b = (*b != 0) as u8;
        }
    }
    if cfg!(target_endian = "big") {
        swap_elements(buf.bytes_mut(), dtype);
    }
    Ok(Array::from_data(Data::dense(buf, shape, dtype)))
}

/// A dense array over `[offset, offset+len)` of a mapped file: zero-copy when the data is
/// aligned for the dtype (and, for bool, holds only 0/1), copied otherwise.
pub(crate) fn array_from_map(
    path: &Path,
    map: &Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
    dtype: Dtype,
    shape: Vec<usize>,
) -> Result<Array> {
    let end = offset.checked_add(len).ok_or_else(|| io_err(path, "data offsets overflow"))?;
    if end > map.len() {
        return Err(io_err(path, format!("data range {offset}..{end} is beyond the file size {}", map.len())));
    }
    let bytes = &map[offset..end];
    let aligned = (bytes.as_ptr() as usize) % dtype_align(dtype) == 0;
    let bool_ok = dtype != Dtype::Bool || bytes.iter().all(|&b| b <= 1);
    let nbytes = checked_nbytes(&shape, dtype).ok_or_else(|| io_err(path, format!("shape {shape:?} is too large")))?;
    if nbytes != len {
        return Err(io_err(path, format!("shape {shape:?} of {dtype} needs {nbytes} bytes of data, found {len}")));
    }
    if aligned && bool_ok && cfg!(target_endian = "little") && len > 0 {
        let buf = Buffer::mapped(map.clone(), offset, len).map_err(|e| e.context(path.display()))?;
        return Ok(Array::from_data(Data::dense(buf, shape, dtype)));
    }
    array_from_le_bytes(path, bytes, dtype, shape)
}

/// Memory-maps a whole file (empty files give an empty map).
pub(crate) fn map_file(path: &Path) -> Result<Arc<memmap2::Mmap>> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, format!("cannot open: {e}")))?;
    // SAFETY: the mapping is read-only; like every mmap-based loader we assume the file is not
    // truncated by another process while arrays use it.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_err(path, format!("cannot map: {e}")))?;
    Ok(Arc::new(map))
}
