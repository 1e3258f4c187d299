"""Core bindings beyond the op set: DLPack, pickling, file objects in save/load,
custom_function (vjp/jvp/vmap rules), checkpoint and streams, each against MLX."""

import io
import pickle

import numpy as np
import pytest

import oxmx.core as ox

from conftest import assert_same

rng = np.random.default_rng(7)


def rnd(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---- DLPack

@pytest.mark.parametrize("dtype", ["bool_", "uint8", "int8", "int16", "int32", "int64", "uint32", "float16",
                                   "float32", "complex64"])
def test_dlpack_to_numpy(dtype, mlx):
    x = np.abs(rnd(3, 4) * 5)  # float -> unsigned casts of negatives differ (not a DLPack matter)
    a, b = ox.array(x).astype(getattr(ox, dtype)), mlx.array(x).astype(getattr(mlx, dtype))
    ours, theirs = np.from_dlpack(a), np.from_dlpack(b)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    assert a.__dlpack_device__() == b.__dlpack_device__()


def test_dlpack_shapes_and_lifetime():
    for shape in [(), (0,), (5,), (2, 3, 4)]:
        x = rnd(*shape) if shape else np.float32(3.5)
        a = ox.array(x)
        np.testing.assert_array_equal(np.from_dlpack(a), np.asarray(x))
    # a non-contiguous view exports its values in row-major order
    a = ox.array(rnd(4, 6))
    t = a.T[1:3]
    np.testing.assert_array_equal(np.from_dlpack(t), np.array(t))
    # the capsule owns its copy: the NumPy array outlives the oxmx array
    b = ox.arange(10)
    n = np.from_dlpack(b)
    del b
    np.testing.assert_array_equal(n, np.arange(10))
    cap = ox.array([1, 2]).__dlpack__()
    del cap  # an unconsumed capsule frees its tensor


def test_array_from_dlpack_producer(mlx):
    class Producer:
        """Only the DLPack protocol (no __array__): as a torch or jax array on the host."""

        def __init__(self, arr):
            self._a = arr

        def __dlpack__(self, **kwargs):
            return self._a.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    x = rnd(2, 3)
    assert_same(ox.array(Producer(x)), mlx.array(x))
    assert_same(ox.array(Producer(ox.array(x))), mlx.array(x))
    i = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert_same(ox.array(Producer(i)), mlx.array(i))


# ---- pickling

def test_pickle_round_trip_all_dtypes(mlx):
    x = rnd(3, 2)
    for name in ["bool_", "uint8", "int32", "int64", "float16", "bfloat16", "float32", "complex64"]:
        a = ox.array(x).astype(getattr(ox, name))
        b = pickle.loads(pickle.dumps(a))
        assert b.dtype == a.dtype and b.shape == a.shape
        assert_same(b, mlx.array(x).astype(getattr(mlx, name)))
    assert pickle.loads(pickle.dumps(ox.array(2.5))).item() == 2.5


# ---- file objects in save / load

@pytest.mark.parametrize("kind", ["npy", "npz", "npz_compressed", "safetensors"])
def test_file_objects_with_mlx(kind, mlx, tmp_path):
    a, b = rnd(3, 4), np.arange(5, dtype=np.int32)

    def save(m, f):
        if kind == "npy":
            m.save(f, m.array(a))
        elif kind == "npz":
            m.savez(f, m.array(a), b=m.array(b))
        elif kind == "npz_compressed":
            m.savez_compressed(f, m.array(a), b=m.array(b))
        else:
            m.save_safetensors(f, {"a": m.array(a), "b": m.array(b)}, metadata={"k": "v"})

    fmt = "npz" if kind.startswith("npz") else kind
    written = {}
    for name, m in [("ox", ox), ("mlx", mlx)]:
        buf = io.BytesIO()
        save(m, buf)
        written[name] = buf.getvalue()
        assert len(written[name]) > 0
    # each library reads the other's bytes from a file object
    for data in written.values():
        ours = ox.load(io.BytesIO(data), format=fmt)
        theirs = mlx.load(io.BytesIO(data), format=fmt)
        if fmt == "npy":
            assert_same(ours, theirs)
        else:
            assert sorted(ours) == sorted(theirs)
            for k in ours:
                assert_same(ours[k], theirs[k])
    # real open files, the format from the file name
    p = tmp_path / ("x." + fmt)
    with open(p, "wb") as f:
        save(ox, f)
    with open(p, "rb") as f:
        got = ox.load(f)
    theirs = mlx.load(str(p))
    if fmt == "npy":
        assert_same(got, theirs)
    else:
        assert sorted(got) == sorted(theirs)
    if kind == "safetensors":
        _, meta = ox.load(io.BytesIO(written["mlx"]), format="safetensors", return_metadata=True)
        assert meta == {"k": "v"}


def test_file_object_errors():
    with pytest.raises(TypeError):
        ox.save(12, ox.array([1.0]))
    with pytest.raises(ValueError, match="format"):
        ox.load(io.BytesIO(b"not an array file at all"))
    with pytest.raises(ValueError):
        ox.load(io.BytesIO(b"xx"), format="pickle")
    buf = io.BytesIO()
    ox.save(buf, ox.array([1.0, 2.0]))
    # the format is sniffed from the bytes when the file object has no name
    assert ox.load(io.BytesIO(buf.getvalue())).tolist() == [1.0, 2.0]


# ---- custom_function

def test_custom_function_vjp_with_mlx(mlx):
    x, y = rnd(3), rnd(3)

    def build(m):
        @m.custom_function
        def f(a, b):
            return m.sin(a) * b

        @f.vjp
        def f_vjp(primals, cotangent, output):
            a, b = primals
            return 2.0 * cotangent * m.cos(a) * b, 3.0 * cotangent * m.sin(a)

        return f

    fo, ft = build(ox), build(mlx)
    ours = ox.grad(lambda a, b: fo(a, b).sum(), argnums=(0, 1))(ox.array(x), ox.array(y))
    theirs = mlx.grad(lambda a, b: ft(a, b).sum(), argnums=(0, 1))(mlx.array(x), mlx.array(y))
    assert_same(list(ours), list(theirs))
    assert_same(fo(ox.array(x), ox.array(y)), ft(mlx.array(x), mlx.array(y)))
    # without a vjp rule the gradient is the forward function's own
    plain = ox.custom_function(lambda a: a * a)
    assert_same(ox.grad(lambda a: plain(a).sum())(ox.array(x)), mlx.array(2 * x))


def test_custom_function_single_arg_multi_output_jvp_vmap(mlx):
    x = rnd(4)

    def build(m):
        @m.custom_function
        def g(a):
            return m.sin(a), m.cos(a)

        @g.vjp
        def g_vjp(primal, cotangents, outputs):
            assert not isinstance(primal, tuple)
            c0, c1 = cotangents
            return 10.0 * c0 + outputs[1] * c1

        @g.jvp
        def g_jvp(primal, tangent):
            return tangent * 5.0, tangent * 7.0

        return g

    def build_h(m):
        @m.custom_function
        def h(a, b):
            return a * b

        @h.vmap
        def h_vmap(inputs, axes):
            a, b = inputs
            assert axes == (0, None)
            return a * b * 10.0, 0

        return h

    og, tg = build(ox), build(mlx)
    assert_same(ox.grad(lambda a: og(a)[0].sum() + og(a)[1].sum())(ox.array(x)),
                mlx.grad(lambda a: tg(a)[0].sum() + tg(a)[1].sum())(mlx.array(x)))
    o = ox.jvp(og, [ox.array(x)], [ox.ones(4)])
    t = mlx.jvp(tg, [mlx.array(x)], [mlx.ones(4)])
    assert_same(list(o[0]), list(t[0]))
    assert_same(list(o[1]), list(t[1]))
    oh, th = build_h(ox), build_h(mlx)
    xs, b = rnd(3, 2), rnd(2)
    assert_same(ox.vmap(oh, in_axes=(0, None))(ox.array(xs), ox.array(b)),
                mlx.vmap(th, in_axes=(0, None))(mlx.array(xs), mlx.array(b)))


def test_custom_function_trees_kwargs_and_errors(mlx):
    x, y = rnd(3), rnd(3)

    def build(m):
        @m.custom_function
        def t(d, scale=2.0):
            return d["a"] * d["b"] * scale

        @t.vjp
        def t_vjp(primal, cotangent, output):
            return {"a": cotangent, "b": cotangent * 0.0}

        return t

    ot, tt = build(ox), build(mlx)
    assert_same(ot({"a": ox.array(x), "b": ox.array(y)}, scale=3.0),
                tt({"a": mlx.array(x), "b": mlx.array(y)}, scale=3.0))
    g_o = ox.grad(lambda d: ot(d).sum())({"a": ox.array(x), "b": ox.array(y)})
    g_t = mlx.grad(lambda d: tt(d).sum())({"a": mlx.array(x), "b": mlx.array(y)})
    assert sorted(g_o) == sorted(g_t)
    for k in g_o:
        assert_same(g_o[k], g_t[k])

    @ox.custom_function
    def e(a):
        return a

    @e.vjp
    def e_vjp(p, c, o):
        raise ValueError("Abort!")

    assert_same(e(ox.array(x)), mlx.array(x))
    with pytest.raises(ValueError, match="Abort!"):
        ox.grad(lambda a: e(a).sum())(ox.array(x))
    with pytest.raises(TypeError):
        ox.custom_function(3)

    @ox.custom_function
    def bad_fwd(a):
        raise KeyError("forward failed")

    with pytest.raises(KeyError):
        bad_fwd(ox.array(x))


# ---- checkpoint

def test_checkpoint_with_mlx(mlx):
    x, y = rnd(5), rnd(5)

    def f(m):
        return lambda a, b: (m.sin(a) * m.exp(b) + a * a).sum()

    co, ct = ox.checkpoint(f(ox)), mlx.checkpoint(f(mlx))
    assert_same(co(ox.array(x), ox.array(y)), ct(mlx.array(x), mlx.array(y)))
    vo = ox.value_and_grad(co, argnums=(0, 1))(ox.array(x), ox.array(y))
    vt = mlx.value_and_grad(ct, argnums=(0, 1))(mlx.array(x), mlx.array(y))
    assert_same(vo[0], vt[0])
    assert_same(list(vo[1]), list(vt[1]))
    # trees in, trees out, composed with grad twice
    tree = ox.checkpoint(lambda d: {"s": (d["w"] * d["w"]).sum()})
    assert_same(ox.grad(lambda w: tree({"w": w})["s"])(ox.array(x)), mlx.array(2 * x))
    assert_same(ox.grad(ox.grad(ox.checkpoint(lambda a: (a ** 3).sum()).__call__))(ox.array(2.0)), mlx.array(12.0))
    with pytest.raises(TypeError):
        ox.checkpoint(None)


# ---- streams

def test_streams_with_mlx(mlx):
    assert repr(ox.default_stream(ox.cpu)) == repr(mlx.default_stream(mlx.cpu))
    s = ox.new_stream(ox.cpu)
    assert s.device == ox.Device(ox.cpu)
    with ox.stream(s):
        r = ox.exp(ox.array([0.0, 1.0]), stream=s)
    ox.synchronize()
    ox.synchronize(s)
    assert_same(r, mlx.exp(mlx.array([0.0, 1.0])))
