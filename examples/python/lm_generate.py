"""mlx_lm-style text generation with oxmx: the same code runs with mlx_lm by changing only the
import line (`from mlx_lm import load, generate`) and the model path.

Runs the default model (SmolLM2-135M-Instruct Q4_1 GGUF, installed by scripts/setup.sh); exits
quietly when it is not installed."""

import os
import sys

from oxmx.lm import load, generate

MODEL = os.path.join(os.environ.get("OXMX_MODELS_DIR") or os.path.expanduser("~/.cache/oxmx/models"),
                     "SmolLM2-135M-Instruct.Q4_1.gguf")

if not os.path.isfile(MODEL):
    print("skipped: the default model is not at {} (run scripts/setup.sh)".format(MODEL))
    sys.exit(0)

model, tokenizer = load(MODEL)

prompt = "Write a haiku about the sea."
if tokenizer.chat_template is not None:
    messages = [{"role": "user", "content": prompt}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)

text = generate(model, tokenizer, prompt=prompt, max_tokens=48, verbose=True)
