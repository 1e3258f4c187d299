//! Reading OpenAI requests: every field is checked for its type and range and a bad one is a 400
//! naming it (unknown fields are ignored, as OpenAI's clients send extras). Chat messages go
//! through the model's chat template (oxmx-lm's `ChatTemplate`), with `tools` passed to
//! templates that know them and described in a system message for those that do not.

use super::error::ApiError;
use super::json_mask::JsonMask;
use crate::chat::ChatOptions;
use crate::sample::{ProcessorConfig, SamplerConfig};
use crate::tokenizer::Tokenizer;
use serde_json::{json, Map, Value};

/// Per-request defaults from the command line (mlx-lm's server flags).
#[derive(Clone, Debug)]
pub struct Defaults {
    pub temp: f64,
    pub top_p: f64,
    pub top_k: usize,
    pub min_p: f64,
    pub max_tokens: usize,
    /// Extra chat-template variables (`--chat-template-args`).
    pub template_args: Map<String, Value>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults { temp: 0.0, top_p: 1.0, top_k: 0, min_p: 0.0, max_tokens: 512, template_args: Map::new() }
    }
}

/// The fields both endpoints share.
#[derive(Clone, Debug)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub processors: ProcessorConfig,
    pub stop: Vec<String>,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// `Some(k)`: logprobs with `k` alternatives.
    pub logprobs: Option<usize>,
    pub json: Option<JsonMask>,
}

pub fn as_object(v: &Value) -> Result<&Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| ApiError::bad_json("the request body must be a JSON object"))
}

fn get<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

pub fn num(o: &Map<String, Value>, k: &str) -> Result<Option<f64>, ApiError> {
    match get(o, k) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| ApiError::invalid(k, format!("'{k}' must be a number, got {v}"))),
    }
}

pub fn int(o: &Map<String, Value>, k: &str) -> Result<Option<i64>, ApiError> {
    match get(o, k) {
        None => Ok(None),
        Some(v) => match v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64)) {
            Some(i) => Ok(Some(i)),
            None => Err(ApiError::invalid(k, format!("'{k}' must be an integer, got {v}"))),
        },
    }
}

pub fn boolean(o: &Map<String, Value>, k: &str) -> Result<Option<bool>, ApiError> {
    match get(o, k) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| ApiError::invalid(k, format!("'{k}' must be true or false, got {v}"))),
    }
}

fn in_range(k: &str, v: f64, lo: f64, hi: f64) -> Result<f64, ApiError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(ApiError::invalid(k, format!("'{k}' must be in [{lo}, {hi}], got {v}")))
    }
}

/// `logprobs` as the chat endpoint has it (a bool plus `top_logprobs`) or as the legacy
/// completions endpoint has it (an integer count).
fn logprobs(o: &Map<String, Value>, chat: bool) -> Result<Option<usize>, ApiError> {
    if chat {
        let on = boolean(o, "logprobs")?.unwrap_or(false);
        let top = int(o, "top_logprobs")?;
        if let Some(t) = top {
            in_range("top_logprobs", t as f64, 0.0, 20.0)?;
            if !on {
                return Err(ApiError::invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true"));
            }
        }
        Ok(on.then_some(top.unwrap_or(0) as usize))
    } else {
        match int(o, "logprobs")? {
            None => Ok(None),
            Some(n) => Ok(Some(in_range("logprobs", n as f64, 0.0, 20.0)? as usize)),
        }
    }
}

fn stop_strings(o: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let list = match get(o, "stop") {
        None => return Ok(vec![]),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            let mut v = Vec::new();
            for x in a {
                match x.as_str() {
                    Some(s) => v.push(s.to_string()),
                    None => return Err(ApiError::invalid("stop", "'stop' must be a string or a list of strings")),
                }
            }
            v
        }
        Some(_) => return Err(ApiError::invalid("stop", "'stop' must be a string or a list of strings")),
    };
    if list.len() > 16 {
        return Err(ApiError::invalid("stop", format!("at most 16 stop strings, got {}", list.len())));
    }
    if list.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid("stop", "stop strings must not be empty"));
    }
    Ok(list)
}

