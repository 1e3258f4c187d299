"""MLX's introductory MLP example on oxmx: a multi-layer perceptron trained with SGD.

Only the import lines differ from MLX code (``import oxmx.core as mx`` instead of
``import mlx.core as mx``, and likewise for ``nn`` and ``optimizers``). The data are random
(a labelling by a fixed random linear "teacher") so that the example needs no download.

Run: PYTHONPATH=python python3 examples/python/mlp.py
"""

import time

import numpy as np

import oxmx.core as mx
import oxmx.nn as nn
import oxmx.optimizers as optim


class MLP(nn.Module):
    """A simple MLP."""

    def __init__(self, num_layers: int, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        layer_sizes = [input_dim] + [hidden_dim] * num_layers + [output_dim]
        self.layers = [nn.Linear(idim, odim) for idim, odim in zip(layer_sizes[:-1], layer_sizes[1:])]

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = mx.maximum(layer(x), 0.0)
        return self.layers[-1](x)


def loss_fn(model, X, y):
    return mx.mean(nn.losses.cross_entropy(model(X), y))


def eval_fn(model, X, y):
    return mx.mean(mx.argmax(model(X), axis=1) == y)


def batch_iterate(batch_size, X, y):
    perm = mx.array(np.random.permutation(y.size))
    for s in range(0, y.size, batch_size):
        ids = perm[s : s + batch_size]
        yield X[ids], y[ids]


def make_data(n, input_dim, num_classes, rng, teacher):
    X = rng.standard_normal((n, input_dim)).astype(np.float32)
    y = np.argmax(X @ teacher, axis=1).astype(np.uint32)
    return mx.array(X), mx.array(y)


num_layers = 2
hidden_dim = 32
num_classes = 10
input_dim = 64
batch_size = 64
num_epochs = 5
learning_rate = 1e-1

np.random.seed(0)
mx.random.seed(0)
rng = np.random.default_rng(0)
teacher = rng.standard_normal((input_dim, num_classes)).astype(np.float32)
train_images, train_labels = make_data(4096, input_dim, num_classes, rng, teacher)
test_images, test_labels = make_data(1024, input_dim, num_classes, rng, teacher)

model = MLP(num_layers, train_images.shape[-1], hidden_dim, num_classes)
mx.eval(model.parameters())
print(model)

loss_and_grad_fn = nn.value_and_grad(model, loss_fn)
optimizer = optim.SGD(learning_rate=learning_rate)

first_accuracy = eval_fn(model, test_images, test_labels).item()
print(f"Before training: test accuracy {first_accuracy:.3f}")
for e in range(num_epochs):
    tic = time.perf_counter()
    for X, y in batch_iterate(batch_size, train_images, train_labels):
        loss, grads = loss_and_grad_fn(model, X, y)
        optimizer.update(model, grads)
        mx.eval(model.parameters(), optimizer.state)
    accuracy = eval_fn(model, test_images, test_labels)
    toc = time.perf_counter()
    print(f"Epoch {e}: Test accuracy {accuracy.item():.3f}, loss {loss.item():.3f}, Time {toc - tic:.3f} (s)")

assert accuracy.item() > first_accuracy + 0.2, "training did not improve the accuracy"
