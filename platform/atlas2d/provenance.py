"""Where a result came from: package versions, git commit, host, device, threads."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("atlas2d", "torch", "matgl", "mace-torch", "lightning", "ase", "pymatgen", "numpy")


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(path: Path | None = None) -> dict[str, Any] | None:
    """The commit of the atlas2d checkout (and whether it has uncommitted changes), or
    None when atlas2d is not running from a git checkout."""
    source = path or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def device_description(device: str) -> str:
    """``cpu`` or the CUDA device's name."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            return f"cuda: {torch.cuda.get_device_name(0)}"
    return device


def process_gone(environment: dict[str, Any]) -> bool:
    """Whether the process an environment record names ran on this host and has ended
    (a run still marked ``training`` then was killed without a chance to record it)."""
    pid = environment.get("pid")
    if environment.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def environment(device: str, num_threads: int, seed: int, devices: int = 1) -> dict[str, Any]:
    """The environment record of a training run or a prediction."""
    return {
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_commit(),
        "device": device_description(device),
        "devices": devices,
        "threads": num_threads,
        "seed": seed,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "platform": platform.platform(),
    }
