"""Optimizers of ``mlx.optimizers``.

An optimizer keeps its state as a tree (``optimizer.state``): ``"step"`` (a uint64 count), the
hyper-parameters that may be scheduled (``"learning_rate"``), and per parameter a dict of
buffers shaped like the parameter tree. ``update(model, grads)`` applies one step to a module.
"""

import oxmx.core as mx
from oxmx.nn.layers.base import unflatten_weights
from oxmx.utils import tree_flatten, tree_map, tree_merge, tree_reduce

__all__ = ["Optimizer", "MultiOptimizer", "SGD", "RMSprop", "Adagrad", "AdaDelta", "Adam", "AdamW", "Adamax", "Lion",
           "Adafactor", "Muon", "clip_grad_norm"]


def _empty_like(tree):
    return tree_map(lambda _: {}, tree)


class Optimizer:
    """The base class: subclasses define ``init_single(parameter, state)`` (fill a parameter's
    state dict) and ``apply_single(gradient, parameter, state) -> new parameter``."""

    def __init__(self, schedulers=None):
        self._initialized = False
        self._state = {"step": mx.array(0, mx.uint64)}
        self._schedulers = dict(schedulers or {})

    def update(self, model, gradients):
        """One optimization step of ``model``'s parameters with ``gradients``."""
        model.update(self.apply_gradients(gradients, model))

    def init(self, parameters):
        """Creates the state of every parameter in the tree ``parameters`` that has none yet (the
        first ``update`` calls this; calling it earlier makes ``state`` complete up front)."""

        def merge(params, state):
            if isinstance(params, (list, tuple)):
                state = list(state)
                for i in range(min(len(state), len(params))):
                    state[i] = merge(params[i], state[i])
                state.extend(_empty_like(p) for p in params[len(state):])
                return type(params)(state)
            if isinstance(params, dict):
                for k, v in params.items():
                    state[k] = merge(v, state[k]) if k in state else _empty_like(v)
                return state
            return state

        merge(parameters, self._state)

        def fill(p, s):
            if not s:
                self.init_single(p, s)
            return s

        tree_map(fill, parameters, self._state)
        self._initialized = True

    def init_single(self, parameter, state):
        raise NotImplementedError

    def apply_gradients(self, gradients, parameters):
        """The new parameters after one step (without changing a module)."""
        if not self._initialized:
            self.init(gradients)
        for name, schedule in self._schedulers.items():
            self.state[name] = schedule(self.step)
        self.state["step"] = self.step + 1
        return tree_map(self.apply_single, gradients, parameters, self.state)

    def apply_single(self, gradient, parameter, state):
        raise NotImplementedError

    @property
    def state(self):
        """The whole optimizer state (a dict tree of arrays)."""
        return self._state

    @state.setter
    def state(self, state):
        self._initialized = False
        self._state = state

    @property
    def step(self):
        return self.state["step"]

    @property
    def learning_rate(self):
        return self.state["learning_rate"]

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.state["learning_rate"] = mx.array(learning_rate)

    def _maybe_schedule(self, name, param):
        """Stores hyper-parameter ``name``: a schedule (a callable of the step) or a value."""
        if callable(param):
            self._schedulers[name] = param
            value = param(self.step)
        else:
            value = mx.array(param)
        self.state[name] = value


