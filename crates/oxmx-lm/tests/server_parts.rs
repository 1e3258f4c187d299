//! The server's parts that need no model: the JSON constrained decoder's automaton (what it
//! accepts and refuses, schema keys, types, required keys, enums) and the reply parser
//! (reasoning and tool calls split across stream chunks, lists, unclosed and broken blocks).

use oxmx_lm::server::json_mask::JsonMask;
use oxmx_lm::server::reply_parse::{parse_tool_calls, Piece, ReplyParser, ToolCall};
use serde_json::json;

#[test]
fn json_object_grammar() {
    let m = JsonMask::object();
    assert!(m.accepts("{\"a\": [1, -2.5e3, true, null, \"x\\u00e9\"], \"b\": {}}"));
    assert!(m.accepts("{\n  \"a\": 0.5\n}"));
    assert!(!m.accepts("[1]"), "json_object needs an object");
    assert!(!m.accepts("{\"a\": 01}"), "no leading zeros");
    assert!(!m.accepts("{\"a\" 1}"), "a colon after the key");
    assert!(!m.accepts("{\"a\": tru }"));
    assert!(!m.accepts("{\"a\": \"x\ny\"}"), "no raw control characters in strings");
    assert!(!m.accepts("{'a': 1}"));
    let mut d = m.clone();
    d.advance("{\"k\": 1");
    assert!(!d.is_complete());
    d.advance("}");
    assert!(d.is_complete());
    assert!(!d.accepts(" "), "nothing after the object: EOS only");
}

#[test]
fn json_schema_keys_types_required_enums() {
    let s = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
        "tag": {"enum": ["a", "bc"]}, "xs": {"type": "array", "items": {"type": "number"}}}, "required": ["name", "age"]});
    let m = JsonMask::schema(&s).unwrap();
    assert!(m.accepts("{\"name\": \"x\", \"age\": 3}"));
    assert!(m.accepts("{\"age\": -3, \"name\": \"x\", \"tag\": \"bc\", \"xs\": [1.5, 2]}"));
    assert!(!m.accepts("{\"name\": \"x\"}"), "closing before a required key");
    assert!(!m.accepts("{\"nope\""), "a key outside the schema");
    assert!(!m.accepts("{\"age\": 3.5"), "integer");
    assert!(!m.accepts("{\"age\": \"3\""), "integer, not string");
    assert!(!m.accepts("{\"tag\": \"b\"}"), "enum values only, not their prefixes");
    assert!(!m.accepts("{\"age\": 1, \"age\""), "a key at most once");
    assert!(!m.accepts("{\"xs\": [\"a\"]"), "array items are numbers");
    let nested = json!({"type": "array", "items": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}});
    let m = JsonMask::schema(&nested).unwrap();
    assert!(m.accepts("[{\"ok\": true}, {\"ok\": false}]"));
    assert!(!m.accepts("[{}"));
    // Unsupported or invalid schemas are refused with the reason, not ignored.
    for bad in
        [json!({"anyOf": []}), json!({"type": "string"}), json!({"type": ["string", "null"]}), json!({"type": "object", "required": ["x"]})]
    {
        let e = JsonMask::schema(&bad).unwrap_err();
        assert!(!e.is_empty());
    }
}

fn run(p: &mut ReplyParser, chunks: &[&str]) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    let mut add = |x: Piece| match (out.last_mut(), &x) {
        (Some(Piece::Content(a)), Piece::Content(b)) | (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(b),
        _ => out.push(x),
    };
    for c in chunks {
        p.push(c).into_iter().for_each(&mut add);
    }
    p.finish().into_iter().for_each(&mut add);
    out
}

#[test]
fn reasoning_and_tool_calls_split_across_chunks() {
    let mut p = ReplyParser::new(false, true);
    let out = run(&mut p, &["<thi", "nk>hmm</th", "ink>Hi <tool_", "call>{\"name\": \"f\", \"arguments\": {\"x\": 1}}</tool_call>"]);
    assert_eq!(
        out,
        vec![
            Piece::Reasoning("hmm".into()),
            Piece::Content("Hi ".into()),
            Piece::Tool(ToolCall { name: "f".into(), arguments: "{\"x\":1}".into() })
        ]
    );
    // A template that opened <think> itself: the reply starts in reasoning.
    let mut p = ReplyParser::new(true, false);
    assert_eq!(run(&mut p, &["a</think>b<tool_call>"]), vec![Piece::Reasoning("a".into()), Piece::Content("b<tool_call>".into())]);
    // "<" that starts no marker is not held forever.
    let mut p = ReplyParser::new(false, true);
    assert_eq!(run(&mut p, &["1 <", " 2"]), vec![Piece::Content("1 < 2".into())]);
}

#[test]
fn tool_call_lists_unclosed_and_broken_blocks() {
    let mut p = ReplyParser::new(false, true);
    let out = run(&mut p, &["<tool_call>[{\"name\": \"a\", \"arguments\": \"{}\"}, {\"name\": \"b\"}]"]);
    assert_eq!(
        out,
        vec![
            Piece::Tool(ToolCall { name: "a".into(), arguments: "{}".into() }),
            Piece::Tool(ToolCall { name: "b".into(), arguments: "{}".into() })
        ]
    );
    let mut p = ReplyParser::new(false, true);
    assert_eq!(run(&mut p, &["<tool_call>not json</tool_call>"]), vec![Piece::Content("<tool_call>not json</tool_call>".into())]);
    assert!(parse_tool_calls("{\"arguments\": {}}").is_none(), "a call needs a name");
    assert!(parse_tool_calls("[]").is_none());
}

#[test]
fn parsed_reply_becomes_an_openai_message() {
    use oxmx_lm::server::routes::message_of;
    let mut p = ReplyParser::new(true, true);
    let mut pieces = p.push("let me think</think>Calling.<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1]}}</tool_call>");
    pieces.extend(p.finish());
    let (m, has_calls) = message_of(pieces);
    assert!(has_calls);
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["reasoning_content"], "let me think");
    assert_eq!(m["content"], "Calling.");
    assert_eq!(m["tool_calls"][0]["type"], "function");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "f");
    assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":[1]}");
    assert!(m["tool_calls"][0]["id"].as_str().unwrap().starts_with("call-"));
    // Only a tool call: content is null, as OpenAI sends it.
    let (m, _) = message_of(vec![Piece::Tool(ToolCall { name: "g".into(), arguments: "{}".into() })]);
    assert!(m["content"].is_null());
    assert!(m.get("reasoning_content").is_none());
}
