"""Runs a Python script on N MPI ranks of this machine (the distributed tests' launcher)."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_on_ranks(tmp_path, source, n, marker, timeout=300):
    """Writes `source` to a file, runs it on `n` ranks with mpirun and checks that every rank
    printed `marker` (skips, saying so, without Open MPI's mpirun)."""
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun (Open MPI) is not installed; apt-get install openmpi-bin libopenmpi-dev")
    script = tmp_path / "worker.py"
    script.write_text(source)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python")] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
        # Containers often forbid the shared-memory transport's cross-process copies; ranks
        # outnumber cores here, so waiting ranks yield.
        OMPI_MCA_btl_vader_single_copy_mechanism="none",
        OMPI_MCA_mpi_yield_when_idle="1",
        RAYON_NUM_THREADS="1",
    )
    cmd = ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none", sys.executable, str(script)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert out.count(marker) == n, out