class MultiOptimizer(Optimizer):
    """Several optimizers, each for the parameters its filter ``fn(path, gradient)`` selects (the
    last optimizer takes the rest: give one filter fewer than optimizers)."""

    def __init__(self, optimizers, filters=[]):  # noqa: B006 - MLX's signature
        super().__init__()
        self._state = {}
        if len(filters) != len(optimizers) - 1:
            raise ValueError("Given {} filters but {} needed.".format(len(filters), len(optimizers) - 1))
        self.optimizers = optimizers
        self.filters = list(filters) + [lambda *args, **kwargs: True]

    def _split(self, gradients):
        if len(self.optimizers) == 1:
            return [gradients]
        parts = [[] for _ in self.optimizers]
        for k, g in tree_flatten(gradients):
            for i, fn in enumerate(self.filters):
                if fn(k, g):
                    parts[i].append((k, g))
                    break
        return [unflatten_weights(p) if p else {} for p in parts]

    def init(self, parameters):
        for o, p in zip(self.optimizers, self._split(parameters)):
            o.init(p)

    def apply_gradients(self, gradients, parameters):
        tree = {}
        for o, g in zip(self.optimizers, self._split(gradients)):
            tree = tree_merge(tree, o.apply_gradients(g, parameters))
        return tree

    @property
    def state(self):
        return {"states": [o.state for o in self.optimizers]}

    @state.setter
    def state(self, state):
        if "states" not in state or len(state["states"]) != len(self.optimizers):
            raise ValueError("Invalid state provided")
        for o, s in zip(self.optimizers, state["states"]):
            o.state = s

    @property
    def learning_rate(self):
        return self.optimizers[0].learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        for o in self.optimizers:
            o.learning_rate = learning_rate


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (``v = momentum v + (1 - dampening) g``),
    Nesterov momentum and L2 ``weight_decay``."""

    def __init__(self, learning_rate, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening.")
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.dampening = dampening
        self.nesterov = nesterov

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        if self.weight_decay != 0:
            gradient = gradient + self.weight_decay * parameter
        if self.momentum <= 0:
            return parameter - lr * gradient
        v = self.momentum * state.get("v")
        v = v + ((1 - self.dampening) * gradient if self.dampening > 0 else gradient)
        update = gradient + self.momentum * v if self.nesterov else v
        state["v"] = v
        return parameter - lr * update


class RMSprop(Optimizer):
    """``v = alpha v + (1 - alpha) g^2``; ``p -= lr g / (sqrt(v) + eps)``."""

    def __init__(self, learning_rate, alpha=0.99, eps=1e-8):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.alpha = alpha
        self.eps = eps
        if alpha < 0.0:
            raise ValueError("RMSprop alpha should be >=0, {} was provided instead".format(alpha))
        if eps < 0.0:
            raise ValueError("RMSprop epsilon should be >0, {} was provided instead".format(eps))

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        v = self.alpha * state["v"] + (1 - self.alpha) * mx.square(gradient)
        state["v"] = v
        return parameter - lr * gradient / (mx.sqrt(v) + self.eps)


class Adagrad(Optimizer):
    """``v += g^2``; ``p -= lr g / (sqrt(v) + eps)``."""

    def __init__(self, learning_rate, eps=1e-8):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.eps = eps
        if eps < 0.0:
            raise ValueError("Epsilon value should be >=0, {} was provided instead".format(eps))

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        v = state["v"] + mx.square(gradient)
        state["v"] = v
        return parameter - lr * gradient / (mx.sqrt(v) + self.eps)


class AdaDelta(Optimizer):
    """AdaDelta: running averages of squared gradients (``v``) and squared updates (``u``)."""

    def __init__(self, learning_rate, rho=0.9, eps=1e-6):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.rho = rho
        self.eps = eps
        if rho < 0.0:
            raise ValueError("rho should be >=0, {} was provided instead".format(rho))
        if eps < 0.0:
            raise ValueError("epsilon should be >0, {} was provided instead".format(eps))

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)
        state["u"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        rho, eps = self.rho, self.eps
        v = rho * state["v"] + (1 - rho) * mx.square(gradient)
        d = mx.sqrt(state["u"] + eps) / mx.sqrt(v + eps) * gradient
        u = rho * state["u"] + (1 - rho) * mx.square(d)
        state["v"] = v
        state["u"] = u
        return parameter - lr * d


class Adam(Optimizer):
    """Adam (moments ``m``, ``v``); MLX's default has no bias correction (``bias_correction``
    turns it on)."""

    def __init__(self, learning_rate, betas=[0.9, 0.999], eps=1e-8, bias_correction=False):  # noqa: B006
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.betas = betas
        self.eps = eps
        self.bias_correction = bias_correction

    def init_single(self, parameter, state):
        state["m"] = mx.zeros_like(parameter)
        state["v"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = b1 * state["m"] + (1 - b1) * gradient
        v = b2 * state["v"] + (1 - b2) * mx.square(gradient)
        state["m"] = m
        state["v"] = v
        if self.bias_correction:
            step = self.step
            c1 = (lr / (1 - b1**step)).astype(gradient.dtype)
            c2 = mx.rsqrt(1 - b2**step).astype(gradient.dtype)
            return parameter - (c1 * m) / (mx.sqrt(v) * c2 + self.eps)
        return parameter - lr * m / (mx.sqrt(v) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step."""

    def __init__(self, learning_rate, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01,  # noqa: B006
                 bias_correction=False):
        super().__init__(learning_rate=learning_rate, betas=betas, eps=eps, bias_correction=bias_correction)
        self.weight_decay = weight_decay

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        return super().apply_single(gradient, parameter * (1 - lr * self.weight_decay), state)


