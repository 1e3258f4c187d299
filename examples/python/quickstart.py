"""MLX's quick-start walk-through on oxmx: only the import line differs from MLX code.

Run: PYTHONPATH=python python3 examples/python/quickstart.py (after scripts/build_python.sh),
or plainly once `scripts/setup.sh` has installed the package.
"""

import oxmx.core as mx

# Arrays and operations; ops are lazy until evaluated.
a = mx.array([1, 2, 3, 4])
print(a.shape, a.dtype)
b = mx.array([1.0, 2.0, 3.0, 4.0])
c = a + b
mx.eval(c)
print(c)
print(mx.add(a, b, stream=mx.cpu))

# Function transformations compose.
x = mx.array(0.0)
print(mx.sin(x), mx.grad(mx.sin)(x), mx.grad(mx.grad(mx.sin))(x))


# A compiled GELU gives the same values as the plain one.
def gelu(x):
    return x * (1 + mx.erf(x / mx.sqrt(mx.array(2.0)))) / 2


compiled_gelu = mx.compile(gelu)
x = mx.random.uniform(shape=(32, 1000), key=mx.random.key(0))
assert mx.allclose(gelu(x), compiled_gelu(x)).item()


# mx.fast.rms_norm against a hand-written RMS norm.
def rms_norm(x, weight, eps=1e-5):
    return x * mx.rsqrt(mx.mean(mx.square(x), axis=-1, keepdims=True) + eps) * weight


x = mx.random.normal((4, 64), key=mx.random.key(1))
w = mx.random.normal((64,), key=mx.random.key(2))
assert mx.allclose(mx.fast.rms_norm(x, w, 1e-5), rms_norm(x, w), atol=1e-5).item()

# Quantization: 4-bit weights, a quantized matmul against the dequantized weights.
w = mx.random.normal((128, 256), key=mx.random.key(3))
wq, scales, biases = mx.quantize(w, group_size=64, bits=4)
w_hat = mx.dequantize(wq, scales, biases, group_size=64, bits=4)
x = mx.random.normal((2, 256), key=mx.random.key(4))
y = mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=64, bits=4)
assert mx.allclose(y, x @ w_hat.T, rtol=1e-3, atol=1e-3).item()
print("quantization error:", mx.abs(w - w_hat).max().item())

# Linear regression by gradient descent, as in MLX's examples.
num_features, num_examples = 10, 200
w_star = mx.random.normal((num_features,), key=mx.random.key(5))
X = mx.random.normal((num_examples, num_features), key=mx.random.key(6))
y = X @ w_star


def loss_fn(w):
    return 0.5 * mx.mean(mx.square(X @ w - y))


grad_fn = mx.grad(loss_fn)
w = 1e-2 * mx.random.normal((num_features,), key=mx.random.key(7))
for _ in range(200):
    w = w - 0.3 * grad_fn(w)
    mx.eval(w)
print("loss:", loss_fn(w).item(), "|w - w*|:", mx.linalg.norm(w - w_star).item())
assert loss_fn(w).item() < 1e-3