fn logit_bias(o: &Map<String, Value>, vocab: usize) -> Result<Vec<(u32, f32)>, ApiError> {
    let Some(v) = get(o, "logit_bias") else { return Ok(vec![]) };
    let Value::Object(m) = v else {
        return Err(ApiError::invalid("logit_bias", "'logit_bias' must map token ids to biases"));
    };
    let mut out = Vec::new();
    for (k, b) in m {
        let id: u32 = k.parse().map_err(|_| ApiError::invalid("logit_bias", format!("logit_bias key '{k}' is not a token id")))?;
        if id as usize >= vocab {
            return Err(ApiError::invalid("logit_bias", format!("logit_bias token {id} is outside the vocabulary ({vocab})")));
        }
        let b = b.as_f64().ok_or_else(|| ApiError::invalid("logit_bias", format!("the bias of token {id} must be a number")))?;
        out.push((id, in_range("logit_bias", b, -100.0, 100.0)? as f32));
    }
    Ok(out)
}

fn response_format(o: &Map<String, Value>) -> Result<Option<JsonMask>, ApiError> {
    let Some(rf) = get(o, "response_format") else { return Ok(None) };
    let bad = |m: String| ApiError::invalid("response_format", m);
    match rf.get("type").and_then(|t| t.as_str()) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JsonMask::object())),
        Some("json_schema") => {
            let schema = rf
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .ok_or_else(|| bad("json_schema needs {\"json_schema\": {\"name\", \"schema\"}}".into()))?;
            JsonMask::schema(schema).map(Some).map_err(bad)
        }
        _ => Err(bad(format!("response_format type must be 'text', 'json_object' or 'json_schema', got {rf}"))),
    }
}

/// The shared fields, checked.
pub fn common(o: &Map<String, Value>, chat: bool, vocab: usize, d: &Defaults) -> Result<Common, ApiError> {
    let model = match get(o, "model") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::invalid("model", "'model' must be a string")),
    };
    let max_tokens = match (int(o, "max_completion_tokens")?, int(o, "max_tokens")?) {
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => d.max_tokens as i64,
    };
    if max_tokens < 1 {
        return Err(ApiError::invalid("max_tokens", format!("'max_tokens' must be at least 1, got {max_tokens}")));
    }
    let temp = in_range("temperature", num(o, "temperature")?.unwrap_or(d.temp), 0.0, 2.0)?;
    let top_p = in_range("top_p", num(o, "top_p")?.unwrap_or(d.top_p), 0.0, 1.0)?;
    let min_p = in_range("min_p", num(o, "min_p")?.unwrap_or(d.min_p), 0.0, 1.0)?;
    let top_k = match int(o, "top_k")? {
        None => d.top_k,
        Some(-1) => 0, // vLLM's "off"
        Some(k) if k >= 0 => k as usize,
        Some(k) => return Err(ApiError::invalid("top_k", format!("'top_k' must be >= 0 (or -1 for off), got {k}"))),
    };
    let seed = match int(o, "seed")? {
        Some(s) if s < 0 => return Err(ApiError::invalid("seed", "'seed' must be >= 0")),
        s => s.map(|s| s as u64),
    };
    let presence = num(o, "presence_penalty")?.map(|p| in_range("presence_penalty", p, -2.0, 2.0)).transpose()?;
    let frequency = num(o, "frequency_penalty")?.map(|p| in_range("frequency_penalty", p, -2.0, 2.0)).transpose()?;
    let repetition = num(o, "repetition_penalty")?.map(|p| in_range("repetition_penalty", p, 0.0, 10.0)).transpose()?;
    let n = int(o, "n")?.unwrap_or(1);
    if !(1..=16).contains(&n) {
        return Err(ApiError::invalid("n", format!("'n' must be in [1, 16], got {n}")));
    }
    let stream = boolean(o, "stream")?.unwrap_or(false);
    let include_usage = match get(o, "stream_options") {
        None => false,
        Some(Value::Object(so)) => {
            if !stream {
                return Err(ApiError::invalid("stream_options", "'stream_options' is only allowed with 'stream': true"));
            }
            boolean(so, "include_usage")
                .map_err(|_| ApiError::invalid("stream_options", "'include_usage' must be a bool"))?
                .unwrap_or(false)
        }
        Some(_) => return Err(ApiError::invalid("stream_options", "'stream_options' must be an object")),
    };
    Ok(Common {
        model,
        max_tokens: max_tokens as usize,
        sampler: SamplerConfig { temp, top_p, min_p, top_k, seed, ..SamplerConfig::default() },
        processors: ProcessorConfig {
            logit_bias: logit_bias(o, vocab)?,
            repetition_penalty: repetition,
            presence_penalty: presence,
            frequency_penalty: frequency,
            ..ProcessorConfig::default()
        },
        stop: stop_strings(o)?,
        n: n as usize,
        stream,
        include_usage,
        logprobs: logprobs(o, chat)?,
        json: response_format(o)?,
    })
}