class Adamax(Adam):
    """Adamax: ``v = max(b2 v, |g|)``; ``p -= lr m / (v + eps)``."""

    def __init__(self, learning_rate, betas=[0.9, 0.999], eps=1e-8):  # noqa: B006
        super().__init__(learning_rate, betas, eps)
        if not 0.0 <= eps:
            raise ValueError("Epsilon value should be >=0, {} was provided instead".format(eps))

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = b1 * state["m"] + (1 - b1) * gradient
        v = mx.maximum(b2 * state["v"], mx.abs(gradient))
        state["m"] = m
        state["v"] = v
        return parameter - lr * m / (v + self.eps)


class Lion(Optimizer):
    """Lion: ``p -= lr sign(b1 m + (1 - b1) g)``, ``m = b2 m + (1 - b2) g``, with decoupled
    ``weight_decay``."""

    def __init__(self, learning_rate, betas=[0.9, 0.99], weight_decay=0.0):  # noqa: B006
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.betas = betas
        self.weight_decay = weight_decay

    def init_single(self, parameter, state):
        state["m"] = mx.zeros_like(parameter)

    def apply_single(self, gradient, parameter, state):
        lr = self.learning_rate.astype(gradient.dtype)
        b1, b2 = self.betas
        m = state["m"]
        c = b1 * m + (1 - b1) * gradient
        state["m"] = b2 * m + (1 - b2) * gradient
        if self.weight_decay > 0:
            parameter = (1 - lr * self.weight_decay) * parameter
        return parameter - lr * mx.sign(c)


