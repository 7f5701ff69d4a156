"""Candidate generation against real pymatgen and a real PostgreSQL: substitution,
Janus layers, charge balance, deduplication (checked by an independent all-pairs
StructureMatcher pass), idempotence, bad input, relax/label/export of a pool."""

from __future__ import annotations

import hashlib
from itertools import combinations
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, mx2
from pymatgen.core import Composition
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.analysis import generation
from atlas2d.errors import AlreadyExists, InvalidInput, NotFound
from atlas2d.io.records import ParsedFile, Trajectory
from atlas2d.services.generate import (
    GenerateRequest,
    generate,
    pool_structures,
    show_pool,
)
from atlas2d.services.ingest import ingest_parsed
from atlas2d.services.stability import update_hull

# eV/atom: elements, then layers well below them (all on their hulls)
ELEMENTS = {"Mo": -10.9, "W": -12.9, "S": -4.1, "Se": -3.5}
LAYERS = {"MoS2": 3.18, "WS2": 3.19, "MoSe2": 3.32}
FORMATION = -1.0


def _layer(formula: str, a: float) -> Atoms:
    atoms = mx2(formula, kind="2H", a=a, thickness=3.19, vacuum=8.0)
    atoms.pbc = True
    return atoms


def _trajectory(key: str, atoms: Atoms, energy_per_atom: float) -> Trajectory:
    n = len(atoms)
    return Trajectory(
        material_key=key,
        species=atoms.get_atomic_numbers(),
        cells=np.array(atoms.cell)[None],
        positions=atoms.positions[None],
        energies=np.array([energy_per_atom * n]),
        forces=np.zeros((1, n, 3)),
        stresses=np.zeros((1, 3, 3)),
        parameters={"functional": "PBE"},
        record=key,
        converged=True,
    )


def _ingest(sessions: sessionmaker[Session], trajectories: list[Trajectory]) -> None:
    digest = hashlib.sha256("".join(t.material_key for t in trajectories).encode()).hexdigest()
    ingest_parsed(
        sessions,
        ParsedFile(
            path="generate-test",
            format="extxyz",
            sha256=digest,
            parser="test",
            trajectories=trajectories,
        ),
    )


