//! Helpers for the server tests: start `oxmx_lm::server` in-process on a free loopback port with
//! the default model, and talk to it over raw HTTP (ureq; SSE read line by line).
#![allow(dead_code)]

use oxmx_lm::server::{start, RunningServer, ServerConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// The default model (SmolLM2-135M-Instruct Q4_1 GGUF) when scripts/setup.sh has placed it.
pub fn model() -> Option<PathBuf> {
    let found = oxmx_lm::models_dir::default_model();
    if found.is_none() {
        let p = oxmx_lm::models_dir::models_dir().join(oxmx_lm::models_dir::DEFAULT_MODEL_FILE);
        eprintln!("skipped: the default model is not at {} (run scripts/setup.sh)", p.display());
    }
    found
}

pub fn config(model: PathBuf) -> ServerConfig {
    let mut c = ServerConfig::new(model);
    c.port = 0;
    c.model_id = Some("smollm2".into());
    c
}

pub fn serve(c: ServerConfig) -> RunningServer {
    start(c).expect("the server starts")
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// POST `body` (raw text) to `path`; returns (status, body text).
pub fn post_raw(base: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent().post(format!("{base}{path}")).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).expect("the request is answered");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("the body reads");
    (status, text)
}

pub fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let (s, t) = post_raw(base, path, &body.to_string(), &[]);
    let v = serde_json::from_str(&t).unwrap_or_else(|e| panic!("the body is JSON ({e}): {t}"));
    (s, v)
}

pub fn get(base: &str, path: &str) -> (u16, Value) {
    let mut resp = agent().get(format!("{base}{path}")).call().expect("the request is answered");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("the body reads");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A streamed request: the raw SSE lines (blank lines kept) and the parsed `data:` events
/// (`[DONE]` as the string "[DONE]").
pub fn stream(base: &str, path: &str, body: &Value) -> (Vec<String>, Vec<Value>) {
    let mut resp = agent()
        .post(format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("the request is answered");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers().get("content-type").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("text/event-stream"), "content type {ct}");
    let reader = BufReader::new(resp.body_mut().as_reader());
    let mut lines = Vec::new();
    let mut events = Vec::new();
    for line in reader.lines() {
        let line = line.expect("the stream reads");
        if let Some(d) = line.strip_prefix("data: ") {
            events.push(if d == "[DONE]" { Value::String("[DONE]".into()) } else { serde_json::from_str(d).expect("each event is JSON") });
        }
        lines.push(line);
    }
    (lines, events)
}

/// Polls `/health` until `f` holds (at most ~20 s).
pub fn wait_health(base: &str, f: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, h) = get(base, "/health");
        if f(&h) {
            return h;
        }
        last = h;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("health never reached the expected state: {last}");
}
