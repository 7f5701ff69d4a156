"""Train or fine-tune M3GNet with matgl's own Lightning module
(``matgl.utils.training.PotentialLightningModule``) on datasets exported by
``atlas2d.io.exporters.write_matgl_dataset`` (stress labels in GPa, matgl's sign).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from atlas2d.analysis.units import MEV_PER_EV
from atlas2d.mlff.m3gnet import freeze_leading_layers, load_potential, model_size, save_potential
from atlas2d.mlff.training import TrainedModel, TrainOptions
from atlas2d.vocabulary import Split

ARTIFACT_NAME = "model.m3gnet.tar"


def _epoch_timer() -> Any:
    import lightning

    class EpochTimer(lightning.Callback):
        """Seconds of each training epoch, without validation."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def read_curve(metrics_csv: Path, epoch_seconds: list[float]) -> list[dict[str, Any]]:
    """One dict per epoch from Lightning's CSV log (train and val rows merged).

    matgl logs energy MAE in eV/atom, force MAE in eV/Å and stress MAE in GPa.
    """
    by_epoch: dict[int, dict[str, Any]] = {}
    with metrics_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            entry = by_epoch.setdefault(int(row["epoch"]), {"epoch": int(row["epoch"])})
            for key, value in row.items():
                if value not in ("", None) and key not in ("epoch", "step"):
                    entry[key] = float(value)

    def number(entry: dict[str, Any], key: str, scale: float = 1.0) -> float | None:
        return entry[key] * scale if key in entry else None

    curve = []
    for epoch in sorted(by_epoch):
        entry = by_epoch[epoch]
        curve.append(
            {
                "epoch": epoch,
                "train_loss": number(entry, "train_Total_Loss"),
                "val_loss": number(entry, "val_Total_Loss"),
                "val_energy_mae_mev_per_atom": number(entry, "val_Energy_MAE", MEV_PER_EV),
                "val_force_mae_mev_per_a": number(entry, "val_Force_MAE", MEV_PER_EV),
                "val_stress_mae_gpa": number(entry, "val_Stress_MAE"),
                "epoch_seconds": epoch_seconds[epoch] if epoch < len(epoch_seconds) else None,
            }
        )
    return curve


def train_m3gnet(
    data_dirs: Mapping[Split, Path],
    element_types: tuple[str, ...],
    options: TrainOptions,
    work_dir: Path,
    parent_data: bytes | None = None,
) -> TrainedModel:
    """Train M3GNet from scratch, or continue training a parent model.

    Args:
        data_dirs: ``train`` and ``val`` dataset folders (``write_matgl_dataset``).
        element_types: element symbols of the new model, in Z order (ignored with a
            parent: its own element list is kept).
        options: the run's settings (``options.m3gnet`` sizes the new model).
        work_dir: where logs and the model file go.
        parent_data: the (verified) bytes of the parent's model file
            (:func:`~atlas2d.mlff.m3gnet.save_potential`), or None.

    Returns:
        The model file (``model.m3gnet.tar``), the per-epoch curve and timings.
    """
    import lightning
    import matgl
    import numpy as np
    import torch
    from lightning.pytorch.loggers import CSVLogger
    from matgl.graph.data import MGLDataLoader
    from matgl.models import M3GNet
    from matgl.utils.training import PotentialLightningModule, fit_element_refs

    from atlas2d.io.exporters import load_matgl_dataset

    resolved = options.resolved()
    size = options.m3gnet
    # matgl trains in float32. Set it explicitly: MACE's calculator and float64
    # checks switch torch's process-wide default dtype.
    matgl.set_default_dtype("float", 32)
    # Before seeding: loading builds a model (random weights, then overwritten).
    parent = None if parent_data is None else load_potential(parent_data)
    lightning.seed_everything(options.seed, workers=True, verbose=False)
    torch.set_num_threads(options.num_threads)
    extra: dict[str, Any] = {}
    if parent is not None:
        model = parent.model
        element_types = tuple(model.element_types)
        element_refs = parent.element_refs.property_offset.detach().cpu().numpy()
        data_mean, data_std = float(parent.data_mean), float(parent.data_std)
        extra = model_size(model)
        freeze_leading_layers(model, options.freeze)
    else:
        model = M3GNet(
            element_types=element_types,
            dim_node_embedding=size.units,
            dim_edge_embedding=size.units,
            units=size.units,
            nblocks=size.nblocks,
            max_n=size.max_n,
            max_l=size.max_l,
            cutoff=size.cutoff,
            threebody_cutoff=size.threebody_cutoff,
            is_intensive=False,
        )
        data_mean, data_std = 0.0, 1.0
        element_refs = None
    cutoff = float(model.cutoff)
    datasets = {
        split: load_matgl_dataset(
            path, cutoff=cutoff, element_types=element_types, root=work_dir / f"graphs_{split}"
        )
        for split, path in data_dirs.items()
    }
    if element_refs is None:
        train = datasets["train"]
        element_refs = fit_element_refs(train.structures, train.labels["energies"], element_types)
    extra["element_refs_ev"] = dict(
        zip(element_types, np.asarray(element_refs).tolist(), strict=True)
    )
    module = PotentialLightningModule(
        model=model,
        element_refs=element_refs,
        data_mean=data_mean,
        data_std=data_std,
        lr=resolved.lr,
        energy_weight=resolved.energy_weight,
        force_weight=resolved.force_weight,
        stress_weight=resolved.stress_weight,
    )
    train_loader, val_loader = MGLDataLoader(
        datasets["train"], datasets["val"], batch_size=options.batch_size, num_workers=0
    )
    timer = _epoch_timer()
    logger = CSVLogger(str(work_dir), name="lightning", version=0)
    trainer = lightning.Trainer(
        max_epochs=options.epochs,
        max_time=timedelta(seconds=options.max_time_s) if options.max_time_s else None,
        accelerator="gpu" if options.device == "cuda" else "cpu",
        devices=options.devices,
        # ddp_spawn, not ddp: ddp starts the other ranks by re-running the command
        # line, which would register a model version per GPU.
        strategy="ddp_spawn" if options.devices > 1 else "auto",
        logger=logger,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        inference_mode=False,  # forces and stresses are gradients, also in validation
    )
    started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    train_seconds = time.perf_counter() - started
    epochs_run = len(timer.seconds)
    artifact = work_dir / ARTIFACT_NAME
    potential = module.model.cpu()
    potential.calc_stresses = True
    save_potential(potential, artifact)
    return TrainedModel(
        artifact=artifact,
        curve=read_curve(Path(logger.log_dir) / "metrics.csv", timer.seconds),
        epochs_run=epochs_run,
        stopped_by="max_time" if epochs_run < options.epochs else None,
        train_seconds=train_seconds,
        hyperparameters=extra,
    )
