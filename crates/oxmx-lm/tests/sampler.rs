//! Sampler masks equal a NumPy transcription of mlx-lm's sample_utils (fixtures/sampler.json,
//! scripts/gen_lm_fixtures.py); seeded sampling is reproducible; temperature 0 is the argmax.

use oxmx_core::{ops, Array, Dtype};
use oxmx_lm::sample::{apply_min_p, apply_top_k, apply_top_p, make_logits_processors, ProcessorConfig, Sampler, SamplerConfig};

fn fixture() -> serde_json::Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sampler.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn cases() -> Vec<serde_json::Value> {
    fixture()["masks"].as_array().unwrap().clone()
}

#[test]
fn masks_match_numpy_reference() {
    let cs = cases();
    assert!(cs.len() >= 27);
    for c in &cs {
        let shape: Vec<usize> = c["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let lp: Vec<f32> = c["logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let want: Vec<bool> = c["keep"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect();
        let x = Array::from_slice(&lp, &shape);
        let out = match c["op"].as_str().unwrap() {
            "top_p" => apply_top_p(&x, c["p"].as_f64().unwrap()),
            "min_p" => apply_min_p(&x, c["p"].as_f64().unwrap(), c["keep_n"].as_u64().unwrap() as usize),
            "top_k" => apply_top_k(&x, c["k"].as_u64().unwrap() as usize),
            o => panic!("{o}"),
        };
        let got: Vec<bool> = out.to_vec::<f32>().unwrap().iter().map(|v| v.is_finite()).collect();
        assert_eq!(got, want, "{} {:?} p={} k={}", c["op"], shape, c["p"], c["k"]);
        // Kept entries keep their value.
        for (g, l) in out.to_vec::<f32>().unwrap().iter().zip(&lp) {
            assert!(!g.is_finite() || g == l);
        }
    }
}

fn logprobs() -> Array {
    let v: Vec<f32> = (0..40).map(|i| ((i * 37 % 11) as f32) * 0.3).collect();
    let x = Array::from_slice(&v, &[1, 40]);
    &x - &ops::logsumexp(&x, -1isize, true)
}

#[test]
fn seeded_sampling_is_reproducible() {
    let cfg = SamplerConfig { temp: 1.0, top_p: 0.9, seed: Some(42), ..Default::default() };
    let draw = |cfg: &SamplerConfig| {
        let mut s = Sampler::new(cfg.clone()).unwrap();
        (0..20).map(|_| s.sample(&logprobs()).to_vec::<u32>().unwrap()[0]).collect::<Vec<_>>()
    };
    let a = draw(&cfg);
    assert_eq!(a, draw(&cfg));
    // Different draws within a run (not a constant).
    assert!(a.iter().any(|&t| t != a[0]), "{a:?}");
    let b = draw(&SamplerConfig { seed: Some(43), ..cfg.clone() });
    assert_ne!(a, b);
    // Only tokens that survive top-p are drawn.
    let keep = apply_top_p(&logprobs(), 0.9).to_vec::<f32>().unwrap();
    assert!(a.iter().all(|&t| keep[t as usize].is_finite()));
}

#[test]
fn temperature_zero_is_argmax_and_top_k_one_is_argmax() {
    let lp = logprobs();
    let want = ops::argmax(&lp, Some(-1), false).to_vec::<u32>().unwrap()[0];
    assert_eq!(Sampler::greedy().sample(&lp).to_vec::<u32>().unwrap()[0], want);
    let mut s = Sampler::new(SamplerConfig { temp: 0.7, top_k: 1, seed: Some(1), ..Default::default() }).unwrap();
    for _ in 0..5 {
        assert_eq!(s.sample(&lp).to_vec::<u32>().unwrap()[0], want);
    }
}

#[test]
fn invalid_settings_are_errors() {
    for cfg in [
        SamplerConfig { top_p: 1.5, ..Default::default() },
        SamplerConfig { min_p: -0.1, ..Default::default() },
        SamplerConfig { xtc_threshold: 0.7, ..Default::default() },
        SamplerConfig { temp: -1.0, ..Default::default() },
    ] {
        assert!(Sampler::new(cfg).is_err());
    }
}

#[test]
fn xtc_removes_top_choices_but_the_least_likely() {
    // probability 1: always applies. Tokens above the threshold except the least likely of them go.
    let p = [0.5f32, 0.3, 0.15, 0.05];
    let lp: Vec<f32> = p.iter().map(|x| x.ln()).collect();
    let x = Array::from_slice(&lp, &[1, 4]);
    let u = Array::scalar(0.5f32);
    let out = oxmx_lm::sample::apply_xtc(&x, &u, 1.0, 0.1, &[]).to_vec::<f32>().unwrap();
    let kept: Vec<bool> = out.iter().map(|v| v.is_finite()).collect();
    assert_eq!(kept, vec![false, false, true, true]);
    let out = oxmx_lm::sample::apply_xtc(&x, &u, 1.0, 0.1, &[0]).to_vec::<f32>().unwrap();
    assert!(out[0].is_finite() && !out[1].is_finite());
    // u > probability: unchanged
    let out = oxmx_lm::sample::apply_xtc(&x, &Array::scalar(0.9f32), 0.5, 0.1, &[]).to_vec::<f32>().unwrap();
    assert_eq!(out, lp);
}

#[test]
fn processors_match_numpy_reference() {
    let f = fixture();
    let p = &f["processors"];
    let lv: Vec<f32> = p["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let logits = Array::from_slice(&lv, &[1, lv.len()]);
    let history: Vec<u32> = p["history"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    for c in p["cases"].as_array().unwrap() {
        let pen = c["penalty"].as_f64();
        let ctx = c["context"].as_u64().unwrap_or(20) as usize;
        let cfg = match c["kind"].as_str().unwrap() {
            "repetition" => ProcessorConfig { repetition_penalty: pen, repetition_context_size: ctx, ..Default::default() },
            "presence" => ProcessorConfig { presence_penalty: pen, presence_context_size: ctx, ..Default::default() },
            "frequency" => ProcessorConfig { frequency_penalty: pen, frequency_context_size: ctx, ..Default::default() },
            "bias" => ProcessorConfig {
                logit_bias: c["bias"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| (b[0].as_u64().unwrap() as u32, b[1].as_f64().unwrap() as f32))
                    .collect(),
                ..Default::default()
            },
            k => panic!("{k}"),
        };
        let mut ps = make_logits_processors(&cfg);
        assert_eq!(ps.len(), 1);
        let got = ps[0].process(&history, &logits).to_vec::<f32>().unwrap();
        let want: Vec<f32> = c["out"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{}: {got:?} vs {want:?}", c["kind"]);
        }
    }
    let _ = Dtype::Float32;
}
