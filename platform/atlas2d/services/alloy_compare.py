"""``atlas2d alloys compare``: formation energies of models and cluster expansions against
DFT, per system and per split of a training set (the thesis's Tables 4.8 and 4.9, with
a held-out split), the ground states each source finds, and an ``alloy`` evaluation per
model version.

It reads what ``atlas2d alloys formation`` stored: DFT's and every other source's
formation energies of the systems' alloys (0 < x < 1). A material's split is the one it
has in the training set; alloys outside the set are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import alloys as numerics
from atlas2d.errors import InvalidInput, NotFound
from atlas2d.queries import alloys as queries
from atlas2d.queries import training_sets as trainset_queries
from atlas2d.queries.evaluations import insert_evaluation
from atlas2d.queries.model_versions import version_by_id
from atlas2d.services.models import resolve
from atlas2d.vocabulary import CLUSTER_EXPANSION, DFT, SPLITS


@dataclass
class AlloyComparison:
    """The comparison's tables.

    Attributes:
        errors: :data:`analysis.alloys.COMPARE_COLUMNS`, one row per system, energy
            source and split.
        ground_states: :data:`analysis.alloys.GROUND_STATE_COLUMNS` (key lists joined
            by commas): the keys on each source's lower hull of E_F against x, and for
            a model or CE whether they are DFT's over the same alloys, which DFT ground
            states it missed and which extra ones it found.
        paired: every alloy's DFT and predicted E_F (meV/site) with its split.
        report: the markdown report written with ``--report``, else None.
    """

    errors: pd.DataFrame
    ground_states: pd.DataFrame
    paired: pd.DataFrame
    report: Path | None = None
    left_out: dict[str, str] = field(default_factory=dict)
    """Cluster expansions left out: {label: the training set they were fitted on}."""


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


def _expansions_fitted_elsewhere(
    session: Session, stored: pd.DataFrame, training_set_id: int
) -> dict[str, str]:
    """{cluster expansion label: the training set it was fitted on} for each stored
    expansion fitted on another set than ``training_set_id``: that set's train split may
    hold this one's test materials, so its errors here would mean nothing."""
    elsewhere = {}
    for model_version_id in sorted(set(stored.model_version_id.dropna().astype(int))):
        model = version_by_id(session, model_version_id)
        if model.architecture == CLUSTER_EXPANSION and model.training_set_id != training_set_id:
            elsewhere[model.label] = str(model.training_set)
    return elsewhere


def _refuse_expansions_fitted_elsewhere(elsewhere: dict[str, str], training_set: str) -> None:
    """A requested (``--energy``) expansion fitted on another set is an error.

    Raises:
        InvalidInput: naming the expansion and both training sets.
    """
    if elsewhere:
        label, fitted_on = next(iter(elsewhere.items()))
        raise InvalidInput(
            f"Cluster expansion {label} was fitted on training set {fitted_on!r}, not "
            f"{training_set!r}: its errors on {training_set!r}'s splits would count "
            f"materials it was fitted on. Compare with --trainset {fitted_on}, or fit one on "
            f"{training_set!r} (`atlas2d alloys fit-ce`)."
        )


def _listed(keys: list[str]) -> str:
    return ", ".join(keys) or "–"


