"""``audit source``: naming a source, and everything downstream of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from atlas2d.errors import InvalidInput, NotFound
from atlas2d.io.readers import ReadOptions
from atlas2d.services.audit_source import audit_source, resolve_source
from atlas2d.services.ingest import ingest_file
from tests.support.provenance import Provenance, build_provenance, write_layers


@pytest.fixture
def graph(sessions: sessionmaker[Session], tmp_path: Path) -> Provenance:
    return build_provenance(sessions, tmp_path)


def test_everything_downstream_of_a_file(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    audit = audit_source(sessions, str(graph.b_path))
    assert audit.source.path == str(graph.b_path) and not audit.retracted
    assert audit.materials.count == 4 and audit.materials.items[0] == "b-000000"

    # Only "both" holds file b: 4 relaxations, 3 frames each (ecut 1e6: the fallback steps).
    sets = audit.training_sets
    assert sets.training_set.tolist() == ["both"]
    assert (sets.relaxations[0], sets.materials[0], sets.frames[0]) == (4, 4, 12)
    assert sets.train_frames[0] + sets.val_frames[0] + sets.test_frames[0] == 12

    # base:1 was trained on "both"; its child tuned:1 on "a-only", so through base:1.
    models = audit.models.set_index("model")
    assert sorted(models.index) == ["base:1", "tuned:1"]
    assert models.loc["base:1", "depth"] == 0 and models.loc["base:1", "held_in"] == "both"
    assert models.loc["tuned:1", "through_ancestor"] == "base:1"
    assert models.loc["tuned:1", "training_set"] == "a-only"

    per_model = dict(
        zip(audit.ml_relaxations.model, audit.ml_relaxations.relaxations, strict=False)
    )
    assert per_model == {"base:1": 1, "tuned:1": 1}  # not other:1's relaxation of a-000000
    assert audit.ml_relaxation_ids.items == sorted(
        [graph.ml_relaxations["base:1@b-000000"], graph.ml_relaxations["tuned:1@b-000000"]]
    )
    assert audit.ml_relaxed_materials.items == ["b-000000"]
    assert audit.stability.energy_source.tolist() == ["base:1", "tuned:1"]  # not DFT's
    assert audit.stability_materials.items == ["b-000000"]
    decisions = audit.campaign_decisions
    assert decisions[["campaign", "iteration", "screening_model", "decision"]].values.tolist() == [
        ["hunt", 1, "tuned:1", "selected"]
    ]
    assert audit.campaign_candidates.items == ["b-000001"]
    assert audit.retractions.empty


def test_a_file_of_both_sets_reaches_every_model(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    audit = audit_source(sessions, str(graph.a_path))
    assert audit.training_sets.training_set.tolist() == ["both", "a-only"]
    depths = dict(zip(audit.models.model, audit.models.depth, strict=False))
    assert depths == {"base:1": 0, "tuned:1": 0, "other:1": 0}  # each trained on it itself
    assert audit.ml_relaxation_ids.count == 3


def test_listings_keep_the_first_few_and_count_all(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    audit = audit_source(sessions, str(graph.b_path), listed=2)
    assert audit.materials.count == 4 and audit.materials.items == ["b-000000", "b-000001"]
    assert not audit.materials.complete
    assert audit_source(sessions, str(graph.b_path), listed=None).materials.complete


def test_a_source_named_by_sha256_or_its_prefix(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    sha256 = resolve_source(sessions, str(graph.b_path)).sha256
    assert resolve_source(sessions, sha256).path == str(graph.b_path)
    assert resolve_source(sessions, sha256[:8].upper()).path == str(graph.b_path)


def test_a_file_found_by_its_content_wherever_it_lies(  # type: ignore[no-untyped-def]
    sessions, graph: Provenance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = tmp_path / "elsewhere" / "copy.json"
    moved.parent.mkdir()
    shutil.copy(graph.b_path, moved)
    assert resolve_source(sessions, str(moved)).path == str(graph.b_path)
    # Ingested as a relative path: named later from another folder by the file itself.
    monkeypatch.chdir(tmp_path)
    ingest_file(sessions, write_layers(Path(), "c"), ReadOptions())
    monkeypatch.chdir(moved.parent)
    assert resolve_source(sessions, str(tmp_path / "c.json")).path == "c.json"
    # A file changed since is found by its absolute path when it was ingested under it.
    graph.b_path.write_text("{}")
    monkeypatch.chdir(graph.b_path.parent)
    assert resolve_source(sessions, graph.b_path.name).path == str(graph.b_path)


def _source(session: Session, path: str, sha256: str) -> None:
    session.execute(
        text(
            "INSERT INTO sources (format, path, sha256, parser, versions, options, n_materials,"
            " n_relaxations, n_frames, n_entries)"
            " VALUES ('records', :path, :sha, 'test', '{}', '{}', 0, 0, 0, 0)"
        ),
        {"path": path, "sha": sha256},
    )


def test_an_ambiguous_or_unknown_source_is_refused(sessions, graph: Provenance) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        _source(session, "twice.json", "abcdef12" + "0" * 56)
        _source(session, "twice.json", "abcdef12" + "1" * 56)
    with pytest.raises(InvalidInput, match=r"prefix abcdef12 matches 2 sources.*more characters"):
        resolve_source(sessions, "abcdef12")
    assert resolve_source(sessions, "abcdef121").sha256.endswith("1" * 55)
    with pytest.raises(InvalidInput, match=r"2 sources were ingested from twice\.json.*sha256"):
        resolve_source(sessions, "twice.json")
    with pytest.raises(InvalidInput, match=r"'abc' is too short.*at least 8 hex"):
        resolve_source(sessions, "abc")
    with pytest.raises(NotFound, match=r"No source matches 'nope\.json'.*SELECT id, path"):
        audit_source(sessions, "nope.json")
    with pytest.raises(NotFound, match="No source matches 'deadbeef'"):
        resolve_source(sessions, "deadbeef")
