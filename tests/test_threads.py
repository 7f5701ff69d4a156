"""One thread setting, ATLAS2D_NUM_THREADS, applied to BLAS/OpenMP and torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from atlas2d.threads import THREAD_VARIABLES, apply_threads, configured_threads, thread_environment


def test_default_is_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATLAS2D_NUM_THREADS", raising=False)
    assert configured_threads() == 1
    assert thread_environment() == {
        "ATLAS2D_NUM_THREADS": "1",
        **dict.fromkeys(THREAD_VARIABLES, "1"),
    }


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("ATLAS2D_NUM_THREADS", bad)
    with pytest.raises(ValueError, match=f"ATLAS2D_NUM_THREADS='{bad}' is not a positive integer"):
        configured_threads()


def test_apply_sets_the_variables_and_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "8")
    try:
        assert apply_threads(2) == 2
        assert all(os.environ[name] == "2" for name in THREAD_VARIABLES)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_cli_applies_the_setting_before_torch_loads() -> None:
    script = (
        "import atlas2d.cli.main, os, torch;"
        "print(os.environ['OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'], torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["ATLAS2D_NUM_THREADS"] = "1"  # torch alone would take every core
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "1", "1"]
    env["ATLAS2D_NUM_THREADS"] = "many"
    bad = subprocess.run(
        [sys.executable, "-m", "atlas2d.cli.main", "db", "url"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "ATLAS2D_NUM_THREADS='many' is not a positive integer" in bad.stderr
    assert "Traceback" not in bad.stderr
