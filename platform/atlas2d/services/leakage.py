"""The leakage guard of ``atlas2d evaluate``: an evaluation must not score a model on
materials it, or any model it was fine-tuned from, was trained on, unless the user
says so; then the stored evaluation is flagged and counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from atlas2d.errors import InvalidInput
from atlas2d.queries.leakage import SeenMaterial, training_overlap
from atlas2d.queries.model_versions import ModelVersionRef
from atlas2d.vocabulary import counted

SHOWN_KEYS = 5
"""Material keys named in a refusal (the count says how many there are)."""


@dataclass(frozen=True)
class Leakage:
    """What an evaluation's materials share with the model's training (material keys).

    Attributes:
        leaked: in a train split of the model's training set or an ancestor's (for a
            set split by formula or chemsys: a member of the same group is).
        ancestor_val: in a val split of the model's own or an ancestor's training set
            and in no train split: allowed, counted.
    """

    leaked: tuple[str, ...] = ()
    ancestor_val: tuple[str, ...] = ()

    def columns(self) -> dict[str, Any]:
        """The ``evaluations`` columns that record it."""
        return {
            "leakage": bool(self.leaked),
            "leaked_materials": len(self.leaked),
            "ancestor_val_materials": len(self.ancestor_val),
        }

    def notes(self, n_materials: int) -> list[str]:
        """One line per non-empty kind, for the command's output."""
        lines = []
        if self.leaked:
            lines.append(
                f"leakage: {len(self.leaked)} of {counted(n_materials, 'material')} were in a "
                f"train split of the model or an ancestor ({_first(self.leaked)}); stored "
                "with leakage = true"
            )
        if self.ancestor_val:
            lines.append(
                f"ancestor val: {len(self.ancestor_val)} of {counted(n_materials, 'material')} "
                "were in a val split of the model or an ancestor (allowed, counted)"
            )
        return lines


def _first(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (", …" if len(keys) > SHOWN_KEYS else "")


def _where(seen: Sequence[SeenMaterial]) -> str:
    """The training sets that hold ``seen``, nearest first: "demo-alloys (its own) and
    demo (of its ancestor demo-m3gnet:1)"."""
    places = sorted({(s.depth, s.training_set, s.model) for s in seen})
    described = [
        f"{name} (its own)" if depth == 0 else f"{name} (of its ancestor {model})"
        for depth, name, model in places
    ]
    text = " and ".join(described)
    if any(s.group_by != "material" for s in seen):
        text += (
            ", counting a polymorph or sibling where a set keeps formulas or chemical "
            "systems together"
        )
    return text


def check_leakage(
    session: Session,
    model: ModelVersionRef,
    material_keys: Sequence[str],
    allow_leakage: bool,
) -> Leakage:
    """The leakage of evaluating the model on ``material_keys``.

    The model's own val split counts with its ancestors' (as ``ancestor_val``): training
    watched it every epoch (MACE keeps its best-validation checkpoint), so it is no
    more held out than an ancestor's.

    Args:
        model: the evaluated model version.
        material_keys: the materials the evaluation scores.
        allow_leakage: evaluate anyway (the caller stores the flag and counts).

    Raises:
        InvalidInput: some material is in a train split and ``allow_leakage`` is False
            (the message names the count, the first keys and the training sets).
    """
    overlap = training_overlap(session, model.id, material_keys)
    leakage = Leakage(
        tuple(s.material_key for s in overlap.leaked),
        tuple(s.material_key for s in overlap.validated),
    )
    if leakage.leaked and not allow_leakage:
        raise InvalidInput(
            f"Model {model.label} has seen {len(leakage.leaked)} of the "
            f"{counted(len(material_keys), 'material')} to evaluate in training "
            f"({_first(leakage.leaked)}): "
            f"they are in the train split of {_where(overlap.leaked)}. Evaluate on materials "
            'none of them was trained on (`atlas2d sql "SELECT * FROM '
            f'model_training_materials({model.id})"` lists theirs), or pass --allow-leakage '
            "to store the evaluation flagged as leaked."
        )
    return leakage
