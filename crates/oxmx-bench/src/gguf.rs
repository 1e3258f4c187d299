//! GGUF block decoding throughput: a 4096x4096 tensor of random-but-valid blocks per type,
//! decoded to f32 (and, for the 32-element types, mapped onto MLX affine weights). The rate is
//! GB/s of packed (ggml) bytes; the floor is writing 4 bytes per element at copy bandwidth.

use crate::{report, time};
use oxmx_core::io::{dequantize_ggml, ggml_block_size, ggml_to_affine};
use oxmx_core::Dtype;

/// Random blocks with every f16 scale set to a sane finite value (0x2000 ~ 0.0078).
fn blocks(ggml_type: u32, n: usize) -> Vec<u8> {
    let (blk, bsz) = ggml_block_size(ggml_type).unwrap();
    let (blk, bsz) = (blk as usize, bsz as usize);
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut v: Vec<u8> = (0..n / blk * bsz)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    let scale_at: &[usize] = match ggml_type {
        2 | 6 | 8 => &[0],
        3 | 7 | 12 | 13 => &[0, 2],
        10 => &[80, 82],
        11 => &[108],
        14 => &[208],
        _ => &[],
    };
    for b in v.chunks_exact_mut(bsz) {
        for &at in scale_at {
            b[at..at + 2].copy_from_slice(&0x2000u16.to_le_bytes());
        }
    }
    v
}

pub fn run(want: &dyn Fn(&str) -> bool) {
    let (rows, cols) = (4096usize, 4096usize);
    for (ty, tname) in [(2u32, "q4_0"), (3, "q4_1"), (8, "q8_0"), (12, "q4_k"), (14, "q6_k")] {
        let name = format!("gguf_decode_{tname}_4096x4096");
        let aff = format!("gguf_affine_{tname}_4096x4096");
        if !want(&name) && !want(&aff) {
            continue;
        }
        let data = blocks(ty, rows * cols);
        if want(&name) {
            let secs = time(5, || dequantize_ggml(ty, &data, &[rows, cols], Dtype::Float32).unwrap());
            report(&name, secs, data.len() as f64, 0.0);
        }
        if want(&aff) && ggml_to_affine(ty, &data, &[rows, cols]).unwrap().is_some() {
            let secs = time(5, || ggml_to_affine(ty, &data, &[rows, cols]).unwrap().unwrap().wq);
            report(&aff, secs, data.len() as f64, 0.0);
        }
    }
}
