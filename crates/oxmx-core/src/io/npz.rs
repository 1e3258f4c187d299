//! NumPy `.npz` reading and writing: a zip archive of `.npy` members.

use super::io_err;
use super::npy::{parse_npy, save_npy_bytes};
use crate::array::Array;
use crate::error::Result;
use std::io::{Read, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

/// Saves named arrays as an `.npz` archive (`numpy.savez` / `numpy.savez_compressed`).
pub fn save_npz(path: impl AsRef<Path>, arrays: &[(impl AsRef<str>, Array)], compressed: bool) -> Result<()> {
    let path = path.as_ref();
    let file = std::fs::File::create(path).map_err(|e| io_err(path, format!("cannot create: {e}")))?;
    let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let method = if compressed { CompressionMethod::Deflated } else { CompressionMethod::Stored };
    for (name, a) in arrays {
        let name = name.as_ref();
        let bytes = save_npy_bytes(a).map_err(|e| e.context(format!("{}: array '{name}'", path.display())))?;
        let opts = SimpleFileOptions::default().compression_method(method).large_file(bytes.len() >= u32::MAX as usize);
        zw.start_file(format!("{name}.npy"), opts).map_err(|e| io_err(path, format!("cannot write '{name}': {e}")))?;
        zw.write_all(&bytes).map_err(|e| io_err(path, format!("cannot write '{name}': {e}")))?;
    }
    let mut inner = zw.finish().map_err(|e| io_err(path, format!("cannot finish the archive: {e}")))?;
    inner.flush().map_err(|e| io_err(path, format!("cannot write: {e}")))?;
    Ok(())
}

/// Loads every array of an `.npz` archive, in archive order; names lose their `.npy` suffix.
pub fn load_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Array)>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| io_err(path, format!("cannot open: {e}")))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    read_npz(path, std::io::BufReader::new(file), file_len)
}

/// Parses `.npz` bytes.
pub fn load_npz_bytes(bytes: &[u8]) -> Result<Vec<(String, Array)>> {
    read_npz(Path::new("<npz bytes>"), std::io::Cursor::new(bytes), bytes.len() as u64)
}

fn read_npz<R: Read + std::io::Seek>(path: &Path, reader: R, file_len: u64) -> Result<Vec<(String, Array)>> {
    let mut zr = zip::ZipArchive::new(reader).map_err(|e| io_err(path, format!("not a valid .npz (zip) archive: {e}")))?;
    let mut out = Vec::with_capacity(zr.len().min(file_len as usize / 22 + 1));
    for i in 0..zr.len() {
        let mut entry = zr.by_index(i).map_err(|e| io_err(path, format!("bad archive member {i}: {e}")))?;
        let full = entry.name().to_string();
        if entry.is_dir() {
            continue;
        }
        let name = full.strip_suffix(".npy").unwrap_or(&full).to_string();
        let declared = entry.size();
        // Stored members cannot be larger than the file; compressed ones are read as they come
        // (bounded by the declared size), so a lying header cannot force a huge allocation.
        let cap = if entry.compression() == CompressionMethod::Stored {
            declared.min(file_len)
        } else {
            declared.min(file_len.saturating_mul(4))
        };
        let mut bytes = Vec::with_capacity(cap as usize);
        (&mut entry).take(declared).read_to_end(&mut bytes).map_err(|e| io_err(path, format!("cannot read member '{full}': {e}")))?;
        if bytes.len() as u64 != declared {
            return Err(io_err(path, format!("member '{full}' is truncated ({} of {declared} bytes)", bytes.len())));
        }
        // Errors name the archive and the member.
        let member = format!("{} (member '{full}')", path.display());
        let a = parse_npy(Path::new(&member), &bytes)?;
        out.push((name, a));
    }
    Ok(out)
}
