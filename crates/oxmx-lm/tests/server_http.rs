//! `oxmx serve` over raw HTTP (in-process server, default model): endpoints, greedy output equal
//! to the generation loop `oxmx generate` runs, SSE framing, logprobs, usage, stop strings, n,
//! constrained JSON, the prefix cache, batching, disconnects, and every bad input with its status.

mod server_util;

use oxmx_lm::cache::make_prompt_cache;
use oxmx_lm::chat::ChatOptions;
use oxmx_lm::generate::{generate_ids, GenerateOptions};
use oxmx_lm::loader::{load, LoadOptions};
use oxmx_lm::sample::Sampler;
use oxmx_lm::server::RunningServer;
use oxmx_lm::Tokenizer;
use serde_json::{json, Value};
use server_util::*;
use std::io::{Read, Write};
use std::sync::OnceLock;

/// One server for the tests that need no special flags.
fn base() -> Option<&'static str> {
    static S: OnceLock<Option<(RunningServer, String)>> = OnceLock::new();
    S.get_or_init(|| {
        let m = model()?;
        let s = serve(config(m));
        let u = s.url();
        Some((s, u))
    })
    .as_ref()
    .map(|(_, u)| u.as_str())
}

/// What `oxmx generate --temp 0` produces: the same prompt ids through `generate_ids`, text
/// without the EOS.
fn reference(ids: &[u32], max_tokens: usize) -> (String, Vec<u32>) {
    let path = model().unwrap();
    let loaded = load(&path, &LoadOptions::default()).unwrap();
    let tok = Tokenizer::from_path(&path).unwrap();
    let mut eos = loaded.eos_token_ids.clone();
    if eos.is_empty() {
        eos.extend_from_slice(tok.eos_token_ids());
    }
    let mut cache = make_prompt_cache(loaded.model.as_ref(), None);
    let opts = GenerateOptions { max_tokens: Some(max_tokens), eos_token_ids: eos.iter().copied().collect(), ..Default::default() };
    let (out, _) = generate_ids(loaded.model.as_ref(), ids, &mut cache, Sampler::greedy(), vec![], opts).unwrap();
    let text_ids: Vec<u32> = out.iter().copied().filter(|t| !eos.contains(t)).collect();
    let mut d = tok.detokenizer();
    for &t in &text_ids {
        d.add_token(t);
    }
    d.finalize();
    (d.text().to_string(), out)
}

fn chat_ids(user: &str) -> Vec<u32> {
    let tok = Tokenizer::from_path(model().unwrap()).unwrap();
    let opts = ChatOptions { add_generation_prompt: true, ..Default::default() };
    let text = tok.chat_template(None).unwrap().apply(&[json!({"role": "user", "content": user})], &opts).unwrap();
    tok.encode(&text, false).unwrap()
}

fn err_of(v: &Value) -> (&str, Option<&str>, Option<&str>) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "an error message: {v}");
    assert!(e["type"].is_string(), "an error type: {v}");
    (e["type"].as_str().unwrap(), e["param"].as_str(), e["code"].as_str())
}

#[test]
fn health_and_models() {
    let Some(b) = base() else { return };
    let (s, h) = get(b, "/health");
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let (s, m) = get(b, "/v1/models");
    assert_eq!(s, 200);
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "smollm2");
    assert_eq!(get(b, "/v1/models/smollm2").0, 200);
    let (s, e) = get(b, "/v1/models/gpt-4");
    assert_eq!(s, 404);
    assert_eq!(err_of(&e).2, Some("model_not_found"));
}

