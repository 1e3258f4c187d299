//! GGUF block decoding and the lossless ggml -> MLX affine mapping, against the `gguf` Python
//! package and `mlx` (fixtures from scripts/gen_gguf_fixtures.py).

use half::{bf16, f16};
use oxmx_core::io::{dequantize_ggml, dequantize_ggml_into, ggml_to_affine, load_npz, AffineWeights, GgufFile};
use oxmx_core::{Array, Dtype};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> BTreeMap<String, Array> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name);
    load_npz(&p).unwrap_or_else(|e| panic!("{} (run scripts/gen_gguf_fixtures.py): {e}", p.display())).into_iter().collect()
}

fn u8s(a: &Array) -> Vec<u8> {
    a.to_vec::<u8>().unwrap()
}

fn scalar_u32(a: &Array) -> u32 {
    a.to_vec::<u32>().unwrap()[0]
}

/// The cases of a fixture: names before the first '.'.
fn cases(f: &BTreeMap<String, Array>) -> Vec<String> {
    let mut v: Vec<String> = f.keys().filter_map(|k| k.strip_suffix(".type").map(str::to_string)).collect();
    v.dedup();
    v
}

#[test]
fn decode_matches_gguf_bit_for_bit() {
    let f = fixture("decode.npz");
    let mut checked = 0;
    for case in cases(&f) {
        let Some(exp) = f.get(&format!("{case}.expected")) else { continue };
        let ty = scalar_u32(&f[&format!("{case}.type")]);
        let blocks = u8s(&f[&format!("{case}.blocks")]);
        let want = exp.to_vec::<f32>().unwrap();
        let got = dequantize_ggml(ty, &blocks, exp.shape(), Dtype::Float32).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(got.shape(), exp.shape(), "{case}");
        assert_eq!(got.dtype(), Dtype::Float32);
        let got = got.to_vec::<f32>().unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{case}[{i}]: {g} vs gguf {w}");
        }
        // The flat API decodes the same.
        let mut flat = vec![0f32; want.len()];
        dequantize_ggml_into(ty, &blocks, &mut flat).unwrap();
        assert!(flat.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{case} (flat)");
        // Narrow outputs round gguf's f32 values once, to nearest even.
        let h = dequantize_ggml(ty, &blocks, exp.shape(), Dtype::Float16).unwrap().to_vec::<f16>().unwrap();
        assert!(h.iter().zip(&want).all(|(a, b)| a.to_bits() == f16::from_f32(*b).to_bits()), "{case} (f16)");
        let b = dequantize_ggml(ty, &blocks, exp.shape(), Dtype::Bfloat16).unwrap().to_vec::<bf16>().unwrap();
        assert!(b.iter().zip(&want).all(|(a, b)| a.to_bits() == bf16::from_f32(*b).to_bits()), "{case} (bf16)");
        checked += 1;
    }
    // 9 quantizable types x 4 shapes + 7 raw-block types x 2.
    assert_eq!(checked, 9 * 4 + 7 * 2);
}

#[test]
fn bad_input_gives_clear_errors() {
    let f = fixture("decode.npz");
    let blocks = u8s(&f["Q4_0_0.blocks"]); // shape (3, 64): 3 rows of 2 blocks of 18 bytes
    let err = |r: oxmx_core::Result<Array>| r.expect_err("must fail").to_string();
    let e = err(dequantize_ggml(2, &blocks[..blocks.len() - 1], &[3, 64], Dtype::Float32));
    assert!(e.contains("truncated data") && e.contains("Q4_0"), "{e}");
    let e = err(dequantize_ggml(2, &blocks, &[2, 64], Dtype::Float32));
    assert!(e.contains("trailing data"), "{e}");
    let e = err(dequantize_ggml(2, &blocks[..54], &[3, 48], Dtype::Float32));
    assert!(e.contains("row length 48") && e.contains("block size 32"), "{e}");
    let e = err(dequantize_ggml(2, &blocks, &[3, 64], Dtype::Int32));
    assert!(e.contains("int32"), "{e}");
    let iq = u8s(&f["IQ2_XXS_0.blocks"]);
    let e = err(dequantize_ggml(16, &iq, &[1, 256], Dtype::Float32));
    assert!(e.contains("unsupported ggml type IQ2_XXS"), "{e}");
    let e = err(dequantize_ggml(35, &[0u8; 66], &[1, 256], Dtype::Float32));
    assert!(e.contains("unsupported ggml type TQ2_0"), "{e}");
    let e = err(dequantize_ggml(9, &[0u8; 40], &[1, 32], Dtype::Float32));
    assert!(e.contains("Q8_1"), "{e}");
    let e = err(dequantize_ggml(33, &[0u8; 4], &[1], Dtype::Float32));
    assert!(e.contains("unknown ggml type id 33"), "{e}");
    let mut out = vec![0f32; 63];
    assert!(dequantize_ggml_into(2, &blocks[..36], &mut out).is_err());
    // The mapping validates the same way.
    let e = ggml_to_affine(2, &blocks[..blocks.len() - 1], &[3, 64]).expect_err("truncated").to_string();
    assert!(e.contains("truncated data"), "{e}");
    let e = ggml_to_affine(2, &blocks[..54], &[3, 48]).expect_err("row").to_string();
    assert!(e.contains("row length 48"), "{e}");
    assert!(ggml_to_affine(12, &[0u8; 144], &[1, 256]).unwrap().is_none(), "K-quants have no affine mapping");
}