/// `/v1/completions`' prompt: a string (or a one-string list), or token ids.
pub fn completion_prompt(o: &Map<String, Value>, tok: &Tokenizer, vocab: usize) -> Result<Vec<u32>, ApiError> {
    let bad = || ApiError::invalid("prompt", "'prompt' must be a string, a list of one string, or a list of token ids");
    let ids = match get(o, "prompt").ok_or_else(|| ApiError::invalid("prompt", "'prompt' is required"))? {
        Value::String(s) => tok.encode(s, true).map_err(|e| ApiError::invalid("prompt", e.message().to_string()))?,
        Value::Array(a) if a.len() == 1 && a[0].is_string() => {
            tok.encode(a[0].as_str().unwrap_or(""), true).map_err(|e| ApiError::invalid("prompt", e.message().to_string()))?
        }
        Value::Array(a) if !a.is_empty() && a.iter().all(|x| x.is_u64()) => {
            let ids: Vec<u32> = a.iter().filter_map(|x| x.as_u64()).map(|x| x.min(u32::MAX as u64) as u32).collect();
            if let Some(&t) = ids.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::invalid("prompt", format!("prompt token {t} is outside the vocabulary ({vocab})")));
            }
            ids
        }
        _ => return Err(bad()),
    };
    if ids.is_empty() {
        return Err(ApiError::invalid("prompt", "the prompt is empty"));
    }
    Ok(ids)
}

/// A templated chat prompt.
pub struct ChatPrompt {
    pub ids: Vec<u32>,
    /// Tool calls are parsed from the reply.
    pub tools: bool,
    /// The template opened a `<think>` block the reply continues.
    pub in_reasoning: bool,
    /// Text the server wrote at the start of the reply (a forced tool call) that the reply parser
    /// must see first, and the text that closes it after the reply.
    pub forced: String,
    pub close: String,
    /// The constraint a forced tool call puts on the reply (its arguments' schema).
    pub json: Option<JsonMask>,
}

/// Message content: a string, null, or a list of `{"type": "text", "text"}` parts.
fn content_text(m: &Map<String, Value>, i: usize) -> Result<Value, ApiError> {
    match get(m, "content") {
        None => Ok(Value::String(String::new())),
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => {
            let mut s = String::new();
            for p in parts {
                match (p.get("type").and_then(|t| t.as_str()), p.get("text").and_then(|t| t.as_str())) {
                    (Some("text"), Some(t)) => s.push_str(t),
                    (ty, _) => {
                        return Err(ApiError::invalid(
                            "messages",
                            format!("messages[{i}]: only text content parts are supported, got type {}", ty.unwrap_or("(none)")),
                        ))
                    }
                }
            }
            Ok(Value::String(s))
        }
        Some(_) => Err(ApiError::invalid("messages", format!("messages[{i}].content must be a string, null or a list of parts"))),
    }
}

