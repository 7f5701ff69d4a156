"""Active-learning campaigns against a real PostgreSQL, real CHGNet labels and a real
M3GNet trained for one epoch: two iterations end to end, decisions and their reasons,
the figures recomputed from the rows, splits kept and parents named, bad parameters,
and the VASP labeller with a real vasprun."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import ase.io
import numpy as np
import pytest
from pymatgen.io.vasp import Incar, Kpoints, Poscar
from sqlalchemy import Engine, text

from atlas2d.errors import AlreadyExists, InvalidInput, NotFound
from atlas2d.io.files import expand_paths
from atlas2d.io.readers import ReadOptions
from atlas2d.io.vasp_inputs import read_label_ticket
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.queries.candidate_pools import CandidateStructure
from atlas2d.services.campaign_stages import decide
from atlas2d.services.campaigns import (
    CampaignRequest,
    TrainSettings,
    campaign_status,
    create_campaign,
    iteration_candidates,
    run_campaign,
    write_campaign_report,
)
from atlas2d.services.generate import import_pool
from atlas2d.services.ingest import ingest_paths
from atlas2d.services.relax import RelaxRequest, relax
from atlas2d.services.stability import update_hull
from atlas2d.services.training import TrainRequest, train_model
from tests.conftest import VASP_DATA, _drop_database, _migrated_database, tiny_options
from tests.support.campaigns import (
    BASE_SET,
    START_MODEL,
    CampaignDatabase,
    candidate_layers,
    make_campaign_database,
)


@pytest.fixture(scope="module")
def db(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CampaignDatabase]:
    url = _migrated_database(database_server, "atlas2d_al")
    made = make_campaign_database(url, tmp_path_factory.mktemp("al"))
    yield made
    made.engine.dispose()
    _drop_database(database_server, url)


@pytest.fixture(scope="module")
def layers_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("candidates") / "layers.extxyz"
    ase.io.write(path, candidate_layers(), format="extxyz")
    return path


def _request(campaign: str, **overrides: object) -> CampaignRequest:
    settings: dict[str, object] = {
        "name": campaign,
        "model": START_MODEL,
        "threshold_ev": 1000.0,  # the one-epoch model's energies are far off
        "budget": 3,
        "control": 2,
        "label_steps": 80,
        "relax_steps": 30,
        "engine": "ase",
        "train": TrainSettings(epochs=1, batch_size=4, seed=7),
    }
    return CampaignRequest(**{**settings, **overrides})  # type: ignore[arg-type]


def _rows(db: CampaignDatabase, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    with db.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql), params)]


def test_two_iterations_of_a_file_campaign(
    db: CampaignDatabase, layers_file: Path, tmp_path: Path
) -> None:
    create_campaign(db.sessions, _request("files", generator=f"file:{layers_file}"), db.home)
    report = run_campaign(db.sessions, "files", 2, db.artifacts_dir)
    assert report.finished == [1, 2] and report.completed == 2 and report.waiting is None
    status = campaign_status(db.sessions, "files")
    assert status.campaign.status == "done" and status.pending.empty
    summary = status.summary.set_index("iteration")

    # Iteration 1 screens all 12 candidates; iteration 2 the ones it did not label.
    first = iteration_candidates(db.sessions, "files", 1)
    labelled_first = int((first.label_status == "labelled").sum())
    assert 3 <= labelled_first <= 5  # budget 3, control 2, a candidate in both once
    assert summary.loc[1, "candidates"] == 12
    assert summary.loc[2, "candidates"] == 12 - labelled_first
    for index in (1, 2):
        table = iteration_candidates(db.sessions, "files", index)
        assert int(table.in_control.sum()) == 2 and (table.decision == "selected").sum() == 3
        control_only = table.in_control & (table.decision != "selected")
        assert ((table.decision == "control") == control_only).all()
        chosen = table[table.decision.isin(["selected", "control"])]
        assert set(chosen.label_status) == {"labelled"} and chosen.dft_relaxation_id.notna().all()
        assert table[~table.decision.isin(["selected", "control"])].label_status.isna().all()
        # Selected: the lowest ML e_above_hull among all passing candidates, control or not.
        passing = table[table.passed]
        best = passing.sort_values("ml_e_above_hull").head(3)
        assert set(best.material_key) == set(table[table.decision == "selected"].material_key)
        assert list(passing.sort_values("rank").ml_e_above_hull) == sorted(passing.ml_e_above_hull)
        assert all("within the budget 3" in r for r in table[table.decision == "selected"].reason)
        # The figures equal what the rows say: hits over labelled, per group.
        hit = table.dft_e_above_hull.notna() & (table.dft_e_above_hull.astype(float) <= 0.0)
        selected = table.decision == "selected"
        hit_rate = float(hit[selected].mean())
        control_rate = float(hit[table.in_control].mean())
        assert summary.loc[index, "hit_rate"] == pytest.approx(hit_rate)
        assert summary.loc[index, "control_hit_rate"] == pytest.approx(control_rate)
        enrichment = summary.loc[index, "enrichment"]
        if control_rate > 0:
            assert enrichment == pytest.approx(hit_rate / control_rate)
        else:
            assert enrichment is None or enrichment != enrichment  # None or NaN
        errors = _rows(
            db,
            "SELECT avg(abs(ml.final_energy_per_atom - dft.final_energy_per_atom)) * 1000,"
            " avg(abs(k.ml_e_above_hull - s.hull_distance)) * 1000"
            " FROM al_candidates k JOIN al_iterations i ON i.id = k.iteration_id"
            " JOIN al_campaigns c ON c.id = i.campaign_id"
            " JOIN relaxations ml ON ml.id = k.ml_relaxation_id"
            " JOIN relaxations dft ON dft.id = k.dft_relaxation_id"
            " LEFT JOIN stability s ON s.material_id = k.material_id AND s.energy_source = 'dft'"
            " WHERE c.name = 'files' AND i.index = :n AND k.label_status = 'labelled'",
            n=index,
        )[0]
        assert summary.loc[index, "prospective_energy_mae_mev_per_atom"] == pytest.approx(errors[0])
        if errors[1] is not None:
            assert summary.loc[index, "prospective_ehull_mae_mev_per_atom"] == pytest.approx(
                errors[1]
            )
        assert summary.loc[index, "dft_hull_size"] > 0
    # The labels start from the screening model's relaxed structures.
    starts = _rows(
        db,
        "SELECT DISTINCT r.info->>'start' FROM al_candidates k"
        " JOIN relaxations r ON r.id = k.dft_relaxation_id",
    )
    assert starts and all(start.startswith("ml:") for (start,) in starts)

    # Each iteration's model names the one that screened it as its parent.
    chain = dict(
        _rows(
            db,
            "SELECT m.name || ':' || m.version, p.name || ':' || p.version FROM model_versions m"
            " JOIN model_versions p ON p.id = m.parent_id WHERE m.name LIKE 'files-iter%'",
        )
    )
    assert chain == {"files-iter1:1": f"{START_MODEL}:1", "files-iter2:1": "files-iter1:1"}
    assert list(summary.screening_model) == [f"{START_MODEL}:1", "files-iter1:1"]
    assert list(summary.produced_model) == ["files-iter1:1", "files-iter2:1"]

    # A material keeps its split across the starting set and both iterations' sets.
    splits = _rows(
        db,
        "SELECT r.material_id, t.name, min(tr.split), max(tr.split)"
        " FROM training_set_relaxations tr JOIN training_sets t ON t.id = tr.training_set_id"
        " JOIN relaxations r ON r.id = tr.relaxation_id"
        " WHERE t.name IN (:a, 'files-iter1', 'files-iter2') GROUP BY r.material_id, t.name",
        a=BASE_SET,
    )
    by_material: dict[int, set[str]] = {}
    for material_id, _, low, high in splits:
        assert low == high
        by_material.setdefault(material_id, set()).add(low)
    assert by_material and all(len(s) == 1 for s in by_material.values())
    labelled_keys = set(
        iteration_candidates(db.sessions, "files", 1)
        .query("label_status == 'labelled'")
        .material_key
    )
    in_iter1 = {
        key
        for (key,) in _rows(
            db,
            "SELECT DISTINCT m.key FROM training_set_relaxations tr"
            " JOIN training_sets t ON t.id = tr.training_set_id"
            " JOIN relaxations r ON r.id = tr.relaxation_id JOIN materials m ON m.id = r.material_id"
            " WHERE t.name = 'files-iter1'",
        )
    }
    assert labelled_keys & in_iter1, "the new labels enter the next training set"

    # Running a finished campaign again does nothing.
    counts_before = _rows(
        db, "SELECT count(*) FROM relaxations UNION ALL SELECT count(*) FROM model_versions"
    )
    again = run_campaign(db.sessions, "files", 2, db.artifacts_dir)
    assert again.finished == [] and again.completed == 2
    assert (
        _rows(db, "SELECT count(*) FROM relaxations UNION ALL SELECT count(*) FROM model_versions")
        == counts_before
    )

    # The report: table, plot, candidates per iteration.
    path = write_campaign_report(db.sessions, "files", tmp_path / "report")
    assert "| 1 |" in path.read_text() and "files-iter1:1" in path.read_text()
    assert (tmp_path / "report" / "campaign.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report" / "candidates_iter2.csv").exists()


def test_a_substitute_campaign_generates_from_the_dft_hull(db: CampaignDatabase) -> None:
    request = _request(
        "subs",
        generator="substitute",
        chemsys=("Mo-S", "S-W"),
        partial=True,
        max_candidates=4,
        budget=1,
        control=0,
    )
    create_campaign(db.sessions, request, db.home)
    run_campaign(db.sessions, "subs", 1, db.artifacts_dir)
    status = campaign_status(db.sessions, "subs")
    (row,) = status.iterations
    assert row.stage == "done" and row.counts["candidates"] >= 1
    pool = _rows(db, "SELECT name, generator FROM candidate_pools WHERE id = :i", i=row.pool_id)
    assert pool == [("subs-iter1", "substitute")]
    table = iteration_candidates(db.sessions, "subs", 1)
    assert all(key.startswith("gen-subs-iter1-") for key in table.material_key)
    assert (table.decision == "selected").sum() == 1


def test_the_same_request_finds_the_campaign_and_other_parameters_are_refused(
    db: CampaignDatabase, layers_file: Path
) -> None:
    request = _request("twice", generator=f"file:{layers_file}")
    first = create_campaign(db.sessions, request, db.home)
    assert create_campaign(db.sessions, request, db.home).id == first.id
    stored = first.parameters
    assert stored["model"] == f"{START_MODEL}:1" and stored["threshold_ev"] == 1000.0
    assert stored["training_set"]["rule"] == "ecut" and stored["base_training_set"] == BASE_SET
    with pytest.raises(AlreadyExists, match="budget"):
        create_campaign(
            db.sessions, _request("twice", generator=f"file:{layers_file}", budget=9), db.home
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad name"}, "name 'bad name'"),
        ({"generator": "mutate"}, "--generator 'mutate'"),
        ({"generator": "pool:"}, "--generator 'pool:'"),
        ({"budget": 0}, "--budget 0"),
        ({"threshold_ev": -0.1}, "--threshold -0.1"),
        ({"threshold_ev": float("inf")}, "--threshold inf must be a finite number"),
        ({"selection": "uncertainty"}, "give --committee"),
        ({"labeller": "dft"}, "--labeller 'dft'"),
        ({"generator": "decorate"}, "needs prototypes"),
        ({"generator": "file:/nowhere/x.extxyz"}, "no such file"),
    ],
)
def test_bad_parameters_are_refused_and_nothing_is_written(
    db: CampaignDatabase, overrides: dict[str, object], message: str
) -> None:
    before = _rows(db, "SELECT count(*) FROM al_campaigns")
    with pytest.raises(InvalidInput, match=message):
        create_campaign(db.sessions, _request("refused", **overrides), db.home)
    assert _rows(db, "SELECT count(*) FROM al_campaigns") == before


def test_unknown_model_pool_and_campaign(db: CampaignDatabase) -> None:
    with pytest.raises(NotFound):
        create_campaign(db.sessions, _request("nomodel", model="nobody"), db.home)
    with pytest.raises(NotFound, match="No pool is named 'nopool'"):
        create_campaign(db.sessions, _request("nopool", generator="pool:nopool"), db.home)
    with pytest.raises(NotFound, match="al list"):
        run_campaign(db.sessions, "never-made", 1, db.artifacts_dir)


def _candidate(material_id: int) -> CandidateStructure:
    return CandidateStructure(
        material_id=material_id,
        material_key=f"m{material_id:02d}",
        formula="MoS2",
        dimensionality=2,
        parent_key=None,
        substitution={},
        score=1.0,
        species=np.array([42, 16, 16]),
        cell=np.eye(3),
        positions=np.zeros((3, 3)),
    )


def test_decide_filters_ranks_by_the_policy_and_draws_the_control_independently() -> None:
    members = [_candidate(m) for m in range(10)]
    relaxed = {m: 100 + m for m in range(9)}  # 9 never relaxed
    ehull = {m: 0.1 * m for m in range(8)}  # 8: relaxed, no hull (no reference)
    committee = {m: 0.1 * m + (0.5 if m == 6 else 0.01 * m) for m in range(8)}
    rows = decide(members, relaxed, ehull, {}, committee, 0.45, 2, 3, "lowest-ehull", (0, 1))
    by_id = {row["material_id"]: row for row in rows}
    assert by_id[9]["decision"] == "filtered" and "no ML relaxation" in by_id[9]["reason"]
    assert by_id[8]["decision"] == "filtered" and "no ML e_above_hull" in by_id[8]["reason"]
    # The budget takes the two lowest of the passing 0-4, whether drawn for control or not.
    assert [m for m, row in by_id.items() if row["decision"] == "selected"] == [0, 1]
    assert [by_id[m]["rank"] for m in range(5)] == [1, 2, 3, 4, 5]
    assert all(by_id[m]["rank"] is None and not by_id[m]["passed"] for m in range(5, 10))
    controls = [m for m, row in by_id.items() if row["in_control"]]
    assert len(controls) == 3 and all(m < 8 for m in controls)  # any screened candidate
    for m, row in by_id.items():
        if m in controls and m > 1:
            assert row["decision"] == "control" and "drawn at random" in row["reason"]
        elif m in controls:
            assert row["decision"] == "selected" and "also drawn for the control" in row["reason"]
        elif m in (2, 3, 4):
            assert row["decision"] == "not_selected" and "beyond the budget 2" in row["reason"]
        elif m in (5, 6, 7):
            assert row["decision"] == "filtered"
            assert "above the threshold 450 meV/atom" in row["reason"]
    chosen = {m for m, row in by_id.items() if row["decision"] in ("selected", "control")}
    assert {by_id[m]["label_status"] for m in chosen} == {"pending"}
    assert all(row["label_status"] is None for m, row in by_id.items() if m not in chosen)
    again = decide(members, relaxed, ehull, {}, committee, 0.45, 2, 3, "lowest-ehull", (0, 1))
    assert again == rows  # seeded
    other = decide(members, relaxed, ehull, {}, committee, 0.45, 2, 3, "lowest-ehull", (0, 2))
    assert [r["in_control"] for r in other] != [r["in_control"] for r in rows]  # per iteration
    # Uncertainty: the largest disagreement first (material 6 disagrees by 0.5 eV/atom).
    wide = decide(members, relaxed, ehull, {}, committee, 10.0, 1, 0, "uncertainty", (0, 1))
    assert [r["material_id"] for r in wide if r["decision"] == "selected"] == [6]
    assert next(r for r in wide if r["material_id"] == 6)["disagreement"] == pytest.approx(0.5)


def test_the_vasp_labeller_writes_inputs_and_waits_for_the_ingested_vasprun(
    db: CampaignDatabase, tmp_path: Path
) -> None:
    vasprun = VASP_DATA / "Fe2O2_relax_vasprun.xml.gz"
    with gzip.open(vasprun) as stream:
        first = ase.io.read(stream, index=0, format="vasp-xml")
    first.info["material_key"] = "feo-candidate"
    layer = candidate_layers()[0]  # a MoS2 layer: c must not relax
    candidates = tmp_path / "feo.extxyz"
    ase.io.write(candidates, [first, layer], format="extxyz")
    labels = tmp_path / "labels"
    create_campaign(
        db.sessions,
        _request(
            "vasp",
            generator=f"file:{candidates}",
            labeller="vasp",
            labels_dir=str(labels),
            budget=2,
            control=0,
        ),
        db.home,
    )
    waiting = run_campaign(db.sessions, "vasp", 1, db.artifacts_dir)
    assert waiting.waiting == 1 and waiting.pending_labels == 2 and waiting.finished == []
    status = campaign_status(db.sessions, "vasp")
    assert status.campaign.status == "waiting" and status.iterations[0].status == "waiting"
    assert sorted(status.pending.material_key) == sorted(
        ["feo-candidate", layer.info["material_key"]]
    )

    folder = labels / "iter1" / "feo-candidate"
    incar = Incar.from_file(folder / "INCAR")
    assert incar["ENCUT"] == 520 and incar["ISIF"] == 3 and incar["PREC"] == "Accurate"
    assert "LATTICE_CONSTRAINTS" not in incar  # bulk: every lattice vector relaxes
    assert Poscar.from_file(folder / "POSCAR").structure.composition.reduced_formula == "FeO"
    assert (folder / "POTCAR.spec").read_text().split() == ["Fe_pv", "O"]
    ticket = read_label_ticket(folder)
    assert ticket is not None and (ticket.campaign, ticket.iteration) == ("vasp", 1)
    layer_folder = labels / "iter1" / layer.info["material_key"]
    assert Incar.from_file(layer_folder / "INCAR")["LATTICE_CONSTRAINTS"] == [True, True, False]
    assert Kpoints.from_file(layer_folder / "KPOINTS").kpts[0][2] == 1
    # The POSCAR is the screening model's relaxed layer, not the generated one.
    relaxed = Poscar.from_file(layer_folder / "POSCAR").structure
    assert relaxed.composition.reduced_formula == "MoS2"

    # A folder is written once: an edited INCAR survives another run, which still waits.
    tuned = (folder / "INCAR").read_text() + "NCORE = 4\n"
    (folder / "INCAR").write_text(tuned)
    assert run_campaign(db.sessions, "vasp", 1, db.artifacts_dir).waiting == 1
    assert (folder / "INCAR").read_text() == tuned

    # Another compound's calculation in the folder is refused, naming the candidate.
    wrong = folder / "OUTCAR.gz"
    shutil.copy(VASP_DATA / "Li28P12S44_relax_OUTCAR.gz", wrong)
    sources = _rows(db, "SELECT count(*) FROM sources")
    with pytest.raises(InvalidInput, match="names candidate feo-candidate"):
        ingest_paths(db.sessions, [wrong], ReadOptions())
    assert _rows(db, "SELECT count(*) FROM sources") == sources

    # The real calculation attaches to its candidate; a folder's vasprun wins over its
    # OUTCAR (one calculation per label folder), and the ticket is never ingested.
    shutil.copy(vasprun, folder / "vasprun.xml.gz")
    found = expand_paths([labels])
    assert found == [folder / "vasprun.xml.gz"]
    summary = ingest_paths(db.sessions, found, ReadOptions())
    assert summary.count("relaxations") == 1
    still = run_campaign(db.sessions, "vasp", 1, db.artifacts_dir)
    assert still.waiting == 1 and still.pending_labels == 1

    # --accept-partial goes on with the labels there are; the missing one is failed.
    done = run_campaign(db.sessions, "vasp", 1, db.artifacts_dir, accept_partial=True)
    assert done.finished == [1] and done.waiting is None
    table = iteration_candidates(db.sessions, "vasp", 1).set_index("material_key")
    assert table.loc["feo-candidate", "label_status"] == "labelled"
    assert table.loc[layer.info["material_key"], "label_status"] == "failed"
    assert "--accept-partial" in table.loc[layer.info["material_key"], "label_error"]
    source = _rows(
        db,
        "SELECT s.path FROM relaxations r JOIN sources s ON s.id = r.source_id WHERE r.id = :r",
        r=int(table.loc["feo-candidate", "dft_relaxation_id"]),
    )
    assert source[0][0].endswith("feo-candidate/vasprun.xml.gz")

    # A second label for a candidate that has one is refused, and nothing is written.
    copy = tmp_path / "again" / "vasprun.xml"
    copy.parent.mkdir()
    with gzip.open(vasprun) as stream:
        copy.write_bytes(stream.read() + b"<!-- a copy -->\n")  # other bytes, same data
    shutil.copy(folder / "atlas2d-label.json", copy.parent)
    with pytest.raises(InvalidInput, match="is labelled already"):
        ingest_paths(db.sessions, [copy], ReadOptions())
    assert _rows(db, "SELECT count(*) FROM sources") == [(sources[0][0] + 1,)]


def test_committee_uncertainty_and_the_threshold_filter(
    db: CampaignDatabase, layers_file: Path
) -> None:
    """The committee relaxes every candidate; uncertainty takes the largest disagreement
    among those within the threshold (the median ML e_above_hull: half are filtered)."""
    train_model(
        db.sessions,
        TrainRequest("al-committee", BASE_SET, tiny_options("m3gnet", epochs=1, seed=11)),
        db.artifacts_dir,
    )
    import_pool(db.sessions, "committee-layers", layers_file)
    relax(
        db.sessions,
        RelaxRequest(
            START_MODEL, pool="committee-layers", engine="ase", settings=RelaxSettings(max_steps=30)
        ),
        db.artifacts_dir,
    )
    update_hull(db.sessions, START_MODEL)
    values = _rows(
        db,
        "SELECT s.e_above_hull FROM stability s JOIN pool_candidates c USING (material_id)"
        " JOIN candidate_pools p ON p.id = c.pool_id"
        " WHERE p.name = 'committee-layers' AND s.energy_source = :m",
        m=f"{START_MODEL}:1",
    )
    threshold = float(np.median([v for (v,) in values]))
    request = _request(
        "committee",
        generator="pool:committee-layers",
        committee="al-committee",
        selection="uncertainty",
        threshold_ev=threshold,
        budget=2,
        control=0,
    )
    create_campaign(db.sessions, request, db.home)
    run_campaign(db.sessions, "committee", 1, db.artifacts_dir)
    table = iteration_candidates(db.sessions, "committee", 1)
    assert len(table) == 12 and table.committee_relaxation_id.notna().all()
    assert (table.passed == (table.ml_e_above_hull <= threshold)).all()
    assert 0 < int(table.passed.sum()) < 12
    filtered = table[~table.passed]
    assert (filtered.decision == "filtered").all()
    assert all("above the threshold" in reason for reason in filtered.reason)
    expected = (table.ml_e_above_hull - table.committee_e_above_hull).abs()
    assert np.allclose(table.disagreement, expected)
    passing = table[table.passed].sort_values("disagreement", ascending=False)
    assert set(passing.head(2).material_key) == set(
        table[table.decision == "selected"].material_key
    )
    assert all("largest committee disagreement" in r for r in passing.reason)


def test_a_failing_stage_is_recorded_and_retried_by_the_next_run(db: CampaignDatabase) -> None:
    create_campaign(db.sessions, _request("nothing", chemsys=("Ag-Au",)), db.home)
    for _ in range(2):
        with pytest.raises(InvalidInput, match="No layer within"):
            run_campaign(db.sessions, "nothing", 1, db.artifacts_dir)
        status = campaign_status(db.sessions, "nothing")
        (row,) = status.iterations
        assert status.campaign.status == "failed"
        assert (row.stage, row.status) == ("generate", "failed") and "No layer within" in row.error
