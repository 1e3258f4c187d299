//! Constrained decoding for `response_format` (`json_object`, `json_schema`): a character-level
//! pushdown automaton for JSON, optionally directed by a JSON schema, and the token mask it
//! gives over the vocabulary. At each step every token whose text the automaton accepts from the
//! current state keeps its logit; the others get -inf. EOS is allowed only once the top-level
//! value is complete, and then it is the only choice, so a reply that ends by EOS always parses
//! (and validates). A reply cut by `max_tokens` can still be incomplete (finish_reason "length").
//!
//! The schema subset (anything else is refused with a clear error rather than ignored): `type`
//! object (`properties`, `required`; no other keys are allowed when `properties` is given, each
//! at most once), array (`items`), string (with `enum`), integer, number, boolean, null; `enum`
//! of strings; `const` string; a schema without `type` accepts any JSON value. Keys and enum
//! strings are matched literally (no escapes inside them).

use super::vocab::Vocab;
use oxmx_core::Array;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Longest run of whitespace between tokens (keeps a model from padding forever).
const MAX_WS: u8 = 24;
const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug)]
enum Schema {
    Any,
    /// `props` empty and `free`: any keys.
    Object {
        props: Vec<(String, usize)>,
        required: Vec<usize>,
        free: bool,
    },
    Array(usize),
    Str(Option<Vec<String>>),
    Integer,
    Number,
    Boolean,
    Null,
}

const ANY: usize = 0;

fn compile(v: &Value, arena: &mut Vec<Schema>, path: &str) -> Result<usize, String> {
    let Value::Object(o) = v else {
        return Err(format!("{path}: a schema must be a JSON object"));
    };
    for k in ["anyOf", "oneOf", "allOf", "$ref", "not", "if", "patternProperties"] {
        if o.contains_key(k) {
            return Err(format!("{path}: '{k}' is not supported by the constrained decoder"));
        }
    }
    let strings = |x: &Value, what: &str| -> Result<Vec<String>, String> {
        let arr = match x {
            Value::Array(a) => a.clone(),
            Value::String(_) => vec![x.clone()],
            _ => return Err(format!("{path}: '{what}' must list strings")),
        };
        arr.iter()
            .map(|s| match s.as_str() {
                Some(s) if !s.contains(['"', '\\']) && !s.chars().any(|c| c < ' ') => Ok(s.to_string()),
                _ => Err(format!("{path}: only plain strings (no quotes, backslashes or control characters) are supported in '{what}'")),
            })
            .collect()
    };
    let s = if let Some(e) = o.get("enum").or_else(|| o.get("const")) {
        Schema::Str(Some(strings(e, "enum")?))
    } else {
        match o.get("type") {
            None => Schema::Any,
            Some(Value::String(t)) => match t.as_str() {
                "object" => {
                    let mut props = Vec::new();
                    if let Some(p) = o.get("properties") {
                        let Value::Object(p) = p else { return Err(format!("{path}: 'properties' must be an object")) };
                        for (k, sub) in p {
                            if k.contains(['"', '\\']) {
                                return Err(format!("{path}: property name {k:?} has a quote or backslash"));
                            }
                            let i = compile(sub, arena, &format!("{path}.properties.{k}"))?;
                            props.push((k.clone(), i));
                        }
                    }
                    let mut required = Vec::new();
                    for r in strings(o.get("required").unwrap_or(&Value::Array(vec![])), "required")? {
                        match props.iter().position(|(k, _)| *k == r) {
                            Some(i) => required.push(i),
                            None => return Err(format!("{path}: required property '{r}' is not in 'properties'")),
                        }
                    }
                    let free = props.is_empty();
                    Schema::Object { props, required, free }
                }
                "array" => Schema::Array(match o.get("items") {
                    Some(it) => compile(it, arena, &format!("{path}.items"))?,
                    None => ANY,
                }),
                "string" => Schema::Str(None),
                "integer" => Schema::Integer,
                "number" => Schema::Number,
                "boolean" => Schema::Boolean,
                "null" => Schema::Null,
                other => return Err(format!("{path}: unknown type '{other}'")),
            },
            Some(_) => return Err(format!("{path}: 'type' must be one string (type lists are not supported)")),
        }
    };
    arena.push(s);
    Ok(arena.len() - 1)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// A value of `schema` is expected (ws allowed).
    Value(usize),
    /// After `[`: a value or `]`.
    ArrFirst,
    /// After `{`: a key or `}`.
    ObjFirst,
    /// After `,` in an object: a key.
    Key,
    /// Inside a string; `esc`: 0 plain, 1 after `\`, 2..=5 hex digits of `\u` left + 1.
    Str {
        key: bool,
        esc: u8,
        schema: usize,
    },
    Colon,
    Num {
        s: Num,
        int_only: bool,
    },
    Lit {
        word: &'static str,
        pos: u8,
    },
    /// After a value inside a container: `,` or the closing bracket.
    After,
    Done,
}

