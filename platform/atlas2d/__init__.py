"""atlas2d: a PostgreSQL-backed platform for 2D materials and machine-learned force fields."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load(model_ref: str, device: str = "cpu", **kwargs: Any) -> Any:
    """The ASE calculator of a registered model version (``NAME`` or ``NAME:VERSION``),
    for notebooks and scripts.

    The model file's sha256 is checked against the registry before it is loaded
    (``ArtifactChanged`` otherwise); stress is eV/Å³ with ASE's sign. Keyword
    arguments go to :func:`atlas2d.services.models.load_calculator`.
    """
    # Imported here: `import atlas2d` stays instant, and the package root, like the
    # CLI, is an edge that may call a service.
    from atlas2d.services.models import load_calculator

    return load_calculator(model_ref, device=device, **kwargs)
