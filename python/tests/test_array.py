"""The array type: construction, dtypes, printing, conversions, operators, indexing."""

import pickle

import numpy as np
import pytest

import oxmx.core as ox
from conftest import assert_same, dtype_name, run_both, same_exception, to_np

RNG = np.random.default_rng()
DTYPES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "float16", "bfloat16", "float32", "float64", "complex64"]
SHAPES = [(), (1,), (5,), (3, 4), (2, 3, 4), (7, 8), (2, 1, 9)]


def rand_np(shape, name):
    """Fresh random values that every dtype `name` can hold."""
    if name == "bool_":
        return RNG.random(shape) > 0.5
    if name.startswith("uint"):
        return RNG.integers(0, 100, size=shape).astype(name)
    if name.startswith("int"):
        return RNG.integers(-100, 100, size=shape).astype(name)
    if name == "complex64":
        return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)
    return (RNG.standard_normal(shape) * 10).astype(np.float32)


def make(mod, values, name):
    return mod.array(values, getattr(mod, name))


# ---- dtypes

@pytest.mark.parametrize("name", DTYPES)
def test_dtype_objects(name, mlx):
    ours, theirs = getattr(ox, name), getattr(mlx, name)
    assert repr(ours).replace("oxmx.", "mlx.") == repr(theirs)
    assert str(ours).replace("oxmx.", "mlx.") == str(theirs)
    assert ours.size == theirs.size
    assert ours == getattr(ox, name) and hash(ours) == hash(getattr(ox, name))
    assert pickle.loads(pickle.dumps(ours)) == ours


def test_dtype_categories(mlx):
    for name in DTYPES:
        for cat in ["floating", "integer", "signedinteger", "unsignedinteger", "inexact",
                    "complexfloating", "number", "generic"]:
            assert ox.issubdtype(getattr(ox, name), getattr(ox, cat)) == mlx.issubdtype(
                getattr(mlx, name), getattr(mlx, cat)), (name, cat)


def test_finfo_iinfo(mlx):
    for name in ["float16", "bfloat16", "float32"]:
        assert ox.finfo(getattr(ox, name)).max == mlx.finfo(getattr(mlx, name)).max
        assert ox.finfo(getattr(ox, name)).min == mlx.finfo(getattr(mlx, name)).min
        assert ox.finfo(getattr(ox, name)).eps == mlx.finfo(getattr(mlx, name)).eps
    for name in ["int8", "uint16", "int32", "uint64", "int64"]:
        assert ox.iinfo(getattr(ox, name)).max == mlx.iinfo(getattr(mlx, name)).max
        assert ox.iinfo(getattr(ox, name)).min == mlx.iinfo(getattr(mlx, name)).min


# ---- construction

SCALARS_AND_LISTS = [
    3, -7, 2**40, 2.5, True, False, 1 + 2j, [1, 2, 3], [1, 2.0], [True, 2], [True, False],
    [[1, 2], [3, 4]], [[1.5, 2], [3, 4]], [2**40, 1], [], [[], []], (1, 2), [1 + 1j, 2],
    [[[1], [2]], [[3], [4]]],
]


@pytest.mark.parametrize("value", SCALARS_AND_LISTS, ids=repr)
def test_construct_like_mlx(value, mlx):
    ours, theirs = run_both(lambda m: m.array(value), mlx)
    assert_same(ours, theirs)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("value", [[1, 2], 3.5, [[True], [False]]], ids=repr)
@pytest.mark.parametrize("name", ["int8", "float16", "int64", "float32", "bool_", "uint32"])
def test_construct_with_dtype(value, name, mlx):
    ours, theirs = run_both(lambda m: m.array(value, getattr(m, name)), mlx)
    assert_same(ours, theirs)


@pytest.mark.parametrize("npdtype", ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
                                     "int32", "int64", "float16", "float32", "float64", "complex64"])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3), (3, 1, 2)])