#[derive(Clone, Debug)]
struct Frame {
    arr: bool,
    schema: usize,
    /// Object: property indices already written, and the one whose value comes next.
    seen: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct JsonMask {
    schemas: Arc<Vec<Schema>>,
    stack: Vec<Frame>,
    mode: Mode,
    ws: u8,
    /// The key or enum string being written.
    buf: String,
}

impl JsonMask {
    /// `response_format: {"type": "json_object"}`: one JSON object.
    pub fn object() -> JsonMask {
        let schemas = vec![Schema::Any, Schema::Object { props: vec![], required: vec![], free: true }];
        JsonMask { schemas: Arc::new(schemas), stack: vec![], mode: Mode::Value(1), ws: 0, buf: String::new() }
    }

    /// `response_format: {"type": "json_schema", "json_schema": {"schema": ...}}`.
    pub fn schema(schema: &Value) -> Result<JsonMask, String> {
        let mut arena = vec![Schema::Any];
        let root = compile(schema, &mut arena, "schema")?;
        if !matches!(arena[root], Schema::Object { .. } | Schema::Array(_)) {
            return Err("schema: the top-level type must be an object or an array".into());
        }
        Ok(JsonMask { schemas: Arc::new(arena), stack: vec![], mode: Mode::Value(root), ws: 0, buf: String::new() })
    }

    pub fn is_complete(&self) -> bool {
        self.mode == Mode::Done
    }

    /// Feeds the text of a sampled token (a token the mask allowed).
    pub fn advance(&mut self, text: &str) {
        for c in text.chars() {
            if !self.feed(c) {
                // Only reachable if a disallowed token was forced; stay in place.
                return;
            }
        }
    }

    /// Whether `text` can come next.
    pub fn accepts(&self, text: &str) -> bool {
        let mut s = self.clone();
        !text.is_empty() && text.chars().all(|c| s.feed(c))
    }