/// A minimal GGUF v3 file holding one tensor of raw data.
fn gguf_file(name: &str, dims: &[u64], ggml_type: u32, data: &[u8]) -> PathBuf {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes()); // tensors
    b.extend_from_slice(&0u64.to_le_bytes()); // metadata
    b.extend_from_slice(&(name.len() as u64).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&ggml_type.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.extend_from_slice(data);
    let p = std::env::temp_dir().join(format!("oxmx_gguf_quant_{}_{name}.gguf", std::process::id()));
    std::fs::write(&p, b).unwrap();
    p
}

#[test]
fn gguf_file_dequantize_and_affine() {
    let f = fixture("decode.npz");
    let blocks = u8s(&f["Q4_1_1.blocks"]); // shape (2, 2, 96)
    let want = f["Q4_1_1.expected"].to_vec::<f32>().unwrap();
    let p = gguf_file("w", &[96, 2, 2], 3, &blocks);
    let g = GgufFile::open(&p).unwrap();
    let info = &g.tensors[0];
    let a = g.dequantize(info, Dtype::Float32).unwrap();
    assert_eq!(a.shape(), &[2, 2, 96]);
    assert!(a.to_vec::<f32>().unwrap().iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()));
    let w = g.affine(info).unwrap().expect("Q4_1 maps");
    assert_eq!(w.wq.shape(), &[2, 2, 12]);
    assert_eq!(w.scales.shape(), &[2, 2, 3]);
    assert_eq!(affine_dequant(&w), want);
    std::fs::remove_file(&p).ok();

    let iq = u8s(&f["IQ2_XXS_0.blocks"]);
    let p = gguf_file("blk.0.attn_q.weight", &[256, 1], 16, &iq);
    let g = GgufFile::open(&p).unwrap();
    let e = g.dequantize(&g.tensors[0], Dtype::Float32).expect_err("IQ2_XXS").to_string();
    assert!(e.contains("unsupported ggml type IQ2_XXS in tensor 'blk.0.attn_q.weight'"), "{e}");
    assert!(g.affine(&g.tensors[0]).unwrap().is_none());
    std::fs::remove_file(&p).ok();
}

/// MLX's `dequantize` written out: codes from each row's little-endian bit stream,
/// `scale * q + bias` in f32 (the scales widened from f16 when they are f16).
fn affine_dequant(w: &AffineWeights) -> Vec<f32> {
    let words = w.wq.to_vec::<u32>().unwrap();
    let to32 = |a: &Array| -> Vec<f32> {
        match a.dtype() {
            Dtype::Float16 => a.to_vec::<f16>().unwrap().iter().map(|x| x.to_f32()).collect(),
            _ => a.to_vec::<f32>().unwrap(),
        }
    };
    let (s, b) = (to32(&w.scales), to32(&w.biases));
    let bits = w.bits as usize;
    let wpr = *w.wq.shape().last().unwrap();
    let cols = wpr * 32 / bits;
    let rows = words.len() / wpr;
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &words[r * wpr..(r + 1) * wpr];
        for i in 0..cols {
            let bit = i * bits;
            let lo = row[bit / 32] as u64;
            let hi = row.get(bit / 32 + 1).copied().unwrap_or(0) as u64;
            let q = (((hi << 32) | lo) >> (bit % 32)) & ((1 << bits) - 1);
            let g = r * (cols / w.group_size) + i / w.group_size;
            out.push(s[g] * q as f32 + b[g]);
        }
    }
    out
}

