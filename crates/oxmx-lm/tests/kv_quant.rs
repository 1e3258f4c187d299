//! The quantized KV cache (`--kv-bits`): quantized attention equals the fused SDPA on the
//! dequantized keys/values, the cache stores exactly `quantize(k)` across step boundaries, the
//! switch happens once the offset reaches `quantized_kv_start`, and on a model (random weights,
//! head_dim 64; and SmolLM2-135M when present) the logits stay close to the plain cache's.

use oxmx_core::fast::AttentionMask;
use oxmx_core::{fast, ops, random, Array, Dtype};
use oxmx_lm::bench::random_weights_model;
use oxmx_lm::cache::{
    make_prompt_cache, maybe_quantize_kv_cache, quantized_sdpa, FetchedKv, KVCache, KvCache, PromptCache, QuantizedKVCache, RotatingKVCache,
};
use oxmx_lm::config::ModelConfig;
use oxmx_lm::generate::{generate_ids, GenerateOptions};
use oxmx_lm::models::LanguageModel;
use oxmx_lm::sample::Sampler;

fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    let a = a.astype(Dtype::Float32).to_vec::<f32>().unwrap();
    let b = b.astype(Dtype::Float32).to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn rand(shape: &[usize], seed: u64) -> Array {
    random::normal(shape, Dtype::Float32, 0.0, 1.0, Some(&random::key(seed)))
}

fn deq(t: &[Array; 3], g: usize, b: usize) -> Array {
    ops::dequantize(&t[0], &t[1], Some(&t[2]), Some(g), Some(b), "affine", None)
}

#[test]
fn quantized_sdpa_matches_fused_sdpa_on_dequantized_kv() {
    for &(hq, hkv, l, s, bits) in &[(4, 2, 1, 37, 8), (4, 2, 5, 40, 4), (2, 2, 3, 64, 6), (8, 2, 6, 6, 8)] {
        let q = rand(&[1, hq, l, 64], 1);
        let k = rand(&[1, hkv, s, 64], 2);
        let v = rand(&[1, hkv, s, 64], 3);
        let qt = |x: &Array| {
            let (w, sc, b) = ops::quantize(x, Some(64), Some(bits), "affine");
            [w, sc, b.unwrap()]
        };
        let (kq, vq) = (qt(&k), qt(&v));
        let (kd, vd) = (deq(&kq, 64, bits), deq(&vq, 64, bits));
        let scale = 0.125;
        let masks = [
            AttentionMask::None,
            AttentionMask::Causal,
            // boolean [L, S]: drop every third key
            AttentionMask::Array(ops::not_equal(
                &ops::remainder(&(&ops::expand_dims(&ops::arange_n(s, Some(Dtype::Int32)), &[0]) + &ops::zeros(&[l, 1], Dtype::Int32)), 3),
                0,
            )),
        ];
        for m in &masks {
            let got = quantized_sdpa(&q, &kq, &vq, scale, m, 64, bits);
            let want = fast::scaled_dot_product_attention(&q, &kd, &vd, scale as f32, m.clone(), None);
            let d = max_abs_diff(&got, &want);
            assert!(d < 2e-5, "hq {hq} hkv {hkv} l {l} s {s} bits {bits} mask {m:?}: diff {d}");
        }
    }
}

