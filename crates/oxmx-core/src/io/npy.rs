//! NumPy `.npy` reading and writing (format versions 1.0, 2.0 and 3.0).

use super::{array_from_le_bytes, array_le_bytes, checked_nbytes, io_err, swap_elements};
use crate::array::Array;
use crate::dtype::Dtype;
use crate::error::Result;
use crate::graph::Data;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// NumPy's `descr` string of a dtype (little-endian). NumPy has no bfloat16: like MLX we write it
/// as the 2-byte void type `<V2` (NumPy loads it as raw `V2`, MLX and oxmx as bfloat16).
pub(crate) fn descr_of(dtype: Dtype) -> Option<&'static str> {
    Some(match dtype {
        Dtype::Bool => "|b1",
        Dtype::Uint8 => "|u1",
        Dtype::Int8 => "|i1",
        Dtype::Uint16 => "<u2",
        Dtype::Int16 => "<i2",
        Dtype::Uint32 => "<u4",
        Dtype::Int32 => "<i4",
        Dtype::Uint64 => "<u8",
        Dtype::Int64 => "<i8",
        Dtype::Float16 => "<f2",
        Dtype::Float32 => "<f4",
        Dtype::Float64 => "<f8",
        Dtype::Complex64 => "<c8",
        Dtype::Bfloat16 => "<V2",
    })
}

/// Parses a `descr` into (dtype, big_endian).
fn parse_descr(d: &str) -> Option<(Dtype, bool)> {
    let (order, code) = match d.as_bytes().first()? {
        b'<' | b'|' | b'=' => (false, &d[1..]),
        b'>' => (true, &d[1..]),
        _ => (false, d),
    };
    let dt = match code {
        "b1" | "?" => Dtype::Bool,
        "u1" | "B" => Dtype::Uint8,
        "i1" | "b" => Dtype::Int8,
        "u2" => Dtype::Uint16,
        "i2" => Dtype::Int16,
        "u4" => Dtype::Uint32,
        "i4" => Dtype::Int32,
        "u8" => Dtype::Uint64,
        "i8" => Dtype::Int64,
        "f2" | "e" => Dtype::Float16,
        "f4" | "f" => Dtype::Float32,
        "f8" | "d" => Dtype::Float64,
        "c8" | "F" => Dtype::Complex64,
        "V2" => Dtype::Bfloat16,
        _ => return None,
    };
    Some((dt, order))
}

/// Serialises an array as `.npy` bytes.
pub fn save_npy_bytes(a: &Array) -> Result<Vec<u8>> {
    let descr = descr_of(a.dtype()).ok_or_else(|| crate::error::Error::io(format!("[save_npy] {} has no NumPy dtype", a.dtype())))?;
    let data = array_le_bytes(a)?;
    let shape = match a.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Total header (magic + version + length field + dict + padding + '\n') is a multiple of 64.
    let v1_total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let (version, len_field) = if v1_total - 10 <= u16::MAX as usize { (1u8, 2usize) } else { (2u8, 4usize) };
    let prefix = MAGIC.len() + 2 + len_field;
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let hlen = total - prefix;
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if len_field == 2 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(&data);
    Ok(out)
}

/// Saves an array as a `.npy` file.
pub fn save_npy(path: impl AsRef<Path>, a: &Array) -> Result<()> {
    let path = path.as_ref();
    let bytes = save_npy_bytes(a).map_err(|e| e.context(path.display()))?;
    std::fs::write(path, bytes).map_err(|e| io_err(path, format!("cannot write: {e}")))
}

/// Loads a `.npy` file.
pub fn load_npy(path: impl AsRef<Path>) -> Result<Array> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, format!("cannot read: {e}")))?;
    parse_npy(path, &bytes)
}

/// Parses `.npy` bytes.
pub fn load_npy_bytes(bytes: &[u8]) -> Result<Array> {
    parse_npy(Path::new("<npy bytes>"), bytes)
}

pub(crate) fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Array> {
    if bytes.len() < 8 || &bytes[..6] != MAGIC {
        return Err(io_err(path, "not a .npy file (bad magic)"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => {
            if bytes.len() < 10 {
                return Err(io_err(path, "truncated .npy header"));
            }
            (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize)
        }
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(io_err(path, "truncated .npy header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12usize)
        }
        v => return Err(io_err(path, format!("unsupported .npy format version {v}.{}", bytes[7]))),
    };
    let end = start.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(|| io_err(path, "truncated .npy header"))?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| io_err(path, "the .npy header is not valid text"))?;
    let h = parse_header(header).map_err(|m| io_err(path, format!("malformed .npy header ({m}): {}", header.trim_end())))?;
    let (dtype, big) = parse_descr(&h.descr).ok_or_else(|| io_err(path, format!("unsupported .npy dtype '{}'", h.descr)))?;
    let nbytes = checked_nbytes(&h.shape, dtype).ok_or_else(|| io_err(path, format!("shape {:?} is too large", h.shape)))?;
    let body = &bytes[end..];
    if body.len() < nbytes {
        return Err(io_err(path, format!("truncated data: shape {:?} of {dtype} needs {nbytes} bytes, found {}", h.shape, body.len())));
    }
    let body = &body[..nbytes];
    let file_shape: Vec<usize> = if h.fortran { h.shape.iter().rev().copied().collect() } else { h.shape.clone() };
    let arr = if big {
        let mut v = body.to_vec();
        swap_elements(&mut v, dtype);
        array_from_le_bytes(path, &v, dtype, file_shape)?
    } else {
        array_from_le_bytes(path, body, dtype, file_shape)?
    };
    if h.fortran && h.shape.len() > 1 {
        // The data is the row-major layout of the reversed shape: a transposed view.
        let d = arr.data()?;
        let strides: Vec<isize> = d.strides.iter().rev().copied().collect();
        return Ok(Array::from_data(Data::view(&d, h.shape, strides, 0)));
    }
    Ok(arr)
}

struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of a `.npy` header.
fn parse_header(s: &str) -> std::result::Result<Header, String> {
    let mut p = Lexer { s: s.as_bytes(), i: 0 };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => descr = Some(p.string()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            k => return Err(format!("unexpected key '{k}'")),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    Ok(Header {
        descr: descr.ok_or("missing 'descr'")?,
        fortran: fortran.ok_or("missing 'fortran_order'")?,
        shape: shape.ok_or("missing 'shape'")?,
    })
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", c as char, self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a string at {}", self.i)),
        };
        self.i += 1;
        let st = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err("unterminated string".into());
        }
        let out = String::from_utf8_lossy(&self.s[st..self.i]).into_owned();
        self.i += 1;
        Ok(out)
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            Err(format!("expected True or False at {}", self.i))
        }
    }
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                break;
            }
            let st = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if st == self.i {
                return Err(format!("expected a dimension at {}", self.i));
            }
            let txt = std::str::from_utf8(&self.s[st..self.i]).map_err(|_| "bad dimension")?;
            let mut d: usize = txt.parse().map_err(|_| format!("dimension {txt} is too large"))?;
            // Python 2 era files may write `3L`.
            if self.eat(b'L') {
                d = d.checked_add(0).ok_or("bad dimension")?;
            }
            out.push(d);
            if out.len() > 64 {
                return Err("too many dimensions".into());
            }
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                break;
            }
        }
        Ok(out)
    }
}