def test_from_numpy(npdtype, shape, mlx):
    x = rand_np(shape, "bool_" if npdtype == "bool" else npdtype if npdtype != "float64" else "float32")
    x = x.astype(npdtype)
    ours, theirs = run_both(lambda m: m.array(x), mlx)
    assert_same(ours, theirs)
    # Non-contiguous input (a transposed view).
    if len(shape) >= 2:
        ours, theirs = run_both(lambda m: m.array(x.T), mlx)
        assert_same(ours, theirs)


def test_from_list_of_arrays(mlx):
    x = rand_np((3, 4), "float32")
    ours, theirs = run_both(lambda m: m.array([m.array(x[0]), m.array(x[1]), m.array(x[2])]), mlx)
    assert_same(ours, theirs)


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_round_trip(name, shape):
    if name == "bfloat16":
        pytest.skip("NumPy has no bfloat16")
    x = rand_np(shape, name).astype("bool" if name == "bool_" else name)
    a = ox.array(x)
    assert tuple(a.shape) == shape
    back = np.array(a)
    if name == "float64":
        # As MLX: float64 NumPy arrays become float32 arrays.
        assert a.dtype == ox.float32 and back.dtype == np.float32
        x = x.astype(np.float32)
    assert back.dtype == x.dtype
    np.testing.assert_array_equal(back, x)
    back[...] = 0  # a writable copy
    np.testing.assert_array_equal(np.asarray(a), x)


@pytest.mark.parametrize("name", DTYPES)
def test_properties(name, mlx):
    x = rand_np((2, 3, 4), name)
    ours, theirs = run_both(lambda m: make(m, x, name), mlx)
    for prop in ["shape", "ndim", "size", "itemsize", "nbytes"]:
        assert getattr(ours, prop) == getattr(theirs, prop), prop
    assert dtype_name(ours.dtype) == dtype_name(theirs.dtype)
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_tolist_item(name, shape, mlx):
    x = rand_np(shape, name)
    ours, theirs = run_both(lambda m: make(m, x, name), mlx)
    lo, lt = ours.tolist(), theirs.tolist()
    assert lo == lt
    assert type(lo) is type(lt)
    if shape == ():
        assert ours.item() == theirs.item()
        assert type(ours.item()) is type(theirs.item())


def test_scalar_conversions(mlx):
    for v in [3, 2.75, True, -1.5]:
        ours, theirs = run_both(lambda m: m.array(v), mlx)
        assert bool(ours) == bool(theirs)
        assert int(ours) == int(theirs)
        assert float(ours) == float(theirs)
    same_exception(lambda m: bool(m.array([1, 2])), mlx)
    same_exception(lambda m: len(m.array(1)), mlx)


# ---- printing

@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(10, 10), (3, 9, 2), (20,)])
def test_repr_like_mlx(name, shape, mlx):
    x = rand_np(shape, name)
    ours, theirs = run_both(lambda m: make(m, x, name), mlx)
    assert repr(ours) == repr(theirs)
    assert str(ours) == str(theirs)


def test_repr_special_values(mlx):
    vals = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-7, 3e10, 123456.7, 0.1, 1e-4]
    ours, theirs = run_both(lambda m: m.array(vals), mlx)
    assert repr(ours) == repr(theirs)


# ---- scalar ("weak") typing and promotion

@pytest.mark.parametrize("name", DTYPES)
@pytest.mark.parametrize("scalar", [1, 1.0, True, 2.5, 1j])
def test_scalar_typing(name, scalar, mlx):
    x = rand_np((3,), name)
    for f in [lambda a, s: a + s, lambda a, s: s + a, lambda a, s: a * s, lambda a, s: s - a,
              lambda a, s: a == s, lambda a, s: a / s]:
        try:
            theirs = f(make(mlx, x, name), scalar)
        except Exception as exc:  # noqa: BLE001 - the oracle's exception type is what we check
            with pytest.raises(type(exc)):
                f(make(ox, x, name), scalar)
            continue
        ours = f(make(ox, x, name), scalar)
        assert dtype_name(ours.dtype) == dtype_name(theirs.dtype), (name, scalar)
        assert_same(ours, theirs)


