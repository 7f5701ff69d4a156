"""The ``atlas2d`` command line (Typer): parse → service → print.

The thread limit is applied here, when the package is imported and before the
commands import numpy or torch (see ``atlas2d.threads``); a bad
``ATLAS2D_NUM_THREADS`` is reported by ``atlas2d.cli.main.app``.
"""

import contextlib

from atlas2d.threads import apply_threads

with contextlib.suppress(ValueError):
    apply_threads()
