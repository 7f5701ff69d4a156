"""The installed ``atlas2d`` console script, for tests that run it as a user would (in a
subprocess, through ``cli.main.app``, which CliRunner bypasses)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def atlas2d_script() -> str:
    """The ``atlas2d`` console script of this environment."""
    found = shutil.which("atlas2d", path=str(Path(sys.executable).parent)) or shutil.which(
        "atlas2d"
    )
    assert found, "the atlas2d console script is not installed (pip install -e .)"
    return found


def user_environment(**env: str) -> dict[str, str]:
    """This process's environment without any ``ATLAS2D_*`` setting, plus ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS2D_")}
    environment.update(env)
    return environment