#[test]
fn greedy_chat_and_completion_equal_generate() {
    let Some(b) = base() else { return };
    let q = "What is the capital of France?";
    let ids = chat_ids(q);
    let (want, want_ids) = reference(&ids, 40);
    let (s, r) = post(
        b,
        "/v1/chat/completions",
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": q}], "temperature": 0, "max_tokens": 40}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert!(r["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r["choices"][0]["message"]["content"].as_str().unwrap(), want);
    assert_eq!(r["usage"]["prompt_tokens"], ids.len());
    assert_eq!(r["usage"]["completion_tokens"], want_ids.len());
    assert_eq!(r["usage"]["total_tokens"], ids.len() + want_ids.len());
    assert!(r["usage"]["prompt_tokens_details"]["cached_tokens"].is_u64());
    let fin = if want_ids.len() < 40 { "stop" } else { "length" };
    assert_eq!(r["choices"][0]["finish_reason"], fin);

    let prompt = "The three primary colors are";
    let tok = Tokenizer::from_path(model().unwrap()).unwrap();
    let pids = tok.encode(prompt, true).unwrap();
    let (want, want_ids) = reference(&pids, 24);
    let (s, r) = post(b, "/v1/completions", &json!({"model": "smollm2", "prompt": prompt, "temperature": 0, "max_tokens": 24}));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["object"], "text_completion");
    assert_eq!(r["choices"][0]["text"].as_str().unwrap(), want);
    assert_eq!(r["usage"]["completion_tokens"], want_ids.len());
    // The same prompt as token ids.
    let (_, r2) = post(b, "/v1/completions", &json!({"prompt": pids, "temperature": 0, "max_tokens": 24}));
    assert_eq!(r2["choices"][0]["text"], r["choices"][0]["text"]);
}

