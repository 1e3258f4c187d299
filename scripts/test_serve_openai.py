#!/usr/bin/env python3
"""Drives a running `oxmx serve` with the official `openai` Python client.

Usage: test_serve_openai.py BASE_URL MODEL_ID   (e.g. http://127.0.0.1:8080 smollm2)

Exits 0 after printing "ok: N checks"; an AssertionError (or any client exception) exits non-zero.
Run by crates/oxmx-lm/tests/server_clients.rs, which skips when python3 or openai is missing.
"""
import json
import sys

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base.rstrip("/") + "/v1", api_key="unused", max_retries=0, timeout=120)
checks = 0


def check(cond, what):
    global checks
    assert cond, what
    checks += 1


ids = [m.id for m in client.models.list().data]
check(model in ids, f"models.list has {model}: {ids}")

msgs = [{"role": "user", "content": "What is the capital of France?"}]
r = client.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=24)
text = r.choices[0].message.content
check(isinstance(text, str) and text, "chat content")
check(r.choices[0].finish_reason in ("stop", "length"), "finish_reason")
check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage adds up")
check(r.usage.prompt_tokens_details.cached_tokens >= 0, "cached_tokens reported")

# Streaming gives the same text, then a usage chunk.
parts, usage, finish = [], None, None
for chunk in client.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
check("".join(parts) == text, f"streamed text equals the response: {''.join(parts)!r} vs {text!r}")
check(usage is not None and usage.completion_tokens == r.usage.completion_tokens, "stream usage")
check(finish == r.choices[0].finish_reason, "stream finish_reason")

r = client.completions.create(model=model, prompt="Once upon a time", temperature=0, max_tokens=16)
check(isinstance(r.choices[0].text, str) and r.choices[0].text, "completion text")
s = "".join(c.choices[0].text for c in client.completions.create(model=model, prompt="Once upon a time", temperature=0,
                                                                   max_tokens=16, stream=True) if c.choices)
check(s == r.choices[0].text, "streamed completion")

r = client.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=6, logprobs=True, top_logprobs=4)
for e in r.choices[0].logprobs.content:
    tops = [t.logprob for t in e.top_logprobs]
    check(len(tops) == 4 and tops == sorted(tops, reverse=True), f"top_logprobs sorted: {tops}")
    check(e.top_logprobs[0].token == e.token, "greedy token is the most likely")

tools = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools,
                                   tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0,
                                   max_tokens=40)
call = r.choices[0].message.tool_calls[0]
check(call.function.name == "get_weather", "tool call name")
check("city" in json.loads(call.function.arguments), f"tool arguments follow the schema: {call.function.arguments}")
check(r.choices[0].finish_reason == "tool_calls", "finish_reason tool_calls")
# The tool result goes back in as a message.
r = client.chat.completions.create(model=model, temperature=0, max_tokens=16, tools=tools, messages=[
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function",
                                                           "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
    {"role": "tool", "tool_call_id": call.id, "content": "{\"temp_c\": 21}"}])
check(r.choices[0].message is not None, "a reply after a tool result")

schema = {"type": "object", "properties": {"name": {"type": "string", "enum": ["Bob", "Alice"]}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Bob is 30. JSON please."}], max_tokens=40,
                                   response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
v = json.loads(r.choices[0].message.content)
check(v["name"] in ("Bob", "Alice") and isinstance(v["age"], int) and set(v) <= {"name", "age"}, f"json_schema output: {v}")

try:
    client.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=2)
    check(False, "unknown model raises")
except openai.NotFoundError as e:
    check(e.status_code == 404, "404 for an unknown model")
try:
    client.chat.completions.create(model=model, messages=msgs, max_tokens=2, temperature=5)
    check(False, "bad temperature raises")
except openai.BadRequestError as e:
    check(e.status_code == 400 and "temperature" in str(e), "400 naming temperature")
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=2)
check(r.choices[0].message.content is not None, "still serving after errors")
print(f"ok: {checks} checks")
