"""Convex hulls per chemical system (``hull update``), stable lists, the SQL views and
function, ML stability against the DFT hull, its metrics, and the read-only role.

Reference: pymatgen's ``PhaseDiagram`` on the same entries, one per chemical system.
"""

from __future__ import annotations

import csv
import io
import json
import lzma
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.db.models import Relaxation
from atlas2d.io.readers import ReadOptions
from atlas2d.io.records import Trajectory
from atlas2d.services.ingest import ingest_paths
from tests.support.synthetic import alexandria_document

ELEMENTS = ["Mo", "S", "Se", "W"]


def _structure(composition: dict[str, int]) -> Structure:
    """A layer-like cell with atoms spread out (geometry is irrelevant to the hull)."""
    species = [e for e, n in composition.items() for _ in range(n)]
    coords = [[(i * 0.37) % 1, (i * 0.61) % 1, 0.4 + 0.02 * i] for i in range(len(species))]
    return Structure(Lattice.hexagonal(3.2, 20.0), species, coords)


def _hull_entries(seed: int, prefix: str, n: int) -> list[ComputedStructureEntry]:
    """Elemental references (two polymorphs each) and n random compounds in Mo-S-Se-W,
    some with a correction (as MP2020 anion corrections)."""
    rng = np.random.default_rng(seed)
    references = dict(zip(ELEMENTS, [-10.9, -4.1, -3.5, -12.9], strict=True))
    entries = []
    for element, energy in references.items():
        for polymorph, shift in enumerate((0.0, 0.04)):
            atoms = int(rng.integers(1, 3))
            entries.append(
                ComputedStructureEntry(
                    _structure({element: atoms}),
                    (energy + shift) * atoms,
                    data={"mat_id": f"{prefix}-{element}-{polymorph}", "dimensionality": 3},
                )
            )
    for i in range(n):
        size = int(rng.integers(2, 4))
        elements = sorted(rng.choice(ELEMENTS, size=size, replace=False).tolist())
        counts = {e: int(rng.integers(1, 3)) for e in elements}
        composition = Composition(counts)
        reference = sum(composition.get_atomic_fraction(e) * references[e] for e in elements)
        n_atoms = int(composition.num_atoms)
        correction = -0.1 * counts.get("S", 0) if i % 3 == 0 else 0.0
        energy = (reference + rng.normal(-0.3, 0.25)) * n_atoms - correction
        entries.append(
            ComputedStructureEntry(
                _structure(counts),
                energy,
                correction=correction,
                data={"mat_id": f"{prefix}-{i:03d}", "dimensionality": 2},
            )
        )
    return entries


def _write_hull_file(path: Path, entries: list[ComputedStructureEntry]) -> Path:
    path.write_bytes(
        lzma.compress(json.dumps({"entries": [e.as_dict() for e in entries]}).encode())
    )
    return path


def _trajectory(key: str, species: list[int], energies_per_atom: list[float]) -> Trajectory:
    n, steps = len(species), len(energies_per_atom)
    cell = np.diag([3.2, 3.2, 20.0])
    positions = np.array([[0.3 * i, 0.5 * i, 10.0 + 0.5 * i] for i in range(n)])
    return Trajectory(
        material_key=key,
        species=np.array(species),
        cells=np.repeat(cell[None], steps, axis=0),
        positions=np.repeat(positions[None], steps, axis=0),
        energies=np.array(energies_per_atom) * n,
        forces=np.zeros((steps, n, 3)),
        stresses=np.zeros((steps, 3, 3)),
        parameters={"functional": "PBE"},
    )


def _ingest(sessions: sessionmaker[Session], *paths: Path) -> None:
    ingest_paths(sessions, list(paths), ReadOptions())


def _pymatgen_per_chemsys(entries: list[PDEntry]) -> dict[str, tuple[float, float]]:
    """{name: (e_above_hull, formation energy)} from one PhaseDiagram per chemical system
    of each entry, made of the entries whose elements are a subset of it."""
    results = {}
    for entry in entries:
        elements = sorted(str(e) for e in entry.composition.elements)
        subsets = {"-".join(c) for r in range(1, 5) for c in combinations(elements, r)}
        members = [
            e
            for e in entries
            if "-".join(sorted(str(x) for x in e.composition.elements)) in subsets
        ]
        diagram = PhaseDiagram(members)
        results[entry.name] = (
            diagram.get_e_above_hull(entry),
            diagram.get_form_energy_per_atom(entry),
        )
    return results


