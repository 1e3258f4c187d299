//! Splits a chat reply as it streams into content, reasoning (`<think>`…`</think>`, sent as
//! `reasoning_content`) and tool calls (`<tool_call>`…`</tool_call>` holding JSON: the
//! Qwen2.5/Qwen3/Hermes format, one `{"name", "arguments"}` object; SmolLM2 writes a list of them
//! in the same tags). Markers are stripped; text that may be the start of a marker is held back
//! until it is known. A tool block that does not parse is returned as content, not dropped.

use serde_json::Value;

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const TOOL_OPEN: &str = "<tool_call>";
const TOOL_CLOSE: &str = "</tool_call>";

#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as a JSON string (OpenAI's layout).
    pub arguments: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Content(String),
    Reasoning(String),
    Tool(ToolCall),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Normal,
    Reasoning,
    Tool,
}

pub struct ReplyParser {
    state: State,
    pending: String,
    tool_text: String,
    tools: bool,
}

impl ReplyParser {
    /// `in_reasoning`: the prompt left a `<think>` open (the template started the reasoning).
    /// `tools`: tool calls are parsed (the request offered tools).
    pub fn new(in_reasoning: bool, tools: bool) -> ReplyParser {
        ReplyParser {
            state: if in_reasoning { State::Reasoning } else { State::Normal },
            pending: String::new(),
            tool_text: String::new(),
            tools,
        }
    }

    fn markers(&self) -> Vec<&'static str> {
        match self.state {
            State::Normal if self.tools => vec![THINK_OPEN, TOOL_OPEN],
            State::Normal => vec![THINK_OPEN],
            State::Reasoning if self.tools => vec![THINK_CLOSE, TOOL_OPEN],
            State::Reasoning => vec![THINK_CLOSE],
            State::Tool => vec![TOOL_CLOSE],
        }
    }

    fn emit(&mut self, text: &str, out: &mut Vec<Piece>) {
        if text.is_empty() {
            return;
        }
        match self.state {
            State::Normal => push(out, Piece::Content(text.to_string())),
            State::Reasoning => push(out, Piece::Reasoning(text.to_string())),
            State::Tool => self.tool_text.push_str(text),
        }
    }

    /// Feeds new reply text; returns what is now known.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            let markers = self.markers();
            let found = markers.iter().filter_map(|m| self.pending.find(m).map(|i| (i, *m))).min();
            if let Some((i, m)) = found {
                let before = self.pending[..i].to_string();
                self.emit(&before, &mut out);
                self.pending.drain(..i + m.len());
                self.transition(m, &mut out);
                continue;
            }
            // Hold back a tail that could begin a marker.
            let hold = self
                .pending
                .char_indices()
                .map(|(i, _)| i)
                .find(|&i| markers.iter().any(|m| m.starts_with(&self.pending[i..])))
                .unwrap_or(self.pending.len());
            let now: String = self.pending.drain(..hold).collect();
            self.emit(&now, &mut out);
            return out;
        }
    }

    fn transition(&mut self, marker: &str, out: &mut Vec<Piece>) {
        self.state = match marker {
            THINK_OPEN => State::Reasoning,
            THINK_CLOSE => State::Normal,
            TOOL_OPEN => {
                self.tool_text.clear();
                State::Tool
            }
            _ => {
                self.finish_tool(out);
                State::Normal
            }
        };
    }

    fn finish_tool(&mut self, out: &mut Vec<Piece>) {
        let text = std::mem::take(&mut self.tool_text);
        match parse_tool_calls(&text) {
            Some(calls) => out.extend(calls.into_iter().map(Piece::Tool)),
            None => push(out, Piece::Content(format!("{TOOL_OPEN}{text}{TOOL_CLOSE}"))),
        }
    }

    /// The end of the reply: held-back text, and a tool call left unclosed (a model may stop
    /// right after its JSON).
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.pending);
        self.emit(&rest, &mut out);
        if self.state == State::Tool {
            let text = std::mem::take(&mut self.tool_text);
            match parse_tool_calls(&text) {
                Some(calls) => out.extend(calls.into_iter().map(Piece::Tool)),
                None => push(&mut out, Piece::Content(format!("{TOOL_OPEN}{text}"))),
            }
            self.state = State::Normal;
        }
        out
    }
}

/// Merges consecutive text of one kind.
fn push(out: &mut Vec<Piece>, p: Piece) {
    match (out.last_mut(), &p) {
        (Some(Piece::Content(a)), Piece::Content(b)) | (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(b),
        _ => out.push(p),
    }
}

/// `{"name", "arguments"}` or a list of them (`arguments` an object or a JSON string).
pub fn parse_tool_calls(text: &str) -> Option<Vec<ToolCall>> {
    let v: Value = serde_json::from_str(text.trim()).ok()?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return None,
    };
    if items.is_empty() {
        return None;
    }
    items
        .into_iter()
        .map(|it| {
            let name = it.get("name")?.as_str()?.to_string();
            let arguments = match it.get("arguments").or_else(|| it.get("parameters")) {
                None => "{}".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(a) => a.to_string(),
            };
            Some(ToolCall { name, arguments })
        })
        .collect()
}