#[test]
fn affine_mapping_matches_mlx_layout() {
    let f = fixture("affine.npz");
    let mut checked = 0;
    let mut f16_cases = 0;
    for case in cases(&f) {
        let ty = scalar_u32(&f[&format!("{case}.type")]);
        let blocks = u8s(&f[&format!("{case}.blocks")]);
        let (ewq, es, eb) = (&f[&format!("{case}.wq")], &f[&format!("{case}.scales")], &f[&format!("{case}.biases")]);
        let mut shape = es.shape().to_vec();
        *shape.last_mut().unwrap() *= 32;
        let w = ggml_to_affine(ty, &blocks, &shape).unwrap().unwrap_or_else(|| panic!("{case}: no mapping"));
        assert_eq!(w.bits, scalar_u32(&f[&format!("{case}.bits")]), "{case}");
        assert_eq!(w.group_size, 32);
        assert_eq!(w.wq.shape(), ewq.shape(), "{case}");
        assert_eq!(w.wq.to_vec::<u32>().unwrap(), ewq.to_vec::<u32>().unwrap(), "{case}: packed words");
        assert_eq!(w.scales.dtype(), es.dtype(), "{case}: scales dtype");
        assert_eq!(w.biases.dtype(), eb.dtype(), "{case}: biases dtype");
        assert_eq!(w.scales.shape(), es.shape());
        for (got, exp) in [(&w.scales, es), (&w.biases, eb)] {
            let eq = match exp.dtype() {
                Dtype::Float16 => {
                    f16_cases += 1;
                    got.to_vec::<f16>().unwrap().iter().zip(exp.to_vec::<f16>().unwrap()).all(|(a, b)| a.to_bits() == b.to_bits())
                }
                _ => got.to_vec::<f32>().unwrap().iter().zip(exp.to_vec::<f32>().unwrap()).all(|(a, b)| a.to_bits() == b.to_bits()),
            };
            assert!(eq, "{case}: scales/biases bits");
        }
        // And its dequantization equals the exact ggml decoding (== : -0.0 and +0.0 are equal).
        let dec = dequantize_ggml(ty, &blocks, &shape, Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(affine_dequant(&w), dec, "{case}");
        checked += 1;
    }
    assert_eq!(checked, 5 * 3 + 1);
    assert!(f16_cases >= 6, "the f16 path must be exercised ({f16_cases})");
}

fn model_path() -> Option<PathBuf> {
    let dir = std::env::var_os("OXMX_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/oxmx/models")))?;
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    p.exists().then_some(p)
}

#[test]
fn real_model_decodes_and_maps() {
    let Some(path) = model_path() else {
        eprintln!("skipped: SmolLM2-135M-Instruct.Q4_1.gguf not found in $OXMX_MODELS_DIR or ~/.cache/oxmx/models");
        return;
    };
    let f = fixture("model.npz");
    let g = GgufFile::open(&path).unwrap();
    let t0 = std::time::Instant::now();
    let all = g.dequantize_all(Dtype::Float32).unwrap();
    eprintln!("decoded {} tensors in {:.3} s", all.len(), t0.elapsed().as_secs_f64());
    assert_eq!(all.len(), g.tensors.len());
    let mut sampled = 0;
    let mut mapped = 0;
    for (info, (name, a)) in g.tensors.iter().zip(&all) {
        assert_eq!(a.shape(), info.shape().as_slice(), "{name}");
        let vals = a.to_vec::<f32>().unwrap();
        if let Some(idx) = f.get(&format!("{name}.idx")) {
            let want = f[&format!("{name}.vals")].to_vec::<f32>().unwrap();
            for (i, w) in idx.to_vec::<i64>().unwrap().iter().zip(&want) {
                assert_eq!(vals[*i as usize].to_bits(), w.to_bits(), "{name}[{i}]");
            }
            let sum: f64 = vals.iter().map(|&x| x as f64).sum();
            let want_sum = f[&format!("{name}.sum")].to_vec::<f64>().unwrap()[0];
            assert!((sum - want_sum).abs() <= 1e-9 * want_sum.abs().max(1.0), "{name}: sum {sum} vs {want_sum}");
            sampled += 1;
        }
        if let Some(w) = g.affine(info).unwrap() {
            assert_eq!(affine_dequant(&w), vals, "{name}: affine mapping");
            mapped += 1;
        }
    }
    assert_eq!(sampled, 5);
    assert_eq!(mapped, 211, "210 Q4_1 tensors and one Q8_0");
}