@pytest.fixture
def hull_data(sessions: sessionmaker[Session], tmp_path: Path) -> dict[str, PDEntry]:
    """Ingested Alexandria hull entries and trajectories; the same energies as PDEntries.

    Two materials only have trajectories (their last step's energy counts), and one has
    both a trajectory and an entry (the entry's energy counts).
    """
    entries = _hull_entries(11, "hull", 40)
    _ingest(sessions, _write_hull_file(tmp_path / "convex_hull.json.xz", entries))
    trajectories = [
        _trajectory("traj-MoS2", [42, 16, 16], [-6.0, -6.3, -6.45]),
        _trajectory("traj-WSe2", [74, 34, 34], [-6.2, -6.9, -7.05]),
        # hull-000 has an entry: its trajectory's energies are not used.
        _trajectory("hull-000", [site.specie.Z for site in entries[8].structure], [1.0, 2.0]),
    ]
    trajectory_file = tmp_path / "traj.json"
    trajectory_file.write_text(json.dumps(alexandria_document(trajectories)))
    _ingest(sessions, trajectory_file)
    references = {
        e.data["mat_id"]: PDEntry(e.composition, e.energy, name=e.data["mat_id"]) for e in entries
    }
    references["traj-MoS2"] = PDEntry(Composition("MoS2"), -6.45 * 3, name="traj-MoS2")
    references["traj-WSe2"] = PDEntry(Composition("WSe2"), -7.05 * 3, name="traj-WSe2")
    return references


def _csv(out: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out)))


def test_dft_hull_equals_pymatgen_per_chemsys(cli, hull_data) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("hull", "update")
    assert code == 0, err
    assert "hull run" in out and "full" in out
    expected = _pymatgen_per_chemsys(list(hull_data.values()))

    code, out, _ = cli("stable", "--format", "csv", "--max-ehull", "100")
    rows = {r["material_key"]: r for r in _csv(out)}
    assert rows.keys() == expected.keys()
    for key, (e_above_hull, formation) in expected.items():
        assert float(rows[key]["e_above_hull_mev_per_atom"]) / 1000 == pytest.approx(
            e_above_hull, abs=1e-6
        ), key
        assert float(rows[key]["formation_energy_ev_per_atom"]) == pytest.approx(
            formation, abs=1e-6
        )
        assert rows[key]["energy_source"] == "dft"
    assert list(_csv(out)[0]) == [
        "material_key",
        "formula",
        "chemsys",
        "spacegroup",
        "e_above_hull_mev_per_atom",
        "formation_energy_ev_per_atom",
        "energy_source",
        "hull_run",
    ]

    code, out, _ = cli("stable", "--format", "csv")
    stable = {r["material_key"] for r in _csv(out)}
    assert stable == {k for k, (e, _) in expected.items() if e <= 1e-9}
    assert any(k.startswith("hull-Mo-") for k in stable) and "traj-WSe2" in rows

    code, out, _ = cli("stable", "--format", "json", "--dimensionality", "2", "--chemsys", "S-Mo")
    listed = json.loads(out)
    assert {r["chemsys"] for r in listed} <= {"Mo-S"}
    assert {r["material_key"] for r in listed} == {
        k for k in stable if k in rows and rows[k]["chemsys"] == "Mo-S"
    } - {k for k in stable if k.startswith("hull-Mo-") or k.startswith("hull-S-")}


def test_sql_views_and_function_answer_the_same(cli, hull_data, sessions) -> None:  # type: ignore[no-untyped-def]
    cli("hull", "update")
    expected = _pymatgen_per_chemsys(list(hull_data.values()))
    with sessions.begin() as session:
        view = dict(
            session.execute(
                text(
                    "SELECT material_key, e_above_hull_ev_per_atom FROM material_stability"
                    " WHERE energy_source = 'dft'"
                )
            ).all()
        )
        stable_view = set(
            session.execute(text("SELECT material_key FROM stable_compounds")).scalars()
        )
        within = set(
            session.execute(
                text("SELECT material_key FROM stable_compounds(0.05, 'dft')")
            ).scalars()
        )
    assert view.keys() == expected.keys()
    for key, (e_above_hull, _) in expected.items():
        assert view[key] == pytest.approx(e_above_hull, abs=1e-6)
    assert stable_view == {k for k, (e, _) in expected.items() if e <= 1e-9}
    assert within == {k for k, (e, _) in expected.items() if e <= 0.05 + 1e-9}