#[test]
fn streaming_is_openai_sse() {
    let Some(b) = base() else { return };
    let body =
        json!({"model": "smollm2", "messages": [{"role": "user", "content": "Name two fruits."}], "temperature": 0, "max_tokens": 30});
    let (_, full) = post(b, "/v1/chat/completions", &body);
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    sb["stream_options"] = json!({"include_usage": true});
    let (lines, events) = stream(b, "/v1/chat/completions", &sb);
    // Every event is one `data:` line followed by a blank line.
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("data: ") {
            assert_eq!(lines.get(i + 1).map(String::as_str), Some(""), "a blank line after each event");
        } else {
            assert!(l.is_empty() || l.starts_with(':'), "unexpected line {l:?}");
        }
    }
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = &events[..events.len() - 1];
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    let mut finishes = vec![];
    for c in &chunks[..chunks.len() - 1] {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["usage"].is_null(), "usage is null before the last chunk");
        let ch = &c["choices"][0];
        text.push_str(ch["delta"]["content"].as_str().unwrap_or(""));
        if !ch["finish_reason"].is_null() {
            finishes.push(ch["finish_reason"].clone());
        }
    }
    assert_eq!(finishes, vec![full["choices"][0]["finish_reason"].clone()]);
    assert_eq!(text, full["choices"][0]["message"]["content"].as_str().unwrap());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], full["usage"]["completion_tokens"]);
    assert_eq!(last["usage"]["prompt_tokens"], full["usage"]["prompt_tokens"]);

    // Completions stream the same text as they return.
    let cb = json!({"prompt": "Once upon a time", "temperature": 0, "max_tokens": 20});
    let (_, full) = post(b, "/v1/completions", &cb);
    let mut sb = cb.clone();
    sb["stream"] = json!(true);
    let (_, events) = stream(b, "/v1/completions", &sb);
    let text: String = events.iter().filter_map(|e| e["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, full["choices"][0]["text"].as_str().unwrap());
    assert!(events.iter().all(|e| e == "[DONE]" || e["object"] == "text_completion"));
}

#[test]
fn logprobs_follow_openai_layout() {
    let Some(b) = base() else { return };
    let (s, r) = post(
        b,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Say hi."}], "temperature": 0, "max_tokens": 8, "logprobs": true, "top_logprobs": 3}),
    );
    assert_eq!(s, 200, "{r}");
    let content = r["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len() as u64, r["usage"]["completion_tokens"].as_u64().unwrap());
    for e in content {
        let lp = e["logprob"].as_f64().unwrap();
        assert!(lp <= 1e-6);
        assert!(e["token"].is_string() && e["bytes"].is_array());
        let top: Vec<f64> = e["top_logprobs"].as_array().unwrap().iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert_eq!(top.len(), 3);
        assert!(top.windows(2).all(|w| w[0] >= w[1]), "sorted, most likely first: {top:?}");
        // Greedy: the chosen token is the most likely one.
        assert_eq!(e["top_logprobs"][0]["token"], e["token"]);
        assert!((top[0] - lp).abs() < 1e-5);
    }
    // Without logprobs the field is null; the legacy endpoint has its own layout.
    let (_, r) = post(b, "/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}));
    assert!(r["choices"][0]["logprobs"].is_null());
    let (_, r) = post(b, "/v1/completions", &json!({"prompt": "Hello", "max_tokens": 4, "logprobs": 2, "temperature": 0}));
    let lp = &r["choices"][0]["logprobs"];
    let n = lp["tokens"].as_array().unwrap().len();
    assert_eq!(n, 4);
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), n);
    assert_eq!(lp["text_offset"][0], 0);
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
}

#[test]
fn stop_strings_max_tokens_and_n() {
    let Some(b) = base() else { return };
    let body = json!({"prompt": "1, 2, 3, 4, 5,", "temperature": 0, "max_tokens": 30});
    let (_, r) = post(b, "/v1/completions", &body);
    let full = r["choices"][0]["text"].as_str().unwrap().to_string();
    // Stop at the second comma of the continuation (a stop string the reply really contains).
    let cut = full.match_indices(',').nth(1).map(|(i, _)| i).expect("the model continues the list");
    let mut sb = body.clone();
    sb["stop"] = json!([","]);
    let (_, r) = post(b, "/v1/completions", &sb);
    let first = full.split(',').next().unwrap();
    assert_eq!(r["choices"][0]["text"].as_str().unwrap(), first, "text before the stop string, without it");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert!(cut > first.len());
    let mut mb = body.clone();
    mb["max_tokens"] = json!(3);
    let (_, r) = post(b, "/v1/completions", &mb);
    assert_eq!((r["choices"][0]["finish_reason"].as_str(), r["usage"]["completion_tokens"].as_u64()), (Some("length"), Some(3)));

    // n choices, reproducible with a seed.
    let nb = json!({"prompt": "My favourite animal is", "n": 3, "temperature": 1.0, "seed": 7, "max_tokens": 12});
    let (s, r1) = post(b, "/v1/completions", &nb);
    assert_eq!(s, 200, "{r1}");
    let texts =
        |r: &Value| -> Vec<String> { r["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap().to_string()).collect() };
    let idx: Vec<u64> = r1["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![0, 1, 2]);
    let (_, r2) = post(b, "/v1/completions", &nb);
    assert_eq!(texts(&r1), texts(&r2), "the same seed gives the same choices");
}

#[test]
fn response_format_output_parses_and_validates() {
    let Some(b) = base() else { return };
    let (s, r) = post(
        b,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Describe a cat as JSON."}], "response_format": {"type": "json_object"}, "max_tokens": 120}),
    );
    assert_eq!(s, 200, "{r}");
    if r["choices"][0]["finish_reason"] == "stop" {
        let v: Value = serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).expect("json_object output parses");
        assert!(v.is_object());
    }
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "enum": ["Bob", "Alice"]}, "age": {"type": "integer"},
        "student": {"type": "boolean"}}, "required": ["name", "age", "student"]});
    let (s, r) = post(
        b,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Bob is 30 and not a student. Give his record as JSON."}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}, "max_tokens": 60}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{r}");
    let v: Value = serde_json::from_str(r["choices"][0]["message"]["content"].as_str().unwrap()).expect("json_schema output parses");
    assert!(v["name"] == "Bob" || v["name"] == "Alice", "{v}");
    assert!(v["age"].is_i64(), "{v}");
    assert!(v["student"].is_boolean(), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 3, "no keys beyond the schema: {v}");
}

