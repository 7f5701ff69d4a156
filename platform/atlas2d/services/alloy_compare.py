"""``atlas2d alloys compare``: formation energies of models and cluster expansions against
DFT, per system and per split of a training set (the thesis's Tables 4.8 and 4.9, with
a held-out split), the ground states each source finds, and an ``alloy`` evaluation per
model version.

It reads what ``atlas2d alloys formation`` stored: DFT's and every other source's
formation energies of the systems' alloys (0 < x < 1). A material's split is the one it
has in the training set; alloys outside the set are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import alloys as numerics
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.queries import alloys as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.evaluations import insert_evaluation
from atlas2d.vocabulary import DFT, SPLITS


@dataclass
class AlloyComparison:
    """The comparison's tables.

    Attributes:
        errors: :data:`analysis.alloys.COMPARE_COLUMNS`, one row per system, energy
            source and split.
        ground_states: system, energy_source, ground_states (keys on the lower hull of
            E_F against x, among the alloys DFT has too), same_as_dft.
        paired: every alloy's DFT and predicted E_F (meV/site) with its split.
        report: the markdown report written with ``--report``, else None.
    """

    errors: pd.DataFrame
    ground_states: pd.DataFrame
    paired: pd.DataFrame
    report: Path | None = None


def _paired(stored: pd.DataFrame, splits: Mapping[int, str]) -> pd.DataFrame:
    alloys = stored[(stored.x > 0) & (stored.x < 1)]
    dft = alloys[alloys.energy_source == DFT].set_index("material_id")
    others = alloys[alloys.energy_source != DFT]
    paired = others[others.material_id.isin(dft.index)].copy()
    paired["reference_mev_per_site"] = dft.loc[
        paired.material_id, "formation_energy_mev_per_site"
    ].to_numpy()
    paired["predicted_mev_per_site"] = paired.formation_energy_mev_per_site
    paired["split"] = paired.material_id.map(splits)
    return paired


def _ground_states(stored: pd.DataFrame, paired: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for (system, source), group in paired.groupby(["system", "energy_source"], sort=True):
        found = {}
        for name, energies in (
            (DFT, group.reference_mev_per_site),
            (source, group.predicted_mev_per_site),
        ):
            mask = numerics.lower_hull_mask(group.x.to_numpy(), energies.to_numpy())
            found[name] = sorted(group.material_key[mask])
        if not rows or rows[-1]["system"] != system:
            dft_all = stored[(stored.system == system) & (stored.energy_source == DFT)]
            dft_all = dft_all[(dft_all.x > 0) & (dft_all.x < 1)]
            mask = numerics.lower_hull_mask(
                dft_all.x.to_numpy(), dft_all.formation_energy_mev_per_site.to_numpy()
            )
            rows.append(
                {
                    "system": system,
                    "energy_source": DFT,
                    "ground_states": ", ".join(sorted(dft_all.material_key[mask])) or "–",
                    "same_as_dft": True,
                }
            )
        rows.append(
            {
                "system": system,
                "energy_source": source,
                "ground_states": ", ".join(found[source]) or "–",
                "same_as_dft": found[source] == found[DFT],
            }
        )
    return rows


def compare_alloys(
    sessions: sessionmaker[Session],
    systems: list[str],
    training_set: str,
    report_dir: Path | None = None,
) -> AlloyComparison:
    """Compare every stored energy source of the systems with DFT (module docstring) and
    store one ``alloy`` evaluation per model version.

    Raises:
        InvalidInput: a bad system, or none. NotFound: no such training set, or a system
            without DFT formation energies (run ``alloys formation --energy dft``) or
            without any other source's.
    """
    if not systems:
        raise InvalidInput("Give at least one --system, e.g. --system Mo-W-S.")
    labels = [numerics.parse_system(s).label for s in systems]
    with sessions.begin() as session:
        row = trainset_queries.training_set_row(session, training_set)
        if row is None:
            raise NotFound(
                f"No training set is named {training_set!r}; `atlas2d trainset list` shows them."
            )
        splits = trainset_queries.material_splits(session, row.id)
        stored = queries.formation_table(session, labels)
        for label in labels:
            sources = set(stored.energy_source[stored.system == label])
            if DFT not in sources:
                raise NotFound(
                    f"{label} has no DFT formation energies: run `atlas2d alloys formation "
                    f"--system {label} --energy dft` first."
                )
            if sources == {DFT}:
                raise NotFound(
                    f"{label} has formation energies from DFT only: run `atlas2d alloys "
                    f"formation --system {label} --energy MODEL` for a model or a cluster "
                    "expansion first."
                )
        paired = _paired(stored, splits)
        paired = paired[paired.split.notna()]
        errors = pd.DataFrame(
            numerics.error_rows(paired, SPLITS), columns=list(numerics.COMPARE_COLUMNS)
        )
        ground = pd.DataFrame(_ground_states(stored, paired))
        _store_evaluations(session, row.id, labels, errors, ground, paired)
    comparison = AlloyComparison(errors, ground, paired)
    if report_dir is not None:
        comparison.report = write_report(comparison, training_set, report_dir)
    return comparison


def _store_evaluations(
    session: Session,
    training_set_id: int,
    systems: list[str],
    errors: pd.DataFrame,
    ground: pd.DataFrame,
    paired: pd.DataFrame,
) -> None:
    for source, group in errors.groupby("energy_source"):
        model_version_id = int(paired.model_version_id[paired.energy_source == source].iloc[0])
        metrics: dict[str, Any] = {}
        for record in group.to_dict("records"):
            figures = {
                k: v for k, v in record.items() if k not in ("system", "energy_source", "split")
            }
            metrics.setdefault(record["system"], {})[record["split"]] = figures
        for record in ground[ground.energy_source == source].to_dict("records"):
            metrics[record["system"]]["ground_states"] = record["ground_states"]
            metrics[record["system"]]["same_ground_states_as_dft"] = bool(record["same_as_dft"])
        insert_evaluation(
            session,
            {
                "model_version_id": model_version_id,
                "training_set_id": training_set_id,
                "split": None,
                "kind": "alloy",
                "parameters": {"systems": systems, "energy_source": source},
                "metrics": metrics,
                "per_element": {},
                "per_spacegroup": {},
            },
        )


def write_report(comparison: AlloyComparison, training_set: str, folder: Path) -> Path:
    """``alloys.md`` (both tables) and one parity plot per system (every source)."""
    from atlas2d.analysis.plots import parity_plot
    from atlas2d.analysis.reports import markdown_table

    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Alloy formation energies against DFT (training set {training_set})",
        "",
        "E_F per metal site; per atom = E_F / 3. Splits are the training set's.",
        "",
        markdown_table(comparison.errors),
        "",
        "## Ground states (lower convex hull of E_F against x)",
        "",
        markdown_table(comparison.ground_states),
        "",
    ]
    for system, group in comparison.paired.groupby("system"):
        name = f"parity_{system}.png"
        parity_plot(
            group.reference_mev_per_site,
            group.predicted_mev_per_site,
            folder / name,
            f"{system}: E_F of {', '.join(sorted(set(group.energy_source)))}",
            "meV/site",
        )
        lines += [f"![{system}]({name})", ""]
    path = folder / "alloys.md"
    path.write_text("\n".join(lines))
    return path
