//! Chat templates rendered by minijinja against transformers' apply_chat_template
//! (fixtures: scripts/gen_tokenizer_fixtures.py).

use std::path::Path;

use oxmx_lm::chat::{strftime, ChatOptions, ChatTemplate, ChatTemplateSource};
use serde_json::{json, Value};

fn cases() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/chat.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn specials(c: &Value) -> Vec<(String, String)> {
    c["specials"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect()
}

#[test]
fn templates_render_as_transformers() {
    let all = cases();
    let mut n = 0;
    for c in all["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let t = ChatTemplate::new(c["template"].as_str().unwrap(), name, specials(c)).unwrap();
        let kw = c["kwargs"].as_object().unwrap();
        let mut opts = ChatOptions::default();
        for (k, v) in kw {
            match k.as_str() {
                "tools" => opts.tools = Some(v.as_array().unwrap().clone()),
                "add_generation_prompt" => opts.add_generation_prompt = v.as_bool().unwrap(),
                "continue_final_message" => opts.continue_final_message = v.as_bool().unwrap(),
                "enable_thinking" => opts.enable_thinking = v.as_bool(),
                _ => {
                    opts.extra.insert(k.clone(), v.clone());
                }
            }
        }
        let got = t.apply(c["messages"].as_array().unwrap(), &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, c["text"].as_str().unwrap(), "case {name}");
        n += 1;
    }
    assert_eq!(n, 11);
}

#[test]
fn template_errors_name_source_and_line() {
    let all = cases();
    for c in all["errors"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let src = format!("test/{name}.jinja");
        let msgs = c["messages"].as_array().unwrap().clone();
        let r =
            ChatTemplate::new(c["template"].as_str().unwrap(), src.clone(), vec![]).and_then(|t| t.apply(&msgs, &ChatOptions::default()));
        let e = r.err().unwrap_or_else(|| panic!("{name} should fail")).to_string();
        assert!(e.contains(&src), "{e}");
        if let Some(s) = c.get("contains") {
            assert!(e.contains(s.as_str().unwrap()), "{e}");
        }
        if let Some(l) = c.get("line") {
            assert!(e.contains(&format!("line {}", l)), "{e}");
        }
    }
    // continue_final_message with add_generation_prompt is refused, as transformers refuses it.
    let t = ChatTemplate::new("{{ messages[0].content }}", "t", vec![]).unwrap();
    let opts = ChatOptions { add_generation_prompt: true, continue_final_message: true, ..Default::default() };
    assert!(t.apply(&[json!({"role": "user", "content": "x"})], &opts).is_err());
}

#[test]
fn named_template_lists() {
    let v = json!([{"name": "default", "template": "D{{ messages|length }}"}, {"name": "tool_use", "template": "T"}]);
    let s = ChatTemplateSource::from_json(&v, "cfg").unwrap().unwrap();
    assert_eq!(s.names(), vec!["default", "tool_use"]);
    let (t, origin) = s.select(None).unwrap();
    assert_eq!(t, "D{{ messages|length }}");
    assert!(origin.contains("default"));
    assert!(s.select(Some("rag")).err().unwrap().to_string().contains("tool_use"));
    assert!(ChatTemplateSource::from_json(&json!(3), "cfg").is_err());
}

#[test]
fn strftime_matches_python() {
    // Python's datetime.strftime in UTC on several dates (leap days, year ends, PM hours).
    let all = cases();
    for c in all["strftime"].as_array().unwrap() {
        let t = c["t"].as_i64().unwrap();
        assert_eq!(strftime(t, c["fmt"].as_str().unwrap()), c["text"].as_str().unwrap(), "t = {t}");
    }
}
