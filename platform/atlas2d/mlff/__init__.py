"""Force-field adapters (M3GNet through matgl, MACE through mace-torch): training,
model files, ASE calculators and a batch API. Nothing here touches the database,
except :func:`load`, the notebook entry point, which asks the registry service."""

from __future__ import annotations

from typing import Any


def load(model_ref: str, device: str = "cpu", **kwargs: Any) -> Any:
    """The ASE calculator of a registered model version (``NAME`` or ``NAME:VERSION``).

    The model file's sha256 is checked against the registry before it is loaded
    (``ArtifactChanged`` otherwise); stress is eV/Å³ with ASE's sign. Keyword
    arguments go to :func:`atlas2d.services.models.load_calculator`.
    """
    from atlas2d.services.models import load_calculator

    return load_calculator(model_ref, device=device, **kwargs)
