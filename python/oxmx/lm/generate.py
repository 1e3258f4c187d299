"""``generate``, ``stream_generate`` and ``generate_step`` (mlx_lm.generate). The loop is
oxmx-lm's, on a Rust thread: prefill in chunks, pipelined decoding, KV-cache quantization,
speculative decoding with a draft model. Samplers from ``make_sampler`` and processors from
``make_logits_processors`` run in Rust; other Python logits processors are called from the loop.
A sampler that is an arbitrary Python callable runs a Python loop over ``model(...)`` instead."""

import time
from dataclasses import dataclass
from typing import Optional

import oxmx.core as mx
from oxmx._core import _lm

from .models.cache import make_prompt_cache
from .sample_utils import LogitsProcessor, Sampler
from .tokenizer_utils import TokenizerWrapper

__all__ = ["GenerationResponse", "generate", "stream_generate", "generate_step"]

DEFAULT_QUANTIZED_KV_START = 5000


@dataclass
class GenerationResponse:
    """One step of ``stream_generate`` (mlx_lm's fields). ``text`` is the next piece of text
    (possibly empty); ``peak_memory`` is in GB; ``finish_reason`` is "stop", "length" or None."""

    text: str
    token: int
    logprobs: mx.array
    from_draft: bool
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    peak_memory: float
    finish_reason: Optional[str] = None


_STEP_KWARGS = {"sampler", "logits_processors", "max_kv_size", "prompt_cache", "prefill_step_size", "kv_bits",
                "kv_group_size", "quantized_kv_start", "prompt_progress_callback", "input_embeddings",
                "num_draft_tokens"}


def _core_model(model, what="model"):
    m = getattr(model, "_core", model)
    if not isinstance(m, _lm._Model):
        raise TypeError("{} must be a model returned by oxmx.lm.load, got {}".format(what, type(model).__name__))
    return m


def _prompt_ids(tokenizer, prompt):
    if isinstance(prompt, str):
        bos = tokenizer.bos_token
        add_special = bos is None or not prompt.startswith(bos)
        ids = tokenizer.encode(prompt, add_special_tokens=add_special)
    elif isinstance(prompt, mx.array):
        ids = prompt.reshape(-1).tolist()
    elif isinstance(prompt, (list, tuple)):
        ids = list(prompt)
    else:
        raise TypeError("prompt must be a str, a list of token ids or an array, got {}".format(type(prompt).__name__))
    out = []
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int):
            raise TypeError("prompt token ids must be integers, got {!r}".format(t))
        if t < 0:
            raise ValueError("prompt token id {} is negative".format(t))
        out.append(t)
    if not out:
        raise ValueError("the prompt must have at least one token")
    return out


def _split_processors(processors):
    specs = []
    for p in processors or []:
        if isinstance(p, LogitsProcessor):
            specs.append(p._spec)
        elif callable(p):
            specs.append(p)
        else:
            raise TypeError("each logits processor must be callable as f(tokens, logits), got {!r}".format(p))
    return specs


def _check_kwargs(kwargs):
    bad = set(kwargs) - _STEP_KWARGS
    if bad:
        raise TypeError("unexpected keyword argument(s): {}".format(", ".join(sorted(bad))))
    if kwargs.get("input_embeddings") is not None:
        raise ValueError("input_embeddings are not supported by oxmx.lm")


