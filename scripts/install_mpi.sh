#!/usr/bin/env bash
# Open MPI for oxmx's CPU distributed backend (Debian/Ubuntu packages openmpi-bin and
# libopenmpi-dev), installed when missing and when this user can install packages. oxmx opens
# the library at run time, so a machine without it still builds and runs everything else; the
# MPI tests skip (saying so) when mpirun is absent.
set -uo pipefail
if command -v mpirun >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install_mpi: mpirun is missing and this user cannot install packages; install openmpi-bin libopenmpi-dev (the MPI tests will skip)" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_mpi: mpirun is missing and apt-get is not available; install Open MPI by hand (the MPI tests will skip)" >&2
    exit 0
fi
echo "install_mpi: installing Open MPI (openmpi-bin libopenmpi-dev)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q openmpi-bin libopenmpi-dev >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q openmpi-bin libopenmpi-dev >/dev/null 2>&1; } \
    || echo "install_mpi: apt-get could not install Open MPI (the MPI tests will skip)" >&2
exit 0
