"""``atlas2d train``, ``atlas2d predict`` and ``atlas2d models list|show``."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from atlas2d.cli.context import writes
from atlas2d.cli.output import OutputFormat, console, print_frame, print_json
from atlas2d.vocabulary import DEFAULT_DEVICE, HELD_OUT_SPLIT, Architecture, Device, Split

models_app = typer.Typer(
    help="The model registry: versions, provenance, metrics.", no_args_is_help=True
)


METRIC_COLUMNS = [
    ("energy_mae_mev_per_atom", "energy MAE (meV/atom)"),
    ("force_mae_mev_per_a", "force MAE (meV/Å)"),
    ("stress_mae_gpa", "stress MAE (GPa)"),
    ("n_frames", "frames"),
]


def _print_metrics(metrics_by_split: dict[str, dict[str, Any]], title: str) -> None:
    from rich.table import Table

    table = Table("split", *(label for _, label in METRIC_COLUMNS), title=title)
    for split, metrics in metrics_by_split.items():
        cells = []
        for key, _ in METRIC_COLUMNS:
            value = metrics.get(key)
            cells.append(
                ""
                if value is None
                else f"{value:,.4g}"
                if isinstance(value, float)
                else f"{value:,}"
            )
        table.add_row(split, *cells)
    console.print(table)


def _evaluated_splits(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-split errors a training run measured (validation and test)."""
    from atlas2d.services.training import EVALUATED_SPLITS

    return {split: metrics[split] for split in EVALUATED_SPLITS if split in metrics}


@writes("train")
def train(
    arch: Architecture = typer.Option(..., "--arch", help="m3gnet (matgl) or mace (mace-torch)."),
    trainset: str = typer.Option(..., "--trainset", help="The training set to train on."),
    name: str = typer.Option(..., "--name", help="Model name; each run adds a version."),
    parent: str | None = typer.Option(
        None,
        "--from",
        help="Fine-tune this ready version (NAME or NAME:VERSION, same architecture).",
    ),
    freeze: int = typer.Option(0, help="With --from: keep the first N layers of the parent fixed."),
    lr: float | None = typer.Option(None, help="Learning rate [m3gnet 1e-3, mace 1e-2]."),
    batch_size: int = typer.Option(16, help="Structures per step."),
    epochs: int = typer.Option(100, help="Maximum epochs."),
    seed: int = typer.Option(0, help="Seed of every random number generator."),
    energy_weight: float | None = typer.Option(None, help="Energy loss weight [1]."),
    force_weight: float | None = typer.Option(None, help="Force loss weight [m3gnet 1, mace 100]."),
    stress_weight: float | None = typer.Option(
        None, help="Stress loss weight [m3gnet 0.1, mace 1]."
    ),
    cutoff: float = typer.Option(5.0, help="M3GNet: neighbour cutoff (Å)."),
    threebody_cutoff: float = typer.Option(4.0, help="M3GNet: three-body cutoff (Å)."),
    units: int = typer.Option(64, help="M3GNet: width of every layer."),
    nblocks: int = typer.Option(3, help="M3GNet: interaction blocks."),
    r_max: float = typer.Option(5.0, "--r-max", help="MACE: cutoff radius (Å)."),
    max_l: int = typer.Option(1, "--max-L", help="MACE: symmetry order of the messages."),
    channels: int = typer.Option(64, help="MACE: channels."),
    num_interactions: int = typer.Option(2, help="MACE: interaction layers."),
    swa_start: int | None = typer.Option(
        None, help="MACE: epoch at which stochastic weight averaging (stage two) starts."
    ),
    swa_energy_weight: float = typer.Option(1000.0, help="MACE: energy weight during SWA."),
    swa_lr: float = typer.Option(1e-3, help="MACE: learning rate during SWA."),
    device: Device = typer.Option(DEFAULT_DEVICE, help="cpu or cuda."),
    devices: int = typer.Option(
        1, help="GPUs: Lightning DDP (m3gnet) or torchrun + MACE --distributed (mace)."
    ),
    max_time: float | None = typer.Option(
        None,
        help="Seconds of training at most. m3gnet stops after the epoch running then; "
        "mace is stopped and the run recorded as failed.",
    ),
) -> None:
    """Train (or fine-tune with --from) a force field on a training set and register it."""
    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.mlff.training import M3GNetSize, MACESize, TrainOptions
    from atlas2d.services.training import TrainRequest, train_model

    settings = get_settings()
    options = TrainOptions(
        architecture=arch,
        lr=lr,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        energy_weight=energy_weight,
        force_weight=force_weight,
        stress_weight=stress_weight,
        freeze=freeze,
        device=device,
        devices=devices,
        max_time_s=max_time,
        num_threads=settings.num_threads,
        m3gnet=M3GNetSize(
            cutoff=cutoff, threebody_cutoff=threebody_cutoff, units=units, nblocks=nblocks
        ),
        mace=MACESize(
            r_max=r_max,
            max_l=max_l,
            channels=channels,
            num_interactions=num_interactions,
            swa_start=swa_start,
            swa_energy_weight=swa_energy_weight,
            swa_lr=swa_lr,
        ),
    )
    request = TrainRequest(name=name, training_set=trainset, options=options, parent=parent)
    details = train_model(
        connect().sessions,
        request,
        settings.artifacts_dir,
        progress=lambda line: console.print(f"[dim]·[/dim] {line}", highlight=False),
    )
    _print_metrics(
        _evaluated_splits(details.metrics),
        f"{details.ref} ({details.architecture}) direct-prediction errors",
    )
    console.print(f"artifact {details.artifact_path}  sha256 {details.artifact_sha256}")