    /// The additive mask `[1, V]` for the next token: 0 where allowed, -inf elsewhere.
    pub fn mask(&self, vocab: &Vocab, eos: &BTreeSet<u32>, size: usize) -> Array {
        let done = self.is_complete();
        let m: Vec<f32> = (0..size as u32)
            .map(|id| {
                let ok = if eos.contains(&id) { done } else { !done && vocab.text(id).is_some_and(|t| self.accepts(t)) };
                if ok {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        Array::from_slice(&m, &[1, size])
    }

    fn obj_frame(&self) -> Option<(&Frame, &Vec<(String, usize)>, &Vec<usize>, bool)> {
        let f = self.stack.last()?;
        match &self.schemas[f.schema] {
            Schema::Object { props, required, free } => Some((f, props, required, *free)),
            _ => None,
        }
    }

    /// Keys still allowed in the current object (`None`: any key).
    fn open_keys(&self) -> Option<Vec<&str>> {
        let (f, props, _, free) = self.obj_frame()?;
        if free {
            return None;
        }
        Some(props.iter().enumerate().filter(|(i, _)| !f.seen.contains(i)).map(|(_, (k, _))| k.as_str()).collect())
    }

    fn may_close_object(&self) -> bool {
        match self.obj_frame() {
            Some((f, _, required, _)) => required.iter().all(|r| f.seen.contains(r)),
            None => true, // a schema-less object (inside Any)
        }
    }

    fn may_add_key(&self) -> bool {
        self.open_keys().is_none_or(|k| !k.is_empty())
    }

    fn after_value(&mut self) {
        self.mode = if self.stack.is_empty() { Mode::Done } else { Mode::After };
    }

    fn start_value(&mut self, schema: usize, c: char) -> bool {
        let sch = self.schemas[schema].clone();
        let any = matches!(sch, Schema::Any);
        match c {
            '{' if any || matches!(sch, Schema::Object { .. }) => {
                if self.stack.len() >= MAX_DEPTH {
                    return false;
                }
                // Inside Any, objects are free-form: use the arena's free object if present.
                let s = if any { self.free_object() } else { schema };
                self.stack.push(Frame { arr: false, schema: s, seen: vec![] });
                self.mode = Mode::ObjFirst;
            }
            '[' if any || matches!(sch, Schema::Array(_)) => {
                if self.stack.len() >= MAX_DEPTH {
                    return false;
                }
                self.stack.push(Frame { arr: true, schema, seen: vec![] });
                self.mode = Mode::ArrFirst;
            }
            '"' if any || matches!(sch, Schema::Str(_)) => {
                self.buf.clear();
                self.mode = Mode::Str { key: false, esc: 0, schema };
            }
            '-' | '0'..='9' if any || matches!(sch, Schema::Integer | Schema::Number) => {
                let s = match c {
                    '-' => Num::Minus,
                    '0' => Num::Zero,
                    _ => Num::Int,
                };
                self.mode = Mode::Num { s, int_only: matches!(sch, Schema::Integer) };
            }
            't' | 'f' if any || matches!(sch, Schema::Boolean) => {
                self.mode = Mode::Lit { word: if c == 't' { "true" } else { "false" }, pos: 1 };
            }
            'n' if any || matches!(sch, Schema::Null) => self.mode = Mode::Lit { word: "null", pos: 1 },
            _ => return false,
        }
        true
    }

    /// The schema index of a free-form object (added to the arena by `object()`; for schemas,
    /// an `Any` value that opens an object uses a frame whose schema is `Any`).
    fn free_object(&self) -> usize {
        self.schemas.iter().position(|s| matches!(s, Schema::Object { free: true, props, .. } if props.is_empty())).unwrap_or(ANY)
    }

    /// The schema of the next value in the current container.
    fn child_schema(&self) -> usize {
        let Some(f) = self.stack.last() else { return ANY };
        match &self.schemas[f.schema] {
            Schema::Array(items) => *items,
            Schema::Object { props, free: false, .. } => f.seen.last().map_or(ANY, |&i| props[i].1),
            _ => ANY,
        }
    }

    fn close(&mut self, arr: bool) -> bool {
        match self.stack.last() {
            Some(f) if f.arr == arr => {
                if !arr && !self.may_close_object() {
                    return false;
                }
                self.stack.pop();
                self.after_value();
                true
            }
            _ => false,
        }
    }

    fn feed(&mut self, c: char) -> bool {
        let ws = matches!(c, ' ' | '\n' | '\t' | '\r');
        match self.mode {
            Mode::Value(_) | Mode::ArrFirst | Mode::ObjFirst | Mode::Key | Mode::Colon | Mode::After if ws => {
                if self.ws >= MAX_WS {
                    return false;
                }
                self.ws += 1;
                return true;
            }
            _ => {}
        }
        self.ws = 0;
        match self.mode {
            Mode::Done => false,
            Mode::Value(s) => self.start_value(s, c),
            Mode::ArrFirst => {
                if c == ']' {
                    self.close(true)
                } else {
                    let s = self.child_schema();
                    self.start_value(s, c)
                }
            }
            Mode::ObjFirst | Mode::Key => {
                if c == '}' && self.mode == Mode::ObjFirst {
                    return self.close(false);
                }
                if c == '"' && self.may_add_key() {
                    self.buf.clear();
                    self.mode = Mode::Str { key: true, esc: 0, schema: ANY };
                    return true;
                }
                false
            }
            Mode::Colon => {
                if c != ':' {
                    return false;
                }
                let s = self.child_schema();
                self.mode = Mode::Value(s);
                true
            }
            Mode::After => {
                let Some(f) = self.stack.last() else { return false };
                match (c, f.arr) {
                    (',', true) => {
                        let s = self.child_schema();
                        self.mode = Mode::Value(s);
                        true
                    }
                    (',', false) => {
                        if !self.may_add_key() {
                            return false;
                        }
                        self.mode = Mode::Key;
                        true
                    }
                    (']', true) => self.close(true),
                    ('}', false) => self.close(false),
                    _ => false,
                }
            }
            Mode::Str { key, esc, schema } => self.feed_str(c, key, esc, schema),
            Mode::Num { s, int_only } => self.feed_num(c, s, int_only),
            Mode::Lit { word, pos } => {
                if word.as_bytes().get(pos as usize) != Some(&(c as u8)) || !c.is_ascii() {
                    return false;
                }
                if pos as usize + 1 == word.len() {
                    self.after_value();
                } else {
                    self.mode = Mode::Lit { word, pos: pos + 1 };
                }
                true
            }
        }
    }

    /// The literal strings a string being written must match (keys of a schema object, enum).
    fn literal_choices(&self, key: bool, schema: usize) -> Option<Vec<String>> {
        if key {
            return self.open_keys().map(|k| k.into_iter().map(String::from).collect());
        }
        match &self.schemas[schema] {
            Schema::Str(Some(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn feed_str(&mut self, c: char, key: bool, esc: u8, schema: usize) -> bool {
        let choices = self.literal_choices(key, schema);
        if esc == 1 {
            let next = match c {
                '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' => 0,
                'u' => 5,
                _ => return false,
            };
            self.mode = Mode::Str { key, esc: next, schema };
            return true;
        }
        if esc >= 2 {
            if !c.is_ascii_hexdigit() {
                return false;
            }
            self.mode = Mode::Str { key, esc: if esc == 2 { 0 } else { esc - 1 }, schema };
            return true;
        }
        match c {
            '"' => {
                if let Some(ch) = &choices {
                    if !ch.iter().any(|k| *k == self.buf) {
                        return false;
                    }
                }
                if key {
                    if let Some(i) = self.obj_frame().and_then(|(_, props, _, _)| props.iter().position(|(k, _)| *k == self.buf)) {
                        if let Some(f) = self.stack.last_mut() {
                            f.seen.push(i);
                        }
                    }
                    self.mode = Mode::Colon;
                } else {
                    self.after_value();
                }
                true
            }
            '\\' => {
                if choices.is_some() {
                    return false; // literal keys/enums carry no escapes
                }
                self.mode = Mode::Str { key, esc: 1, schema };
                true
            }
            c if c < ' ' => false,
            c => {
                if let Some(ch) = &choices {
                    let mut b = self.buf.clone();
                    b.push(c);
                    if !ch.iter().any(|k| k.starts_with(&b)) {
                        return false;
                    }
                    self.buf = b;
                }
                true
            }
        }
    }

    fn feed_num(&mut self, c: char, s: Num, int_only: bool) -> bool {
        let digit = c.is_ascii_digit();
        let next = match (s, c) {
            (Num::Minus, '0') => Some(Num::Zero),
            (Num::Minus, _) if digit => Some(Num::Int),
            (Num::Int, _) if digit => Some(Num::Int),
            (Num::Zero | Num::Int, '.') if !int_only => Some(Num::Dot),
            (Num::Zero | Num::Int | Num::Frac, 'e' | 'E') if !int_only => Some(Num::E),
            (Num::Dot | Num::Frac, _) if digit => Some(Num::Frac),
            (Num::E, '+' | '-') => Some(Num::ESign),
            (Num::E | Num::ESign | Num::Exp, _) if digit => Some(Num::Exp),
            _ => None,
        };
        if let Some(n) = next {
            self.mode = Mode::Num { s: n, int_only };
            return true;
        }
        // A complete number ends at the first character that cannot continue it.
        if matches!(s, Num::Zero | Num::Int | Num::Frac | Num::Exp) {
            self.after_value();
            return self.feed(c);
        }
        false
    }
}