def _ground_state_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The ground-state rows for people: key lists joined."""
    table = pd.DataFrame(rows, columns=list(numerics.GROUND_STATE_COLUMNS))
    for column in ("ground_states", "missed", "extra"):
        table[column] = table[column].map(_listed)
    return table


def compare_alloys(
    sessions: sessionmaker[Session],
    systems: list[str],
    training_set: str,
    report_dir: Path | None = None,
    energy_sources: Sequence[str] = (),
) -> AlloyComparison:
    """Compare every stored energy source of the systems with DFT (module docstring) and
    store one ``alloy`` evaluation per model version.

    Args:
        energy_sources: compare only these (model or cluster-expansion references,
            ``NAME`` or ``NAME:VERSION``); empty: every stored one.

    Raises:
        InvalidInput: a bad system, or none; a cluster expansion named in
            ``energy_sources`` that was fitted on another training set (unnamed ones are
            left out: ``AlloyComparison.left_out``). NotFound: no such training set, or a system
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
        if energy_sources:
            chosen = {DFT, *(resolve(session, s).label for s in energy_sources if s != DFT)}
            stored = stored[stored.energy_source.isin(chosen)]
        elsewhere = _expansions_fitted_elsewhere(session, stored, row.id)
        if energy_sources:
            _refuse_expansions_fitted_elsewhere(elsewhere, training_set)
        # Not asked for by name: left out, and said so.
        stored = stored[~stored.energy_source.isin(list(elsewhere))]
        for label in labels:
            sources = set(stored.energy_source[stored.system == label])
            if DFT not in sources:
                raise NotFound(
                    f"{label} has no DFT formation energies: run `atlas2d alloys formation "
                    f"--system {label} --energy dft` first."
                )
            if sources == {DFT}:
                left_out = "".join(
                    f" ({name} left out: fitted on training set {fitted_on!r})"
                    for name, fitted_on in elsewhere.items()
                )
                raise NotFound(
                    f"{label} has formation energies from DFT only{left_out}: run `atlas2d "
                    f"alloys formation --system {label} --energy MODEL` for a model or a "
                    "cluster expansion first."
                )
        paired = _paired(stored, splits)
        paired = paired[paired.split.notna()]
        errors = pd.DataFrame(
            numerics.error_rows(paired, SPLITS), columns=list(numerics.COMPARE_COLUMNS)
        )
        dft = stored[(stored.energy_source == DFT) & (stored.x > 0) & (stored.x < 1)]
        ground_rows = numerics.ground_state_rows(dft, paired)
        _store_evaluations(session, row.id, labels, errors, ground_rows, paired)
    comparison = AlloyComparison(
        errors, _ground_state_table(ground_rows), paired, left_out=elsewhere
    )
    if report_dir is not None:
        comparison.report = write_report(comparison, training_set, report_dir)
    return comparison


def _store_evaluations(
    session: Session,
    training_set_id: int,
    systems: list[str],
    errors: pd.DataFrame,
    ground_rows: list[dict[str, Any]],
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
        for record in ground_rows:
            if record["energy_source"] == source:
                figures = metrics[record["system"]]
                figures["ground_states"] = record["ground_states"]
                figures["same_ground_states_as_dft"] = bool(record["same_as_dft"])
                figures["ground_states_missed"] = record["missed"]
                figures["ground_states_extra"] = record["extra"]
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
    """``alloys.md`` (both tables), and per system a parity plot (every source) and a
    plot of E_F against x with each source's lower convex hull."""
    from atlas2d.analysis.alloy_plots import formation_hull_plot
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
        "DFT's among all its alloys; a model's or CE's against DFT's over the same alloys:",
        "the DFT ground states it missed, and the extra ones it found.",
        "",
        markdown_table(comparison.ground_states),
        "",
    ]
    for system, group in comparison.paired.groupby("system"):
        parity, hulls = f"parity_{system}.png", f"hull_{system}.png"
        parity_plot(
            group.reference_mev_per_site,
            group.predicted_mev_per_site,
            folder / parity,
            f"{system}: E_F of {', '.join(sorted(set(group.energy_source)))}",
            "meV/site",
        )
        reference = group.drop_duplicates("material_id")
        sources: dict[str, tuple[Any, Any]] = {
            DFT: (reference.x.to_numpy(), reference.reference_mev_per_site.to_numpy())
        }
        for source, rows in group.groupby("energy_source", sort=True):
            sources[str(source)] = (rows.x.to_numpy(), rows.predicted_mev_per_site.to_numpy())
        formation_hull_plot(system, sources, folder / hulls)
        lines += [f"![{system} parity]({parity}) ![{system} hulls]({hulls})", ""]
    path = folder / "alloys.md"
    path.write_text("\n".join(lines))
    return path