def _rust_stream(model, tokenizer, ids, max_tokens, eos, draft_model=None, sampler=None, logits_processors=None,
                 max_kv_size=None, prompt_cache=None, prefill_step_size=2048, kv_bits=None, kv_group_size=64,
                 quantized_kv_start=DEFAULT_QUANTIZED_KV_START, prompt_progress_callback=None, num_draft_tokens=2,
                 input_embeddings=None):
    core = _core_model(model)
    if sampler is None:
        sampler = Sampler()
    if prefill_step_size is None or prefill_step_size <= 0:
        raise ValueError("prefill_step_size must be positive")
    if max_kv_size is not None and max_kv_size <= 0:
        raise ValueError("max_kv_size must be positive")
    draft = None
    if draft_model is not None:
        if max_kv_size is not None:
            raise ValueError("a draft model cannot be combined with max_kv_size (a rotating cache cannot be trimmed)")
        dcore = _core_model(draft_model, "draft_model")
        dcache = None
        if prompt_cache is not None:
            if not isinstance(prompt_cache, (list, tuple)) or len(prompt_cache) != 2:
                raise ValueError("with a draft model, prompt_cache must be [model cache, draft cache]")
            prompt_cache, dcache = prompt_cache
        draft = (dcore, dcache, int(num_draft_tokens))
    if prompt_cache is not None and not isinstance(prompt_cache, _lm._PromptCache):
        raise TypeError("prompt_cache must come from oxmx.lm.models.cache.make_prompt_cache")
    if kv_bits is not None and (quantized_kv_start is None or quantized_kv_start < 0):
        raise ValueError("quantized_kv_start must be non-negative")
    tok_core = tokenizer._core
    stream = _lm.start_generation(
        core, tok_core, ids, sampler._args, _split_processors(logits_processors), max_tokens, sorted(eos),
        prompt_cache, max_kv_size, int(prefill_step_size), kv_bits, int(kv_group_size), int(quantized_kv_start or 0),
        draft)
    first = True
    for (text, token, logprobs, from_draft, p_tokens, p_tps, g_tokens, g_tps, peak, finish) in stream:
        if first and prompt_progress_callback is not None:
            prompt_progress_callback(len(ids), len(ids))
        first = False
        yield GenerationResponse(text, token, logprobs, from_draft, p_tokens, p_tps, g_tokens, g_tps, peak / 1e9,
                                 finish)


def _python_steps(core, ids, sampler, logits_processors=None, prompt_cache=None, max_kv_size=None,
                  prefill_step_size=2048, max_tokens=256):
    """(token, logprobs) pairs from a Python loop over ``model(...)`` (for Python samplers)."""
    cache = prompt_cache if prompt_cache is not None else core.make_cache(max_kv_size)
    tokens = list(ids)
    y = list(ids)
    while len(y) > 1:
        n = min(prefill_step_size, len(y) - 1)
        mx.eval(core(mx.array([y[:n]]), cache))
        y = y[n:]
    n = 0
    while max_tokens < 0 or n < max_tokens:
        logits = core(mx.array([y]), cache)[:, -1, :]
        if logits_processors:
            hist = mx.array(tokens)
            for p in logits_processors:
                logits = p(hist, logits)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        tok = int(mx.array(sampler(logprobs)).reshape(-1)[0].item())
        yield tok, logprobs[0]
        tokens.append(tok)
        y = [tok]
        n += 1


def _python_stream(model, tokenizer, ids, max_tokens, eos, sampler, logits_processors=None, max_kv_size=None,
                   prompt_cache=None, prefill_step_size=2048, kv_bits=None, prompt_progress_callback=None, **_):
    if kv_bits is not None:
        raise ValueError("kv_bits needs a sampler from make_sampler (the Rust loop)")
    core = _core_model(model)
    detok = tokenizer.detokenizer
    mx.reset_peak_memory()
    tic = time.perf_counter()
    prompt_tps = 0.0
    n = 0
    token, logprobs = None, None
    for n, (token, logprobs) in enumerate(_python_steps(core, ids, sampler, logits_processors, prompt_cache,
                                                        max_kv_size, prefill_step_size, max_tokens)):
        if n == 0:
            prompt_tps = len(ids) / max(time.perf_counter() - tic, 1e-9)
            tic = time.perf_counter()
            if prompt_progress_callback is not None:
                prompt_progress_callback(len(ids), len(ids))
        if token in eos:
            break
        detok.add_token(token)
        if n + 1 == max_tokens:
            break
        yield GenerationResponse(detok.last_segment, token, logprobs, False, len(ids), prompt_tps, n + 1,
                                 (n + 1) / max(time.perf_counter() - tic, 1e-9), mx.get_peak_memory() / 1e9)
    if token is None:
        return
    detok.finalize()
    yield GenerationResponse(detok.last_segment, token, logprobs, False, len(ids), prompt_tps, n + 1,
                             (n + 1) / max(time.perf_counter() - tic, 1e-9), mx.get_peak_memory() / 1e9,
                             "stop" if token in eos else "length")


