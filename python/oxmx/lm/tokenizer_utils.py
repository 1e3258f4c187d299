"""The tokenizer object ``load`` returns (mlx_lm's ``TokenizerWrapper``): Hugging Face
``tokenizer.json`` folders and GGUF vocabularies, run by oxmx-lm (the ``tokenizers`` crate),
with the chat template rendered by minijinja."""

import json

import oxmx.core as mx
from oxmx._core import _lm

__all__ = ["TokenizerWrapper", "StreamingDetokenizer", "load_tokenizer"]


def _ids(ids):
    if isinstance(ids, mx.array):
        ids = ids.reshape(-1).tolist()
    elif isinstance(ids, int):
        ids = [ids]
    out = []
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int):
            try:
                t = int(t)
            except (TypeError, ValueError):
                raise TypeError("token ids must be integers, got {!r}".format(t)) from None
        if t < 0:
            raise ValueError("token id {} is negative".format(t))
        out.append(t)
    return out


class StreamingDetokenizer:
    """Text of a growing token list, handed out in segments (``add_token``, ``last_segment``,
    ``finalize``, ``text``, ``tokens``). A segment never ends inside a multi-byte character."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.reset()

    def reset(self):
        self.tokens = []
        self._text = ""
        self._emitted = 0

    def add_token(self, token):
        self.tokens.append(int(token))
        self._text = self._tokenizer.decode(self.tokens)

    def finalize(self):
        self._final = True

    @property
    def text(self):
        return self._text

    @property
    def last_segment(self):
        text = self._text
        end = len(text)
        # Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) until more tokens come.
        if not getattr(self, "_final", False):
            while end > self._emitted and text[end - 1] == "\ufffd":
                end -= 1
        seg = text[self._emitted:end]
        self._emitted = end
        return seg


class TokenizerWrapper:
    """``encode``, ``decode``, ``apply_chat_template``, the special tokens and the EOS set."""

    def __init__(self, core, eos_token_ids=None):
        if not isinstance(core, _lm._Tokenizer):
            raise TypeError("TokenizerWrapper wraps a tokenizer loaded by oxmx.lm")
        self._core = core
        ids = list(core.eos_token_ids) if not eos_token_ids else [int(i) for i in eos_token_ids]
        self._eos = set(ids)

    # ---- encoding
    def encode(self, text, add_special_tokens=True):
        if not isinstance(text, str):
            raise TypeError("encode expects a str, got {}".format(type(text).__name__))
        return self._core.encode(text, add_special_tokens)

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": self.encode(text, add_special_tokens)}

    def decode(self, token_ids, skip_special_tokens=False):
        return self._core.decode(_ids(token_ids), skip_special_tokens)

    def batch_decode(self, sequences, skip_special_tokens=False):
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self._core.token_to_id(tokens)
        return [self._core.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self._core.id_to_token(ids)
        return [self._core.id_to_token(i) for i in _ids(ids)]

    def get_vocab_size(self):
        return self._core.vocab_size

    @property
    def vocab_size(self):
        return self._core.vocab_size

    def __len__(self):
        return self._core.vocab_size

    # ---- special tokens
    @property
    def bos_token(self):
        return self._core.bos_token

    @property
    def bos_token_id(self):
        return self._core.bos_token_id

    @property
    def eos_token(self):
        return self._core.eos_token

    @property
    def eos_token_id(self):
        ids = self._core.eos_token_ids
        return ids[0] if ids else (min(self._eos) if self._eos else None)

    @property
    def eos_token_ids(self):
        return set(self._eos)

    @eos_token_ids.setter
    def eos_token_ids(self, ids):
        self._eos = {int(i) for i in ids}

    def add_eos_token(self, token):
        """Adds a token (text or id) to the EOS set."""
        tid = token if isinstance(token, int) else self._core.token_to_id(token)
        if tid is None:
            raise ValueError("'{}' is not a token of the vocabulary".format(token))
        if tid < 0 or tid >= self._core.vocab_size:
            raise ValueError("token id {} is outside the vocabulary ({})".format(tid, self._core.vocab_size))
        self._eos.add(int(tid))

    @property
    def pad_token_id(self):
        return self._core.pad_token_id

    @property
    def all_special_ids(self):
        return [i for i in range(self._core.vocab_size) if self._core.is_special(i)]

    # ---- chat templates
    @property
    def has_chat_template(self):
        return self._core.has_chat_template

    @property
    def chat_template(self):
        return self._core.chat_template

    @chat_template.setter
    def chat_template(self, text):
        if text is not None and not isinstance(text, str):
            raise TypeError("chat_template must be a str or None")
        self._core.set_chat_template(text)

    def apply_chat_template(self, conversation, tools=None, documents=None, chat_template=None,
                            add_generation_prompt=False, continue_final_message=False, tokenize=True,
                            return_dict=False, **kwargs):
        """Renders ``conversation`` (a list of ``{"role", "content"}`` dicts) with the model's chat
        template: token ids (``tokenize=True``, the default, as transformers) or the text.
        Extra keyword arguments (``enable_thinking=...``) become template variables."""
        if not isinstance(conversation, (list, tuple)) or not all(isinstance(m, dict) for m in conversation):
            raise TypeError("conversation must be a list of message dicts")
        if add_generation_prompt and continue_final_message:
            raise ValueError("continue_final_message and add_generation_prompt are not compatible")
        for k in ("truncation", "max_length", "padding", "return_tensors"):
            kwargs.pop(k, None)
        enable_thinking = kwargs.pop("enable_thinking", None)
        name = None
        if chat_template is not None:
            if "{" in chat_template:
                old = self._core.chat_template
                self._core.set_chat_template(chat_template)
                try:
                    return self.apply_chat_template(conversation, tools, documents, None, add_generation_prompt,
                                                    continue_final_message, tokenize, return_dict,
                                                    enable_thinking=enable_thinking, **kwargs)
                finally:
                    self._core.set_chat_template(old)
            name = chat_template
        if not self._core.has_chat_template:
            raise ValueError("this tokenizer has no chat template; set tokenizer.chat_template")

        def dumps(x):
            return None if x is None else json.dumps(x, default=str)

        text = self._core.apply_chat_template(
            dumps(list(conversation)), add_generation_prompt, continue_final_message, dumps(tools), dumps(documents),
            dumps(kwargs) if kwargs else None, enable_thinking, name)
        if not tokenize:
            return text
        ids = self._core.encode(text, False)
        return {"input_ids": ids} if return_dict else ids

    # ---- streaming
    @property
    def detokenizer(self):
        return StreamingDetokenizer(self)

    def __repr__(self):
        return "TokenizerWrapper(vocab_size={}, eos_token_ids={})".format(self.vocab_size, sorted(self._eos))


def load_tokenizer(model_path, tokenizer_config_extra=None, eos_token_ids=None):
    """The tokenizer of a model folder or GGUF file."""
    import os

    core = _lm._Tokenizer.from_path(os.path.expanduser(os.fspath(model_path)))
    tok = TokenizerWrapper(core, eos_token_ids)
    cfg = dict(tokenizer_config_extra or {})
    if cfg.get("chat_template") is not None:
        tok.chat_template = cfg["chat_template"]
    if cfg.get("eos_token") is not None:
        # As transformers with eos_token=...: that token ends generation.
        tok.eos_token_ids = set()
        tok.add_eos_token(cfg["eos_token"])
    return tok
