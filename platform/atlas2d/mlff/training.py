"""What a training run takes and gives back, for every architecture.

Hyperparameters are recorded in full in the registry (``model_versions.hyperparameters``),
defaults included, so a run can be repeated from its row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Loss weights and learning rates each framework's own examples start from.
DEFAULTS: dict[str, dict[str, float]] = {
    "m3gnet": {"lr": 1e-3, "energy_weight": 1.0, "force_weight": 1.0, "stress_weight": 0.1},
    "mace": {"lr": 1e-2, "energy_weight": 1.0, "force_weight": 100.0, "stress_weight": 1.0},
}


@dataclass(frozen=True)
class M3GNetSize:
    """M3GNet's size. ``cutoff`` and ``threebody_cutoff`` in Å."""

    cutoff: float = 5.0
    threebody_cutoff: float = 4.0
    units: int = 64
    nblocks: int = 3
    max_n: int = 3
    max_l: int = 3


@dataclass(frozen=True)
class MACESize:
    """MACE's size and its stochastic-weight-averaging (stage two) options.

    ``r_max`` in Å; ``max_l`` is MACE's ``--max_L`` (symmetry order of the messages);
    ``swa_start`` is the epoch stage two starts (None: no SWA), with
    energy weight ``swa_energy_weight`` and learning rate ``swa_lr``.
    """

    r_max: float = 5.0
    max_l: int = 1
    channels: int = 64
    num_interactions: int = 2
    correlation: int = 3
    max_ell: int = 3
    swa_start: int | None = None
    swa_energy_weight: float = 1000.0
    swa_lr: float = 1e-3


@dataclass(frozen=True)
class TrainOptions:
    """Settings of one run, common to both architectures.

    Attributes:
        architecture: ``m3gnet`` or ``mace``.
        lr: learning rate. energy/force/stress_weight: loss weights (framework's own
            scaling: matgl per-atom energy, forces and GPa stress MSE; MACE's
            ``stress`` loss). None means the framework default in :data:`DEFAULTS`.
        batch_size: structures per step. epochs: maximum epochs. seed: every RNG.
        freeze: number of leading layers kept fixed (transfer learning; 0 = none).
        device: ``cpu`` or ``cuda``. devices: GPUs (Lightning DDP / torchrun).
        max_time_s: wall-clock limit of the training itself (s); None = none.
        num_threads: CPU threads per process.
    """

    architecture: str
    lr: float | None = None
    batch_size: int = 16
    epochs: int = 100
    seed: int = 0
    energy_weight: float | None = None
    force_weight: float | None = None
    stress_weight: float | None = None
    freeze: int = 0
    device: str = "cpu"
    devices: int = 1
    max_time_s: float | None = None
    num_threads: int = 1
    m3gnet: M3GNetSize = field(default_factory=M3GNetSize)
    mace: MACESize = field(default_factory=MACESize)

    def resolved(self) -> LossSettings:
        """The learning rate and loss weights, each None replaced by the framework default."""
        defaults = DEFAULTS[self.architecture]
        return LossSettings(
            **{k: v if (v := getattr(self, k)) is not None else d for k, d in defaults.items()}
        )

    def hyperparameters(self, fine_tuning: bool = False) -> dict[str, Any]:
        """The JSON recorded in the registry: common settings and this architecture's size.

        Args:
            fine_tuning: the size comes from the parent model (the trainer records it),
                so the size options are left out; MACE's SWA options stay.
        """
        loss = self.resolved()
        common = {
            "lr": loss.lr,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "seed": self.seed,
            "energy_weight": loss.energy_weight,
            "force_weight": loss.force_weight,
            "stress_weight": loss.stress_weight,
            "freeze": self.freeze,
            "max_time_s": self.max_time_s,
            "devices": self.devices,
        }
        size = asdict(self.m3gnet if self.architecture == "m3gnet" else self.mace)
        if fine_tuning:
            size = {k: v for k, v in size.items() if k.startswith("swa_")}
        return {**common, **size}


@dataclass(frozen=True)
class LossSettings:
    """A run's learning rate and loss weights with the framework defaults filled in
    (:meth:`TrainOptions.resolved`)."""

    lr: float
    energy_weight: float
    force_weight: float
    stress_weight: float


@dataclass
class TrainedModel:
    """What a finished training run left behind.

    Attributes:
        artifact: the model file.
        curve: one dict per epoch (epoch, train_loss, val_loss, validation MAEs with
            units in their keys, epoch_seconds of training without validation).
        epochs_run: epochs completed. stopped_by: None, or ``max_time``.
        train_seconds: wall time of the framework's training call (s).
        hyperparameters: extra settings fixed during the run (e.g. sizes taken from a
            parent model, element references).
    """

    artifact: Path
    curve: list[dict[str, Any]]
    epochs_run: int
    stopped_by: str | None
    train_seconds: float
    hyperparameters: dict[str, Any] = field(default_factory=dict)
