"""``nn.quantize`` with a per-layer predicate, as MLX users write it (only the imports differ).

A small model is quantized in place: the embedding to 8 bits, the large projection to 4 bits
with group size 32 (a dict from the predicate gives that layer its own parameters), and the
small output layer (whose input size is not a multiple of the group size) is left alone.

Run: PYTHONPATH=python python3 examples/python/nn_quantize.py
"""

import oxmx.core as mx
import oxmx.nn as nn
from oxmx.utils import tree_flatten


class Model(nn.Module):
    def __init__(self, vocab=256, dims=128, hidden=256):
        super().__init__()
        self.embed = nn.Embedding(vocab, dims)
        self.up = nn.Linear(dims, hidden)
        self.down = nn.Linear(hidden, dims)
        self.head = nn.Linear(dims, 10)
        self.head_small = nn.Linear(10, 10)

    def __call__(self, tokens):
        x = self.embed(tokens)
        x = self.down(nn.gelu(self.up(x)))
        return self.head_small(self.head(x))


mx.random.seed(0)
model = Model()
tokens = mx.array([[1, 2, 3, 4], [5, 6, 7, 8]])
before = model(tokens)


def predicate(path, module):
    if path == "embed":
        return {"group_size": 64, "bits": 8}
    if path == "up":
        return {"group_size": 32, "bits": 4}
    if isinstance(module, nn.Linear):
        # layers whose input size the group size does not divide stay in full precision
        return module.weight.shape[1] % 64 == 0
    return False


nn.quantize(model, group_size=64, bits=4, class_predicate=predicate)
print(model)
after = model(tokens)
mx.eval(after)

for name, m in model.named_modules():
    if name:
        print(f"{name:12s} {type(m).__name__:20s} bits={getattr(m, 'bits', '-')} group_size={getattr(m, 'group_size', '-')}")

assert isinstance(model.embed, nn.QuantizedEmbedding) and model.embed.bits == 8
assert isinstance(model.up, nn.QuantizedLinear) and model.up.group_size == 32
assert isinstance(model.down, nn.QuantizedLinear) and model.down.bits == 4
assert isinstance(model.head, nn.QuantizedLinear)
assert isinstance(model.head_small, nn.Linear)
err = mx.abs(after - before).max().item()
scale = mx.abs(before).max().item()
print(f"max |quantized - float| = {err:.4f} (outputs up to {scale:.4f})")
assert err < 0.25 * scale
# only the float parts stay trainable
print("trainable:", sorted(k for k, _ in tree_flatten(model.trainable_parameters())))
