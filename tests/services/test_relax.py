"""``relax``: ML relaxations written back next to the DFT data, idempotent, resumable,
and the same with Dask workers. Runs on the trained registry's database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from atlas2d.mlff.relax import RelaxSettings
from atlas2d.queries.materials import MaterialFilter
from atlas2d.services import relax as relax_service
from atlas2d.services.relax import RelaxRequest, relax, request_key

SETTINGS = RelaxSettings(fmax=2e-3, max_steps=60)


def _count(registry, sql: str, **params) -> int:  # type: ignore[no-untyped-def]
    with registry.sessions.begin() as session:
        return session.execute(text(sql), params).scalar_one()


def _ml_rows(registry) -> int:  # type: ignore[no-untyped-def]
    return _count(
        registry,
        "SELECT count(*) FROM relaxations r JOIN model_versions m ON m.id = r.model_version_id"
        " WHERE r.method = 'ml' AND r.parameters ->> 'max_steps' = :steps",
        steps=str(SETTINGS.max_steps),
    )


def test_relax_writes_back_once_and_resumes(trained_registry, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    request = RelaxRequest(
        "tiny-mace:1",
        training_set="layers",
        split="test",
        settings=SETTINGS,
        chunk_size=2,
        engine="batched",
    )
    # Interrupted after the first chunk of two materials: those two are stored.
    calls = {"n": 0}
    real = relax_service.relax_chunk

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(relax_service, "relax_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert _ml_rows(trained_registry) == 2
    monkeypatch.setattr(relax_service, "relax_chunk", real)

    report = relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert (report.requested, report.already_done, report.relaxed) == (4, 2, 2)
    assert _ml_rows(trained_registry) == 4
    again = relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert (again.already_done, again.relaxed) == (4, 0)

    with trained_registry.sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT r.*, m.key, (SELECT count(*) FROM frames f WHERE f.relaxation_id = r.id) AS n_frames"
                " FROM relaxations r JOIN materials m ON m.id = r.material_id"
                " WHERE r.method = 'ml' AND r.parameters ->> 'max_steps' = '60' ORDER BY m.key"
            )
        ).all()
        errors = session.execute(
            text(
                "SELECT * FROM relaxation_errors WHERE model_name = 'tiny-mace' AND model_version = 1"
            )
        ).all()
    for row in rows:
        assert row.model_version_id is not None and row.source_id is None
        assert row.parameters["fmax_ev_per_a"] == 2e-3 and row.parameters["start"] == "first"
        assert row.info["model"] == "tiny-mace:1" and row.info["stored_frames"] == "final"
        assert row.n_frames == row.n_steps == 1  # n_steps counts stored frames, as for DFT
        assert 0 <= row.info["optimizer_steps"] <= 60
        assert row.final_area_per_atom > 0 and row.wall_time_s > 0
        parameters = relax_service.relaxation_parameters(request)
        start = f"frame:{row.info['start_frame_id']}"
        assert row.content_hash == request_key(
            row.model_version_id, row.material_id, parameters, start
        )
    assert {e.material_key for e in errors} >= {r.key for r in rows}
    for e in errors:
        assert e.energy_error_per_atom == pytest.approx(
            e.ml_energy_per_atom - e.dft_energy_per_atom
        )
        assert e.area_error_per_atom == pytest.approx(e.ml_area_per_atom - e.dft_area_per_atom)

    forced = relax(
        trained_registry.sessions,
        RelaxRequest(**{**request.__dict__, "force": True}),
        trained_registry.artifacts_dir,
    )
    assert (forced.already_done, forced.relaxed) == (0, 4)
    assert _ml_rows(trained_registry) == 4  # replaced, not duplicated


def test_trajectories_and_filters(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = RelaxRequest(
        "tiny-m3gnet:1",
        materials=MaterialFilter(chemsys=("S-W",), dimensionality=2),
        settings=RelaxSettings(fmax=5e-4, max_steps=25, save_trajectory=True),
        start="final",
    )
    report = relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert report.relaxed == report.requested > 0
    with trained_registry.sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT r.n_steps, r.info, m.chemsys,"
                " (SELECT count(*) FROM frames f WHERE f.relaxation_id = r.id) AS n"
                " FROM relaxations r JOIN materials m ON m.id = r.material_id"
                " WHERE r.method = 'ml' AND r.parameters ->> 'max_steps' = '25'"
            )
        ).all()
    assert len(rows) == report.relaxed
    assert all(
        row.chemsys == "S-W" and row.n == row.n_steps == row.info["optimizer_steps"] + 1
        for row in rows
    )


def test_bad_requests(trained_registry) -> None:  # type: ignore[no-untyped-def]
    from atlas2d.errors import InvalidInput, NotFound

    with pytest.raises(InvalidInput, match="engine 'fast' is not ase or batched"):
        relax(
            trained_registry.sessions,
            RelaxRequest("tiny-mace", training_set="layers", engine="fast"),  # type: ignore[arg-type]
            trained_registry.artifacts_dir,
        )
    with pytest.raises(NotFound, match="No training set"):
        relax(
            trained_registry.sessions,
            RelaxRequest("tiny-mace", training_set="nope"),
            trained_registry.artifacts_dir,
        )
    with pytest.raises(InvalidInput, match="No material with a DFT relaxation"):
        relax(
            trained_registry.sessions,
            RelaxRequest("tiny-mace", materials=MaterialFilter(chemsys=("Au-Cu",))),
            trained_registry.artifacts_dir,
        )


@pytest.mark.slow
def test_two_dask_workers(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = RelaxRequest(
        "tiny-mace:1",
        training_set="layers",
        split="val",
        chunk_size=1,
        engine="batched",
        settings=RelaxSettings(fmax=2e-3, max_steps=30),
    )
    report = relax(trained_registry.sessions, request, trained_registry.artifacts_dir, workers=2)
    assert (report.requested, report.relaxed) == (4, 4)
    stored = _count(
        trained_registry,
        "SELECT count(*) FROM relaxations WHERE method = 'ml' AND parameters ->> 'max_steps' = '30'",
    )
    assert stored == 4
    again = relax(trained_registry.sessions, request, trained_registry.artifacts_dir, workers=2)
    assert (again.already_done, again.relaxed) == (4, 0)


def test_structures_from_a_file_become_materials(trained_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ase.build import mx2
    from ase.io import write

    layers = []
    for index, a in enumerate((3.1, 3.3)):
        atoms = mx2("WS2", a=a, vacuum=7.0)
        atoms.rattle(0.05, seed=index)
        atoms.info["material_key"] = f"candidate-{index}"
        layers.append(atoms)
    path = tmp_path / "candidates.extxyz"
    write(path, layers, format="extxyz")
    request = RelaxRequest(
        "tiny-mace:1",
        files=(path,),
        settings=RelaxSettings(fmax=2e-3, max_steps=31),
        engine="batched",
    )
    report = relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert (report.requested, report.relaxed) == (2, 2)
    with trained_registry.sessions.begin() as session:
        rows = session.execute(
            text(
                "SELECT m.key, m.formula, m.dimensionality, r.parameters,"
                " (SELECT count(*) FROM relaxations d WHERE d.material_id = m.id AND d.method = 'dft') AS n_dft"
                " FROM relaxations r JOIN materials m ON m.id = r.material_id"
                " WHERE m.key LIKE 'candidate-%' ORDER BY m.key"
            )
        ).all()
    assert [(r.key, r.formula, r.dimensionality, r.n_dft) for r in rows] == [
        ("candidate-0", "WS2", 2, 0),
        ("candidate-1", "WS2", 2, 0),
    ]
    assert all(len(r.parameters["start_file_sha256"]) == 64 for r in rows)
    again = relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert (again.already_done, again.relaxed) == (2, 0)


def test_file_candidates_need_distinct_keys_and_known_elements(trained_registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ase import Atoms
    from ase.build import mx2
    from ase.io import write

    from atlas2d.errors import InvalidInput

    twins = [mx2("WS2", a=3.2, vacuum=7.0), mx2("WS2", a=3.3, vacuum=7.0)]
    for atoms in twins:
        atoms.info["material_key"] = "twin"
    write(tmp_path / "twins.extxyz", twins, format="extxyz")
    settings = RelaxSettings(fmax=2e-3, max_steps=5)
    request = RelaxRequest("tiny-mace:1", files=(tmp_path / "twins.extxyz",), settings=settings)
    with pytest.raises(InvalidInput, match="have the material key twin"):
        relax(trained_registry.sessions, request, trained_registry.artifacts_dir)

    gold = Atoms("Au2", positions=[[0, 0, 0], [1.4, 1.4, 1.4]], cell=[2.8, 2.8, 2.8], pbc=True)
    gold.info["material_key"] = "gold"
    layer = mx2("WS2", a=3.2, vacuum=7.0)
    layer.info["material_key"] = "ws2-candidate"
    write(tmp_path / "mixed.extxyz", [gold, layer], format="extxyz")
    request = RelaxRequest("tiny-mace:1", files=(tmp_path / "mixed.extxyz",), settings=settings)
    report = relax(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert report.relaxed == 1
    assert report.skipped == ["gold (Au unknown to the model)"]


def test_relax_pool_starts_from_the_generated_structures(trained_registry) -> None:  # type: ignore[no-untyped-def]
    from atlas2d.services.generate import GenerateRequest, generate

    sessions = trained_registry.sessions
    with sessions.begin() as session:
        key, elements = session.execute(
            text(
                "SELECT key, elements FROM materials WHERE n_elements = 2 AND key LIKE 'syn%'"
                " ORDER BY key LIMIT 1"
            )
        ).one()
    generated = generate(
        sessions,
        GenerateRequest(
            pool="relax-pool",
            generator="decorate",
            materials=(key,),
            elements=tuple(elements),
            allow_unbalanced=True,
            min_distance_factor=0.01,
        ),
    )
    stored = generated.counts["stored"]
    assert stored >= 1  # the two elements on the layer's orbits, the pattern kept
    request = RelaxRequest(
        "tiny-mace:1",
        pool="relax-pool",
        settings=RelaxSettings(fmax=2e-3, max_steps=5),
        engine="batched",
    )
    report = relax(sessions, request, trained_registry.artifacts_dir)
    assert (report.requested, report.relaxed) == (stored, stored)
    again = relax(sessions, request, trained_registry.artifacts_dir)
    assert (again.already_done, again.relaxed) == (stored, 0)
    # --start chooses a DFT frame, which a candidate has not: it names no other result.
    from dataclasses import replace

    final = relax(sessions, replace(request, start="final"), trained_registry.artifacts_dir)
    assert (final.already_done, final.relaxed) == (stored, 0)
