//! `oxmx serve` as a process: it starts on a free port and answers; its greedy chat reply is
//! exactly `oxmx generate --temp 0`'s for the same prompt; bad flags are one-line errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

mod common;
use common::smollm2 as model;

/// Kills the server when the test ends, whatever happens.
struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oxmx"))
        .args(["serve", "--port", "0"])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.rsplit("http://").next().and_then(|s| s.split_whitespace().next()).unwrap_or("").to_string();
    assert!(addr.contains(':'), "the server prints its address: {line}");
    Server(child, addr)
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

#[test]
fn serve_greedy_chat_equals_generate() {
    let Some(m) = model() else { return };
    let m = m.to_str().unwrap();
    let q = "Give me one tip for learning Rust.";
    let out = Command::new(env!("CARGO_BIN_EXE_oxmx"))
        .args(["generate", "--model", m, "--temp", "0", "-m", "40", "--json", "-p", q])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Value = serde_json::from_slice(&out.stdout).unwrap();
    let srv = start(&["--model", m, "--model-id", "smollm2"]);
    let (s, h) = http(&srv.1, "GET", "/health", "");
    assert_eq!(s, 200, "{h}");
    let body = json!({"model": "smollm2", "messages": [{"role": "user", "content": q}], "temperature": 0, "max_tokens": 40});
    let (s, r) = http(&srv.1, "POST", "/v1/chat/completions", &body.to_string());
    assert_eq!(s, 200, "{r}");
    let r: Value = serde_json::from_str(&r).unwrap();
    assert_eq!(r["choices"][0]["message"]["content"], want["text"]);
    assert_eq!(r["usage"]["completion_tokens"].as_u64().unwrap() as usize, want["tokens"].as_array().unwrap().len());
    assert_eq!(r["usage"]["prompt_tokens"], want["prompt_tokens"]);
}

#[test]
fn serve_flag_errors_are_one_line() {
    for (args, needle) in [
        (vec!["serve", "--prompt-cache-bytes", "lots"], "not a size"),
        (vec!["serve", "--chat-template-args", "[1]"], "--chat-template-args"),
        (vec!["serve", "--model", "/nonexistent/model.gguf"], "not found"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_oxmx")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("oxmx: error:") && err.contains(needle), "{args:?}: {err}");
    }
}
