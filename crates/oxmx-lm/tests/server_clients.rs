//! `oxmx serve` under load and with real clients: 32 concurrent streaming clients (each reply
//! complete, belonging to its request, memory back to its baseline after), the official `openai`
//! Python client (scripts/test_serve_openai.py; skipped when python3 or the package is missing),
//! and the solo path (`--kv-bits`, `--max-kv-size`).

mod server_util;

use serde_json::{json, Value};
use server_util::*;
use std::process::Command;
use std::sync::Mutex;

/// The tests of this file run one at a time: the load test compares the process's array memory
/// before and after, which another test's server would disturb.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The text and finish reason a stream assembles, with its usage; panics unless it is complete.
fn assemble(events: &[Value]) -> (String, String, Value) {
    assert_eq!(events.last().unwrap(), "[DONE]", "the stream ends with [DONE]");
    let mut text = String::new();
    let mut finish = String::new();
    let mut usage = Value::Null;
    for e in &events[..events.len() - 1] {
        assert!(e.get("error").is_none(), "no error events: {e}");
        if !e["usage"].is_null() {
            usage = e["usage"].clone();
        }
        for c in e["choices"].as_array().unwrap() {
            text.push_str(c["text"].as_str().unwrap_or(""));
            if let Some(f) = c["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
    }
    (text, finish, usage)
}

#[test]
fn thirty_two_streaming_clients() {
    let _one = serial();
    let Some(path) = model() else { return };
    let mut c = config(path);
    c.engine.max_concurrency = 16;
    c.engine.prompt_cache_bytes = 0; // memory must come back to the baseline
    let srv = serve(c);
    let b = srv.url();
    // Distinct prompts; each client's reply must be the one its prompt gives alone (greedy).
    let prompt = |i: usize| format!("Item {i}: the number {} is written as", i * 37 + 11);
    let body = |i: usize| json!({"prompt": prompt(i), "temperature": 0, "max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}});
    let n = 32;
    let solo: Vec<String> = (0..n)
        .map(|i| {
            let mut b1 = body(i);
            b1["stream"] = json!(false);
            b1.as_object_mut().unwrap().remove("stream_options");
            post(&b, "/v1/completions", &b1).1["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    let base_mem = wait_health(&b, |h| h["active_requests"] == 0)["active_memory_bytes"].as_u64().unwrap();
    let t0 = std::time::Instant::now();
    let results: Vec<(String, String, Value)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let b = b.clone();
                s.spawn(move || assemble(&stream(&b, "/v1/completions", &body(i)).1))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("{n} streams in {:.1}s", t0.elapsed().as_secs_f64());
    let mut mismatches = 0;
    for (i, (text, finish, usage)) in results.iter().enumerate() {
        assert!(finish == "stop" || finish == "length", "client {i} finished: {finish:?}");
        assert!(usage["completion_tokens"].as_u64().unwrap() >= 1, "client {i} usage {usage}");
        if *text != solo[i] {
            mismatches += 1;
            eprintln!("client {i}: batched {text:?} vs alone {:?}", solo[i]);
        }
    }
    assert_eq!(mismatches, 0, "every reply is its own prompt's");
    let h = wait_health(&b, |h| h["active_requests"] == 0 && h["waiting_requests"] == 0);
    assert!(h["max_batch"].as_u64().unwrap() >= 8, "the streams shared decode steps: {h}");
    let after = h["active_memory_bytes"].as_u64().unwrap();
    assert!(after <= base_mem + (1 << 20), "memory back to its baseline: {base_mem} before, {after} after");
}

#[test]
fn official_openai_python_client() {
    let _one = serial();
    let Some(path) = model() else { return };
    let ok = Command::new("python3").args(["-c", "import openai"]).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        eprintln!("skipped: python3 with the openai package is not available (pip install -r scripts/requirements-test.txt)");
        return;
    }
    let srv = serve(config(path));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test_serve_openai.py");
    let out = Command::new("python3").arg(script).arg(srv.url()).arg("smollm2").output().unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the openai client script failed:\n{so}\n{se}");
    eprintln!("{so}");
}

#[test]
fn solo_path_with_kv_bits_and_max_kv_size() {
    let _one = serial();
    let Some(path) = model() else { return };
    for (bits, max_kv) in [(Some(8), None), (None, Some(64))] {
        let mut c = config(path.clone());
        c.engine.kv_bits = bits;
        c.engine.max_kv_size = max_kv;
        let srv = serve(c);
        let b = srv.url();
        let outs: Vec<Value> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|i| {
                    let b = b.clone();
                    s.spawn(move || {
                        post(&b, "/v1/completions", &json!({"prompt": format!("Story {i}: once"), "temperature": 0, "max_tokens": 80})).1
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in &outs {
            assert!(o["choices"][0]["text"].as_str().is_some_and(|t| !t.is_empty()), "{bits:?} {max_kv:?}: {o}");
        }
        // Alone, the same prompt gives the same reply (solo sequences do not interact).
        let again = post(&b, "/v1/completions", &json!({"prompt": "Story 1: once", "temperature": 0, "max_tokens": 80})).1;
        assert_eq!(again["choices"][0]["text"], outs[1]["choices"][0]["text"]);
    }
}