def test_incremental_update_recomputes_only_touched_systems(
    cli, hull_data, sessions, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    cli("hull", "update")
    code, out, _ = cli("hull", "update")
    assert code == 0 and "nothing to do" in out

    # A very stable new Mo-S compound touches Mo-S and every system containing it.
    new = ComputedStructureEntry(
        _structure({"Mo": 1, "S": 1}), -9.0 * 2, data={"mat_id": "new-MoS", "dimensionality": 2}
    )
    _ingest(sessions, _write_hull_file(tmp_path / "new.json.xz", [new]))
    code, out, _ = cli("hull", "update")
    assert "incremental" in out
    with sessions.begin() as session:
        runs = dict(
            session.execute(
                text(
                    "SELECT m.chemsys, max(s.hull_run_id) FROM stability s"
                    " JOIN materials m ON m.id = s.material_id GROUP BY m.chemsys"
                )
            ).all()
        )
        first, second = sorted(set(runs.values()))
    touched = {c for c, run in runs.items() if run == second}
    assert touched == {c for c in runs if {"Mo", "S"} <= set(c.split("-"))}
    assert runs["Se-W"] == first and runs["Mo"] == first

    hull_data["new-MoS"] = PDEntry(Composition("MoS"), -18.0, name="new-MoS")
    expected = _pymatgen_per_chemsys(list(hull_data.values()))
    code, out, _ = cli("stable", "--format", "csv", "--max-ehull", "100")
    rows = {r["material_key"]: float(r["e_above_hull_mev_per_atom"]) / 1000 for r in _csv(out)}
    for key, (e_above_hull, _) in expected.items():
        assert rows[key] == pytest.approx(e_above_hull, abs=1e-6), key

    # An unstable new W-Se compound changes no hull: only its own system is recomputed.
    unstable = ComputedStructureEntry(
        _structure({"W": 1, "Se": 1}), 0.0, data={"mat_id": "new-WSe", "dimensionality": 2}
    )
    _ingest(sessions, _write_hull_file(tmp_path / "unstable.json.xz", [unstable]))
    code, out, _ = cli("hull", "update")
    assert "incremental): 1 chemical system," in out

    code, out, _ = cli("hull", "update", "--all")
    assert "full" in out and f"{len(runs)} chemical systems" in out


def test_a_system_without_an_elemental_reference_is_skipped_and_named(
    cli, sessions, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    lonely = ComputedStructureEntry(
        _structure({"Nb": 1, "Te": 2}), -15.0, data={"mat_id": "NbTe2-x", "dimensionality": 2}
    )
    _ingest(sessions, _write_hull_file(tmp_path / "lonely.json.xz", [lonely]))
    code, out, _ = cli("hull", "update")
    assert code == 0
    assert "skipped (no DFT elemental reference for Nb, Te): NbTe2-x" in out


def _model_version(session: Session) -> int:
    """A registry row standing for a trained model (its artifact is never loaded here)."""
    set_id = session.execute(
        text(
            "INSERT INTO training_sets (name, rule, parameters, split_counts, filter_counts,"
            " n_frames, n_materials, relaxation_watermark, content_hash)"
            " VALUES ('ts', 'all', '{}', '{}', '{}', 0, 0, 0, repeat('0', 64)) RETURNING id"
        )
    ).scalar_one()
    return session.execute(
        text(
            "INSERT INTO model_versions (name, version, architecture, training_set_id,"
            " hyperparameters, artifact_path, artifact_sha256, metrics, training_curve,"
            " environment, status, finished_at)"
            " VALUES ('stab', 1, 'mace', :ts, '{}', 'x.model', repeat('0', 64), '{}', '[]',"
            " '{}', 'ready', now()) RETURNING id"
        ),
        {"ts": set_id},
    ).scalar_one()


def _ml_relaxation(
    session: Session, model_id: int, key: str, species: list[int], energy: float
) -> None:
    material_id = session.execute(
        text("SELECT id FROM materials WHERE key = :k"), {"k": key}
    ).scalar_one()
    session.add(
        Relaxation(
            material_id=material_id,
            method="ml",
            model_version_id=model_id,
            sequence=0,
            parameters={"fmax": 0.1},
            n_sites=len(species),
            species=np.array(species),
            pbc=[True, True, True],
            n_steps=1,
            converged=True,
            final_energy=energy * len(species),
            final_energy_per_atom=energy,
            final_area_per_atom=3.0,
            info={},
            content_hash=f"ml-{key}",
        )
    )


def test_model_stability_against_the_dft_hull_of_the_others(cli, hull_data, sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        model_id = _model_version(session)
        dft = {
            k: (v, e)
            for k, v, e in session.execute(
                text(
                    "SELECT material_key, energy_ev_per_atom, hull_distance_ev_per_atom"
                    " FROM material_stability"
                )
            ).all()
        }
    assert not dft  # no hull run yet
    code, _, err = cli("hull", "update", "--energy", "stab:1")
    assert code == 1 and "has relaxed no material" in err

    cli("hull", "update")
    compounds = [k for k in hull_data if k.startswith("hull-0")][:12]
    rng = np.random.default_rng(5)
    offsets = dict(zip(compounds, rng.normal(0.0, 0.08, len(compounds)), strict=True))
    with sessions.begin() as session:
        for key in compounds:
            entry = hull_data[key]
            species = [z for el, n in entry.composition.items() for z in [el.Z] * int(n)]
            # The model's uncorrected energy: the DFT corrected one minus the correction.
            correction = session.execute(
                text(
                    "SELECT correction / n_sites FROM energy_entries e JOIN materials m"
                    " ON m.id = e.material_id WHERE m.key = :k"
                ),
                {"k": key},
            ).scalar_one()
            _ml_relaxation(
                session, model_id, key, species, entry.energy_per_atom - correction + offsets[key]
            )
    code, out, err = cli("hull", "update", "--energy", "stab:1")
    assert code == 0, err

    code, out, _ = cli("stable", "--energy", "stab:1", "--format", "json", "--max-ehull", "100")
    ml = {r["material_key"]: r["e_above_hull_mev_per_atom"] / 1000 for r in json.loads(out)}
    assert ml.keys() == set(compounds)
    for key in compounds:
        mine = hull_data[key]
        others = [e for k, e in hull_data.items() if k != key]
        elements = {str(e) for e in mine.composition.elements}
        diagram = PhaseDiagram(
            [e for e in others if {str(x) for x in e.composition.elements} <= elements]
        )
        candidate = PDEntry(
            mine.composition, (mine.energy_per_atom + offsets[key]) * mine.composition.num_atoms
        )
        expected = diagram.get_decomp_and_e_above_hull(candidate, allow_negative=True)[1]
        assert ml[key] == pytest.approx(expected, abs=1e-6), key

    code, out, err = cli("evaluate", "--model", "stab:1", "--stability", "--format", "json")
    assert code == 0, err
    metrics = json.loads(out)["metrics"]
    code, again, _ = cli("evaluate", "--model", "stab:1", "--stability", "--format", "json")
    assert json.loads(again)["evaluation"] == json.loads(out)["evaluation"]  # stored once
    with sessions.begin() as session:
        truth = dict(
            session.execute(
                text(
                    "SELECT material_key, hull_distance_ev_per_atom FROM material_stability"
                    " WHERE energy_source = 'dft' AND material_key = ANY(:keys)"
                ),
                {"keys": compounds},
            ).all()
        )
        stored = session.execute(
            text("SELECT kind, metrics FROM evaluations ORDER BY id DESC LIMIT 1")
        ).one()
    actual = {k for k, d in truth.items() if d <= 0}
    predicted = {k for k, e in ml.items() if e <= 0}
    tp = len(actual & predicted)
    assert metrics["n_materials"] == len(compounds)
    assert metrics["true_positives"] == tp
    assert metrics["false_positives"] == len(predicted - actual)
    assert metrics["false_negatives"] == len(actual - predicted)
    if predicted:
        assert metrics["precision"] == pytest.approx(tp / len(predicted))
    errors = np.array([ml[k] - truth[k] for k in compounds]) * 1000
    assert metrics["e_above_hull_mae_mev_per_atom"] == pytest.approx(np.abs(errors).mean())
    assert stored.kind == "stability" and stored.metrics == metrics


def test_reader_role_can_select_and_cannot_write(hull_data, cli, sessions) -> None:  # type: ignore[no-untyped-def]
    cli("hull", "update")
    with sessions.begin() as session:
        # SET ROLE needs membership, which an owner that is not a superuser (CI's external
        # server) lacks; the grant goes with the test's transaction.
        session.execute(text("GRANT atlas2d_reader TO CURRENT_USER"))
        session.execute(text("SET LOCAL ROLE atlas2d_reader"))
        assert session.execute(text("SELECT count(*) FROM stable_compounds")).scalar_one() > 0
        assert session.execute(text("SELECT count(*) FROM frames")).scalar_one() > 0
        for statement in (
            "INSERT INTO sources (format, path, sha256, parser, versions, options, n_materials,"
            " n_relaxations, n_frames, n_entries) VALUES ('records', 'x', 'y', 'z', '{}', '{}',"
            " 0, 0, 0, 0)",
            "UPDATE materials SET formula = 'X'",
            "DELETE FROM stability",
        ):
            with pytest.raises(ProgrammingError, match="permission denied"):  # noqa: SIM117
                with session.begin_nested():
                    session.execute(text(statement))


def _snapshot(sessions: sessionmaker[Session], source: str) -> dict[str, tuple]:
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT material_key, energy_ev_per_atom, formation_energy_ev_per_atom,"
                " e_above_hull_ev_per_atom, hull_distance_ev_per_atom, decomposition"
                " FROM material_stability WHERE energy_source = :source"
            ),
            {"source": source},
        ).all()
    return {
        key: (*(round(v, 9) for v in values), json.dumps(decomposition, sort_keys=True))
        for key, *values, decomposition in rows
    }


def _incremental_equals_full(cli, sessions, *args: str) -> None:  # type: ignore[no-untyped-def]
    """`hull update ARGS` then the same with --all: the stored results must not change."""
    source = args[-1] if args else "dft"
    code, _, err = cli("hull", "update", *args)
    assert code == 0, err
    incremental = _snapshot(sessions, source)
    code, _, err = cli("hull", "update", *args, "--all")
    assert code == 0, err
    assert _snapshot(sessions, source) == incremental


def _shared_vertex(sessions: sessionmaker[Session], source: str, skip: set[str]) -> dict:
    """A stable compound (not an element) in the decomposition of a material of a larger
    system: raising its energy changes hulls beyond its own system."""
    with sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT s.decomposition, m.chemsys FROM material_stability s"
                " JOIN materials m ON m.key = s.material_key WHERE s.energy_source = :source"
            ),
            {"source": source},
        ).all()
        for decomposition, chemsys in rows:
            for phase in decomposition:
                key = phase["material_key"]
                row = session.execute(
                    text("SELECT key, formula, chemsys FROM materials WHERE key = :k"), {"k": key}
                ).one()
                if "-" in row.chemsys and row.chemsys != chemsys and key not in skip:
                    return dict(row._mapping)
    raise AssertionError("no compound vertex is shared with a larger system")


