//! Chat templates: the Jinja templates Hugging Face tokenizers carry, rendered with minijinja the
//! way transformers renders them (`utils/chat_template_utils.py`): `trim_blocks` and
//! `lstrip_blocks` on, loop controls, Python string methods (minijinja-contrib pycompat),
//! `raise_exception`, `strftime_now`, a `tojson` that is Python's `json.dumps` (no HTML escaping,
//! `indent`, `separators`, `sort_keys`), and `bos_token` / `eos_token` / ... as variables.
//!
//! `continue_final_message` follows transformers: the final message is rendered with a marker
//! appended and the text is cut where the marker lands, so the reply continues that message.

use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, ErrorKind};
use oxmx_core::{Error, Result};
use serde_json::Value;

/// A model's chat template text(s) and where they came from.
#[derive(Clone, Debug)]
pub struct ChatTemplateSource {
    /// (name, template); a plain string template is named "default".
    templates: Vec<(String, String)>,
    origin: String,
}

impl ChatTemplateSource {
    pub fn single(text: impl Into<String>, origin: impl Into<String>) -> Self {
        ChatTemplateSource { templates: vec![("default".into(), text.into())], origin: origin.into() }
    }

    /// From a `chat_template` JSON value: a string, or a list of `{"name", "template"}`.
    pub fn from_json(v: &Value, origin: &str) -> Result<Option<Self>> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(Self::single(s.clone(), origin))),
            Value::Array(items) => {
                let mut templates = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    let name = it.get("name").and_then(|x| x.as_str());
                    let text = it.get("template").and_then(|x| x.as_str());
                    match (name, text) {
                        (Some(n), Some(t)) => templates.push((n.to_string(), t.to_string())),
                        _ => {
                            return Err(Error::invalid(format!(
                                "[chat template] {origin}: entry {i} of the template list needs string 'name' and 'template'"
                            )))
                        }
                    }
                }
                Ok(Some(ChatTemplateSource { templates, origin: origin.to_string() }))
            }
            _ => Err(Error::invalid(format!("[chat template] {origin}: chat_template must be a string or a list of named templates"))),
        }
    }

    /// Template names.
    pub fn names(&self) -> Vec<&str> {
        self.templates.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The template `name`d, or "default" (transformers' choice when no name is given).
    pub fn select(&self, name: Option<&str>) -> Result<(&str, String)> {
        let want = name.unwrap_or("default");
        if let Some((n, t)) = self.templates.iter().find(|(n, _)| n == want) {
            let origin = if self.templates.len() > 1 { format!("{} (template '{n}')", self.origin) } else { self.origin.clone() };
            return Ok((t.as_str(), origin));
        }
        Err(Error::invalid(format!("[chat template] {}: no template named '{want}' (available: {})", self.origin, self.names().join(", "))))
    }
}

/// Options of [`ChatTemplate::apply`], as `apply_chat_template`'s keyword arguments.
#[derive(Clone, Debug, Default)]
pub struct ChatOptions {
    /// JSON-schema tool definitions (`tools=`).
    pub tools: Option<Vec<Value>>,
    /// `documents=` for RAG templates.
    pub documents: Option<Vec<Value>>,
    pub add_generation_prompt: bool,
    pub continue_final_message: bool,
    /// Passed as the template variable `enable_thinking` when set.
    pub enable_thinking: Option<bool>,
    /// Any other template variables (`--chat-template-args`); they override the special tokens.
    pub extra: serde_json::Map<String, Value>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    origin: String,
    specials: Vec<(String, String)>,
}

const TEMPLATE_NAME: &str = "chat_template";
const CONTINUE_TAG: &str = "CONTINUE_FINAL_MESSAGE_TAG ";

/// Python's `json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)`.
fn py_json_dumps(v: &Value, indent: Option<usize>, item_sep: &str, key_sep: &str, sort_keys: bool, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    match v {
        Value::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                py_json_dumps(x, indent, item_sep, key_sep, sort_keys, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        Value::Object(o) if !o.is_empty() => {
            out.push('{');
            let mut items: Vec<(&String, &Value)> = o.iter().collect();
            if sort_keys {
                items.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (i, (k, x)) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(key_sep);
                py_json_dumps(x, indent, item_sep, key_sep, sort_keys, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
        Value::Number(n) if n.is_f64() => {
            // Python prints floats with repr: 1.0 stays "1.0", 1e-05 as "1e-05".
            let f = n.as_f64().unwrap_or(0.0);
            out.push_str(&py_float_repr(f));
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // Shortest round-trip digits in Python's exponent form (1e-05, 1.5e+16).
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

fn tojson(v: JValue, kwargs: Kwargs) -> std::result::Result<JValue, minijinja::Error> {
    let indent: Option<JValue> = kwargs.get("indent")?;
    let separators: Option<JValue> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(i) if i.is_none() || i.is_undefined() => None,
        Some(i) => Some(
            usize::try_from(i.clone())
                .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: indent must be an integer, got {i}")))?,
        ),
    };
    let (item_sep, key_sep) = match separators {
        Some(s) if !s.is_none() && !s.is_undefined() => {
            let a: Vec<JValue> = s.try_iter()?.collect();
            if a.len() != 2 {
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair"));
            }
            (a[0].to_string(), a[1].to_string())
        }
        _ => (if indent.is_some() { ",".to_string() } else { ", ".to_string() }, ": ".to_string()),
    };
    let json: Value = serde_json::to_value(&v).map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    py_json_dumps(&json, indent, &item_sep, &key_sep, sort_keys.unwrap_or(false), 0, &mut out);
    Ok(JValue::from_safe_string(out))
}

fn raise_exception(msg: String) -> std::result::Result<JValue, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("raise_exception: {msg}")))
}

/// `datetime.now().strftime(fmt)` in UTC for the common directives.
fn strftime_now(fmt: String) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    strftime(secs, &fmt)
}

/// Formats a Unix time (UTC) with Python's strftime directives %Y %m %d %H %M %S %y %B %b %A %a %j %e %p %I %%.
pub fn strftime(secs: i64, fmt: &str) -> String {
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let days = secs.div_euclid(86400);
    let tod = secs.rem_euclid(86400);
    let (h, mi, s) = (tod / 3600, tod % 3600 / 60, tod % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let d = doy_mar - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(m - 1) as usize] + d + if leap && m > 2 { 1 } else { 0 };
    let wday = (days + 3).rem_euclid(7); // 1970-01-01 was a Thursday; 0 = Monday
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('I') => out.push_str(&format!("{:02}", if h % 12 == 0 { 12 } else { h % 12 })),
            Some('p') => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{mi:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('B') => out.push_str(MONTHS[(m - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(m - 1) as usize][..3]),
            Some('A') => out.push_str(DAYS[wday as usize]),
            Some('a') => out.push_str(&DAYS[wday as usize][..3]),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Python's `repr` of a value inside a printed container (`['a', 1, True, None]`).
fn py_repr(v: &JValue, out: &mut String) {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            // Python quotes with ' unless the text has a ' and no ".
            let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
            out.push(q);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == q => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push(q);
        }
        _ => py_str(v, out),
    }
}

/// Python's `str` of a value, which is what Jinja2 prints (`True`, `None`, `[1, 'a']`, `1.0`).
fn py_str(v: &JValue, out: &mut String) {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => match f64::try_from(v.clone()) {
            Ok(f) if v.as_i64().is_none() => out.push_str(&py_float_repr(f)),
            _ => out.push_str(&v.to_string()),
        },
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(it) = v.try_iter() {
                for (i, x) in it.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(&x, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(it) = v.try_iter() {
                for (i, k) in it.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(&k, out);
                    out.push_str(": ");
                    py_repr(&v.get_item(&k).unwrap_or_default(), out);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// One line naming the template source, the line and the problem.
fn describe(origin: &str, e: &minijinja::Error) -> Error {
    let mut msg = format!("[chat template] {origin}");
    if let Some(line) = e.line() {
        msg.push_str(&format!(", line {line}"));
    }
    msg.push_str(&format!(": {}", e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string())));
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::invalid(msg)
}

/// transformers' `{% generation %}` block only marks assistant text for training masks; it renders
/// its body unchanged, so the tags are dropped before compiling.
fn strip_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(i) = rest.find("{%") {
        let Some(j) = rest[i..].find("%}") else { break };
        let inner = rest[i + 2..i + j].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..i]);
        if inner != "generation" && inner != "endgeneration" {
            out.push_str(&rest[i..i + j + 2]);
        }
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    out
}

impl ChatTemplate {
    /// Compiles `text`; `origin` names it in errors; `specials` are variables such as
    /// ("bos_token", "<s>").
    pub fn new(text: &str, origin: impl Into<String>, specials: Vec<(String, String)>) -> Result<ChatTemplate> {
        let origin = origin.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        // Printed values look as Jinja2 prints them (Python's str), not minijinja's (true, none).
        env.set_formatter(|out, _state, value| {
            let mut s = String::new();
            py_str(value, &mut s);
            out.write_str(&s).map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "cannot write the template output"))
        });
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(text)).map_err(|e| describe(&origin, &e))?;
        Ok(ChatTemplate { env, origin, specials })
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Renders `messages` (a list of `{"role", "content", ...}` objects), as transformers'
    /// `apply_chat_template(messages, tokenize=False, ...)`.
    pub fn apply(&self, messages: &[Value], opts: &ChatOptions) -> Result<String> {
        let bad = |m: String| Error::invalid(format!("[chat template] {}: {m}", self.origin));
        if opts.continue_final_message && opts.add_generation_prompt {
            return Err(bad("continue_final_message and add_generation_prompt are mutually exclusive".into()));
        }
        let mut msgs: Vec<Value> = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let Value::Object(o) = m else {
                return Err(bad(format!("message {i} is not an object")));
            };
            // Reasoning under any of its names is visible as reasoning_content and thinking.
            let reasoning = ["reasoning_content", "thinking", "reasoning"].iter().find_map(|k| o.get(*k).filter(|v| !v.is_null()).cloned());
            let mut o = o.clone();
            if let Some(r) = reasoning {
                let mut n = serde_json::Map::new();
                n.insert("thinking".into(), r.clone());
                for (k, v) in o {
                    n.insert(k, v);
                }
                n.insert("reasoning_content".into(), r);
                o = n;
            }
            msgs.push(Value::Object(o));
        }
        let mut final_text: Option<String> = None;
        if opts.continue_final_message {
            let last = msgs.last_mut().ok_or_else(|| bad("continue_final_message is set but the conversation is empty".into()))?;
            match last.get_mut("content") {
                Some(Value::String(s)) => {
                    final_text = Some(s.clone());
                    s.push_str(CONTINUE_TAG);
                }
                Some(Value::Array(blocks)) => {
                    let block = blocks.iter_mut().rev().find(|b| b.get("text").is_some_and(|t| t.is_string()));
                    let Some(b) = block else {
                        return Err(bad("continue_final_message is set but the final message has no text to continue".into()));
                    };
                    let t = b["text"].as_str().unwrap_or_default().to_string();
                    b["text"] = Value::String(format!("{t}{CONTINUE_TAG}"));
                    final_text = Some(t);
                }
                _ => return Err(bad("continue_final_message is set but the final message has no \"content\" to continue".into())),
            }
        }
        let mut ctx = serde_json::Map::new();
        for (k, v) in &self.specials {
            ctx.insert(k.clone(), Value::String(v.clone()));
        }
        ctx.insert("messages".into(), Value::Array(msgs));
        ctx.insert("tools".into(), opts.tools.clone().map(Value::Array).unwrap_or(Value::Null));
        ctx.insert("documents".into(), opts.documents.clone().map(Value::Array).unwrap_or(Value::Null));
        ctx.insert("add_generation_prompt".into(), Value::Bool(opts.add_generation_prompt));
        if let Some(t) = opts.enable_thinking {
            ctx.insert("enable_thinking".into(), Value::Bool(t));
        }
        for (k, v) in &opts.extra {
            ctx.insert(k.clone(), v.clone());
        }
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(|e| describe(&self.origin, &e))?;
        let rendered = tmpl.render(JValue::from_serialize(&ctx)).map_err(|e| describe(&self.origin, &e))?;
        if let Some(fin) = final_text {
            let tag = CONTINUE_TAG.trim();
            if !rendered.contains(fin.trim()) || !rendered.contains(tag) {
                return Err(bad("continue_final_message is set but the final message does not appear in the rendered chat (the template drops part of it)".into()));
            }
            let loc = rendered.rfind(tag).unwrap_or(rendered.len());
            return Ok(if rendered[loc..].starts_with(CONTINUE_TAG) {
                rendered[..loc].to_string()
            } else {
                rendered[..loc].trim_end().to_string()
            });
        }
        Ok(rendered)
    }
}