/// Messages as the chat template takes them (tool-call arguments as objects, as mlx-lm passes them).
fn template_messages(o: &Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let msgs = match get(o, "messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::invalid("messages", "'messages' must not be empty")),
        Some(_) => return Err(ApiError::invalid("messages", "'messages' must be a list")),
        None => return Err(ApiError::invalid("messages", "'messages' is required")),
    };
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let Value::Object(m) = m else { return Err(ApiError::invalid("messages", format!("messages[{i}] must be an object"))) };
        let role = m.get("role").and_then(|r| r.as_str()).unwrap_or("");
        let role = match role {
            "system" | "user" | "assistant" | "tool" => role,
            "developer" => "system",
            _ => {
                return Err(ApiError::invalid(
                    "messages",
                    format!("messages[{i}].role must be system, developer, user, assistant or tool, got '{role}'"),
                ))
            }
        };
        let mut msg = json!({"role": role, "content": content_text(m, i)?});
        if let Some(Value::Array(calls)) = get(m, "tool_calls") {
            let mut tc = Vec::new();
            for c in calls {
                let f = c.get("function").cloned().unwrap_or(Value::Null);
                let args = match f.get("arguments") {
                    Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
                    Some(a) => a.clone(),
                    None => json!({}),
                };
                tc.push(json!({"id": c.get("id"), "type": "function", "function": {"name": f.get("name"), "arguments": args}}));
            }
            msg["tool_calls"] = Value::Array(tc);
        }
        for k in ["tool_call_id", "name"] {
            if let Some(v) = get(m, k) {
                msg[k] = v.clone();
            }
        }
        out.push(msg);
    }
    Ok(out)
}

/// A system message describing `tools` for templates that have no tools section (SmolLM2's);
/// the reply format is the one [`super::reply_parse`] reads.
fn tools_system_text(tools: &[Value]) -> String {
    let list: Vec<String> = tools.iter().map(|t| t.get("function").unwrap_or(t).to_string()).collect();
    format!(
        "You are an expert in composing functions. You have access to the following tools:\n<tools>{}</tools>\n\n\
         To call a tool, reply with <tool_call>{{\"name\": <tool name>, \"arguments\": <arguments object>}}</tool_call>.",
        list.join("\n")
    )
}

/// A call of `name` the server starts: it writes the call's head, the model writes the arguments,
/// held to the function's parameter schema when the constrained decoder supports it (else to any
/// JSON object). Returns (constraint, head, tail).
fn forced_call(tools: &[Value], name: &str) -> (Option<JsonMask>, String, String) {
    let params = tools.iter().find(|t| t["function"]["name"].as_str() == Some(name)).and_then(|t| t["function"].get("parameters"));
    let mask = params.and_then(|p| JsonMask::schema(p).ok()).unwrap_or_else(JsonMask::object);
    (Some(mask), format!("<tool_call>\n{{\"name\": \"{name}\", \"arguments\": "), "}\n</tool_call>".into())
}

