"""The ``alloys`` extra: icet (enumeration, cluster spaces) and trainstation (fits)."""

from __future__ import annotations

import importlib

from atlas2d.errors import MissingExtra

MODULES = ("icet", "trainstation")


def require_alloys_extra(what: str) -> None:
    """Raise one clear line when icet or trainstation is not installed.

    Args:
        what: what needs them, to start the message (``Alloy enumeration``).

    Raises:
        MissingExtra: naming the extra to install.
    """
    for module in MODULES:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise MissingExtra(
                f"{what} needs {module}, which is not installed: pip install 'atlas2d[alloys]' "
                "(icet builds from source, about 2 minutes)."
            ) from err