class Adafactor(Optimizer):
    """Adafactor: factored second moments for matrices (row and column averages), relative step
    sizes and update clipping."""

    def __init__(self, learning_rate=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta_1=None,
                 weight_decay=0.0, scale_parameter=True, relative_step=True, warmup_init=False):
        super().__init__()
        if learning_rate is not None:
            self._maybe_schedule("learning_rate", learning_rate)
        self.eps = eps
        self.clip_threshold = clip_threshold
        self.decay_rate = decay_rate
        self.beta_1 = beta_1
        self.weight_decay = weight_decay
        self.scale_parameter = scale_parameter
        self.relative_step = relative_step
        self.warmup_init = warmup_init

    def init_single(self, parameter, state):
        if parameter.ndim >= 2:
            shape, dtype = tuple(parameter.shape), parameter.dtype
            state["exp_avg_sq_row"] = mx.zeros(shape[:-1], dtype=dtype)
            state["exp_avg_sq_col"] = mx.zeros(shape[:-2] + shape[-1:], dtype=dtype)
        else:
            state["exp_avg_sq"] = mx.zeros_like(parameter)
        if self.beta_1 is not None:
            state["exp_avg"] = mx.zeros_like(parameter)

    @staticmethod
    def _rms(x):
        return mx.sqrt(mx.mean(mx.square(x)))

    def _lr(self, step, param_rms):
        if self.relative_step:
            min_step = 1e-6 * step if self.warmup_init else 1e-2
            size = mx.minimum(min_step, mx.rsqrt(step))
        else:
            size = self.learning_rate
        size = size.astype(param_rms.dtype)
        scale = mx.maximum(self.eps[1], param_rms) if self.scale_parameter else 1.0
        return scale * size

    def apply_single(self, gradient, parameter, state):
        step = self.step
        param_rms = self._rms(parameter)
        lr = self._lr(step, param_rms)
        beta_2 = 1.0 - (step**self.decay_rate).astype(param_rms.dtype)
        update = mx.square(gradient) + self.eps[0]
        if gradient.ndim >= 2:
            row = beta_2 * state["exp_avg_sq_row"] + (1 - beta_2) * mx.mean(update, axis=-1)
            col = beta_2 * state["exp_avg_sq_col"] + (1 - beta_2) * mx.mean(update, axis=-2)
            state["exp_avg_sq_row"] = row
            state["exp_avg_sq_col"] = col
            r = mx.rsqrt(row / mx.mean(row, axis=-1, keepdims=True))
            c = mx.rsqrt(col)
            update = mx.matmul(mx.expand_dims(r, -1), mx.expand_dims(c, -2)) * gradient
        else:
            sq = beta_2 * state["exp_avg_sq"] + (1 - beta_2) * update
            state["exp_avg_sq"] = sq
            update = mx.rsqrt(sq) * gradient
        update = update / mx.maximum(1.0, self._rms(update) / self.clip_threshold)
        update = lr * update
        if self.beta_1 is not None:
            avg = self.beta_1 * state["exp_avg"] + (1 - self.beta_1) * update
            state["exp_avg"] = avg
            update = avg
        if self.weight_decay != 0:
            parameter = parameter + parameter * (-self.weight_decay * lr)
        return parameter - update


class Muon(Optimizer):
    """Muon: SGD momentum whose matrix updates are orthogonalized by Newton-Schulz iterations
    (``ns_steps``, in the gradient's dtype), with ``weight_decay`` added to the gradient."""

    def __init__(self, learning_rate, momentum=0.95, weight_decay=0.01, nesterov=True, ns_steps=5):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.ns_steps = ns_steps

    def init_single(self, parameter, state):
        state["v"] = mx.zeros_like(parameter)

    @staticmethod
    def _orthogonalize(x, steps):
        a, b, c = 3.4445, -4.7750, 2.0315
        tall = x.shape[-2] > x.shape[-1]
        if tall:
            x = x.T
        x = x / (mx.linalg.norm(x, keepdims=True) + 1e-7)
        for _ in range(steps):
            A = x @ x.T
            B = mx.addmm(b * A, A, A, beta=1.0, alpha=c)
            x = mx.addmm(x, B, x, beta=a, alpha=1.0)
        return x.T if tall else x

    def apply_single(self, gradient, parameter, state):
        if self.weight_decay != 0:
            gradient = gradient + self.weight_decay * parameter
        v = self.momentum * state["v"] + (1 - self.momentum) * gradient
        state["v"] = v
        update = gradient * (1 - self.momentum) + v * self.momentum if self.nesterov else v
        lr = self.learning_rate.astype(gradient.dtype)
        if update.ndim >= 2:
            shape = tuple(update.shape)
            if update.ndim > 2:
                update = update.reshape(shape[0], -1)
            update = self._orthogonalize(update, self.ns_steps)
            if len(shape) > 2:
                update = update.reshape(shape)
            lr = lr * max(1, update.shape[-2] / update.shape[-1]) ** 0.5
        return parameter - lr * update.astype(gradient.dtype)


def clip_grad_norm(grads, max_norm):
    """Scales the gradient tree so its global L2 norm is at most ``max_norm``; returns
    ``(clipped_grads, total_norm)``."""
    sq = tree_reduce(lambda acc, g: acc + mx.sum(mx.square(g)), grads, 0.0)
    total = mx.sqrt(sq)
    factor = mx.minimum(max_norm / (total + 1e-6), 1.0)
    return tree_map(lambda g: g * factor, grads), total