def test_scalar_typing_examples():
    assert ox.array([1, 2], ox.int8).__add__(1).dtype == ox.int8
    assert (ox.array([1, 2], ox.int8) + 1).dtype == ox.int8
    assert (ox.array([1, 2]) + 1.0).dtype == ox.float32
    assert (ox.array([1, 2], ox.float16) * 2.0).dtype == ox.float16


@pytest.mark.parametrize("a", DTYPES)
@pytest.mark.parametrize("b", DTYPES)
def test_array_promotion(a, b, mlx):
    x, y = rand_np((2,), a), rand_np((2,), b)
    ours, theirs = run_both(lambda m: make(m, x, a) + make(m, y, b), mlx)
    assert dtype_name(ours.dtype) == dtype_name(theirs.dtype)


def test_scalar_overflow(mlx):
    same_exception(lambda m: m.array([1, 2], m.uint8) + 300, mlx)


# ---- operators

OPS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "truediv": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
    "pow": lambda a, b: a ** b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}
INT_OPS = {"and": lambda a, b: a & b, "or": lambda a, b: a | b, "xor": lambda a, b: a ^ b,
           "lshift": lambda a, b: a << b, "rshift": lambda a, b: a >> b}


@pytest.mark.parametrize("op", list(OPS) + list(INT_OPS))
@pytest.mark.parametrize("name", ["int32", "float32", "float16", "int8", "uint8"])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3, 4), (4,))])
def test_binary_operators(op, name, shapes, mlx):
    f = OPS.get(op) or INT_OPS[op]
    if op in INT_OPS and name.startswith("float"):
        same_exception(lambda m: f(m.ones(shapes[0], getattr(m, name)), m.ones(shapes[1], getattr(m, name))), mlx)
        return
    x, y = rand_np(shapes[0], name), rand_np(shapes[1], name)
    if op in ("floordiv", "mod", "truediv"):
        y = np.where(y == 0, 3, y).astype(y.dtype)
    if op == "pow":
        x, y = np.abs(x) % 4 + 1, np.abs(y) % 3
        x, y = x.astype(name), y.astype(name)
    if op in ("lshift", "rshift"):
        y = (np.abs(y) % 4).astype(y.dtype)
    ours, theirs = run_both(lambda m: f(make(m, x, name), make(m, y, name)), mlx)
    assert_same(ours, theirs)
    # Reflected: a Python scalar on the left. (MLX has no reflected bitwise operators; oxmx has.)
    s = 3 if not name.startswith("float") else 1.5
    if op not in INT_OPS:
        ours, theirs = run_both(lambda m: f(s, make(m, y, name)), mlx)
        assert_same(ours, theirs)
    else:
        ours = f(s, make(ox, y, name))
        assert_same(ours, f(make(mlx, np.full(y.shape, s, y.dtype), name), make(mlx, y, name)))


def test_unary_operators(mlx):
    x = rand_np((3, 4), "float32")
    for f in [lambda a: -a, lambda a: abs(a), lambda a: +a]:
        assert_same(*run_both(lambda m: f(m.array(x)), mlx))
    i = rand_np((5,), "int32")
    assert_same(*run_both(lambda m: ~m.array(i), mlx))
    b = rand_np((5,), "bool_")
    assert_same(*run_both(lambda m: ~m.array(b), mlx))


def test_matmul_operator(mlx):
    x, y = rand_np((3, 4), "float32"), rand_np((4, 5), "float32")
    assert_same(*run_both(lambda m: m.array(x) @ m.array(y), mlx), rtol=1e-4, atol=1e-4)


