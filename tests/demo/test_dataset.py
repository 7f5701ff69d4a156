"""The bundled demo dataset ingests as its manifest says: every layer with its labelled
trajectory (dimensionality 2), every bulk reference as a hull entry (dimensionality 3)."""

from __future__ import annotations

from sqlalchemy import text

from atlas2d.demo import HULL_FILE, TRAJECTORIES_FILE, dataset_paths, manifest
from atlas2d.io.readers import ReadOptions
from atlas2d.services.ingest import INGESTED, ingest_paths


def test_bundled_dataset_ingests_with_the_expected_counts(sessions) -> None:  # type: ignore[no-untyped-def]
    expected = manifest()
    paths = dataset_paths()
    assert [p.name for p in paths] == [TRAJECTORIES_FILE, HULL_FILE]
    summary = ingest_paths(sessions, paths, ReadOptions())
    assert [r.status for r in summary.results] == [INGESTED, INGESTED]
    assert [r.format for r in summary.results] == ["alexandria-traj", "alexandria-hull"]
    layers, references = expected["layers"], expected["bulk_references"]
    assert summary.count("relaxations") == layers["total"]
    assert summary.count("frames") == layers["frames"]
    assert summary.count("entries") == expected["hull_entries"]
    with sessions.begin() as session:
        per_dimensionality = dict(
            session.execute(
                text("SELECT dimensionality, count(*) FROM materials GROUP BY dimensionality")
            ).all()
        )
        assert per_dimensionality == {2: layers["total"], 3: references["total"]}
        per_family = dict(
            session.execute(
                text(
                    "SELECT prototype, count(*) FROM materials WHERE dimensionality = 2"
                    " GROUP BY prototype"
                )
            ).all()
        )
        assert per_family == layers["per_family"]
        marked = session.execute(
            text(
                "SELECT count(*) FROM relaxations WHERE method = 'dft'"
                " AND parameters->>'reference' = 'labeller' AND parameters->>'labeller' = 'CHGNet'"
                " AND parameters->>'cell_relax' = 'in-plane'"
            )
        ).scalar_one()
        assert marked == layers["total"]
        # Every element of a layer has a bulk reference (the hull's terminals).
        missing = session.execute(
            text(
                "SELECT DISTINCT e FROM materials, unnest(elements) AS e"
                " WHERE dimensionality = 2 EXCEPT"
                " SELECT elements[1] FROM materials WHERE dimensionality = 3"
            )
        ).all()
        assert missing == []
        steps = session.execute(
            text(
                "SELECT min(n_steps) - 1, max(n_steps) - 1 FROM relaxations"
                " WHERE parameters->>'reference' = 'labeller'"
            )
        ).one()
        assert tuple(steps) == (
            layers["optimizer_steps"]["min"],
            layers["optimizer_steps"]["max"],
        )
