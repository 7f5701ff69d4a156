"""Other libraries' output goes to a log file (``atlas2d.mlff.chatter``), in-process:
prints, warnings and logging handlers, the ``--verbose`` no-op, nesting, errors."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import pytest

from atlas2d.mlff import chatter


@pytest.fixture(autouse=True)
def _no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(chatter.VERBOSE_VARIABLE, raising=False)
    monkeypatch.delenv(chatter.LOG_VARIABLE, raising=False)


def _library_logger(name: str) -> logging.Logger:
    """A logger set up the way Lightning sets up its own: a handler on the terminal's
    stderr, no propagation."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.addHandler(logging.StreamHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def test_prints_warnings_and_loggers_go_to_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "run" / chatter.TRAINING_LOG
    existing = _library_logger("atlas2d_test.existing")
    with chatter.quiet(log, "training") as written:
        print("Processing...")
        print("  50%|█████     | 1/2 [00:00<?, ?it/s]", file=sys.stderr)
        warnings.warn("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected", UserWarning, stacklevel=1)
        existing.info("GPU available: False, used: False")
        created = _library_logger("atlas2d_test.created")  # a library imported in the block
        created.info("TPU available: False")
    assert written == log
    shown = capsys.readouterr()
    assert shown.out == "" and shown.err == ""
    text = log.read_text()
    assert text.startswith("--- ") and ": training ---" in text.splitlines()[0]
    for line in ("Processing...", "it/s", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "GPU", "TPU"):
        assert line in text
    # After the block, both handlers write where they would have: the terminal.
    existing.info("after: existing")
    created.info("after: created")
    print("our own line")
    shown = capsys.readouterr()
    assert "after: existing" in shown.err and "after: created" in shown.err
    assert shown.out == "our own line\n"
    assert "after" not in log.read_text()


def test_verbose_shows_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(chatter.VERBOSE_VARIABLE, "1")
    log = tmp_path / "chatter.log"
    with chatter.quiet(log) as written:
        print("GPU available: False")
    assert written is None and not log.exists()
    assert "GPU available" in capsys.readouterr().out
    monkeypatch.setenv(chatter.VERBOSE_VARIABLE, "0")
    assert not chatter.verbose()


def test_command_log_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with chatter.quiet() as written:  # a library user: nothing configured, nothing moved
        print("shown")
    assert written is None and capsys.readouterr().out == "shown\n"
    command_log = tmp_path / "logs" / "predict.log"
    monkeypatch.setenv(chatter.LOG_VARIABLE, str(command_log))
    with chatter.quiet(title="loading a MACE model"):
        print("cuequivariance or cuequivariance_torch is not available.")
    with chatter.quiet(title="again"):  # appended under a header of its own
        print("second")
    assert capsys.readouterr().out == ""
    lines = command_log.read_text().splitlines()
    assert lines[0].endswith("loading a MACE model ---")
    assert lines[1].startswith("cuequivariance") and lines[-1] == "second"


def test_a_silent_block_leaves_no_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "relax.log"
    with chatter.quiet(log) as written:
        pass
    assert written == log and not log.parent.exists()


def test_nested_blocks_write_to_the_outer_log(tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer.log", tmp_path / "inner.log"
    with chatter.quiet(outer), chatter.quiet(inner) as written:
        print("inside")
    assert written == outer and not inner.exists()
    assert "inside" in outer.read_text()


def test_an_error_is_logged_and_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "chatter.log"
    stdout, stderr, show = sys.stdout, sys.stderr, warnings.showwarning
    with pytest.raises(RuntimeError, match="diverged") as raised, chatter.quiet(log):
        print("epoch 1")
        raise RuntimeError("loss diverged")
    assert (sys.stdout, sys.stderr, warnings.showwarning) == (stdout, stderr, show)
    assert f"Other libraries' output: {log}" in raised.value.__notes__
    text = log.read_text()
    assert "epoch 1" in text and "Traceback" in text and "RuntimeError: loss diverged" in text
    assert capsys.readouterr().err == ""


def test_for_command_sets_and_restores_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with chatter.for_command(tmp_path / "train.log", show=True):
        assert os.environ[chatter.LOG_VARIABLE] == str(tmp_path / "train.log")
        assert chatter.verbose()
    assert chatter.LOG_VARIABLE not in os.environ and not chatter.verbose()
    monkeypatch.setenv(chatter.LOG_VARIABLE, str(tmp_path / "mine.log"))  # the user's choice
    with chatter.for_command(tmp_path / "train.log", show=False):
        assert chatter.command_log() == tmp_path / "mine.log"
    assert chatter.command_log() == tmp_path / "mine.log"