#[test]
fn quantized_cache_stores_quantized_keys_across_steps() {
    let mut qc = QuantizedKVCache::new(64, 8);
    let mut plain = KVCache::new();
    let mut all_k = Vec::new();
    let mut all_v = Vec::new();
    // 300 positions in chunks that cross the 256-step boundary.
    for (i, n) in [100usize, 150, 1, 1, 48].into_iter().enumerate() {
        let k = rand(&[1, 2, n, 64], 10 + i as u64);
        let v = rand(&[1, 2, n, 64], 20 + i as u64);
        let FetchedKv::Quantized(q) = qc.update_and_fetch_kv(&k, &v) else { panic!("quantized cache fetched plain arrays") };
        plain.update_and_fetch(&k, &v);
        all_k.push(k);
        all_v.push(v);
        let off = qc.offset();
        assert_eq!(q.keys[0].shape(), &[1, 2, off, 16]);
        assert_eq!(q.keys[1].shape(), &[1, 2, off, 1]);
        let want_k = ops::concatenate(&all_k, 2);
        let want_v = ops::concatenate(&all_v, 2);
        let (wk, ws, wb) = ops::quantize(&want_k, Some(64), Some(8), "affine");
        assert_eq!(q.keys[0].to_vec::<u32>().unwrap(), wk.to_vec::<u32>().unwrap(), "packed keys at offset {off}");
        assert_eq!(max_abs_diff(&q.keys[1], &ws), 0.0);
        assert_eq!(max_abs_diff(&q.keys[2], &wb.unwrap()), 0.0);
        let (dk, dv) = q.dequantized();
        assert!(max_abs_diff(&dk, &want_k) < 0.03, "8-bit keys close to the originals");
        assert!(max_abs_diff(&dv, &want_v) < 0.03);
    }
    assert_eq!(qc.offset(), 300);
    assert_eq!(qc.trim(20), 20);
    assert_eq!(qc.offset(), 280);
    // The converted plain cache holds the same triples.
    let conv = plain.to_quantized(64, 8).unwrap().unwrap();
    assert_eq!(conv.class_name(), "QuantizedKVCache");
    assert_eq!(conv.offset(), 300);
}

#[test]
fn kv_quantization_errors_are_reported() {
    let mut c = QuantizedKVCache::new(64, 8);
    let x = ops::zeros(&[1, 2, 3, 16], Dtype::Float32);
    let (k, _) = c.update_and_fetch(&x, &x);
    let e = k.check().unwrap_err();
    assert!(e.message().contains("not divisible by the kv group size"), "{}", e.message());
    assert!(QuantizedKVCache::from_plain(Some((&x, &x)), 3, 48, 8).is_err());
    assert!(QuantizedKVCache::from_plain(Some((&x, &x)), 3, 32, 7).is_err());
    let r = RotatingKVCache::new(16, 4);
    assert!(r.to_quantized(64, 8).unwrap().is_err());
}

fn config(head_dim: usize) -> ModelConfig {
    ModelConfig::from_json_str(&format!(
        r#"{{"model_type": "llama", "hidden_size": 128, "num_hidden_layers": 2, "intermediate_size": 256,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": {head_dim}, "vocab_size": 300,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false}}"#
    ))
    .unwrap()
}

/// Teacher-forced comparison: the same tokens through a plain and a quantized cache; returns
/// (max |logprob difference|, fraction of positions with the same argmax).
fn compare(model: &dyn LanguageModel, tokens: &[u32], prompt_len: usize, bits: usize, group: usize) -> (f32, f64) {
    let mut plain: PromptCache = make_prompt_cache(model, None);
    let mut quant: PromptCache = make_prompt_cache(model, None);
    let ids = |s: &[u32]| Array::from_slice(&s.iter().map(|&t| t as i32).collect::<Vec<_>>(), &[1, s.len()]);
    let lp = |x: &Array| {
        let x = ops::squeeze(&ops::slice_range(x, &[0, x.shape()[1] as isize - 1, 0], &[1, x.shape()[1] as isize, 300]), &[0, 1]);
        &x - &ops::logsumexp(&x, -1isize, true)
    };
    let _ = model.forward(&ids(&tokens[..prompt_len]), Some(&mut plain[..]));
    let _ = model.forward(&ids(&tokens[..prompt_len]), Some(&mut quant[..]));
    maybe_quantize_kv_cache(&mut quant, Some(bits), group, 0).unwrap();
    assert!(quant.iter().all(|c| c.class_name() == "QuantizedKVCache"));
    let (mut worst, mut same, mut n) = (0.0f32, 0usize, 0usize);
    for t in &tokens[prompt_len..] {
        let a = lp(&model.forward(&ids(&[*t]), Some(&mut plain[..])));
        let b = lp(&model.forward(&ids(&[*t]), Some(&mut quant[..])));
        worst = worst.max(max_abs_diff(&a, &b));
        let am = ops::argmax(&a, None, false).item::<u32>().unwrap();
        let bm = ops::argmax(&b, None, false).item::<u32>().unwrap();
        same += (am == bm) as usize;
        n += 1;
    }
    (worst, same as f64 / n as f64)
}

