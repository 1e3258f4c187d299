"""Bad input from Python raises a Python exception: never a Rust panic (pyo3's PanicException is
a BaseException, so `except Exception` does not catch it) and never a crash."""

import numpy as np
import pytest

import oxmx.core as ox

WEIRD = [None, -1, 0, 3, 2**70, -(2**70), 1.5, float("nan"), "a", [], [[]], (1, -2), [1, [2]], {"a": 1},
         lambda: ox.array(1.0), lambda: ox.zeros((2, 3)), lambda: ox.zeros((0,)), lambda: ox.array([1, 2], ox.uint8),
         np.zeros((2, 2)), object(), ox.float32, lambda: ox.random.key(0), (2, 3), slice(None), Ellipsis]
SKIP = {"eval", "async_eval", "synchronize", "set_memory_limit", "set_cache_limit", "clear_cache", "seed",
        "disable_compile", "enable_compile", "set_default_device", "save", "savez", "savez_compressed",
        "save_safetensors", "load"}


def weird(i):
    w = WEIRD[i]
    return w() if callable(w) and getattr(w, "__name__", "") == "<lambda>" else w


def functions():
    for mod in [ox, ox.random, ox.linalg, ox.fft, ox.fast]:
        for name in dir(mod):
            f = getattr(mod, name)
            if not name.startswith("_") and callable(f) and not isinstance(f, type) and name not in SKIP:
                yield mod.__name__ + "." + name, f


def call(f, args):
    try:
        r = f(*args)
        if isinstance(r, ox.array):
            ox.eval(r)
    except Exception:  # noqa: BLE001 - any Python exception is the right outcome
        pass


@pytest.mark.parametrize("name,f", list(functions()), ids=lambda v: v if isinstance(v, str) else "")
def test_functions_never_panic(name, f):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    calls = [(weird(i),) for i in range(len(WEIRD))]
    calls += [tuple(weird(i) for i in rng.integers(0, len(WEIRD), n)) for n in (2, 3, 4) for _ in range(25)]
    for args in calls:
        call(f, args)  # a PanicException (BaseException) would fail the test


def test_methods_and_indexing_never_panic():
    rng = np.random.default_rng(1)
    a = ox.arange(24).reshape(2, 3, 4)
    names = [n for n in dir(a) if not n.startswith("__") and callable(getattr(a, n))]
    for name in names:
        for args in [(weird(i),) for i in range(len(WEIRD))] + [()]:
            call(getattr(a, name), args)
    for i in range(len(WEIRD)):
        call(lambda k: a[k], (weird(i),))
        for j in rng.integers(0, len(WEIRD), 5):
            call(lambda k, v: a.__setitem__(k, v), (weird(i), weird(j)))
            call(lambda k, v: a.at[k].add(v), (weird(i), weird(j)))
            call(lambda k, v: a + v if k is None else v - a, (weird(i), weird(j)))
