#!/usr/bin/env python3
"""Writes the tokenizer and chat-template fixtures of crates/oxmx-lm/tests/{tokenizer,chat}.rs (rerunnable).

Oracles:
* GGUF tokenizers: transformers' own GGUF converter (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, or
  its `get_gguf_tokenizer` / `convert_gguf_tokenizer` for tokenizer-only files) encodes and decodes a varied
  set of strings; for the SentencePiece file, `sentencepiece` itself is checked to agree too.
* Small tokenizer-only GGUFs written here (kept in the fixtures, a few KB each) so the tests always run:
  byte-level BPE vocabularies trained with `tokenizers` under the qwen2, llama-bpe and gpt2 pre-tokenizers,
  and a SentencePiece BPE model trained with `sentencepiece` (byte fallback), written as llama.cpp writes them.
* The default model (SmolLM2-135M-Instruct Q4_1 GGUF) when present: its ids are recorded from transformers'
  tokenizer with the pre-tokenizer of the model's own tokenizer.json / llama.cpp's "smollm" type (digits
  split one by one before GPT-2's split), which transformers' converter leaves out; the strings where the
  two differ are listed (`transformers_plain_ids`) so the difference stays visible.
* Qwen2.5-Coder-0.5B-Instruct's GGUF (qwen2 pre-tokenizer) when scripts/fetch_qwen_coder.sh has placed it:
  transformers' ids for the same strings, and its chat template (with tools) rendered by transformers.
* Chat templates: transformers' `apply_chat_template(..., tokenize=False)`.
"""
import json
import os
import sys
import tempfile

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "crates", "oxmx-lm", "tests", "fixtures", "tokenizer")
MODELS_DIR = os.environ.get("OXMX_MODELS_DIR", os.path.expanduser("~/.cache/oxmx/models"))
DEFAULT_GGUF = os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf")
# Qwen2.5-Coder-0.5B-Instruct (scripts/fetch_qwen_coder.sh): qwen2 pre-tokenizer, 151k vocab.
QWEN_GGUF = os.path.join(MODELS_DIR, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

STRINGS = [
    "Hello world",
    " Hello world",
    "What is the capital of France?",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\n\n\nand\r\nCRLF",
    "digits 12345 and 3.14159 and 1,000,000 and  7",
    "  1 2  3   4",
    "unicode: héllo wörld, naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 中文字符, 한국어",
    "emoji: 😀👍🏽 🇫🇷 👨‍👩‍👧‍👦 ✨🚀",
    "code: def f(x):\n    return x**2 + 1  # comment\n\tif (a && b) { c->d[0] = 'e'; }",
    "contractions: I'm, you're, it's, we'll, they'd, I've, DON'T",
    "punctuation!!! ??? ... --- ((())) [[]] {{}} <<>> @#$%^&*",
    "whitespace runs:     \n\n    \t\t  end",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "special in text <|endoftext|> middle<|im_end|>end",
    "",
    " ",
    "a",
    "ǅ ǈ ǋ mixed Case WORDS and ALLCAPS",
    "zero\u200bwidth\u00a0nbsp",
]


def write_tok_gguf(path, model, tokens, types, merges=None, scores=None, pre=None, bos=None, eos=None, unk=None, pad=None,
                   add_bos=None, template=None):
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    if merges is not None:
        w.add_token_merges(merges)
    if bos is not None:
        w.add_bos_token_id(bos)
    if eos is not None:
        w.add_eos_token_id(eos)
    if unk is not None:
        w.add_unk_token_id(unk)
    if pad is not None:
        w.add_pad_token_id(pad)
    if add_bos is not None:
        w.add_add_bos_token(add_bos)
    if template is not None:
        w.add_chat_template(template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hf_from_tokenizer_gguf(path):
    """transformers' GGUF tokenizer for a tokenizer-only file (the converter AutoTokenizer uses)."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    arch, tok_dict, tok_cfg = get_gguf_tokenizer(path)
    backend, _ = convert_gguf_tokenizer(arch, tok_dict)
    kw = {k: v for k, v in tok_cfg.items() if v is not None and k != "chat_template"}
    return TokenizersBackend(tokenizer_object=backend, **kw)


def record(tok, strings):
    cases = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False)
        ids_special = tok.encode(s, add_special_tokens=True)
        cases.append({
            "text": s,
            "ids": ids,
            "ids_add_special": ids_special,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return cases


def train_byte_level(pre, corpus):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, Regex, decoders
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    t = Tokenizer(models.BPE())
    split = GGUF_PRE_TOKENIZER_SPLITS.get(pre)
    if split:
        t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    t.train_from_iterator(corpus, tr)
    j = json.loads(t.to_str())
    vocab = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [k for k, _ in vocab]
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    types = [3 if tok in ("<|endoftext|>", "<|im_start|>", "<|im_end|>") else 1 for tok in tokens]
    # one user-defined token, as llama.cpp marks `<think>`-style added tokens
    tokens.append("<think>")
    types.append(4)
    return tokens, types, merges


def corpus_text():
    lines = []
    for s in STRINGS:
        lines.extend([s] * 3)
    for f in ["README.md", "../shared/DESIGN.md"]:
        p = os.path.join(HERE, "..", f)
        if os.path.exists(p):
            lines.extend(open(p, encoding="utf-8").read().splitlines()[:400])
    return lines


def spm_gguf(path, corpus):
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as d:
        txt = os.path.join(d, "c.txt")
        with open(txt, "w", encoding="utf-8") as f:
            f.write("\n".join(corpus))
        spm.SentencePieceTrainer.train(input=txt, model_prefix=os.path.join(d, "m"), vocab_size=700, model_type="bpe",
                                       byte_fallback=True, character_coverage=0.995, split_digits=True,
                                       allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
                                       normalization_rule_name="identity", minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "m.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # llama.cpp's types: 1 normal, 2 unknown, 3 control, 6 byte
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1)
    write_tok_gguf(path, "llama", tokens, types, scores=scores, bos=sp.bos_id(), eos=sp.eos_id(), unk=sp.unk_id(),
                   add_bos=True)
    return sp


def main():
    os.makedirs(OUT, exist_ok=True)
    corpus = corpus_text()
    out = {"strings": STRINGS, "files": {}}

    for pre in ["qwen2", "llama-bpe", "gpt2"]:
        name = f"bpe_{pre.replace('-', '_')}.gguf"
        tokens, types, merges = train_byte_level(pre, corpus)
        write_tok_gguf(os.path.join(OUT, name), "gpt2", tokens, types, merges=merges, pre=pre, bos=1, eos=2, pad=0,
                       add_bos=(pre == "llama-bpe"))
        tok = hf_from_tokenizer_gguf(os.path.join(OUT, name))
        out["files"][name] = {"cases": record(tok, STRINGS + ["user <think> reasoning </think>"]),
                              "bos_token_id": 1, "eos_token_id": 2, "vocab_size": len(tok)}

    name = "spm_llama.gguf"
    sp = spm_gguf(os.path.join(OUT, name), corpus)
    tok = hf_from_tokenizer_gguf(os.path.join(OUT, name))
    spm_strings = [s for s in STRINGS if "<|" not in s] + ["<s>inline</s> markers"]
    cases = record(tok, spm_strings)
    agree = sum(1 for c in cases if c["ids"] == sp.encode(c["text"]))
    print(f"spm: transformers agrees with sentencepiece on {agree}/{len(cases)} strings")
    out["files"][name] = {"cases": cases, "bos_token_id": sp.bos_id(), "eos_token_id": sp.eos_id(), "vocab_size": len(tok)}

    # The default model.
    if os.path.exists(DEFAULT_GGUF):
        from transformers import AutoTokenizer
        from tokenizers import pre_tokenizers

        t = AutoTokenizer.from_pretrained(os.path.dirname(DEFAULT_GGUF), gguf_file=os.path.basename(DEFAULT_GGUF))
        plain = {s: t.encode(s, add_special_tokens=False) for s in STRINGS}
        t.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        cases = record(t, STRINGS)
        for c in cases:
            if plain[c["text"]] != c["ids"]:
                c["transformers_plain_ids"] = plain[c["text"]]
        out["smollm2"] = {"cases": cases, "bos_token_id": t.bos_token_id, "eos_token_id": t.eos_token_id,
                          "vocab_size": len(t), "file": os.path.basename(DEFAULT_GGUF)}
        msgs = [{"role": "user", "content": "What is the capital of France?"}]
        # What `oxmx tokenize` must print for the README's prompt: template, then ids without specials.
        rendered = t.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        out["smollm2"]["cli_prompt"] = {"prompt": msgs[0]["content"], "text": rendered,
                                        "ids": t.encode(rendered, add_special_tokens=False),
                                        "system_prompt": "Answer in one word.",
                                        "ids_with_system": t.encode(t.apply_chat_template(
                                            [{"role": "system", "content": "Answer in one word."}] + msgs,
                                            tokenize=False, add_generation_prompt=True), add_special_tokens=False)}
        out["smollm2"]["chat"] = [
            {"messages": msgs, "add_generation_prompt": True,
             "text": t.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)},
            {"messages": [{"role": "system", "content": "Be brief."}] + msgs + [{"role": "assistant", "content": "Paris"}],
             "add_generation_prompt": False,
             "text": t.apply_chat_template([{"role": "system", "content": "Be brief."}] + msgs +
                                           [{"role": "assistant", "content": "Paris"}], tokenize=False)},
        ]
    else:
        print(f"note: {DEFAULT_GGUF} not found; the SmolLM2 fixtures are left out (run scripts/setup.sh first)")

    if os.path.exists(QWEN_GGUF):
        from transformers import AutoTokenizer

        t = AutoTokenizer.from_pretrained(os.path.dirname(QWEN_GGUF), gguf_file=os.path.basename(QWEN_GGUF))
        out["qwen_coder"] = {"cases": record(t, STRINGS), "eos_token_id": t.eos_token_id, "vocab_size": len(t),
                             "file": os.path.basename(QWEN_GGUF)}
        msgs = [{"role": "user", "content": "Write a Python function that returns the square of a number."}]
        call = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "18 C, sunny"}]
        out["qwen_coder"]["chat"] = [
            {"messages": m, "add_generation_prompt": True, "tools": tools,
             "text": t.apply_chat_template(m, tools=tools, tokenize=False, add_generation_prompt=True)}
            for m, tools in [(msgs, None), ([{"role": "system", "content": "Be brief."}] + msgs, None),
                             (call, [WEATHER_TOOL])]]
    else:
        print(f"note: {QWEN_GGUF} not found; the Qwen2.5-Coder fixtures are left out (scripts/fetch_qwen_coder.sh)")

    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    gen_chat()


# ---------------------------------------------------------------- chat templates
CHATML_TOOLS = """{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}You are a helpful assistant.{%- endif %}
{{- "\\n\\n# Tools\\n\\n<tools>" }}
{%- for tool in tools %}
{{- "\\n" }}{{- tool | tojson }}
{%- endfor %}
{{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- for message in messages %}
{%- if message.role == "user" or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
{%- elif message.role == "assistant" %}
{{- '<|im_start|>' + message.role }}
{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>\\n{"name": "' }}{{- tool_call.name }}{{- '", "arguments": ' }}{{- tool_call.arguments | tojson }}{{- '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == "tool" %}
{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}{{- '<|im_start|>user' }}{%- endif %}
{{- '\\n<tool_response>\\n' }}{{- message.content }}{{- '\\n</tool_response>' }}
{%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}{{- '<|im_end|>\\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

THINKING = """{{ bos_token }}{% for m in messages %}
{% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('Unknown role: ' + m['role']) }}{% endif %}
<|{{ m.role }}|>
{% if m.reasoning_content is defined and m.reasoning_content %}<think>{{ m.reasoning_content | trim }}</think>
{% endif %}{{ m.content | trim }}{{ eos_token }}
{% endfor %}
{% if add_generation_prompt %}<|assistant|>
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>
{% endif %}{% endif %}"""

FEATURES = """{% set ns = namespace(n=0, names=[]) %}
{% for m in messages %}{% if m.role == 'user' %}{% set ns.n = ns.n + 1 %}{% endif %}
{% if loop.index > 3 %}{% break %}{% endif %}
{% if m.content.startswith('skip') %}{% continue %}{% endif %}
[{{ loop.index }}/{{ loop.length }}] {{ m.role | upper }}: {{ m.content.strip().replace('  ', ' ') | capitalize }} {{ m.content.split(' ') | length }} {{ m.content.endswith('?') }}
{% endfor %}
users={{ ns.n }} {{ {'b': [1, 2.5, 'x\"y', none, true], 'a': {'ü': 'é'}} | tojson(indent=2) }}
{{ {'b': 1, 'a': [1, 2]} | tojson }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ custom_var | default('nodefault') }}
{%- for k, v in {'x': 1, 'y': 2}.items() %} {{ k }}={{ v }}{% endfor %}
{{ messages[-1]['content'][:5] }}|{{ 'a-b-c'.split('-') | join('+') }}|{{ 'Title Me'.lower().title() }}|{{ [1, "it's", none, true, 2.5] }}|{{ none }}|{{ {'k': 'v'} }}|{{ false }}"""

CONTINUE = """{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>
{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"""


def gen_chat():
    from transformers.utils.chat_template_utils import render_jinja_template

    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                              "unit": {"type": "string", "enum": ["c", "f"]}},
                             "required": ["city"]}}}]
    conv = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}}]},
            {"role": "tool", "content": "{\"temp\": 21.5}"},
            {"role": "assistant", "content": "21.5°C in Paris."},
            {"role": "user", "content": "Thanks! 日本?"}]
    cases = []

    def add(name, template, messages, specials=None, **kw):
        specials = specials or {}
        text = render_jinja_template(conversations=[messages], chat_template=template, **specials, **kw)[0][0]
        cases.append({"name": name, "template": template, "messages": messages, "specials": specials, "kwargs": kw, "text": text})

    add("chatml_tools", CHATML_TOOLS, conv, tools=tools, add_generation_prompt=True)
    add("chatml_no_tools", CHATML_TOOLS, conv[:2], add_generation_prompt=True)
    add("chatml_continue", CHATML_TOOLS, conv[:2] + [{"role": "assistant", "content": "The weather  "}],
        continue_final_message=True)
    sp = {"bos_token": "<s>", "eos_token": "</s>"}
    think_conv = [{"role": "user", "content": " 2+2? "},
                  {"role": "assistant", "content": "4", "reasoning_content": "add them"},
                  {"role": "user", "content": "and 3+3?"}]
    add("thinking_on", THINKING, think_conv, specials=sp, add_generation_prompt=True, enable_thinking=True)
    add("thinking_off", THINKING, think_conv, specials=sp, add_generation_prompt=True, enable_thinking=False)
    add("thinking_default", THINKING, think_conv, specials=sp, add_generation_prompt=False)
    add("thinking_alias", THINKING, [{"role": "assistant", "content": "x", "thinking": "hmm"}], specials=sp)
    feat = [{"role": "user", "content": "hello  there friend?"}, {"role": "assistant", "content": "skip me"},
            {"role": "user", "content": "ünïcode   words"}, {"role": "assistant", "content": "never shown"}]
    add("features", FEATURES, feat, add_generation_prompt=False)
    add("features_extra", FEATURES, feat, add_generation_prompt=False, custom_var="given")
    add("continue_plain", CONTINUE, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Once upon"}],
        continue_final_message=True)
    add("continue_blocks", CONTINUE.replace("{{ m.content }}", "{% if m.content is string %}{{ m.content }}{% else %}{% for b in m.content %}{{ b.text }}{% endfor %}{% endif %}"),
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "Block one"}]}],
        continue_final_message=True)
    errors = [
        {"name": "raise", "template": THINKING, "messages": [{"role": "robot", "content": "x"}], "contains": "Unknown role: robot"},
        {"name": "syntax", "template": "line one\n{% for m in messages %}\n{{ m.content }\n{% endfor %}", "messages": [], "line": 3},
    ]
    import datetime
    fmt = "%d %B %Y %H:%M:%S %a %A %b %j %y %I%p %e %m %%"
    strftime = [{"t": t, "fmt": fmt, "text": datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(fmt)}
                for t in [0, 951782400, 1709211909, 1735689599, 4102444800 + 43200, 1234567890]]
    with open(os.path.join(OUT, "chat.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": cases, "errors": errors, "strftime": strftime}, f, ensure_ascii=False, indent=1)
    print(f"chat: {len(cases)} cases")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