#[test]
fn quantized_cache_tracks_the_plain_cache_on_a_model() {
    let model = random_weights_model(&config(64), 7).unwrap();
    let tokens: Vec<u32> = (0..72u32).map(|i| (i * 37 + 11) % 300).collect();
    for (bits, max_diff) in [(8usize, 0.02f32), (4, 0.3)] {
        let (d, agree) = compare(model.as_ref(), &tokens, 40, bits, 64);
        println!("random-weights llama (head_dim 64), kv_bits {bits}: max |logprob diff| {d:.5}, argmax agreement {:.3}", agree);
        assert!(d < max_diff, "kv_bits {bits}: logprob diff {d}");
    }
    let (d, agree) = compare(model.as_ref(), &tokens, 40, 8, 32);
    println!("random-weights llama (head_dim 64), kv_bits 8 group 32: max |logprob diff| {d:.5}, argmax agreement {agree:.3}");
}

#[test]
fn generation_switches_to_the_quantized_cache_at_the_start_offset() {
    let model = random_weights_model(&config(64), 3).unwrap();
    let prompt: Vec<u32> = (0..20u32).map(|i| (i * 13 + 5) % 300).collect();
    let run = |kv_bits: Option<usize>, start: usize, max_tokens: usize| {
        let mut cache = make_prompt_cache(model.as_ref(), None);
        let opts =
            GenerateOptions { max_tokens: Some(max_tokens), kv_bits, kv_group_size: 64, quantized_kv_start: start, ..Default::default() };
        let (ids, _) = generate_ids(model.as_ref(), &prompt, &mut cache, Sampler::greedy(), vec![], opts).unwrap();
        (ids, cache.iter().map(|c| c.class_name()).collect::<Vec<_>>(), cache[0].offset())
    };
    // The cache stays plain below the start offset (offset 20 + 4 generated < 30).
    let (a, classes, off) = run(Some(8), 30, 5);
    assert!(classes.iter().all(|c| *c == "KVCache"), "{classes:?}");
    assert_eq!(off, 24);
    let (plain, _, _) = run(None, 0, 5);
    assert_eq!(a, plain, "below quantized_kv_start the run is the plain one");
    // ... and switches once the offset reaches it.
    let (b, classes, _) = run(Some(8), 22, 12);
    assert!(classes.iter().all(|c| *c == "QuantizedKVCache"), "{classes:?}");
    let (plain, _, _) = run(None, 0, 12);
    let agree = a.iter().zip(&plain).filter(|(x, y)| x == y).count();
    println!("kv_bits 8 from offset 22: greedy {b:?} vs plain {plain:?} ({agree}/5 of the first equal)");
    // A rotating cache cannot be quantized: a clear error, no panic.
    let mut rot = make_prompt_cache(model.as_ref(), Some(16));
    let opts = GenerateOptions { max_tokens: Some(3), kv_bits: Some(8), ..Default::default() };
    let e = generate_ids(model.as_ref(), &prompt, &mut rot, Sampler::greedy(), vec![], opts).err().unwrap();
    assert!(e.message().contains("rotating"), "{}", e.message());
    // head_dim 16 cannot take group size 64.
    let small = random_weights_model(&config(16), 3).unwrap();
    let mut c = make_prompt_cache(small.as_ref(), None);
    let opts = GenerateOptions { max_tokens: Some(3), kv_bits: Some(8), ..Default::default() };
    let e = generate_ids(small.as_ref(), &prompt, &mut c, Sampler::greedy(), vec![], opts).err().unwrap();
    assert!(e.message().contains("head dimension"), "{}", e.message());
}

