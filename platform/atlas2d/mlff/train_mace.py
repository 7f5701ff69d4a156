"""Train or fine-tune MACE with MACE's own training script (``mace.cli.run_train``,
the ``mace_run_train`` command) on extxyz files exported by
``atlas2d.io.exporters.write_mace_extxyz`` (``REF_*`` keys, stress eV/Å³, ASE sign).

The script runs in a child process: it sets process-wide state (torch's default
dtype, logging handlers) that must not leak into ours, and a run past ``max_time_s``
can be stopped without leaving the parent in an unknown state. With several GPUs it
runs under ``torchrun`` with MACE's ``--distributed``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atlas2d.analysis.units import GPA_PER_EV_PER_A3, MEV_PER_EV
from atlas2d.mlff.mace import load_module, model_size
from atlas2d.mlff.training import TrainedModel, TrainOptions
from atlas2d.threads import thread_environment
from atlas2d.vocabulary import Split

RUN_NAME = "model"
KEYS = {"--energy_key": "REF_energy", "--forces_key": "REF_forces", "--stress_key": "REF_stress"}
"""The label keys of ``atlas2d.io.exporters.write_mace_extxyz``."""


class MACETrainingError(RuntimeError):
    """``mace_run_train`` exited with an error or ran past its time limit."""


def _flatten(options: dict[str, str]) -> list[str]:
    """``{"--lr": "0.01", …}`` → ``["--lr", "0.01", …]``, in order."""
    return [item for option in options.items() for item in option]


def mace_arguments(
    files: Mapping[Split, Path],
    options: TrainOptions,
    work_dir: Path,
    parent_file: Path | None,
    atomic_numbers: tuple[int, ...],
) -> list[str]:
    """The ``mace_run_train`` command-line arguments for this run.

    Args:
        files: ``train``, ``val`` and optionally ``test`` extxyz files.
        parent_file: a verified copy of the parent model (fine-tuning), or None.
        atomic_numbers: every element of every split (a new model's element table;
            MACE would otherwise take only the training split's elements).
    """
    loss = options.resolved()
    size = options.mace
    data = {
        "--name": RUN_NAME,
        "--work_dir": str(work_dir),
        "--train_file": str(files["train"]),
        "--valid_file": str(files["val"]),
    }
    if "test" in files:
        data["--test_file"] = str(files["test"])
    run = {
        "--model": "MACE",
        "--batch_size": str(options.batch_size),
        "--valid_batch_size": str(options.batch_size),
        "--max_num_epochs": str(options.epochs),
        "--lr": str(loss.lr),
        "--loss": "stress",
        "--energy_weight": str(loss.energy_weight),
        "--forces_weight": str(loss.force_weight),
        "--stress_weight": str(loss.stress_weight),
        "--seed": str(options.seed),
        "--device": options.device,
        "--default_dtype": "float64",
        "--eval_interval": "1",
        "--error_table": "PerAtomMAE",
    }
    args = [*_flatten(data | KEYS | run), "--save_cpu"]
    if parent_file is None:
        args += _flatten(
            {
                "--atomic_numbers": str(list(atomic_numbers)),
                "--E0s": "average",
                "--r_max": str(size.r_max),
                "--max_L": str(size.max_l),
                "--num_channels": str(size.channels),
                "--num_interactions": str(size.num_interactions),
                "--correlation": str(size.correlation),
                "--max_ell": str(size.max_ell),
            }
        )
    else:
        # MACE's fine-tuning from a local file; its multi-head replay needs the
        # foundation model's pretraining data, which a local model does not have.
        args += _flatten(
            {
                "--foundation_model": str(parent_file),
                "--multiheads_finetuning": "False",
                "--foundation_model_elements": "True",  # keep the parent's element table
                "--E0s": "foundation",
            }
        )
    if options.freeze:
        args += ["--freeze", str(options.freeze)]
    if size.swa_start is not None:
        args += [
            "--swa",
            *_flatten(
                {
                    "--start_swa": str(size.swa_start),
                    "--swa_energy_weight": str(size.swa_energy_weight),
                    "--swa_lr": str(size.swa_lr),
                }
            ),
        ]
    if options.devices > 1:
        args += ["--distributed"]
    return args


def mace_command(args: list[str], devices: int) -> list[str]:
    """The full command: the script in this Python, under torchrun for several GPUs."""
    script = ["-m", "mace.cli.run_train", *args]
    if devices > 1:
        torchrun = ["-m", "torch.distributed.run", "--standalone"]
        return [sys.executable, *torchrun, "--nproc_per_node", str(devices), *script]
    return [sys.executable, *script]


def read_curve(results_file: Path) -> list[dict[str, Any]]:
    """One dict per epoch from MACE's results log (JSON lines).

    MACE logs one ``opt`` line per batch (loss, seconds) and one ``eval`` line per
    validation (energy MAE eV/atom, force MAE eV/Å, stress MAE eV/Å³).
    """
    train_losses: dict[int, list[float]] = {}
    seconds: dict[int, float] = {}
    evals: dict[int, dict[str, Any]] = {}
    for line in results_file.read_text().splitlines():
        record = json.loads(line)
        epoch = record.get("epoch")
        if epoch is None:
            continue  # the evaluation before the first epoch
        if record["mode"] == "opt":
            train_losses.setdefault(epoch, []).append(record["loss"])
            seconds[epoch] = seconds.get(epoch, 0.0) + record["time"]
        elif record["mode"] == "eval":
            evals[epoch] = record

    def scaled(record: dict[str, Any], key: str, factor: float) -> float | None:
        value = record.get(key)
        return None if value is None else value * factor

    curve = []
    for epoch in sorted(train_losses):
        record = evals.get(epoch, {})
        losses = train_losses[epoch]
        curve.append(
            {
                "epoch": epoch,
                "train_loss": sum(losses) / len(losses),
                "val_loss": record.get("loss"),
                "val_energy_mae_mev_per_atom": scaled(record, "mae_e_per_atom", MEV_PER_EV),
                "val_force_mae_mev_per_a": scaled(record, "mae_f", MEV_PER_EV),
                "val_stress_mae_gpa": scaled(record, "mae_stress", GPA_PER_EV_PER_A3),
                "epoch_seconds": seconds[epoch],
            }
        )
    return curve


def train_mace(
    files: Mapping[Split, Path],
    elements: tuple[str, ...],
    options: TrainOptions,
    work_dir: Path,
    parent_data: bytes | None = None,
) -> TrainedModel:
    """Run ``mace_run_train`` and collect its model file and curve.

    Args:
        files: ``train``, ``val`` (and ``test``) extxyz files from the MACE exporter.
        elements: element symbols of all splits (ignored with a parent, whose own
            element table is kept).
        options: the run's settings (``options.mace`` sizes a new model; a parent's
            own size is kept when fine-tuning, and recorded).
        work_dir: MACE's work directory (logs, checkpoints, results, model).
        parent_data: the (verified) bytes of the model to fine-tune, or None.

    Raises:
        MACETrainingError: the script failed (with the end of its log) or ran past
            ``options.max_time_s``.
    """
    from ase.data import atomic_numbers

    parent_file = None
    if parent_data is not None:
        parent_file = work_dir / "parent.model"
        parent_file.write_bytes(parent_data)  # the verified bytes, not the registry's path
    numbers = tuple(atomic_numbers[symbol] for symbol in elements)
    args = mace_arguments(files, options, work_dir, parent_file, numbers)
    env = {**os.environ, **thread_environment(options.num_threads)}
    log_path = work_dir / "mace_run_train.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        # A session of its own, so a time limit or Ctrl-C stops torchrun's workers too.
        process = subprocess.Popen(
            mace_command(args, options.devices),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=options.max_time_s)
        except BaseException as err:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if not isinstance(err, subprocess.TimeoutExpired):
                raise
            raise MACETrainingError(
                f"mace_run_train ran past --max-time {options.max_time_s:g} s and was stopped "
                "(MACE has no graceful time limit); give more time or fewer epochs."
            ) from err
    train_seconds = time.perf_counter() - started
    if returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise MACETrainingError(
            f"mace_run_train exited with status {returncode}; full log in "
            f"{log_path}. Last lines:\n{tail}"
        )
    stage_two = work_dir / f"{RUN_NAME}_stagetwo.model"
    artifact = stage_two if stage_two.is_file() else work_dir / f"{RUN_NAME}.model"
    results = sorted((work_dir / "results").glob(f"{RUN_NAME}_run-*_train.txt"))
    curve = read_curve(results[-1]) if results else []
    hyperparameters: dict[str, Any] = {"mace_arguments": args}
    if parent_data is not None:  # the size the model has: the parent's
        hyperparameters |= model_size(load_module(parent_data))
    return TrainedModel(
        artifact=artifact,
        curve=curve,
        epochs_run=len(curve),
        stopped_by=None,
        train_seconds=train_seconds,
        hyperparameters=hyperparameters,
    )
