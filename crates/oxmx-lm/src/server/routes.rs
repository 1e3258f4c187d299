//! The HTTP side: routes, API-key and CORS guard, request validation, and turning the engine's
//! events into OpenAI responses (a JSON body, or server-sent events through [`super::sse`]).

use super::engine::EngineStats;
use super::error::ApiError;
use super::openai::{as_object, chat_prompt, common, completion_prompt, Common, Defaults};
use super::reply_parse::{Piece, ReplyParser};
use super::sequence::{EngineRequest, Event, Finish, GenSpec, TokenLogprob};
use super::sse;
use crate::tokenizer::Tokenizer;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Largest request body read (long conversations fit easily).
const MAX_BODY: usize = 64 << 20;

pub struct AppState {
    pub model_id: String,
    pub tok: Arc<Tokenizer>,
    pub vocab: usize,
    /// The model's context length, when known.
    pub context: Option<usize>,
    pub defaults: Defaults,
    pub engine: Sender<EngineRequest>,
    pub stats: Arc<EngineStats>,
    pub api_key: Option<String>,
    pub cors: bool,
    pub created: u64,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/models/{*id}", get(model_one))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .fallback(|req: Request| async move { ApiError::not_found(req.uri().path()) })
        .method_not_allowed_fallback(|req: Request| async move {
            let mut e = ApiError::not_found(req.uri().path());
            e.status = StatusCode::METHOD_NOT_ALLOWED;
            e.message = format!("{} is not allowed on {}", req.method(), req.uri().path());
            e.code = Some("method_not_allowed");
            e
        })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// API key (Bearer) on everything but `/health`; CORS headers and preflight only with `--cors`.
async fn guard(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if s.cors && req.method() == Method::OPTIONS {
        return with_cors(StatusCode::NO_CONTENT.into_response());
    }
    if let Some(key) = &s.api_key {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|k| constant_time_eq(k.trim().as_bytes(), key.as_bytes()));
        if !ok && req.uri().path() != "/health" {
            let r = ApiError::unauthorized().into_response();
            return if s.cors { with_cors(r) } else { r };
        }
    }
    let r = next.run(req).await;
    if s.cors {
        with_cors(r)
    } else {
        r
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn with_cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
    r
}

fn json_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn health(State(s): State<Shared>) -> Response {
    let st = &s.stats;
    json_response(json!({
        "status": "ok",
        "active_requests": st.active.load(Ordering::Relaxed),
        "waiting_requests": st.waiting.load(Ordering::Relaxed),
        "max_batch": st.max_batch.load(Ordering::Relaxed),
        "prompt_cache_bytes": st.prompt_cache_bytes.load(Ordering::Relaxed),
        "prompt_cache_entries": st.prompt_cache_entries.load(Ordering::Relaxed),
        "active_memory_bytes": oxmx_core::memory::active_memory(),
    }))
}

fn model_card(s: &AppState) -> Value {
    json!({"id": s.model_id, "object": "model", "created": s.created, "owned_by": "oxmx"})
}

async fn models(State(s): State<Shared>) -> Response {
    json_response(json!({"object": "list", "data": [model_card(&s)]}))
}

async fn model_one(State(s): State<Shared>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    if id == s.model_id {
        json_response(model_card(&s))
    } else {
        ApiError::model_not_found(&id, &s.model_id).into_response()
    }
}

async fn chat(State(s): State<Shared>, req: Request) -> Response {
    run(s, req, true).await.unwrap_or_else(|e| e.into_response())
}

async fn completions(State(s): State<Shared>, req: Request) -> Response {
    run(s, req, false).await.unwrap_or_else(|e| e.into_response())
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn new_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{prefix}-{t:x}{:04x}", N.fetch_add(1, Ordering::Relaxed) & 0xffff)
}

/// What a response needs to know about how the reply is read.
pub struct Job {
    pub chat: bool,
    pub id: String,
    pub model: String,
    pub created: u64,
    pub n: usize,
    pub include_usage: bool,
    pub logprobs: bool,
    pub tools: bool,
    pub in_reasoning: bool,
    pub forced: String,
    pub close: String,
}

impl Job {
    pub fn parser(&self) -> ReplyParser {
        ReplyParser::new(self.in_reasoning, self.chat && self.tools)
    }
}

async fn run(s: Shared, req: Request, chat: bool) -> Result<Response, ApiError> {
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_json(format!("cannot read the request body (at most {MAX_BODY} bytes): {e}")))?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_json(format!("the request body is not valid JSON: {e}")))?;
    let o = as_object(&v)?;
    let c: Common = common(o, chat, s.vocab, &s.defaults)?;
    if let Some(m) = &c.model {
        if *m != s.model_id && !m.is_empty() && m != "default_model" {
            return Err(ApiError::model_not_found(m, &s.model_id));
        }
    }
    let mut c = c;
    let (ids, tools, in_reasoning, forced, close) = if chat {
        let p = chat_prompt(o, &s.tok, &s.defaults)?;
        if p.json.is_some() {
            c.json = p.json; // a forced tool call's arguments take the constraint
        }
        (p.ids, p.tools, p.in_reasoning, p.forced, p.close)
    } else {
        (completion_prompt(o, &s.tok, s.vocab)?, false, false, String::new(), String::new())
    };
    let mut max_tokens = c.max_tokens;
    if let Some(ctx) = s.context {
        if ids.len() >= ctx {
            let mut e = ApiError::context_length(ids.len(), ctx);
            e.param = Some(if chat { "messages" } else { "prompt" }.into());
            return Err(e);
        }
        max_tokens = max_tokens.min(ctx - ids.len());
    }
    let (tx, rx) = unbounded_channel();
    for i in 0..c.n {
        let mut sampler = c.sampler.clone();
        sampler.seed = sampler.seed.map(|x| x.wrapping_add(i as u64));
        let spec = GenSpec {
            prompt: ids.clone(),
            max_tokens,
            sampler,
            processors: c.processors.clone(),
            stop: c.stop.clone(),
            logprobs: c.logprobs,
            json: c.json.clone(),
        };
        s.engine.send(EngineRequest { spec, index: i, tx: tx.clone() }).map_err(|_| ApiError::internal("the engine has stopped"))?;
    }
    drop(tx);
    let job = Job {
        chat,
        id: new_id(if chat { "chatcmpl" } else { "cmpl" }),
        model: s.model_id.clone(),
        created: now(),
        n: c.n,
        include_usage: c.include_usage,
        logprobs: c.logprobs.is_some(),
        tools,
        in_reasoning,
        forced,
        close,
    };
    if c.stream {
        return Ok(sse::stream(job, rx));
    }
    collect(job, rx).await
}

