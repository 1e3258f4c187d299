//! Perplexity equals exp(mean cross-entropy) computed independently from the fixture's
//! transformers logits; the data pipeline (jsonl / text, seeded order, fixed-length rows) and the
//! benchmark loop on a random-weights model.

use oxmx_core::{io, Array};
use oxmx_lm::bench::{average, bench_run, random_prompts, random_weights_model, BenchOptions};
use oxmx_lm::config::ModelConfig;
use oxmx_lm::loader::{load, LoadOptions};
use oxmx_lm::perplexity::{eval_perplexity, make_rows, read_documents, token_losses, Document};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// (tokens [2, 9], transformers logits [2, 9, 300]) of the tiny llama.
fn reference() -> (Vec<Vec<u32>>, Vec<f32>) {
    let (arrays, _) = io::load_safetensors(fixture("tiny_llama/expected.safetensors")).unwrap();
    let get = |k: &str| arrays.iter().find(|(n, _)| n == k).unwrap().1.clone();
    let t = get("tokens").to_vec::<i32>().unwrap();
    let rows = t.chunks(9).map(|r| r.iter().map(|&x| x as u32).collect()).collect();
    (rows, get("logits").to_vec::<f32>().unwrap())
}

#[test]
fn perplexity_is_exp_mean_cross_entropy_of_the_reference_logits() {
    let (rows, logits) = reference();
    let (l, v) = (9usize, 300usize);
    // Independent: log-softmax of transformers' logits in f64, next-token losses.
    let mut losses = Vec::new();
    for (b, row) in rows.iter().enumerate() {
        for i in 0..l - 1 {
            let z = &logits[(b * l + i) * v..(b * l + i + 1) * v];
            let m = z.iter().fold(f32::MIN, |a, &x| a.max(x)) as f64;
            let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            losses.push(lse - z[row[i + 1] as usize] as f64);
        }
    }
    let n = losses.len() as f64;
    let mean = losses.iter().sum::<f64>() / n;
    let sd = (losses.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let want_ppl = mean.exp();
    let want_se = want_ppl * sd / n.sqrt();

    let m = load(fixture("tiny_llama"), &LoadOptions::default()).unwrap();
    for batch in [1usize, 2, 8] {
        let r = eval_perplexity(m.model.as_ref(), &rows, batch, &mut |_, _| {}).unwrap();
        println!(
            "batch {batch}: ppl {:.6} ± {:.6} (independent {want_ppl:.6} ± {want_se:.6}), {:.0} tok/s",
            r.perplexity, r.standard_error, r.tokens_per_sec
        );
        assert_eq!(r.tokens_evaluated, 16);
        assert_eq!(r.rows, 2);
        assert!((r.perplexity - want_ppl).abs() < 1e-4 * want_ppl, "ppl {} vs {want_ppl}", r.perplexity);
        assert!((r.standard_error - want_se).abs() < 1e-3 * want_se.max(1e-6), "se {} vs {want_se}", r.standard_error);
        assert!(r.peak_memory > 0);
    }
    // Per-position losses agree too.
    let ids: Vec<i32> = rows.iter().flatten().map(|&t| t as i32).collect();
    let got = token_losses(m.model.as_ref(), &Array::from_slice(&ids, &[2, 9])).to_vec::<f32>().unwrap();
    let worst = got.iter().zip(&losses).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-4, "per-token loss diff {worst}");
}

#[test]
fn perplexity_errors() {
    let m = load(fixture("tiny_llama"), &LoadOptions::default()).unwrap();
    let model = m.model.as_ref();
    assert!(eval_perplexity(model, &[], 2, &mut |_, _| {}).is_err());
    assert!(eval_perplexity(model, &[vec![1, 2, 3]], 0, &mut |_, _| {}).is_err());
    assert!(eval_perplexity(model, &[vec![1, 2, 3], vec![1, 2]], 2, &mut |_, _| {}).is_err());
    let e = eval_perplexity(model, &[vec![1, 2, 300]], 1, &mut |_, _| {}).err().unwrap();
    assert!(e.message().contains("vocabulary"), "{}", e.message());
    assert!(token_losses(model, &Array::from_slice(&[1i32], &[1, 1])).check().is_err());
}