@writes("predict")
def predict(
    model: str = typer.Option(..., "--model", help="NAME or NAME:VERSION."),
    trainset: str = typer.Option(..., "--trainset"),
    split: Split = typer.Option(HELD_OUT_SPLIT, "--split"),
    batch_size: int = typer.Option(32, help="Structures per model call."),
    device: Device = typer.Option(DEFAULT_DEVICE),
) -> None:
    """Predict a training-set split with a model, store the predictions, print the errors."""
    from atlas2d.cli.context import connect
    from atlas2d.config import get_settings
    from atlas2d.services.predictions import predict_split

    report = predict_split(
        connect().sessions,
        model,
        trainset,
        split,
        get_settings().artifacts_dir,
        batch_size=batch_size,
        device=device,
    )
    console.print(
        f"{report.model} on {report.training_set}/{report.split}: "
        f"{report.new_predictions:,} new predictions stored"
    )
    _print_metrics({report.split: report.errors}, "direct-prediction errors")


@models_app.command("list")
def list_command(
    name: str | None = typer.Option(None, help="Only versions of this model."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """List model versions with their status and test errors."""
    from atlas2d.cli.context import connect
    from atlas2d.services.models import list_models

    print_frame(list_models(connect().sessions, name), format, title="model versions")


@models_app.command()
def show(
    model: str = typer.Argument(..., help="NAME (latest ready) or NAME:VERSION."),
    format: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Show a model version: parent chain, training set and hash, metrics, environment."""
    from dataclasses import asdict

    from atlas2d.cli.context import connect
    from atlas2d.services.models import show_model

    details = show_model(connect().sessions, model)
    if format is OutputFormat.json:
        print_json({"model": details.ref, **asdict(details)})
        return
    console.print(f"[bold]{details.ref}[/bold]  {details.architecture}  {details.status}")
    if details.error:
        console.print(f"[red]error:[/red] {escape(details.error)}", highlight=False)
    console.print(f"training set {details.training_set}  hash {details.training_set_hash}")
    chain = " ← ".join([details.ref, *(p["model"] for p in details.parent_chain)])
    console.print(f"lineage {chain}")
    for source in details.tainted_by:
        console.print(
            f"[red]tainted:[/red] trained on retracted source {escape(source['path'])} "
            f"(sha256 {source['sha256'][:16]}…): {escape(source['reason'])}",
            highlight=False,
        )
    console.print(f"artifact {details.artifact_path}  sha256 {details.artifact_sha256}")
    console.print("hyperparameters", highlight=False)
    for line in hyperparameter_lines(details.architecture, details.hyperparameters):
        console.print(f"  {escape(line)}", highlight=False)
    console.print(f"environment {escape(environment_line(details.environment))}", highlight=False)
    metrics = _evaluated_splits(details.metrics)
    if metrics:
        _print_metrics(metrics, "direct-prediction errors")
    if details.training_curve:
        import pandas as pd

        print_frame(pd.DataFrame(details.training_curve), format, title="training curve")


HYPERPARAMETER_LABELS = {
    "mace": {
        "max_l": "max_L (symmetry of the hidden features)",
        "max_ell": "max_ell (spherical harmonics of the edges)",
        "r_max": "r_max (Å)",
    },
    "m3gnet": {
        "max_l": "max_l (angular basis of three-body terms)",
        "max_n": "max_n (radial basis)",
        "cutoff": "cutoff (Å)",
        "threebody_cutoff": "threebody_cutoff (Å)",
    },
}
"""Display names of size settings whose short names read alike across architectures
(MACE's max_L and max_ell are different settings, not one setting twice)."""


def hyperparameter_lines(architecture: str, hyperparameters: dict[str, Any]) -> list[str]:
    """One ``name  value`` line per setting, sorted by name, units in the names. The raw
    trainer command line (``mace_arguments``, full of the training run's own paths) is
    summarised: ``--format json`` has it whole."""
    labels = HYPERPARAMETER_LABELS.get(architecture, {})
    lines = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        if name == "mace_arguments":
            value = f"the mace_run_train command line, {len(value)} arguments (--format json)"
        elif value is None:
            value = "—"
        lines.append(f"{labels.get(name, name):<44} {value}")
    return lines


def environment_line(environment: dict[str, Any]) -> str:
    """Python, the packages that matter, git commit, device, threads, seed and host."""
    packages = environment.get("packages") or {}
    named = ", ".join(f"{name} {version}" for name, version in sorted(packages.items()) if version)
    git = environment.get("git") or {}
    commit = (
        f"{git['commit'][:12]}{' (uncommitted changes)' if git.get('dirty') else ''}"
        if git.get("commit")
        else "not a git checkout"
    )
    return (
        f"python {environment.get('python')}; {named}; git {commit}; "
        f"device {environment.get('device')}, threads {environment.get('threads')}, "
        f"seed {environment.get('seed')}, host {environment.get('host')}"
    )