#[test]
fn smollm2_kv_bits_accuracy_when_present() {
    let dir = std::env::var_os("OXMX_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/oxmx/models")));
    let Some(path) = dir.map(|d| d.join("SmolLM2-135M-Instruct.Q4_1.gguf")).filter(|p| p.is_file()) else {
        eprintln!("skipping: SmolLM2-135M-Instruct.Q4_1.gguf not found");
        return;
    };
    let loaded = oxmx_lm::loader::load(&path, &Default::default()).unwrap();
    let tok = oxmx_lm::Tokenizer::from_path(&path).unwrap();
    let text = "The quick brown fox jumps over the lazy dog. Rust is a systems programming language that runs blazingly fast, \
                prevents segfaults and guarantees thread safety. It was first released in 2015.";
    let prompt = tok.encode(text, true).unwrap();
    let model = loaded.model.as_ref();
    // Greedy continuation with the plain cache, then the same tokens teacher-forced through both.
    let mut c = make_prompt_cache(model, None);
    let opts = GenerateOptions { max_tokens: Some(32), ..Default::default() };
    let (gen, _) = generate_ids(model, &prompt, &mut c, Sampler::greedy(), vec![], opts.clone()).unwrap();
    let all: Vec<u32> = prompt.iter().chain(&gen).copied().collect();
    let vocab = model.config().vocab_size;
    for bits in [8usize, 4] {
        let mut plain = make_prompt_cache(model, None);
        let mut quant = make_prompt_cache(model, None);
        let ids = |s: &[u32]| Array::from_slice(&s.iter().map(|&t| t as i32).collect::<Vec<_>>(), &[1, s.len()]);
        let lp = |x: &Array| {
            let l = x.shape()[1] as isize;
            let x = ops::squeeze(&ops::slice_range(x, &[0, l - 1, 0], &[1, l, vocab as isize]), &[0, 1]);
            &x - &ops::logsumexp(&x, -1isize, true)
        };
        let _ = model.forward(&ids(&prompt), Some(&mut plain[..]));
        let _ = model.forward(&ids(&prompt), Some(&mut quant[..]));
        maybe_quantize_kv_cache(&mut quant, Some(bits), 64, 0).unwrap();
        let (mut worst, mut same) = (0.0f32, 0usize);
        for &t in &all[prompt.len()..] {
            let a = lp(&model.forward(&ids(&[t]), Some(&mut plain[..])));
            let b = lp(&model.forward(&ids(&[t]), Some(&mut quant[..])));
            worst = worst.max(max_abs_diff(&a, &b));
            same += (ops::argmax(&a, None, false).item::<u32>().unwrap() == ops::argmax(&b, None, false).item::<u32>().unwrap()) as usize;
        }
        // Free-running greedy with the quantized cache from offset 0.
        let mut q = make_prompt_cache(model, None);
        let qopts = GenerateOptions { kv_bits: Some(bits), kv_group_size: 64, quantized_kv_start: 0, ..opts.clone() };
        let (qgen, _) = generate_ids(model, &prompt, &mut q, Sampler::greedy(), vec![], qopts).unwrap();
        let prefix = gen.iter().zip(&qgen).take_while(|(a, b)| a == b).count();
        println!(
            "SmolLM2-135M Q4_1, kv_bits {bits}: max |logprob diff| {worst:.4}, teacher-forced argmax agreement {same}/{}, \
             free greedy identical for the first {prefix}/{} tokens",
            gen.len(),
            gen.len()
        );
        if bits == 8 {
            assert!(same * 10 >= gen.len() * 9, "8-bit KV: argmax agreement {same}/{}", gen.len());
        }
    }
}