#[test]
fn rows_from_documents() {
    let docs: Vec<Vec<u32>> = (0..10u32).map(|d| (0..7).map(|i| d * 100 + i).collect()).collect();
    let a = make_rows(&docs, 5, Some(4), 123).unwrap();
    assert_eq!(a.len(), 4);
    assert!(a.iter().all(|r| r.len() == 5));
    assert_eq!(a, make_rows(&docs, 5, Some(4), 123).unwrap(), "seeded");
    assert_ne!(a, make_rows(&docs, 5, Some(4), 124).unwrap());
    // Whole documents are concatenated in a shuffled order.
    let flat: Vec<u32> = a.concat();
    assert_eq!(flat[..7].iter().map(|t| t % 100).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    let all = make_rows(&docs, 5, None, 0).unwrap();
    assert_eq!(all.len(), 70 / 5);
    assert!(make_rows(&docs, 1000, None, 0).is_err());
    assert!(make_rows(&docs, 1, None, 0).is_err());

    let dir = std::env::temp_dir().join(format!("oxmx_ppl_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jl = dir.join("train.jsonl");
    std::fs::write(
        &jl,
        "{\"text\": \"hello\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n",
    )
    .unwrap();
    let d = read_documents(&jl).unwrap();
    assert_eq!(d.len(), 3);
    assert!(matches!(&d[0], Document::Text(t) if t == "hello"));
    assert!(matches!(&d[2], Document::Messages(m) if m.len() == 2));
    assert_eq!(read_documents(&dir).unwrap().len(), 3, "a folder reads train.jsonl");
    let txt = dir.join("book.txt");
    std::fs::write(&txt, "plain text\nover lines").unwrap();
    assert!(matches!(&read_documents(&txt).unwrap()[0], Document::Text(t) if t.contains("over lines")));
    std::fs::write(&jl, "{\"other\": 1}\n").unwrap();
    let e = read_documents(&jl).err().unwrap();
    assert!(e.message().contains("line 1"), "{}", e.message());
    assert!(read_documents(&dir.join("missing.jsonl")).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_runs_on_random_weights() {
    let config = ModelConfig::from_json_str(
        r#"{"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 500, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "tie_word_embeddings": true}"#,
    )
    .unwrap();
    let model = random_weights_model(&config, 0).unwrap();
    let prompts = random_prompts(500, 3, 20, 0);
    assert!(prompts.iter().flatten().all(|&t| t < 500));
    assert_ne!(prompts[0], prompts[1]);
    let mut results = Vec::new();
    for b in [1usize, 3] {
        let opts = BenchOptions { prompt_tokens: 20, generation_tokens: 8, batch_size: b, prefill_step_size: 7, ..Default::default() };
        let r = bench_run(model.as_ref(), &prompts[..b], &opts).unwrap();
        println!("batch {b}: {r:?}");
        assert!(r.prompt_tps.is_finite() && r.prompt_tps > 0.0);
        assert!(r.generation_tps.is_finite() && r.generation_tps > 0.0);
        assert!(r.peak_memory > 0.0 && r.total_time > 0.0);
        results.push(r);
    }
    let avg = average(&results);
    assert!((avg.prompt_tps - (results[0].prompt_tps + results[1].prompt_tps) / 2.0).abs() < 1e-9);
    // A quantized config builds a quantized random model.
    let q = ModelConfig::from_json_str(
        r#"{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "intermediate_size": 128,
            "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-6,
            "quantization": {"group_size": 32, "bits": 4}}"#,
    )
    .unwrap();
    let qm = random_weights_model(&q, 1).unwrap();
    let r = bench_run(qm.as_ref(), &random_prompts(256, 1, 5, 1), &BenchOptions { generation_tokens: 3, ..Default::default() }).unwrap();
    assert!(r.generation_tps > 0.0);
    assert!(bench_run(qm.as_ref(), &[vec![]], &BenchOptions::default()).is_err());
}

#[test]
fn random_weights_follow_the_config_dtype() {
    let cfg = |dtype: &str| {
        ModelConfig::from_json_str(&format!(
            r#"{{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "intermediate_size": 128,
                "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "{dtype}"}}"#
        ))
        .unwrap()
    };
    for (name, want) in
        [("bfloat16", oxmx_core::Dtype::Bfloat16), ("float16", oxmx_core::Dtype::Float16), ("float32", oxmx_core::Dtype::Float32)]
    {
        let model = random_weights_model(&cfg(name), 0).unwrap();
        for (key, p) in model.parameters() {
            assert_eq!(p.dtype(), want, "{key} for torch_dtype {name}");
        }
    }
    let err = random_weights_model(&cfg("int8"), 0).err().expect("int8 is not a weight dtype");
    assert!(err.to_string().contains("torch_dtype"), "{err}");
}
