"""The bundled demo dataset: 2D layers and bulk references labelled by the reference
labeller (CHGNet standing in for DFT; never real DFT). What it holds and how it was made:
:mod:`atlas2d.demo.make_dataset` and ``manifest.json`` (next to ``data/``, so that
``atlas2d ingest`` of the directory reads only the dataset).

The builder, :mod:`atlas2d.demo.make_dataset`, stays in the package although only its
output is used at run time: the data are generated, not measured, and whoever reads
them (or the demo's figures) can rerun exactly the code that made them, with the
versions the manifest records. Test-only generators live under ``tests/support``.

```bash
atlas2d ingest $(python -c "import atlas2d.demo as d; print(*d.dataset_paths())")
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "data"
MANIFEST = Path(__file__).resolve().parent / "manifest.json"
TRAJECTORIES_FILE = "demo_2d_relaxations.json.xz"
"""Alexandria geometry-optimisation file: ``{mat_id: [trajectory]}`` of the 2D layers."""
HULL_FILE = "demo_convex_hull.json.xz"
"""Alexandria convex-hull file: final entries of the layers and of the bulk references."""


def dataset_paths(data_dir: Path = DATA_DIR) -> list[Path]:
    """The dataset's two files, in the order to ingest them."""
    return [data_dir / TRAJECTORIES_FILE, data_dir / HULL_FILE]


def manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """What ``manifest.json`` says of the dataset (counts, steps, versions, timing)."""
    return json.loads(path.read_text())