def stream_generate(model, tokenizer, prompt, max_tokens=256, draft_model=None, **kwargs):
    """Yields a ``GenerationResponse`` per generated token (mlx_lm's ``stream_generate``): the EOS
    token ends the stream without text; the last response carries ``finish_reason``.
    ``max_tokens=-1`` generates until EOS."""
    if max_tokens == 0:
        raise ValueError("Maximum number of tokens must be non-zero (use -1 for no limit).")
    if not isinstance(tokenizer, TokenizerWrapper):
        raise TypeError("tokenizer must be the tokenizer returned by oxmx.lm.load")
    _check_kwargs(kwargs)
    ids = _prompt_ids(tokenizer, prompt)
    eos = tokenizer.eos_token_ids
    sampler = kwargs.get("sampler")
    if sampler is None or isinstance(sampler, Sampler):
        limit = None if max_tokens is None or max_tokens < 0 else int(max_tokens)
        return _rust_stream(model, tokenizer, ids, limit, eos, draft_model, **kwargs)
    if not callable(sampler):
        raise TypeError("sampler must be callable (use oxmx.lm.sample_utils.make_sampler)")
    if draft_model is not None:
        raise ValueError("speculative decoding needs a sampler from make_sampler")
    kwargs.pop("num_draft_tokens", None)
    return _python_stream(model, tokenizer, ids, -1 if max_tokens is None else int(max_tokens), eos, **kwargs)


def generate_step(prompt, model, *, max_tokens=256, sampler=None, logits_processors=None, max_kv_size=None,
                  prompt_cache=None, prefill_step_size=2048, kv_bits=None, kv_group_size=64,
                  quantized_kv_start=DEFAULT_QUANTIZED_KV_START, prompt_progress_callback=None,
                  input_embeddings=None):
    """Yields ``(token, logprobs)`` for ``max_tokens`` steps (no EOS check), as mlx_lm."""
    if input_embeddings is not None:
        raise ValueError("input_embeddings are not supported by oxmx.lm")
    core = _core_model(model)
    if isinstance(prompt, mx.array):
        ids = prompt.reshape(-1).tolist()
    else:
        ids = [int(t) for t in prompt]
    if not ids:
        raise ValueError("the prompt must have at least one token")
    if sampler is not None and not isinstance(sampler, Sampler):
        yield from _python_steps(core, ids, sampler, logits_processors, prompt_cache, max_kv_size,
                                 prefill_step_size, -1 if max_tokens is None else max_tokens)
        return
    sampler = sampler or Sampler()
    limit = None if max_tokens is None or max_tokens < 0 else int(max_tokens)
    if limit == 0:
        return
    if prompt_cache is not None and not isinstance(prompt_cache, _lm._PromptCache):
        raise TypeError("prompt_cache must come from oxmx.lm.models.cache.make_prompt_cache")
    stream = _lm.start_generation(
        core, None, ids, sampler._args, _split_processors(logits_processors), limit, [], prompt_cache, max_kv_size,
        int(prefill_step_size), kv_bits, int(kv_group_size), int(quantized_kv_start or 0), None)
    for item in stream:
        yield item[1], item[2]


def generate(model, tokenizer, prompt, verbose=False, **kwargs):
    """The whole response text (mlx_lm's ``generate``); ``verbose`` prints it as it comes and the
    speeds at the end."""
    if verbose:
        print("=" * 10)
    text = ""
    last = None
    for response in stream_generate(model, tokenizer, prompt, **kwargs):
        if verbose:
            print(response.text, end="", flush=True)
        text += response.text
        last = response
    if verbose:
        print()
        print("=" * 10)
        if len(text) == 0:
            print("No text generated for this prompt")
            return text
        print("Prompt: {} tokens, {:.3f} tokens-per-sec".format(last.prompt_tokens, last.prompt_tps))
        print("Generation: {} tokens, {:.3f} tokens-per-sec".format(last.generation_tokens, last.generation_tps))
        print("Peak memory: {:.3f} GB".format(last.peak_memory))
    return text