#[test]
fn bad_inputs_get_statuses_and_the_server_keeps_serving() {
    let Some(b) = base() else { return };
    let chat = "/v1/chat/completions";
    let (s, t) = post_raw(b, chat, "{not json", &[]);
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!((s, err_of(&v).2), (400, Some("invalid_json")));
    let (s, _) = post_raw(b, chat, "[1, 2]", &[]);
    assert_eq!(s, 400);
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"model": "gpt-9", "messages": msgs}), 404, "model"),
        (json!({"messages": msgs, "temperature": "hot"}), 400, "temperature"),
        (json!({"messages": msgs, "temperature": 5}), 400, "temperature"),
        (json!({"messages": msgs, "top_p": 1.5}), 400, "top_p"),
        (json!({"messages": msgs, "max_tokens": 0}), 400, "max_tokens"),
        (json!({"messages": msgs, "max_tokens": 2.5}), 400, "max_tokens"),
        (json!({"messages": msgs, "n": 0}), 400, "n"),
        (json!({"messages": msgs, "top_k": -3}), 400, "top_k"),
        (json!({"messages": msgs, "presence_penalty": 3}), 400, "presence_penalty"),
        (json!({"messages": msgs, "top_logprobs": 2}), 400, "top_logprobs"),
        (json!({"messages": msgs, "logprobs": true, "top_logprobs": 50}), 400, "top_logprobs"),
        (json!({"messages": msgs, "logit_bias": {"999999": 1}}), 400, "logit_bias"),
        (json!({"messages": msgs, "logit_bias": {"abc": 1}}), 400, "logit_bias"),
        (json!({"messages": msgs, "stop": [1]}), 400, "stop"),
        (json!({"messages": msgs, "stream": "yes"}), 400, "stream"),
        (json!({"messages": msgs, "stream_options": {"include_usage": true}}), 400, "stream_options"),
        (json!({"messages": msgs, "response_format": {"type": "xml"}}), 400, "response_format"),
        (
            json!({"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"schema": {"anyOf": []}}}}),
            400,
            "response_format",
        ),
        (json!({"messages": msgs, "tool_choice": "required"}), 400, "tool_choice"),
        (json!({"messages": []}), 400, "messages"),
        (json!({}), 400, "messages"),
        (json!({"messages": [{"role": "wizard", "content": "x"}]}), 400, "messages"),
        (json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}), 400, "messages"),
    ];
    for (body, status, param) in cases {
        let (s, v) = post(b, chat, &body);
        assert_eq!(s, status, "{body} -> {v}");
        assert_eq!(err_of(&v).1, Some(param), "{body} -> {v}");
    }
    let (s, v) = post(b, "/v1/completions", &json!({"prompt": 5}));
    assert_eq!((s, err_of(&v).1), (400, Some("prompt")));
    let (s, v) = post(b, "/v1/completions", &json!({"prompt": [1, 2, 99999999]}));
    assert_eq!((s, err_of(&v).1), (400, Some("prompt")));
    // Longer than the context (8192 for SmolLM2): rejected before any work.
    let (s, v) = post(b, "/v1/completions", &json!({"prompt": vec![42; 9000]}));
    assert_eq!((s, err_of(&v).2), (400, Some("context_length_exceeded")), "{v}");
    let (s, v) = get(b, "/v1/nothing");
    assert_eq!((s, err_of(&v).0), (404, "invalid_request_error"));
    let (s, v) = get(b, "/v1/chat/completions");
    assert_eq!(s, 405, "{v}");
    // Still serving.
    let (s, r) = post(b, chat, &json!({"messages": msgs, "max_tokens": 3}));
    assert_eq!(s, 200, "{r}");
}

