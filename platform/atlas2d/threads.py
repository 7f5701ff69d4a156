"""One thread setting for every process: ``ATLAS2D_NUM_THREADS`` (default 1).

On a small machine, BLAS/OpenMP's default of one thread per core made single force
calls and ASE cell-filter steps 10–100× slower as soon as another process was busy.
atlas2d runs one thread per process by default and scales with processes (Dask
workers, one per core). The variables must be set before numpy or torch is imported,
which is why the CLI applies them in ``atlas2d/cli/__init__.py`` and worker processes
get them in their environment (:func:`thread_environment`).
"""

from __future__ import annotations

import os
import sys

NUM_THREADS_VARIABLE = "ATLAS2D_NUM_THREADS"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_NUM_THREADS = 1


def configured_threads() -> int:
    """The thread count from ``ATLAS2D_NUM_THREADS`` (default 1).

    Raises:
        ValueError: the variable is not a positive integer.
    """
    raw = os.environ.get(NUM_THREADS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_NUM_THREADS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{NUM_THREADS_VARIABLE}={raw!r} is not a positive integer; set e.g. 1.")
    return int(raw)


def thread_environment(num_threads: int | None = None) -> dict[str, str]:
    """The environment variables that limit BLAS/OpenMP to ``num_threads`` threads,
    for a child process's environment."""
    count = str(num_threads or configured_threads())
    return {NUM_THREADS_VARIABLE: count, **dict.fromkeys(THREAD_VARIABLES, count)}


def apply_threads(num_threads: int | None = None) -> int:
    """Limit this process to ``num_threads`` threads (default: the configured count).

    Sets the BLAS/OpenMP variables (effective for libraries not imported yet) and,
    when torch is already imported, ``torch.set_num_threads``. Returns the count.
    """
    count = num_threads or configured_threads()
    os.environ.update(thread_environment(count))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    return count