def _raise_energy(sessions: sessionmaker[Session], tmp_path: Path, material: dict) -> None:
    """A newer hull entry for the material, far above every hull (0 eV/atom)."""
    amounts = {k: int(v) for k, v in Composition(material["formula"]).get_el_amt_dict().items()}
    entry = ComputedStructureEntry(
        _structure(amounts), 0.0, data={"mat_id": material["key"], "dimensionality": 2}
    )
    _ingest(sessions, _write_hull_file(tmp_path / f"{material['key']}.json.xz", [entry]))


def test_incremental_updates_equal_full_recomputes(cli, hull_data, sessions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cli("hull", "update")
    # A stable compound's energy goes up: every system containing its own loses a vertex.
    first = _shared_vertex(sessions, "dft", set())
    _raise_energy(sessions, tmp_path, first)
    _incremental_equals_full(cli, sessions)

    # A --chemsys run rewrites rows but keeps the watermarks; the next full incremental
    # run must still recompute the larger systems.
    second = _shared_vertex(sessions, "dft", {first["key"]})
    _raise_energy(sessions, tmp_path, second)
    code, out, _ = cli("hull", "update", "--chemsys", second["chemsys"])
    assert code == 0 and "(incremental): 1 chemical system," in out
    _incremental_equals_full(cli, sessions)

    code, _, err = cli("hull", "update", "--chemsys", "Mo-Xx")
    assert code == 1 and "'Xx' is not an element" in err


def test_model_results_follow_new_dft_energies(cli, hull_data, sessions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        model_id = _model_version(session)
        for key in [k for k in hull_data if k.startswith("hull-0")]:
            entry = hull_data[key]
            species = [z for el, n in entry.composition.items() for z in [el.Z] * int(n)]
            _ml_relaxation(session, model_id, key, species, entry.energy_per_atom + 0.02)
        # A candidate in a system without any DFT energy is skipped, not a crash.
        session.execute(
            text(
                "INSERT INTO materials (key, formula, chemsys, elements, n_elements, info)"
                " VALUES ('cand-NbTe', 'NbTe', 'Nb-Te', '{Nb,Te}', 2, '{}')"
            )
        )
        _ml_relaxation(session, model_id, "cand-NbTe", [41, 52], -5.0)
    cli("hull", "update")
    code, out, err = cli("hull", "update", "--energy", "stab:1")
    assert code == 0, err
    assert "skipped (no DFT elemental reference for Nb, Te): cand-NbTe" in out

    # A DFT vertex the model's placements rest on goes up; DFT's hulls are updated
    # first (so its stored DFT row already says unstable), then the model's.
    _raise_energy(sessions, tmp_path, _shared_vertex(sessions, "stab:1", set()))
    cli("hull", "update")
    _incremental_equals_full(cli, sessions, "--energy", "stab:1")