#[test]
fn prefix_cache_is_reused_and_reported() {
    let Some(b) = base() else { return };
    let long = "Here is some background. ".repeat(40);
    let body = json!({"messages": [{"role": "system", "content": long}, {"role": "user", "content": "Summarise the background briefly."}],
        "temperature": 0, "max_tokens": 12});
    let (_, r1) = post(b, "/v1/chat/completions", &body);
    let (_, r2) = post(b, "/v1/chat/completions", &body);
    let p = r2["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(p > 200);
    assert_eq!(r2["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(), Some(p - 1), "all but the last prompt token reused");
    assert_eq!(r1["choices"][0]["message"]["content"], r2["choices"][0]["message"]["content"], "the cache does not change the reply");
    let (_, h) = get(b, "/health");
    assert!(h["prompt_cache_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn concurrent_requests_share_decode_steps_and_match_solo_output() {
    let Some(path) = model() else { return };
    let mut c = config(path);
    c.engine.prompt_cache_bytes = 0; // every request prefills for itself
    let srv = serve(c);
    let b = srv.url();
    let prompts = [
        "Hi",
        "Write a haiku about the sea and the sky at night.",
        "What is 2+2?",
        "List three colors, then three animals, then three cities.",
    ];
    let body = |p: &str| json!({"messages": [{"role": "user", "content": p}], "temperature": 0, "max_tokens": 24});
    let solo: Vec<String> = prompts
        .iter()
        .map(|p| post(&b, "/v1/chat/completions", &body(p)).1["choices"][0]["message"]["content"].as_str().unwrap().to_string())
        .collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| {
                let b = b.clone();
                s.spawn(move || {
                    post(&b, "/v1/chat/completions", &body(p)).1["choices"][0]["message"]["content"].as_str().unwrap().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (_, h) = get(&b, "/health");
    assert!(h["max_batch"].as_u64().unwrap() >= 2, "requests were decoded together: {h}");
    assert_eq!(together, solo);
}

#[test]
fn a_client_that_disconnects_frees_its_slot() {
    // A server of its own: /health must count only this test's request.
    let Some(path) = model() else { return };
    let srv = serve(config(path));
    let url = srv.url();
    let b = url.as_str();
    let addr = b.trim_start_matches("http://");
    let body = json!({"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 4000, "stream": true,
        "logit_bias": {"0": -100, "1": -100, "2": -100}})
    .to_string();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    write!(
        sock,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let mut got = 0;
    while got < 600 {
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0);
        got += n;
    }
    wait_health(b, |h| h["active_requests"].as_u64() >= Some(1));
    drop(sock);
    wait_health(b, |h| h["active_requests"] == 0 && h["waiting_requests"] == 0);
    let (s, _) = post(b, "/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}));
    assert_eq!(s, 200);
}

#[test]
fn api_key_and_cors() {
    let Some(path) = model() else { return };
    let mut c = config(path);
    c.api_key = Some("sekrit".into());
    c.cors = true;
    let srv = serve(c);
    let b = srv.url();
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).to_string();
    let (s, t) = post_raw(&b, "/v1/chat/completions", &body, &[]);
    assert_eq!(s, 401, "{t}");
    assert_eq!(err_of(&serde_json::from_str(&t).unwrap()).2, Some("invalid_api_key"));
    assert_eq!(post_raw(&b, "/v1/chat/completions", &body, &[("Authorization", "Bearer nope")]).0, 401);
    assert_eq!(post_raw(&b, "/v1/chat/completions", &body, &[("Authorization", "Bearer sekrit")]).0, 200);
    assert_eq!(get(&b, "/health").0, 200, "health needs no key");
    let r = agent().get(format!("{b}/health")).call().unwrap();
    assert_eq!(r.headers().get("access-control-allow-origin").unwrap(), "*");
    let r = agent().options(format!("{b}/v1/chat/completions")).call().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // CORS is off by default.
    let Some(d) = base() else { return };
    let r = agent().get(format!("{d}/health")).call().unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn forced_tool_call_is_parsed() {
    let Some(b) = base() else { return };
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let (s, r) = post(
        b,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "What is the weather in Paris?"}], "tools": tools,
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "temperature": 0, "max_tokens": 40}),
    );
    assert_eq!(s, 200, "{r}");
    let m = &r["choices"][0]["message"];
    let calls = m["tool_calls"].as_array().unwrap_or_else(|| panic!("a tool call: {r}"));
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["type"], "function");
    let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).expect("arguments are a JSON string");
    assert!(args.is_object());
    assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
    assert!(args.get("city").is_some_and(|c| c.is_string()), "arguments follow the parameter schema: {args}");
    // "required" with one tool is the same forced call.
    let (_, r) = post(
        b,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Weather in Rome?"}], "tools": tools, "tool_choice": "required", "max_tokens": 40}),
    );
    let call = &r["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather", "{r}");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args["city"].is_string(), "{args}");
}

#[test]
fn streaming_n_choices_with_logprobs() {
    let Some(b) = base() else { return };
    let body = json!({"messages": [{"role": "user", "content": "Pick a number."}], "n": 2, "temperature": 0.8, "seed": 3,
        "max_tokens": 10, "logprobs": true, "top_logprobs": 2});
    let (_, full) = post(b, "/v1/chat/completions", &body);
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    sb["stream_options"] = json!({"include_usage": true});
    let (_, events) = stream(b, "/v1/chat/completions", &sb);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let mut text = [String::new(), String::new()];
    let mut lps = [0usize, 0];
    let mut finishes = [0, 0];
    for e in &events[..events.len() - 1] {
        for c in e["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            text[i].push_str(c["delta"]["content"].as_str().unwrap_or(""));
            lps[i] += c["logprobs"]["content"].as_array().map_or(0, |a| a.len());
            finishes[i] += usize::from(!c["finish_reason"].is_null());
        }
    }
    assert_eq!(finishes, [1, 1], "one finish_reason per choice");
    for i in 0..2 {
        // Seeded sampling: the streamed choices are the non-streamed ones.
        assert_eq!(text[i], full["choices"][i]["message"]["content"].as_str().unwrap(), "choice {i}");
        assert_eq!(lps[i], full["choices"][i]["logprobs"]["content"].as_array().unwrap().len(), "choice {i}: one logprob per token");
    }
    let usage = &events[events.len() - 2]["usage"];
    assert_eq!(usage["completion_tokens"], full["usage"]["completion_tokens"]);
}

#[test]
fn a_long_prompt_does_not_freeze_running_streams() {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let Some(path) = model() else { return };
    let mut c = config(path);
    c.engine.prompt_cache_bytes = 0;
    let srv = serve(c);
    let b = srv.url();
    let stop = AtomicBool::new(false);
    let body = json!({"prompt": "Once upon a time", "max_tokens": 2000, "stream": true, "logit_bias": {"0": -100, "1": -100, "2": -100}});
    let long = format!("{}\nSummary:", (0..240).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" "));
    let (times, window) = std::thread::scope(|s| {
        let streamer = s.spawn(|| {
            let mut resp = agent().post(format!("{b}/v1/completions")).send(body.to_string()).unwrap();
            let mut times = Vec::new();
            for line in std::io::BufReader::new(resp.body_mut().as_reader()).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("data: {") {
                    times.push(Instant::now());
                }
                if stop.load(Ordering::Relaxed) {
                    break; // dropping the response closes the connection
                }
            }
            times
        });
        wait_health(&b, |h| h["active_requests"] == 1);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let t0 = Instant::now();
        let (s1, r) = post(&b, "/v1/completions", &json!({"prompt": long, "max_tokens": 1}));
        let t1 = Instant::now();
        assert_eq!(s1, 200, "{r}");
        assert!(r["usage"]["prompt_tokens"].as_u64().unwrap() > 2 * 256, "a prompt of several chunks: {r}");
        stop.store(true, Ordering::Relaxed);
        (streamer.join().unwrap(), (t0, t1))
    });
    // Without interleaving the stream would stall for the whole prefill; with chunks of 256
    // tokens (four here) its longest silence is about one chunk.
    let during = times.iter().filter(|&&t| t > window.0 && t < window.1).count();
    let longest = times.windows(2).filter(|w| w[1] > window.0 && w[0] < window.1).map(|w| w[1] - w[0]).max().unwrap_or_default();
    let prefill = window.1 - window.0;
    eprintln!("{during} tokens during a {prefill:?} prefill, longest gap {longest:?}");
    assert!(during >= 2, "the running stream got {during} tokens while the long prompt was prefilled");
    assert!(longest.as_secs_f64() < 0.7 * prefill.as_secs_f64(), "the stream stalled {longest:?} of {prefill:?}");
    wait_health(&b, |h| h["active_requests"] == 0);
}