/// One choice gathered for a non-streamed response.
#[derive(Default)]
struct Choice {
    text: String,
    logprobs: Vec<TokenLogprob>,
    finish: Option<Finish>,
}

pub fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

/// OpenAI's chat logprob entry.
pub fn chat_logprob(t: &TokenLogprob) -> Value {
    let top: Vec<Value> = t.top.iter().map(|(tok, b, lp)| json!({"token": tok, "logprob": lp, "bytes": b})).collect();
    json!({"token": t.token, "logprob": t.logprob, "bytes": t.bytes, "top_logprobs": top})
}

/// The legacy completions layout for a run of tokens starting at `offset` in the text.
pub fn completion_logprobs(ts: &[TokenLogprob], mut offset: usize) -> Value {
    let mut offsets = Vec::new();
    for t in ts {
        offsets.push(offset);
        offset += t.token.len();
    }
    let top: Vec<Value> = ts.iter().map(|t| Value::Object(t.top.iter().map(|(tok, _, lp)| (tok.clone(), json!(lp))).collect())).collect();
    json!({
        "tokens": ts.iter().map(|t| t.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": ts.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

/// Pieces of a parsed reply as a chat message.
pub fn message_of(pieces: Vec<Piece>) -> (Value, bool) {
    let (mut content, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for p in pieces {
        match p {
            Piece::Content(t) => content.push_str(&t),
            Piece::Reasoning(t) => reasoning.push_str(&t),
            Piece::Tool(c) => calls.push(json!({"id": new_id("call"), "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}})),
        }
    }
    let has_calls = !calls.is_empty();
    let mut m = json!({"role": "assistant", "content": if content.is_empty() && has_calls { Value::Null } else { Value::String(content) }});
    if !reasoning.is_empty() {
        m["reasoning_content"] = Value::String(reasoning);
    }
    if has_calls {
        m["tool_calls"] = Value::Array(calls);
    }
    (m, has_calls)
}

async fn collect(job: Job, mut rx: UnboundedReceiver<(usize, Event)>) -> Result<Response, ApiError> {
    let mut choices: Vec<Choice> = (0..job.n).map(|_| Choice::default()).collect();
    let (mut prompt, mut completion, mut cached) = (0, 0, 0);
    let mut done = 0;
    while done < job.n {
        let Some((i, ev)) = rx.recv().await else {
            return Err(ApiError::internal("the engine stopped before the reply was complete"));
        };
        let Some(ch) = choices.get_mut(i) else { continue };
        match ev {
            Event::Delta { text, logprob } => {
                ch.text.push_str(&text);
                ch.logprobs.extend(logprob);
            }
            Event::Done { finish, prompt_tokens, completion_tokens, cached_tokens } => {
                ch.finish = Some(finish);
                prompt = prompt_tokens;
                completion += completion_tokens;
                if i == 0 {
                    cached = cached_tokens;
                }
                done += 1;
            }
            Event::Error { message } => return Err(ApiError::internal(message)),
        }
    }
    let out: Vec<Value> = choices
        .into_iter()
        .enumerate()
        .map(|(i, ch)| {
            let finish = ch.finish.map_or("stop", |f| f.as_str());
            if job.chat {
                let mut p = job.parser();
                let mut pieces = p.push(&format!("{}{}{}", job.forced, ch.text, job.close));
                pieces.extend(p.finish());
                let (message, has_calls) = message_of(pieces);
                let finish = if has_calls && finish == "stop" { "tool_calls" } else { finish };
                let lp =
                    if job.logprobs { json!({"content": ch.logprobs.iter().map(chat_logprob).collect::<Vec<_>>()}) } else { Value::Null };
                json!({"index": i, "message": message, "logprobs": lp, "finish_reason": finish})
            } else {
                let lp = if job.logprobs { completion_logprobs(&ch.logprobs, 0) } else { Value::Null };
                json!({"index": i, "text": ch.text, "logprobs": lp, "finish_reason": finish})
            }
        })
        .collect();
    Ok(json_response(json!({
        "id": job.id,
        "object": if job.chat { "chat.completion" } else { "text_completion" },
        "created": job.created,
        "model": job.model,
        "system_fingerprint": sse::FINGERPRINT,
        "choices": out,
        "usage": usage(prompt, completion, cached),
    })))
}

/// A streamed body from a channel of byte chunks.
pub fn body_of(rx: tokio::sync::mpsc::Receiver<bytes_chunk::Chunk>) -> Body {
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

pub mod bytes_chunk {
    /// One piece of a streamed body.
    pub type Chunk = Result<String, std::convert::Infallible>;
}