def test_operator_errors(mlx):
    same_exception(lambda m: m.array([1, 2]) + "a", mlx)
    same_exception(lambda m: m.ones((2, 3)) + m.ones((4,)), mlx)
    same_exception(lambda m: m.array([1, 2]) == None, mlx)  # noqa: E711
    same_exception(lambda m: m.array("abc"), mlx)
    same_exception(lambda m: m.array([[1, 2], [3]]), mlx)
    same_exception(lambda m: m.zeros((2,), dtype="float32"), mlx)


# ---- indexing

INDICES = [
    0, -1, 2, slice(None), slice(1, 3), slice(None, None, -1), slice(4, 0, -2), (1, 2), (slice(1, 3), 2),
    (Ellipsis, 1), (None, 1), (1, None, slice(None)), (Ellipsis, None), (slice(None), slice(None, None, 2)),
    "ADV1", "ADV2", "ADV3", "ADV4",
]


def resolve_index(idx, m):
    if idx == "ADV1":
        return m.array([0, 2, 1])
    if idx == "ADV2":
        return (m.array([0, 2]), m.array([1, 3]))
    if idx == "ADV3":
        return (slice(None), m.array([[0, 1], [3, 2]]))
    if idx == "ADV4":
        return (m.array([0, 1]), slice(1, 3), m.array([2, 0]))
    return idx


@pytest.mark.parametrize("idx", INDICES, ids=repr)
def test_getitem(idx, mlx):
    x = rand_np((5, 4, 3), "float32")
    ours, theirs = run_both(lambda m: m.array(x)[resolve_index(idx, m)], mlx)
    assert_same(ours, theirs)
    np_idx = resolve_index(idx, np)
    np.testing.assert_array_equal(to_np(ours), x[np_idx])


@pytest.mark.parametrize("idx", INDICES, ids=repr)
def test_setitem(idx, mlx):
    x = rand_np((5, 4, 3), "int32")

    def f(m):
        a = m.array(x)
        i = resolve_index(idx, m)
        shape = a[i].shape
        a[i] = m.arange(int(np.prod(shape)), dtype=m.int32).reshape(shape) if shape else 7
        return a

    ours, theirs = run_both(f, mlx)
    assert_same(ours, theirs)


def test_setitem_scalar_and_broadcast(mlx):
    def f(m):
        a = m.zeros((3, 4))
        a[1] = 5
        a[:, 2] = m.array([1.0, 2.0, 3.0])
        a[0, 0] = 2.5
        return a

    assert_same(*run_both(f, mlx))


def test_at_updates(mlx):
    x = rand_np((6,), "float32")
    for op in ["add", "subtract", "multiply", "maximum", "minimum"]:
        ours, theirs = run_both(lambda m: getattr(m.array(x).at[m.array([0, 2, 2, 5])], op)(2.0), mlx)
        assert_same(ours, theirs)


def test_index_errors(mlx):
    same_exception(lambda m: m.ones((2, 3))["a"], mlx)
    same_exception(lambda m: m.ones((2, 3))[0, 0, 0], mlx)


def test_iteration(mlx):
    x = rand_np((3, 2), "int32")
    ours, theirs = run_both(lambda m: list(m.array(x)), mlx)
    assert_same(ours, theirs)


def test_pickle_and_copy():
    import copy
    x = ox.array(rand_np((2, 3), "float32"))
    for y in [pickle.loads(pickle.dumps(x)), copy.copy(x), copy.deepcopy(x)]:
        np.testing.assert_array_equal(np.array(y), np.array(x))
    b = ox.array([1.5, 2.5], ox.bfloat16)
    c = pickle.loads(pickle.dumps(b))
    assert c.dtype == ox.bfloat16 and c.tolist() == b.tolist()


@pytest.mark.parametrize("method", ["sum", "mean", "max", "min", "prod", "var", "std", "logsumexp",
                                    "argmax", "argmin", "all", "any"])
def test_reduction_methods(method, mlx):
    x = rand_np((3, 4), "float32")
    for kw in [{}, {"axis": 0}, {"axis": -1, "keepdims": True}]:
        if method in ("argmax", "argmin") and kw == {}:
            kw = {"axis": None}
        ours, theirs = run_both(lambda m: getattr(m.array(x), method)(**kw), mlx)
        assert_same(ours, theirs, rtol=1e-4, atol=1e-4)