pub fn chat_prompt(o: &Map<String, Value>, tok: &Tokenizer, d: &Defaults) -> Result<ChatPrompt, ApiError> {
    let mut msgs = template_messages(o)?;
    let tools = match get(o, "tools") {
        None => vec![],
        Some(Value::Array(t)) => {
            for (i, x) in t.iter().enumerate() {
                if x.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str()).is_none() {
                    return Err(ApiError::invalid(
                        "tools",
                        format!("tools[{i}] needs {{\"type\": \"function\", \"function\": {{\"name\", ...}}}}"),
                    ));
                }
            }
            t.clone()
        }
        Some(_) => return Err(ApiError::invalid("tools", "'tools' must be a list")),
    };
    // tool_choice: "none" hides the tools; "required" or a named function starts the reply with
    // the call (the model fills in the rest).
    let mut forced = String::new();
    let mut close = String::new();
    let mut json = None;
    let use_tools = match get(o, "tool_choice") {
        None => !tools.is_empty(),
        Some(Value::String(s)) => match s.as_str() {
            "none" => false,
            "auto" => !tools.is_empty(),
            "required" if tools.len() == 1 => {
                // One tool: the same as naming it.
                let name = tools[0]["function"]["name"].as_str().unwrap_or("").to_string();
                (json, forced, close) = forced_call(&tools, &name);
                true
            }
            "required" => {
                if tools.is_empty() {
                    return Err(ApiError::invalid("tool_choice", "tool_choice 'required' needs 'tools'"));
                }
                // The reply is one call: {"name": <one of the tools>, "arguments": {...}}.
                let names: Vec<&str> = tools.iter().filter_map(|t| t["function"]["name"].as_str()).collect();
                let schema = json!({"type": "object", "properties": {"name": {"enum": names}, "arguments": {"type": "object"}},
                    "required": ["name", "arguments"]});
                json = Some(JsonMask::schema(&schema).map_err(|e| ApiError::invalid("tools", e))?);
                forced = "<tool_call>\n".into();
                close = "\n</tool_call>".into();
                true
            }
            _ => {
                return Err(ApiError::invalid("tool_choice", format!("tool_choice must be none, auto, required or a function, got '{s}'")))
            }
        },
        Some(Value::Object(c)) => {
            let name = c.get("function").and_then(|f| f.get("name")).and_then(|n| n.as_str()).unwrap_or("");
            if !tools.iter().any(|t| t["function"]["name"].as_str() == Some(name)) {
                return Err(ApiError::invalid("tool_choice", format!("tool_choice names '{name}', which is not in 'tools'")));
            }
            (json, forced, close) = forced_call(&tools, name);
            true
        }
        Some(_) => return Err(ApiError::invalid("tool_choice", "tool_choice must be a string or an object")),
    };
    let mut opts = ChatOptions { add_generation_prompt: true, ..ChatOptions::default() };
    let mut kwargs = d.template_args.clone();
    if let Some(Value::Object(k)) = get(o, "chat_template_kwargs") {
        kwargs.extend(k.clone());
    }
    for (k, v) in kwargs {
        match k.as_str() {
            "enable_thinking" => opts.enable_thinking = v.as_bool(),
            _ => {
                opts.extra.insert(k, v);
            }
        }
    }
    if !tok.has_chat_template() {
        // No template: the messages' text, one per line, as mlx-lm's fallback.
        let text: String = msgs.iter().map(|m| format!("{}\n", m["content"].as_str().unwrap_or(""))).collect();
        let ids = tok.encode(&(text + &forced), true).map_err(|e| ApiError::invalid("messages", e.message().to_string()))?;
        return Ok(ChatPrompt { ids, tools: use_tools, in_reasoning: false, forced, close, json });
    }
    let template = tok.chat_template(None).map_err(|e| ApiError::internal(e.message().to_string()))?;
    if use_tools {
        let knows_tools = tok.chat_template_source().and_then(|s| s.select(None).ok()).is_some_and(|(_, t)| t.contains("tools"));
        if knows_tools {
            opts.tools = Some(tools.clone());
        } else {
            // Prepend to (or create) the system message.
            let text = tools_system_text(&tools);
            match msgs.first_mut() {
                Some(m) if m["role"] == "system" => {
                    let old = m["content"].as_str().unwrap_or("").to_string();
                    m["content"] = Value::String(format!("{old}\n\n{text}"));
                }
                _ => msgs.insert(0, json!({"role": "system", "content": text})),
            }
        }
    }
    let text = template.apply(&msgs, &opts).map_err(|e| ApiError::invalid("messages", e.message().to_string()))?;
    let in_reasoning = {
        let t = text.trim_end();
        t.ends_with("<think>") && !t.ends_with("</think>")
    };
    let full = format!("{text}{forced}");
    let ids = tok.encode(&full, false).map_err(|e| ApiError::invalid("messages", e.message().to_string()))?;
    Ok(ChatPrompt { ids, tools: use_tools, in_reasoning, forced, close, json })
}