@pytest.fixture
def layers(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Elemental references, 2H MoS2, WS2 and MoSe2 layers as DFT data, DFT hull built."""
    trajectories = [
        _trajectory(
            f"ref-{e}", bulk(e, "bcc", a=3.2) if e in ("Mo", "W") else bulk(e, "sc", a=2.6), energy
        )
        for e, energy in ELEMENTS.items()
    ]
    for formula, a in LAYERS.items():
        atoms = _layer(formula, a)
        reference = np.mean([ELEMENTS[s] for s in atoms.get_chemical_symbols()])
        trajectories.append(_trajectory(f"layer-{formula}", atoms, reference + FORMATION))
    _ingest(sessions, trajectories)
    update_hull(sessions)
    return sessions


def test_w_for_mo_is_the_stored_ws2(layers: sessionmaker[Session]) -> None:
    report = generate(layers, GenerateRequest(pool="p1", materials=("layer-MoS2",), threshold=5e-3))
    pool = show_pool(layers, "p1").pool
    matched = {d["matched_key"] for d in pool.duplicates if d["substitution"] == {"Mo": "W"}}
    assert matched == {"layer-WS2"}
    assert report.counts["duplicate_of_stored"] >= 2  # WS2 and MoSe2 at least
    assert report.counts["stored"] == pool.n_candidates > 0
    formulas = {c.formula for c in pool_structures(layers, "p1")}
    assert "WS2" not in formulas and "MoSe2" not in formulas
    # the materials carry their origin and no DFT data
    key = report.stored_keys[0]
    assert key.startswith("gen-p1-")


def test_partial_se_on_mos2_is_a_janus_layer_with_the_parents_c(
    layers: sessionmaker[Session],
) -> None:
    generate(
        layers,
        GenerateRequest(pool="janus", materials=("layer-MoS2",), partial=True, threshold=0.1),
    )
    candidates = pool_structures(layers, "janus")
    janus = [c for c in candidates if c.formula == Composition("MoSSe").reduced_formula]
    assert len(janus) == 1  # the two faces give one layer (a duplicate in the pool)
    parent_c = _layer("MoS2", LAYERS["MoS2"]).cell[2, 2]
    assert janus[0].cell[2, 2] == pytest.approx(parent_c)
    z = janus[0].positions[:, 2]
    assert 0.5 * (z.max() + z.min()) == pytest.approx(parent_c / 2)
    assert janus[0].parent_key == "layer-MoS2"
    assert show_pool(layers, "janus").pool.counts["duplicate_in_pool"] >= 1


def test_charge_balance_rejects_a_known_case(layers: sessionmaker[Session]) -> None:
    prototype = generation.Prototype("mos2", _layer("MoS2", 3.18))
    proposals, why = generation.substitute(prototype, 1e-3)
    assert why is None
    by_substitution = {tuple(sorted(p.substitution.items())): p for p in proposals}
    # I⁻ for S²⁻ beside Mo⁴⁺: MoI2 carries +2; N³⁻ for S²⁻: MoN2 carries −2
    assert by_substitution[(("S", "I"),)].charge == 2.0
    assert by_substitution[(("S", "N"),)].charge == -2.0
    assert by_substitution[(("Mo", "W"),)].charge == 0
    balanced = generate(layers, GenerateRequest(pool="bal", materials=("layer-MoS2",)))
    assert balanced.counts["charge_imbalanced"] > 0
    formulas = {c.formula for c in pool_structures(layers, "bal")}
    assert not formulas & {"MoI2", "MoN2"}
    generate(
        layers, GenerateRequest(pool="unbal", materials=("layer-MoS2",), allow_unbalanced=True)
    )
    assert {"MoI2", "MoN2"} <= {c.formula for c in pool_structures(layers, "unbal")}


def test_no_duplicates_by_an_independent_all_pairs_pass(layers: sessionmaker[Session]) -> None:
    generate(
        layers,
        GenerateRequest(pool="small", materials=("layer-MoS2",), partial=True, threshold=1e-2),
    )
    candidates = pool_structures(layers, "small")
    assert len(candidates) >= 3
    # Independent of atlas2d's own normalisation: ASE centres each layer in 5 Å of
    # vacuum, pymatgen's adaptor converts, a fresh StructureMatcher compares.
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    def independent(atoms: Atoms) -> object:
        atoms = atoms.copy()
        atoms.center(vacuum=2.5, axis=2)
        return AseAtomsAdaptor.get_structure(atoms)

    structures = [
        independent(Atoms(numbers=c.species, positions=c.positions, cell=c.cell, pbc=True))
        for c in candidates
    ]
    stored = [independent(_layer(f, a)) for f, a in LAYERS.items()]
    matcher = StructureMatcher()
    for a, b in combinations(structures, 2):
        assert not matcher.fit(a, b)
    for a in structures:
        for b in stored:
            assert not matcher.fit(a, b)


def test_rerun_is_a_noop_and_bad_input_writes_nothing(
    layers: sessionmaker[Session], count_rows
) -> None:  # type: ignore[no-untyped-def]
    request = GenerateRequest(pool="again", materials=("layer-MoS2",), threshold=1e-2)
    assert request.parameters()["energy"] == "dft"  # recorded, default included
    first = generate(layers, request)
    before = (count_rows("materials"), count_rows("pool_candidates"))
    second = generate(layers, request)
    assert second.already_done and second.counts == first.counts
    assert (count_rows("materials"), count_rows("pool_candidates")) == before
    with pytest.raises(AlreadyExists, match="other parameters"):
        generate(layers, GenerateRequest(pool="again", materials=("layer-MoS2",), threshold=2e-2))
    with pytest.raises(NotFound, match="nope"):
        generate(
            layers,
            GenerateRequest(
                pool="x", generator="decorate", materials=("nope",), elements=("Mo", "S")
            ),
        )
    with pytest.raises(NotFound, match="no-such-model"):  # --energy names a model
        generate(
            layers,
            GenerateRequest(pool="y", materials=("layer-MoS2",), energy="no-such-model"),
        )
    with pytest.raises(InvalidInput, match="has 2 elements, but --elements gives 1"):
        generate(
            layers,
            GenerateRequest(
                pool="x", generator="decorate", materials=("layer-MoS2",), elements=("W",)
            ),
        )
    with pytest.raises(InvalidInput, match="'Xx' is not a chemical element"):
        generate(
            layers,
            GenerateRequest(
                pool="x", generator="decorate", materials=("layer-MoS2",), elements=("Mo", "Xx")
            ),
        )
    dry = generate(layers, GenerateRequest(pool="dry", materials=("layer-MoS2",), dry_run=True))
    assert dry.counts["stored"] > 0
    assert (
        count_rows("materials"),
        count_rows("pool_candidates"),
        count_rows("candidate_pools"),
    ) == (before[0], before[1], 1)


def test_decorate_keeps_the_stoichiometry_pattern(layers: sessionmaker[Session]) -> None:
    report = generate(
        layers,
        GenerateRequest(
            pool="deco",
            generator="decorate",
            materials=("layer-MoS2",),
            elements=("Mo", "W", "S", "Se"),
        ),
    )
    pool = show_pool(layers, "deco").pool
    formulas = {c.formula for c in pool_structures(layers, "deco")}
    assert "WSe2" in formulas
    assert {d["matched_key"] for d in pool.duplicates} >= {"layer-WS2", "layer-MoSe2"}
    assert report.counts["generated"] == 11  # 4·3 ordered pairs less the identity


def test_cli_generate_list_show_export_relax_and_label(
    layers: sessionmaker[Session],
    cli,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    code, out, err = cli(
        "generate", "substitute", "--pool", "cli", "--material", "layer-MoS2", "--threshold", "0.01"
    )
    assert code == 0, out + err
    assert "duplicate of stored" in out and "stored" in out
    code, out, _ = cli(
        "generate", "substitute", "--pool", "cli", "--material", "layer-MoS2", "--threshold", "0.01"
    )
    assert code == 0 and "already made" in out
    code, out, _ = cli("generate", "list", "--format", "csv")
    assert code == 0 and "cli,substitute" in out
    code, out, _ = cli("generate", "show", "cli", "--format", "json")
    assert code == 0 and '"parent_key": "layer-MoS2"' in out
    target = tmp_path / "candidates.extxyz"
    code, out, _ = cli("generate", "export", "cli", "--out", str(target))
    assert code == 0
    frames = ase.io.read(target, ":")
    assert frames and all(f.info["parent_key"] == "layer-MoS2" for f in frames)
    assert all(f.info["material_key"].startswith("gen-cli-") for f in frames)
    code, _, err = cli("generate", "substitute", "--pool", "cli", "--material", "layer-MoS2")
    assert code == 1 and "other parameters" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_relax_pool_starts_from_the_generated_structures(layers: sessionmaker[Session]) -> None:
    pytest.importorskip("chgnet")
    from atlas2d.mlff.labeller import LabelSettings
    from atlas2d.services.label import LabelRequest, label

    generate(layers, GenerateRequest(pool="lab", materials=("layer-MoS2",), threshold=2e-2))
    n = len(pool_structures(layers, "lab"))
    report = label(layers, LabelRequest(pool="lab", settings=LabelSettings(max_steps=3)))
    assert report.labelled == n
    again = label(layers, LabelRequest(pool="lab", settings=LabelSettings(max_steps=3)))
    assert again.labelled == 0 and again.already_labelled == n