def test_shape_methods(mlx):
    x = rand_np((2, 3, 4), "float32")
    for f in [lambda a: a.reshape(6, 4), lambda a: a.reshape((4, 6)), lambda a: a.reshape([-1]),
              lambda a: a.transpose(), lambda a: a.transpose(1, 0, 2), lambda a: a.transpose((2, 0, 1)),
              lambda a: a.T, lambda a: a.flatten(), lambda a: a.swapaxes(0, 2), lambda a: a.moveaxis(0, -1),
              lambda a: a[:, :1].squeeze(), lambda a: a.astype(ox.int32 if isinstance(a, ox.array) else
                                                               __import__("mlx.core").core.int32),
              lambda a: a.split(2, axis=2), lambda a: a.cumsum(axis=1), lambda a: a.round(2),
              lambda a: a.abs().sqrt(), lambda a: a.square().log1p()]:
        assert_same(*run_both(lambda m: f(m.array(x)), mlx))


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/=", "//=", "%=", "**=", "&=", "|=", "^=", "<<=", ">>="])
@pytest.mark.parametrize("name", ["int32", "float32", "uint8"])
def test_inplace_operators(op, name, mlx):
    x = rand_np((3, 4), name)
    y = np.abs(rand_np((3, 4), name)) % 3 + 1
    y = y.astype(x.dtype)

    def f(m):
        a = make(m, x, name)
        alias = a
        ns = {"a": a, "b": make(m, y, name)}
        exec("a " + op + " b", ns)
        return [ns["a"], alias]

    try:
        theirs = f(mlx)
    except Exception as exc:  # noqa: BLE001
        with pytest.raises(type(exc)):
            f(ox)
        return
    ours = f(ox)
    assert_same(ours, theirs)
    # MLX updates the array object: the alias sees the result too.
    assert_same(ours[1], ours[0])


def test_mT_and_complex(mlx):
    x = rand_np((2, 3, 4), "float32")
    assert_same(*run_both(lambda m: m.array(x).mT, mlx))
    assert complex(ox.array(1.5)) == complex(mlx.array(1.5))


@pytest.mark.parametrize("name", [d for d in DTYPES if d != "bfloat16"])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3), (2, 0, 3)])
def test_buffer_protocol(name, shape, mlx):
    x = rand_np(shape, name)
    ours, theirs = memoryview(make(ox, x, name)), memoryview(make(mlx, x, name))
    assert (ours.format, ours.itemsize, ours.shape, ours.strides, ours.ndim) == \
        (theirs.format, theirs.itemsize, theirs.shape, theirs.strides, theirs.ndim)
    assert ours.readonly  # oxmx exports a read-only copy (MLX a writable view)
    assert ours.tobytes() == theirs.tobytes()
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_buffer_bfloat16_like_mlx(mlx):
    ours, theirs = run_both(lambda m: memoryview(m.array([1.0, -2.5, 3e-3], m.bfloat16)), mlx)
    assert (ours.format, ours.itemsize, ours.shape) == (theirs.format, theirs.itemsize, theirs.shape)
    assert ours.tobytes() == theirs.tobytes()
    same_exception(lambda m: np.array(m.array([1.0], m.bfloat16)), mlx)


def test_bfloat16_rounding_like_mlx(mlx):
    """float32 -> bfloat16 (and float16) round to nearest even once, as MLX: values just above a
    halfway point, with bits only in the last mantissa bits, round up."""
    x = RNG.standard_normal(200000).astype(np.float32)
    ours, theirs = run_both(lambda m: m.array(x, m.bfloat16), mlx)
    np.testing.assert_array_equal(to_np(ours), to_np(theirs))
    ours, theirs = run_both(lambda m: m.array(x).astype(m.float16), mlx)
    np.testing.assert_array_equal(to_np(ours), to_np(theirs))
