"""Training with ``mx.compile`` on oxmx: an MLP classifier, AdamW with a warm-up + cosine
schedule, gradient clipping, and a compiled training step.

MLX users usually compile a step that captures the model and optimizer state implicitly
(``partial(mx.compile, inputs=state, outputs=state)``); oxmx's ``mx.compile`` does not capture
state yet, so this step is written functionally: parameters and optimizer state go in and come
out. It runs unchanged on MLX (swap the imports) and gives the same losses as the eager loop.

Run: PYTHONPATH=python python3 examples/python/train_mlp.py
"""

import numpy as np

import oxmx.core as mx
import oxmx.nn as nn
import oxmx.optimizers as optim


class MLP(nn.Module):
    def __init__(self, dims, hidden, classes):
        super().__init__()
        self.layers = [nn.Linear(dims, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, classes)]
        self.drop = nn.Dropout(0.0)
        # (no LayerNorm/RMSNorm here yet: oxmx's compiled gradient through mx.fast.layer_norm and
        # mx.fast.rms_norm with respect to their input panics, see the nn tests)

    def __call__(self, x):
        x = nn.gelu(self.layers[0](x))
        x = self.drop(nn.silu(self.layers[1](x)))
        return self.layers[2](x)


def make_optimizer():
    warmup = optim.linear_schedule(0.0, 1e-2, 5)
    cosine = optim.cosine_decay(1e-2, 40, 1e-4)
    return optim.AdamW(learning_rate=optim.join_schedules([warmup, cosine], [5]), weight_decay=0.01)


rng = np.random.default_rng(0)
teacher = rng.standard_normal((16, 4)).astype(np.float32)
X_np = rng.standard_normal((512, 16)).astype(np.float32)
X = mx.array(X_np)
Y = mx.array(np.argmax(X_np @ teacher, axis=1).astype(np.uint32))


def train(compiled, steps=40, batch=64):
    mx.random.seed(0)
    model = MLP(16, 32, 4)
    opt = make_optimizer()
    opt.init(model.trainable_parameters())

    def loss_fn(x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    def step(params, opt_state, x, y):
        model.update(params)
        opt.state = opt_state
        loss, grads = nn.value_and_grad(model, loss_fn)(x, y)
        grads, _ = optim.clip_grad_norm(grads, max_norm=1.0)
        return loss, opt.apply_gradients(grads, params), opt.state

    run = mx.compile(step) if compiled else step
    params, state = model.trainable_parameters(), opt.state
    losses = []
    for i in range(steps):
        s = (i * batch) % X.shape[0]
        loss, params, state = run(params, state, X[s : s + batch], Y[s : s + batch])
        mx.eval(loss, params, state)
        losses.append(loss.item())
    model.update(params)
    model.eval()
    accuracy = mx.mean(mx.argmax(model(X), axis=1) == Y).item()
    return losses, accuracy


eager_losses, eager_acc = train(compiled=False)
comp_losses, comp_acc = train(compiled=True)
for i in range(0, len(comp_losses), 8):
    print(f"step {i:3d}: loss {comp_losses[i]:.4f} (eager {eager_losses[i]:.4f})")
print(f"train accuracy: compiled {comp_acc:.3f}, eager {eager_acc:.3f}")
assert np.allclose(comp_losses, eager_losses, rtol=1e-4, atol=1e-5), "compiled and eager training differ"
assert comp_losses[-1] < 0.5 * comp_losses[0], "the loss did not fall"
