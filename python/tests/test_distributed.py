"""mx.distributed: a group of one without a launcher (as MLX), and 2 and 4 MPI ranks on this
machine (skipped, saying so, without Open MPI's mpirun)."""

import textwrap

import numpy as np
import pytest
from mpi_ranks import run_on_ranks

import oxmx.core as mx

from conftest import needs_mlx, mlx_core



def test_singleton_group_matches_mlx():
    g = mx.distributed.init()
    assert (g.rank(), g.size()) == (0, 1)
    x = mx.array([[1.0, 2.0], [3.0, 4.0]])
    for f in ("all_sum", "all_max", "all_min", "all_gather", "sum_scatter"):
        np.testing.assert_array_equal(np.array(getattr(mx.distributed, f)(x)), np.array(x), err_msg=f)
    with pytest.raises(ValueError, match="out of range"):
        mx.distributed.send(x, 1)
    with pytest.raises(RuntimeError, match="oxmx launch"):
        mx.distributed.init(strict=True)
    with pytest.raises(ValueError, match="unknown backend"):
        mx.distributed.init(backend="smoke-signals")
    assert "Group(rank=0, size=1" in repr(g)


@needs_mlx
def test_singleton_results_equal_mlx():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    ours = mx.distributed.all_sum(mx.array(x))
    theirs = mlx_core.distributed.all_sum(mlx_core.array(x))
    np.testing.assert_array_equal(np.array(ours), np.array(theirs))
    assert mx.distributed.init().size() == mlx_core.distributed.init().size()


WORKER = textwrap.dedent(
    """
    import numpy as np
    import oxmx.core as mx
    g = mx.distributed.init(strict=True, backend="mpi")
    r, n = g.rank(), g.size()
    def rank_data(k, dt):
        return (np.arange(12).reshape(3, 4) * (k + 1) + k).astype(dt)
    for dt, mdt in [(np.float32, mx.float32), (np.int32, mx.int32), (np.float16, mx.float16)]:
        x = mx.array(rank_data(r, dt))
        every = [rank_data(k, dt).astype(np.float64) for k in range(n)]
        np.testing.assert_allclose(np.array(mx.distributed.all_sum(x)), sum(every), rtol=1e-3)
        np.testing.assert_allclose(np.array(mx.distributed.all_max(x)), np.max(every, axis=0))
        np.testing.assert_allclose(np.array(mx.distributed.all_min(x)), np.min(every, axis=0))
        np.testing.assert_allclose(np.array(mx.distributed.all_gather(x)), np.concatenate(every, 0))
        assert mx.distributed.all_sum(x).dtype == mdt
    tall = mx.array(np.ones((2 * n, 3), np.float32) * (r + 1))
    np.testing.assert_allclose(np.array(mx.distributed.sum_scatter(tall)), np.full((2, 3), n * (n + 1) / 2))
    nxt, prv = (r + 1) % n, (r - 1) % n
    # A send never blocks (MPI sends run on their own thread): send, then receive.
    s = mx.distributed.send(mx.full((5,), r, mx.int32), nxt)
    mx.eval(s)
    got = mx.distributed.recv((5,), mx.int32, prv)
    mx.eval(got)
    assert np.array(got).tolist() == [prv] * 5
    s = mx.distributed.send(mx.array([1.5, 2.5]) * (r + 1), nxt)
    got = mx.distributed.recv_like(mx.zeros((2,), mx.float32), prv)
    mx.eval(s)
    mx.eval(got)
    assert np.array(got).tolist() == [1.5 * (prv + 1), 2.5 * (prv + 1)]
    sub = g.split(r % 2)
    assert sub.size() == len([k for k in range(n) if k % 2 == r % 2])
    assert mx.distributed.all_sum(mx.array(r), group=sub).item() == sum(k for k in range(n) if k % 2 == r % 2)
    # Gradients flow through all_sum (identity per rank) into every rank's input.
    gx = mx.grad(lambda v: (mx.distributed.all_sum(v) * 2).sum())(mx.ones((3,)))
    assert np.array(gx).tolist() == [2.0, 2.0, 2.0]
    print("python worker ok", r)
    """
)


@pytest.mark.parametrize("n", [2, 4])
def test_collectives_on_mpi_ranks(tmp_path, n):
    run_on_ranks(tmp_path, WORKER, n, "python worker ok")
