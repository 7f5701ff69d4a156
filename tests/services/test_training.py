"""Training, fine-tuning, the registry and direct predictions, on the models trained
once per test run by ``trained_registry`` (a database of its own, whose runs commit)."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch
from ase import Atoms
from sqlalchemy import text

from atlas2d.db.types import vec3_from_bytes
from atlas2d.errors import ArtifactChanged, InvalidInput, NotFound, TrainingFailed
from atlas2d.mlff.artifacts import sha256_of_file
from atlas2d.queries.frame_predictions import predictions_with_labels
from atlas2d.queries.frames import frame_atoms, frames_by_id
from atlas2d.queries.model_versions import ModelVersionRef, version_by_id
from atlas2d.services import training
from atlas2d.services.models import (
    artifact_file,
    list_models,
    load_force_field,
    parse_ref,
    resolve,
    show_model,
)
from atlas2d.services.predictions import predict_split
from atlas2d.services.training import TrainRequest, train_model
from tests.conftest import tiny_options
from tests.support.synthetic import synthetic_trajectories


def _row(registry, ref: str) -> ModelVersionRef:  # type: ignore[no-untyped-def]
    with registry.sessions.begin() as session:
        return resolve(session, ref, require_ready=False)


def test_a_resolved_version_is_a_plain_ref_with_the_registry_fields(trained_registry) -> None:  # type: ignore[no-untyped-def]
    model = _row(trained_registry, "tiny-mace")
    assert isinstance(model, ModelVersionRef)
    assert (model.label, model.name, model.version) == ("tiny-mace:1", "tiny-mace", 1)
    assert (model.architecture, model.status, model.error) == ("mace", "ready", None)
    assert model.parent_id is None and model.training_set == "layers"
    details = show_model(trained_registry.sessions, "tiny-mace:1")
    assert (model.artifact_path, model.artifact_sha256) == (
        details.artifact_path,
        details.artifact_sha256,
    )
    assert model.hyperparameters == details.hyperparameters and model.metrics == details.metrics
    assert model.environment["threads"] == 1 and model.finished_at is not None
    with trained_registry.sessions.begin() as session:
        assert version_by_id(session, model.id) == model
        training_set_id = session.execute(
            text("SELECT id FROM training_sets WHERE name = 'layers'")
        ).scalar_one()
    assert model.training_set_id == training_set_id
    # Dask hands the ref to its workers by pickling it.
    assert pickle.loads(pickle.dumps(model)) == model
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.status = "failed"  # type: ignore[misc]


def test_stored_frames_and_predictions_come_back_decoded(trained_registry) -> None:  # type: ignore[no-untyped-def]
    """The queries decode the bytea and array columns: positions (n, 3) Å, cell (3, 3) Å,
    forces (n, 3) eV/Å and stress (3, 3) eV/Å³, all float64, as the frames were ingested."""
    sessions = trained_registry.sessions
    model = _row(trained_registry, "tiny-mace:1")
    with sessions.begin() as session:
        raw = session.execute(
            text(
                "SELECT f.id, f.positions, f.cell, f.step, m.key FROM frames f"
                " JOIN relaxations r ON r.id = f.relaxation_id"
                " JOIN materials m ON m.id = r.material_id ORDER BY f.id LIMIT 3"
            )
        ).all()
        frames = frames_by_id(session, [r.id for r in raw])
        labelled = predictions_with_labels(session, model.id, model.training_set_id, "test")
    ingested = {t.material_key: t for t in synthetic_trajectories(16, 6, 6, seed=21)}
    assert [f.frame_id for f in frames] == [r.id for r in raw]
    for frame, row in zip(frames, raw, strict=True):
        assert frame.positions.dtype == np.float64 and frame.positions.shape == (6, 3)
        assert frame.cell.dtype == np.float64 and frame.cell.shape == (3, 3)
        assert frame.n_sites == 6 and frame.pbc == (True, True, True)
        np.testing.assert_array_equal(
            frame.positions, np.frombuffer(row.positions, dtype="<f8").reshape(6, 3)
        )
        trajectory = ingested[row.key]
        np.testing.assert_allclose(frame.positions, trajectory.positions[row.step], atol=1e-12)
        np.testing.assert_allclose(frame.cell, trajectory.cells[row.step], atol=1e-12)
        np.testing.assert_array_equal(frame.species, trajectory.species)
        atoms = frame_atoms(frame)
        assert atoms.pbc.all() and atoms.get_atomic_numbers().tolist() == frame.species.tolist()
    assert len(labelled) == 12
    for prediction in labelled:
        assert prediction.forces.shape == prediction.predicted_forces.shape == (6, 3)
        assert prediction.forces.dtype == prediction.predicted_forces.dtype == np.float64
        assert prediction.stress is not None and prediction.stress.shape == (3, 3)
        assert prediction.predicted_stress is not None
        assert prediction.predicted_stress.shape == (3, 3)
        assert prediction.dimensionality == 2 and prediction.n_sites == 6


@pytest.mark.parametrize("name", ["tiny-m3gnet", "tiny-mace"])
def test_trained_versions_are_ready_with_provenance(trained_registry, name: str) -> None:  # type: ignore[no-untyped-def]
    details = show_model(trained_registry.sessions, name)
    assert (details.ref, details.status, details.error) == (f"{name}:1", "ready", None)
    assert details.architecture == name.removeprefix("tiny-")
    assert details.training_set == "layers" and len(details.training_set_hash) == 64
    path = artifact_file(_row(trained_registry, details.ref), trained_registry.artifacts_dir)
    assert sha256_of_file(path) == details.artifact_sha256
    assert not details.artifact_path.startswith("/")  # relative to $ATLAS2D_HOME/artifacts
    for split in ("val", "test"):
        metrics = details.metrics[split]
        assert metrics["n_frames"] == 12
        for key in ("energy_mae_mev_per_atom", "force_mae_mev_per_a", "stress_mae_gpa"):
            assert np.isfinite(metrics[key]) and metrics[key] > 0
    assert details.metrics["epochs_run"] == 2 and details.metrics["stopped_by"] is None
    assert [row["epoch"] for row in details.training_curve] == [0, 1]
    assert all(row["epoch_seconds"] > 0 for row in details.training_curve)
    hyper = details.hyperparameters
    assert (hyper["epochs"], hyper["batch_size"], hyper["seed"]) == (2, 4, 7)
    assert hyper["lr"] == {"tiny-m3gnet": 1e-3, "tiny-mace": 1e-2}[name]  # defaults recorded
    env = details.environment
    assert env["packages"]["torch"] == torch.__version__
    assert env["packages"]["matgl"] and env["packages"]["mace-torch"]
    assert (env["device"], env["threads"], env["seed"]) == ("cpu", 1, 7)
    assert env["python"] and env["host"]
    assert (path.parent / "training_curve.csv").is_file()
    assert (path.parent / "training_curve.png").stat().st_size > 1000


def test_our_validation_error_equals_maces_own(trained_registry) -> None:  # type: ignore[no-untyped-def]
    """Our metrics (from stored predictions) and MACE's validation log agree: same frames,
    same units (meV/atom, meV/Å) for the checkpoint MACE kept."""
    details = show_model(trained_registry.sessions, "tiny-mace:1")
    ours = details.metrics["val"]
    logged = [
        (row["val_energy_mae_mev_per_atom"], row["val_force_mae_mev_per_a"])
        for row in details.training_curve
    ]
    assert any(
        e == pytest.approx(ours["energy_mae_mev_per_atom"], rel=1e-6)
        and f == pytest.approx(ours["force_mae_mev_per_a"], rel=1e-6)
        for e, f in logged
    ), (ours, logged)


def test_references_and_listing(trained_registry) -> None:  # type: ignore[no-untyped-def]
    assert parse_ref("mos2:3") == ("mos2", 3)
    assert parse_ref("mos2") == ("mos2", None)
    for bad in ("mos2:0", "mos2:x", ":1", "a b"):
        with pytest.raises(InvalidInput):
            parse_ref(bad)
    with pytest.raises(NotFound, match="No model is named 'nope'"):
        load_force_field(trained_registry.sessions, "nope", trained_registry.artifacts_dir)
    with pytest.raises(NotFound, match="no such version"):
        load_force_field(trained_registry.sessions, "tiny-mace:9", trained_registry.artifacts_dir)
    listed = list_models(trained_registry.sessions)
    assert {"tiny-m3gnet:1", "tiny-mace:1"} <= set(listed["model"])


def test_a_changed_artifact_is_refused(trained_registry) -> None:  # type: ignore[no-untyped-def]
    for ref in ("tiny-m3gnet:1", "tiny-mace:1"):
        path = artifact_file(_row(trained_registry, ref), trained_registry.artifacts_dir)
        original = path.read_bytes()
        try:
            changed = bytearray(original)
            changed[len(changed) // 2] ^= 0x01
            path.write_bytes(bytes(changed))
            with pytest.raises(
                ArtifactChanged, match=rf"Refusing to load model {ref}: .*delete it"
            ):
                load_force_field(trained_registry.sessions, ref, trained_registry.artifacts_dir)
            assert path.read_bytes() == changed  # left for a person to look at
            # Deleted, it is fetched again from the database's verified copy.
            path.unlink()
            assert load_force_field(trained_registry.sessions, ref, trained_registry.artifacts_dir)
            assert path.read_bytes() == original
        finally:
            path.write_bytes(original)
        assert load_force_field(trained_registry.sessions, ref, trained_registry.artifacts_dir)


def _weights(force_field) -> dict:  # type: ignore[no-untyped-def]
    module = (
        force_field.potential.model if force_field.architecture == "m3gnet" else force_field.model
    )
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_fine_tuning_m3gnet_records_the_parent_and_freezes_layers(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = TrainRequest(
        "tiny-m3gnet-ft", "layers", tiny_options("m3gnet", epochs=1, freeze=1), parent="tiny-m3gnet"
    )
    details = train_model(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert details.status == "ready"
    assert details.parent_chain == [
        {"model": "tiny-m3gnet:1", "architecture": "m3gnet", "training_set": "layers"}
    ]
    parent = _weights(
        load_force_field(trained_registry.sessions, "tiny-m3gnet:1", trained_registry.artifacts_dir)
    )
    child = _weights(
        load_force_field(
            trained_registry.sessions, "tiny-m3gnet-ft", trained_registry.artifacts_dir
        )
    )
    frozen = [k for k in parent if k.startswith("embedding.")]
    trained = [k for k in parent if k.startswith("final_layer.")]
    assert frozen and trained
    assert all(torch.equal(parent[k], child[k]) for k in frozen)
    assert any(not torch.equal(parent[k], child[k]) for k in trained)
    assert details.hyperparameters["freeze"] == 1
    # The parent's size, not the defaults (5 Å, 64 units, 3 blocks).
    hyper = details.hyperparameters
    assert (hyper["cutoff"], hyper["units"], hyper["nblocks"]) == (4.0, 8, 1)


def test_fine_tuning_mace_starts_from_the_parent(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = TrainRequest(
        "tiny-mace-ft", "layers", tiny_options("mace", epochs=1), parent="tiny-mace:1"
    )
    details = train_model(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert details.parent_chain[0]["model"] == "tiny-mace:1"
    assert "--foundation_model" in details.hyperparameters["mace_arguments"]
    hyper = details.hyperparameters
    assert (hyper["r_max"], hyper["num_interactions"], hyper["hidden_irreps"]) == (4.0, 2, "8x0e")
    assert "channels" not in hyper  # the parent's size is recorded, not the unused option
    parent = load_force_field(
        trained_registry.sessions, "tiny-mace:1", trained_registry.artifacts_dir
    )
    child = load_force_field(
        trained_registry.sessions, "tiny-mace-ft:1", trained_registry.artifacts_dir
    )
    assert child.element_symbols == parent.element_symbols and child.cutoff == parent.cutoff
    # MACE's fine-tuning copied the parent's weights and (--E0s foundation) its
    # reference energies, which training does not change.
    np.testing.assert_array_equal(
        child.model.atomic_energies_fn.atomic_energies.numpy(),
        parent.model.atomic_energies_fn.atomic_energies.numpy(),
    )
    assert _weights(child).keys() == _weights(parent).keys()


def test_fine_tuning_needs_the_same_architecture(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = TrainRequest("wrong", "layers", tiny_options("mace"), parent="tiny-m3gnet:1")
    with pytest.raises(InvalidInput, match="is a m3gnet model"):
        train_model(trained_registry.sessions, request, trained_registry.artifacts_dir)
    with pytest.raises(NotFound, match="No training set"):
        train_model(
            trained_registry.sessions,
            TrainRequest("wrong", "nope", tiny_options("mace")),
            trained_registry.artifacts_dir,
        )
    with pytest.raises(NotFound, match="No model is named 'wrong'"):
        show_model(trained_registry.sessions, "wrong")  # nothing was registered


def test_an_interrupted_run_is_recorded_failed_and_never_loaded(
    trained_registry, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "_train", interrupted)
    request = TrainRequest("tiny-m3gnet", "layers", tiny_options("m3gnet"))
    with pytest.raises(KeyboardInterrupt):
        train_model(trained_registry.sessions, request, trained_registry.artifacts_dir)
    failed = show_model(trained_registry.sessions, "tiny-m3gnet:2")
    assert (failed.status, failed.error, failed.artifact_sha256) == (
        "failed",
        "KeyboardInterrupt",
        None,
    )
    with pytest.raises(NotFound, match="tiny-m3gnet:2 is failed: KeyboardInterrupt"):
        load_force_field(trained_registry.sessions, "tiny-m3gnet:2", trained_registry.artifacts_dir)
    # The name alone still means the latest *ready* version.
    assert show_model(trained_registry.sessions, "tiny-m3gnet").ref == "tiny-m3gnet:1"


def test_a_mace_run_past_max_time_fails_with_the_reason(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = TrainRequest("tiny-mace-slow", "layers", tiny_options("mace", max_time_s=0.5))
    with pytest.raises(TrainingFailed, match=r"ran past --max-time 0\.5 s"):
        train_model(trained_registry.sessions, request, trained_registry.artifacts_dir)
    failed = show_model(trained_registry.sessions, "tiny-mace-slow:1")
    assert failed.status == "failed" and "max-time" in failed.error


def test_m3gnet_max_time_stops_training_gracefully(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = TrainRequest(
        "tiny-m3gnet-timed", "layers", tiny_options("m3gnet", epochs=1000, max_time_s=2.0)
    )
    details = train_model(trained_registry.sessions, request, trained_registry.artifacts_dir)
    assert details.status == "ready"
    assert details.metrics["stopped_by"] == "max_time"
    assert 1 <= details.metrics["epochs_run"] < 1000


def test_predict_stores_predictions_once_and_reports_errors(trained_registry) -> None:  # type: ignore[no-untyped-def]
    sessions, artifacts = trained_registry.sessions, trained_registry.artifacts_dir
    # Training already stored the test-split predictions: nothing new, same errors.
    report = predict_split(sessions, "tiny-mace:1", "layers", "test", artifacts)
    assert report.new_predictions == 0
    assert report.errors == show_model(sessions, "tiny-mace:1").metrics["test"]
    first = predict_split(sessions, "tiny-mace:1", "layers", "train", artifacts, batch_size=5)
    again = predict_split(sessions, "tiny-mace:1", "layers", "train", artifacts)
    assert first.new_predictions == first.errors["n_frames"] == 24
    assert again.new_predictions == 0 and again.errors == first.errors
    with sessions.begin() as session:
        stored = session.execute(
            text(
                "SELECT count(*) FROM frame_predictions p JOIN model_versions m ON m.id = p.model_version_id"
                " WHERE m.name = 'tiny-mace' AND m.version = 1"
            )
        ).scalar_one()
    assert stored == 24 + 12 + 12
    # What is stored is what the model predicts for the stored frame.
    with sessions.begin() as session:
        row = session.execute(
            text(
                "SELECT p.energy, p.forces, p.stress, f.cell, f.positions, r.species"
                " FROM frame_predictions p JOIN model_versions m ON m.id = p.model_version_id"
                " JOIN frames f ON f.id = p.frame_id JOIN relaxations r ON r.id = f.relaxation_id"
                " WHERE m.name = 'tiny-mace' AND m.version = 1 ORDER BY p.frame_id LIMIT 1"
            )
        ).one()
    atoms = Atoms(
        numbers=row.species, positions=vec3_from_bytes(row.positions), cell=row.cell, pbc=True
    )
    fresh = load_force_field(sessions, "tiny-mace:1", artifacts).predict([atoms])
    assert row.energy == pytest.approx(fresh.energies[0], abs=1e-10)
    np.testing.assert_allclose(vec3_from_bytes(row.forces), fresh.forces[0], atol=1e-10)
    np.testing.assert_allclose(np.asarray(row.stress), fresh.stresses[0], atol=1e-12)
    with pytest.raises(InvalidInput, match="Split 'dev'"):
        predict_split(sessions, "tiny-mace:1", "layers", "dev", artifacts)


def test_atlas2d_load_gives_an_ase_calculator_in_ev_per_a3(trained_registry) -> None:  # type: ignore[no-untyped-def]
    from ase.build import mx2

    import atlas2d

    atoms = mx2("MoS2", a=3.2, vacuum=6.0)
    atoms.rattle(0.05, seed=1)
    for ref in ("tiny-m3gnet:1", "tiny-mace"):
        calculator = atlas2d.load(
            ref, sessions=trained_registry.sessions, artifacts_dir=trained_registry.artifacts_dir
        )
        atoms.calc = calculator
        stress = atoms.get_stress(voigt=False)
        batch = load_force_field(trained_registry.sessions, ref, trained_registry.artifacts_dir)
        expected = batch.predict([atoms]).stresses[0]
        # matgl's own calculator defaults to GPa: ours must not (160× larger otherwise).
        np.testing.assert_allclose(stress, expected, rtol=1e-4, atol=1e-9)
        assert atoms.get_potential_energy() == pytest.approx(
            batch.predict([atoms]).energies[0], rel=1e-5
        )


def test_a_bad_fine_tuning_request_registers_nothing(trained_registry) -> None:  # type: ignore[no-untyped-def]
    request = TrainRequest(
        "too-frozen", "layers", tiny_options("m3gnet", freeze=9), parent="tiny-m3gnet:1"
    )
    with pytest.raises(InvalidInput, match="freeze at most"):
        train_model(trained_registry.sessions, request, trained_registry.artifacts_dir)
    with pytest.raises(NotFound, match="No model is named 'too-frozen'"):
        show_model(trained_registry.sessions, "too-frozen")


def test_a_run_whose_process_is_gone_is_flagged(trained_registry) -> None:  # type: ignore[no-untyped-def]
    import socket
    import subprocess
    import sys

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(ended.stdout)
    with trained_registry.sessions.begin() as session:
        training_set_id = session.execute(
            text("SELECT id FROM training_sets WHERE name = 'layers'")
        ).scalar_one()
        session.execute(
            text(
                "INSERT INTO model_versions (name, version, architecture, training_set_id, hyperparameters,"
                " metrics, training_curve, environment, status)"
                " VALUES ('killed', 1, 'mace', :ts, '{}', '{}', '[]', CAST(:env AS jsonb), 'training')"
            ),
            {
                "ts": training_set_id,
                "env": json.dumps({"host": socket.gethostname(), "pid": dead_pid}),
            },
        )
    listed = list_models(trained_registry.sessions, "killed")
    assert listed["status"].tolist() == ["training (process gone: killed?)"]
    details = show_model(trained_registry.sessions, "tiny-mace:1")
    assert details.environment["pid"] > 0
