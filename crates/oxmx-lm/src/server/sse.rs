//! Server-sent events as OpenAI's clients read them: `data: <json>\n\n` per chunk, a first chat
//! chunk with the role, a last chunk per choice with its `finish_reason`, with
//! `stream_options.include_usage` one more chunk with `choices: []` and the usage (and `usage:
//! null` on the others), then `data: [DONE]`. While a prompt is being prefilled a `: keepalive`
//! comment goes out every few seconds so proxies and clients do not time out.
//!
//! A task turns the engine's events into chunks. When the client disconnects the body is dropped,
//! the task's next send fails and it returns, dropping the event receiver: the engine sees that
//! and frees the request's slot.

use super::reply_parse::{Piece, ReplyParser};
use super::routes::{body_of, bytes_chunk::Chunk, chat_logprob, completion_logprobs, usage, Job};
use super::sequence::{Event, TokenLogprob};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc::{channel, Sender, UnboundedReceiver};

pub const FINGERPRINT: &str = concat!("oxmx-", env!("CARGO_PKG_VERSION"));

const KEEPALIVE: Duration = Duration::from_secs(5);

pub fn frame(v: &Value) -> String {
    format!("data: {v}\n\n")
}

pub fn stream(job: Job, rx: UnboundedReceiver<(usize, Event)>) -> Response {
    let (tx, body_rx) = channel::<Chunk>(64);
    tokio::spawn(drive(job, rx, tx));
    (
        [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache"), (header::CONNECTION, "keep-alive")],
        body_of(body_rx),
    )
        .into_response()
}

struct Chunker<'a> {
    job: &'a Job,
    /// Per choice: characters of text sent (completions' `text_offset`) and tool calls sent.
    offsets: Vec<usize>,
    tool_counts: Vec<usize>,
    has_calls: Vec<bool>,
}

impl Chunker<'_> {
    fn chunk(&self, choice: Value) -> Value {
        let mut c = json!({
            "id": self.job.id,
            "object": if self.job.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.job.created,
            "model": self.job.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
        });
        if self.job.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The chunks for parsed pieces of choice `i` (plus its token logprobs, if any).
    fn pieces(&mut self, i: usize, pieces: Vec<Piece>, lps: &[TokenLogprob], finish: Option<&str>) -> Vec<Value> {
        let mut out = Vec::new();
        let lp_value = |lps: &[TokenLogprob], off: usize, chat: bool| -> Value {
            if lps.is_empty() {
                Value::Null
            } else if chat {
                json!({"content": lps.iter().map(chat_logprob).collect::<Vec<_>>()})
            } else {
                completion_logprobs(lps, off)
            }
        };
        if !self.job.chat {
            let text: String = pieces
                .into_iter()
                .map(|p| match p {
                    Piece::Content(t) | Piece::Reasoning(t) => t,
                    Piece::Tool(_) => String::new(),
                })
                .collect();
            if !text.is_empty() || !lps.is_empty() || finish.is_some() {
                let lp = lp_value(lps, self.offsets[i], false);
                self.offsets[i] += text.len();
                out.push(self.chunk(json!({"index": i, "text": text, "logprobs": lp, "finish_reason": finish})));
            }
            return out;
        }
        let mut lp_pending = lp_value(lps, 0, true);
        for p in pieces {
            let delta = match p {
                Piece::Content(t) => json!({"content": t}),
                Piece::Reasoning(t) => json!({"reasoning_content": t}),
                Piece::Tool(c) => {
                    let k = self.tool_counts[i];
                    self.tool_counts[i] += 1;
                    self.has_calls[i] = true;
                    json!({"tool_calls": [{"index": k, "id": super::routes::new_id("call"), "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments}}]})
                }
            };
            let lp = std::mem::replace(&mut lp_pending, Value::Null);
            out.push(self.chunk(json!({"index": i, "delta": delta, "logprobs": lp, "finish_reason": null})));
        }
        if !lp_pending.is_null() {
            // Text held back (a possible stop string or marker): the logprobs still go out.
            out.push(self.chunk(json!({"index": i, "delta": {}, "logprobs": lp_pending, "finish_reason": null})));
        }
        if let Some(f) = finish {
            let f = if self.has_calls[i] && f == "stop" { "tool_calls" } else { f };
            out.push(self.chunk(json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": f})));
        }
        out
    }
}

async fn send(tx: &Sender<Chunk>, s: String) -> bool {
    tx.send(Ok(s)).await.is_ok()
}

async fn drive(job: Job, mut rx: UnboundedReceiver<(usize, Event)>, tx: Sender<Chunk>) {
    let n = job.n;
    let mut ch = Chunker { job: &job, offsets: vec![0; n], tool_counts: vec![0; n], has_calls: vec![false; n] };
    let mut parsers: Vec<ReplyParser> = (0..n).map(|_| job.parser()).collect();
    let mut pending_forced: Vec<bool> = vec![!job.forced.is_empty(); n];
    if job.chat {
        for i in 0..n {
            let c = ch.chunk(json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}));
            if !send(&tx, frame(&c)).await {
                return;
            }
        }
    }
    let (mut prompt, mut completion, mut cached, mut done) = (0, 0, 0, 0);
    while done < n {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = tokio::time::sleep(KEEPALIVE) => {
                if !send(&tx, ": keepalive\n\n".into()).await { return; }
                continue;
            }
        };
        let Some((i, ev)) = ev else {
            let e = json!({"error": {"message": "the engine stopped before the reply was complete", "type": "server_error", "param": null, "code": null}});
            let _ = send(&tx, frame(&e)).await;
            return;
        };
        if i >= n {
            continue;
        }
        let chunks = match ev {
            Event::Delta { text, logprob } => {
                let mut t = String::new();
                if std::mem::take(&mut pending_forced[i]) {
                    t.push_str(&job.forced);
                }
                t.push_str(&text);
                let pieces = parsers[i].push(&t);
                let lps: Vec<TokenLogprob> = logprob.into_iter().collect();
                ch.pieces(i, pieces, &lps, None)
            }
            Event::Done { finish, prompt_tokens, completion_tokens, cached_tokens } => {
                prompt = prompt_tokens;
                completion += completion_tokens;
                if i == 0 {
                    cached = cached_tokens;
                }
                done += 1;
                let mut pieces = parsers[i].push(&job.close);
                pieces.extend(parsers[i].finish());
                ch.pieces(i, pieces, &[], Some(finish.as_str()))
            }
            Event::Error { message } => {
                let e = json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
                let _ = send(&tx, frame(&e)).await;
                return;
            }
        };
        for c in chunks {
            if !send(&tx, frame(&c)).await {
                return; // the client is gone; dropping `rx` frees the engine slot
            }
        }
    }
    if job.include_usage {
        let mut c = ch.chunk(json!(null));
        c["choices"] = json!([]);
        c["usage"] = usage(prompt, completion, cached);
        if !send(&tx, frame(&c)).await {
            return;
        }
    }
    let _ = send(&tx, "data: [DONE]\n\n".into()).await;
}
