"""A killed ``atlas2d al run`` resumes to the same campaign as an uninterrupted run.

Every run goes through the installed console script in a subprocess (as a user would),
each in its own copy of one template database (``CREATE DATABASE … TEMPLATE``): the
bundled data, the training set ``al-base`` and a tiny M3GNet ``al-start:1``. Campaigns
sharing a database would see each other's labels in the hull, so the reference run and
every interrupted run get a copy of their own.

A run is killed with SIGKILL (no cleanup code runs) when the database shows the moment
wanted: between stages, in the middle of the ML relaxations or of the labels (a chunk
committed, the rest not), and while retraining. The rerun must then complete the
campaign with the same rows as the reference: iterations, candidates and their
decisions, relaxations, sources, frames, training sets and model versions, and no
duplicates. A completed campaign reruns as "nothing to do", and a second run while one
runs is refused in one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from atlas2d.db.session import make_engine
from tests.conftest import _drop_database, _migrated_database
from tests.support.campaigns import candidate_layers, make_campaign_database
from tests.support.entry_point import atlas2d_script, user_environment

CAMPAIGN = "c1"
ITERATIONS = 2
N_CANDIDATES = 12
BUDGET = 3
CONTROL = 2
RUN = ("al", "run", CAMPAIGN, "--iterations", str(ITERATIONS))
BUSY = f"Another `atlas2d al run {CAMPAIGN}` is running"
POLL_S = 0.05
RUN_TIMEOUT_S = 300.0
LOCK_WAIT_S = 10.0
"""How long a killed run's advisory lock may outlive it (the server ends the dead
session when it notices the closed connection)."""


def _create_args(candidates: Path) -> tuple[str, ...]:
    """``al create``: the same file and settings in every copy, so the stored parameters
    are equal; a threshold far above the tiny model's errors, so every candidate passes.

    ``--relax-fmax 1e-6`` makes every ML relaxation take its 40 steps (about 0.3 s):
    at the default fmax the tiny model's forces on these symmetric layers are below it
    at the start, all 12 relaxations are stored within 0.1 s, and a kill cannot be
    placed between two chunks."""
    return (
        "al",
        "create",
        CAMPAIGN,
        "--model",
        "al-start",
        "--generator",
        f"file:{candidates}",
        "--budget",
        str(BUDGET),
        "--control",
        str(CONTROL),
        "--threshold",
        "1000",
        "--label-steps",
        "60",
        "--relax-steps",
        "40",
        "--relax-fmax",
        "1e-6",
        "--engine",
        "ase",
        "--chunk-size",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--train-seed",
        "7",
    )


@dataclass
class Run:
    """An ``atlas2d`` process started in the background, and its log."""

    process: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """The end of what it printed (stdout and stderr)."""
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL its process group (the console script and anything it spawned)."""
        with contextlib.suppress(ProcessLookupError):  # the group has already exited
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)


@dataclass
class Clone:
    """A copy of the template database, and how to run ``atlas2d`` against it."""

    url: str
    engine: Engine
    """For the test's own reads: short transactions, never held across a run."""
    home: Path
    logs: Path

    def environment(self) -> dict[str, str]:
        return user_environment(
            ATLAS2D_DATABASE_URL=self.url,
            ATLAS2D_HOME=str(self.home),
            ATLAS2D_NUM_THREADS="1",
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [atlas2d_script(), *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )

    def start(self, *args: str) -> Run:
        """Start ``atlas2d`` in a process group of its own (killed as a whole), its output
        in a log file (a pipe nobody reads could block it)."""
        log = self.logs / f"run-{uuid.uuid4().hex[:8]}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [atlas2d_script(), *args],
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Run(process, log)

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]


@dataclass
class Template:
    """The template database and everything the copies share."""

    admin: Engine
    name: str
    root: Path
    candidates: Path
    clones: list[str] = field(default_factory=list)

    def clone(self, label: str) -> Clone:
        name = f"resume_{label}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"'))
        url = self.admin.url.set(database=name).render_as_string(hide_password=False)
        self.clones.append(url)
        logs = self.root / "logs" / label
        logs.mkdir(parents=True, exist_ok=True)
        return Clone(url, make_engine(url), self.root, logs)


@pytest.fixture(scope="module")
def template(
    database_server: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Template]:
    """One database with the starting model, copied for every run; the candidates file."""
    import ase.io

    root = tmp_path_factory.mktemp("resume")
    url = _migrated_database(database_server, "resume_template")
    database = make_campaign_database(url, root)
    database.engine.dispose()  # a template cannot be copied while anyone is connected
    candidates = root / "candidates.extxyz"
    ase.io.write(candidates, candidate_layers(), format="extxyz")
    name = make_engine(url).url.database
    assert name is not None
    made = Template(database_server, name, root, candidates)
    try:
        yield made
    finally:
        for clone_url in [*made.clones, url]:
            _drop_database(database_server, clone_url)


def _created(template: Template, label: str) -> Clone:
    """A copy of the template with campaign ``c1`` created through the console script."""
    clone = template.clone(label)
    created = clone.cli(*_create_args(template.candidates))
    assert created.returncode == 0, created.stdout + created.stderr
    return clone


# --- what defines the campaign ----------------------------------------------------------


def _rounded(value: Any, digits: int) -> Any:
    """``value`` with every float rounded (JSON figures stored by the measure stage)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_rounded(v, digits) for v in value)
    return value


EHULL_DIGITS = 4
"""e_above_hull compared to 1e-4 eV/atom (and the measure figures, meV/atom, to 0.1)."""

SNAPSHOT_SQL: dict[str, str] = {
    "campaign": "SELECT name, status FROM al_campaigns ORDER BY name",
    "iterations": (
        "SELECT i.index, i.stage, i.status, i.error, i.counts, i.metrics,"
        " s.name || ':' || s.version AS screening, p.name || ':' || p.version AS produced,"
        " t.name AS training_set, pool.name AS pool"
        " FROM al_iterations i"
        " JOIN model_versions s ON s.id = i.screening_model_id"
        " LEFT JOIN model_versions p ON p.id = i.produced_model_id"
        " LEFT JOIN training_sets t ON t.id = i.training_set_id"
        " LEFT JOIN candidate_pools pool ON pool.id = i.pool_id"
        " ORDER BY i.index"
    ),
    "candidates": (
        "SELECT i.index, m.key, k.decision, k.reason, k.passed, k.rank, k.label_status,"
        " k.label_error, k.ml_e_above_hull, k.dft_e_above_hull,"
        " ml_model.name || ':' || ml_model.version AS ml_relaxed_by, dft.method AS label_method,"
        " k.in_control"
        " FROM al_candidates k"
        " JOIN al_iterations i ON i.id = k.iteration_id"
        " JOIN materials m ON m.id = k.material_id"
        " LEFT JOIN relaxations ml ON ml.id = k.ml_relaxation_id"
        " LEFT JOIN model_versions ml_model ON ml_model.id = ml.model_version_id"
        " LEFT JOIN relaxations dft ON dft.id = k.dft_relaxation_id"
        " ORDER BY i.index, m.key"
    ),
    "relaxations": (
        "SELECT r.method, mv.name || ':' || mv.version AS model, count(*) AS relaxations,"
        " count(DISTINCT r.material_id) AS materials"
        " FROM relaxations r LEFT JOIN model_versions mv ON mv.id = r.model_version_id"
        " GROUP BY 1, 2 ORDER BY 1, 2"
    ),
    "model_versions": (
        "SELECT v.name || ':' || v.version, v.status, p.name || ':' || p.version AS parent,"
        " t.name AS training_set"
        " FROM model_versions v LEFT JOIN model_versions p ON p.id = v.parent_id"
        " JOIN training_sets t ON t.id = v.training_set_id ORDER BY v.name, v.version"
    ),
    "training_sets": (
        "SELECT name, n_frames, n_materials, split_counts FROM training_sets ORDER BY name"
    ),
    "stability": (
        "SELECT energy_source, count(*) FROM stability GROUP BY energy_source ORDER BY 1"
    ),
    "counts": (
        "SELECT (SELECT count(*) FROM sources) AS sources,"
        " (SELECT count(*) FROM frames) AS frames,"
        " (SELECT count(*) FROM materials) AS materials,"
        " (SELECT count(*) FROM candidate_pools) AS pools,"
        " (SELECT count(*) FROM pool_candidates) AS pool_members,"
        " (SELECT count(*) FROM training_sets) AS training_sets,"
        " (SELECT count(*) FROM model_versions WHERE status = 'ready') AS ready_models,"
        " (SELECT count(*) FROM frame_predictions) AS frame_predictions"
    ),
}


Rows = dict[str, list[tuple[Any, ...]]]
"""A campaign's rows: one list per ``SNAPSHOT_SQL`` query."""


def snapshot(clone: Clone) -> Rows:
    """The rows that define the campaign, without ids or times, energies rounded."""
    return {
        what: [_rounded(row, EHULL_DIGITS) for row in clone.rows(sql)]
        for what, sql in SNAPSHOT_SQL.items()
    }


def renumbered(rows: Rows) -> Rows:
    """``rows`` without the model versions that are not ready, the ready versions of each
    name numbered 1, 2, … as an uninterrupted run would have numbered them."""
    ready = sorted(
        (name, int(version))
        for label, status, *_ in rows["model_versions"]
        if status == "ready"
        for name, version in [label.rsplit(":", 1)]
    )
    labels: dict[str, str] = {}
    taken: dict[str, int] = {}
    for name, version in ready:
        taken[name] = taken.get(name, 0) + 1
        labels[f"{name}:{version}"] = f"{name}:{taken[name]}"

    def rename(row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(labels.get(v, v) if isinstance(v, str) else v for v in row)

    return {
        what: [rename(row) for row in found if what != "model_versions" or row[1] == "ready"]
        for what, found in rows.items()
    }


def assert_same_campaign(resumed: Rows, reference: Rows) -> None:
    differences = [
        f"{what}:\n  resumed   {resumed[what]}\n  reference {reference[what]}"
        for what in reference
        if resumed[what] != reference[what]
    ]
    assert not differences, "the resumed campaign differs from the uninterrupted one:\n" + (
        "\n".join(differences)
    )


def table_digests(clone: Clone) -> dict[str, str]:
    """md5 of every table's rows (al_campaigns without ``updated_at``, which a run bumps
    when it sets the status, even to the same value). The activity log is left out: each
    run adds its own activity (with no rows written when there is nothing to do)."""
    tables = clone.rows(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    digests = {}
    for (table,) in tables:
        if table in ("activities", "activity_rows"):
            continue
        rows = (
            "SELECT id, name, model_version_id, parameters, status, created_at FROM al_campaigns"
            if table == "al_campaigns"
            else f'SELECT * FROM "{table}"'
        )
        digests[table] = clone.scalar(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM ({rows}) t"
        )
    return digests


# --- running and killing ----------------------------------------------------------------


ITERATION_STAGE = (
    "SELECT i.stage FROM al_iterations i JOIN al_campaigns c ON c.id = i.campaign_id"
    " WHERE c.name = :campaign AND i.index = :index"
)
ML_RELAXATIONS = (
    "SELECT count(*) FROM relaxations WHERE method = 'ml'"
    " AND model_version_id = (SELECT id FROM model_versions WHERE name = 'al-start')"
)
CANDIDATE_LABELS = (
    "SELECT count(*) FROM relaxations r JOIN materials m ON m.id = r.material_id"
    " WHERE r.method = 'dft' AND m.key LIKE 'cand-%'"
)
RETRAINING = "SELECT status FROM model_versions WHERE name = :name ORDER BY version DESC LIMIT 1"
CAMPAIGN_LOCKS = (
    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
    " WHERE l.locktype = 'advisory' AND d.datname = current_database()"
)


def kill_when(
    run: Run,
    what: str,
    probe: Callable[[], Any],
    ready: Callable[[Any], bool],
) -> Any:
    """Poll ``probe()`` every 50 ms; SIGKILL the run as soon as ``ready`` holds and return
    the value seen. Fails, naming ``what``, when the run ends (or runs too long) first."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while True:
            seen = probe()
            if ready(seen):
                run.kill()
                print(f"killed when {what}: {seen!r}")  # shown with -rP
                return seen
            code = run.process.poll()
            if code is not None:
                pytest.fail(
                    f"`atlas2d al run` exited with {code} before {what} (last seen: {seen!r}); "
                    f"the kill could not be placed. Its output:\n{run.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{what} not seen within {RUN_TIMEOUT_S:.0f} s (last: {seen!r})")
            time.sleep(POLL_S)
    finally:
        if run.running():
            run.kill()


def wait_for_lock_release(clone: Clone) -> float:
    """Seconds until no session holds an advisory lock on the copy. Fails when a killed
    run's lock outlives it by ``LOCK_WAIT_S``."""
    started = time.monotonic()
    while clone.scalar(CAMPAIGN_LOCKS):
        if time.monotonic() - started > LOCK_WAIT_S:
            pytest.fail(
                f"the killed run's advisory lock was still held {LOCK_WAIT_S:.0f} s after "
                "SIGKILL: a rerun would be refused as concurrent"
            )
        time.sleep(POLL_S)
    return time.monotonic() - started


def rerun_to_completion(clone: Clone) -> subprocess.CompletedProcess[str]:
    """``al run`` again until it completes (exit 0); retried for a few seconds while it
    is refused because the killed run's lock is not yet released."""
    wait_for_lock_release(clone)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        result = clone.cli(*RUN)
        if result.returncode == 1 and BUSY in result.stderr and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        assert result.returncode == 0, (
            f"the rerun after a kill failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result


def stage_of(clone: Clone, index: int) -> str | None:
    return clone.scalar(ITERATION_STAGE, campaign=CAMPAIGN, index=index)


def at_or_after(stage: str) -> Callable[[str | None], bool]:
    order = ("generate", "relax", "select", "label", "measure", "retrain", "done")
    return lambda seen: seen is not None and order.index(seen) >= order.index(stage)


# --- the tests --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(template: Template) -> Iterator[tuple[Clone, Rows]]:
    """The uninterrupted run, in a copy of its own, and its rows."""
    clone = _created(template, "reference")
    result = clone.cli(*RUN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"finished iterations 1, 2; {ITERATIONS} completed" in result.stdout, result.stdout
    yield clone, snapshot(clone)
    clone.engine.dispose()


def test_uninterrupted_run_completes_the_campaign(
    reference: tuple[Clone, Rows],
) -> None:
    """What the resumed runs are compared with is itself a complete campaign."""
    _, rows = reference
    assert rows["campaign"] == [(CAMPAIGN, "done")]
    iterations = {row[0]: row for row in rows["iterations"]}
    assert sorted(iterations) == [1, 2]
    for index, (screening, produced) in {
        1: ("al-start:1", "c1-iter1:1"),
        2: ("c1-iter1:1", "c1-iter2:1"),
    }.items():
        _, stage, status, error, _, _, screened_by, made, training_set, pool = iterations[index]
        assert (stage, status, error) == ("done", "done", None)
        assert (screened_by, made, training_set, pool) == (
            screening,
            produced,
            f"c1-iter{index}",
            "c1-file",
        )
    first_labels = sum(row[0] == 1 and row[6] == "labelled" for row in rows["candidates"])
    # The control is drawn independently of the budget: a candidate in both is labelled once.
    assert BUDGET <= first_labels <= BUDGET + CONTROL
    assert iterations[1][4]["candidates"] == N_CANDIDATES
    assert iterations[2][4]["candidates"] == N_CANDIDATES - first_labels
    decisions = [(row[0], row[2]) for row in rows["candidates"]]
    for index in (1, 2):
        assert decisions.count((index, "selected")) == BUDGET
        assert sum(row[0] == index and row[12] for row in rows["candidates"]) == CONTROL
    labelled = [row for row in rows["candidates"] if row[6] is not None]
    assert {row[6] for row in labelled} == {"labelled"}
    assert {row[11] for row in labelled} == {"dft"}
    parents = {name: parent for name, _, parent, _ in rows["model_versions"]}
    assert parents["c1-iter2:1"] == "c1-iter1:1"
    assert parents["c1-iter1:1"] == "al-start:1"
    assert [row[0] for row in rows["model_versions"]] == ["al-start:1", "c1-iter1:1", "c1-iter2:1"]
    assert {row[1] for row in rows["model_versions"]} == {"ready"}
    ml = {row[1]: row[2:] for row in rows["relaxations"] if row[0] == "ml"}
    assert ml["al-start:1"] == (N_CANDIDATES, N_CANDIDATES)
    assert ml["c1-iter1:1"] == (N_CANDIDATES - first_labels,) * 2


def test_a_completed_campaign_reruns_as_nothing_to_do(
    reference: tuple[Clone, Rows],
) -> None:
    """A rerun of a completed campaign does nothing: the same rows in every table (less
    ``al_campaigns.updated_at``, which it sets again with the status ``done``)."""
    clone, rows = reference
    before = table_digests(clone)
    again = clone.cli(*RUN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do" in again.stdout, again.stdout
    assert table_digests(clone) == before
    assert snapshot(clone) == rows
    # The rerun is in the activity log, with nothing written.
    assert clone.rows(
        "SELECT command, status, rows_written FROM activities ORDER BY id DESC LIMIT 1"
    ) == [("al run", "succeeded", {})]


def test_killed_between_stages_resumes_to_the_same_campaign(
    template: Template, reference: tuple[Clone, Rows]
) -> None:
    """Killed once iteration 1 has moved past relax, again when iteration 2 reaches
    label; the rerun completes the campaign exactly as the uninterrupted run did."""
    clone = _created(template, "between")
    first = kill_when(
        clone.start(*RUN),
        "iteration 1 moved past relax",
        lambda: stage_of(clone, 1),
        at_or_after("select"),
    )
    assert first in ("select", "label"), f"iteration 1 was already at {first} when killed"
    wait_for_lock_release(clone)
    second = kill_when(
        clone.start(*RUN),
        "iteration 2 reached label",
        lambda: stage_of(clone, 2),
        at_or_after("label"),
    )
    assert second in ("label", "measure"), f"iteration 2 was already at {second} when killed"
    rerun_to_completion(clone)
    assert_same_campaign(snapshot(clone), reference[1])
    clone.engine.dispose()


def test_killed_in_the_middle_of_relaxation_resumes_to_the_same_campaign(
    template: Template, reference: tuple[Clone, Rows]
) -> None:
    """Killed after some chunks of iteration 1's ML relaxations were committed (2 per
    chunk) and before the last: the rerun relaxes only the rest."""
    clone = _created(template, "midrelax")
    relaxed = kill_when(
        clone.start(*RUN),
        f"between 2 and {N_CANDIDATES - 1} ML relaxations were stored",
        lambda: clone.scalar(ML_RELAXATIONS),
        lambda count: count >= 2,
    )
    assert relaxed < N_CANDIDATES, (
        f"all {relaxed} relaxations were stored before the kill: it did not land mid-relax"
    )
    assert stage_of(clone, 1) == "relax"
    rerun_to_completion(clone)
    assert_same_campaign(snapshot(clone), reference[1])
    clone.engine.dispose()


def test_a_second_run_while_one_runs_is_refused_in_one_line(template: Template) -> None:
    """While a run holds the campaign, another exits 1 with one line and no traceback,
    and leaves the campaign as it was."""
    clone = _created(template, "concurrent")
    running = clone.start(*RUN)
    try:
        kill_after = time.monotonic() + RUN_TIMEOUT_S
        while not clone.scalar(CAMPAIGN_LOCKS):  # the first run holds the campaign
            assert running.running(), running.output()
            assert time.monotonic() < kill_after
            time.sleep(POLL_S)
        second = clone.cli(*RUN)
        still_running = running.running()
    finally:
        running.kill()
    assert still_running, "the first run ended before the second was refused"
    assert second.returncode == 1, second.stdout + second.stderr
    assert "Traceback" not in second.stderr, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and BUSY in lines[0], second.stderr
    assert clone.scalar("SELECT status FROM al_campaigns") != "failed"
    clone.engine.dispose()


def test_killed_in_the_middle_of_labelling_resumes_to_the_same_campaign(
    template: Template, reference: tuple[Clone, Rows]
) -> None:
    """Killed after a chunk of iteration 1's reference labels was committed (2 per chunk,
    3 to 5 labels) and before the last: the rerun labels only the rest."""
    total = sum(row[0] == 1 and row[6] == "labelled" for row in reference[1]["candidates"])
    clone = _created(template, "midlabel")
    labelled = kill_when(
        clone.start(*RUN),
        f"between 2 and {total - 1} labels were stored",
        lambda: clone.scalar(CANDIDATE_LABELS),
        lambda count: count >= 2,
    )
    assert labelled < total, (
        f"all {labelled} labels were stored before the kill: it did not land mid-label"
    )
    assert stage_of(clone, 1) == "label"
    rerun_to_completion(clone)
    assert_same_campaign(snapshot(clone), reference[1])
    clone.engine.dispose()


def test_killed_while_retraining_resumes_to_the_same_campaign(
    template: Template, reference: tuple[Clone, Rows]
) -> None:
    """Killed once iteration 1's model ``c1-iter1`` is registered as training: the rerun
    must still produce ``c1-iter1:1`` and leave no interrupted version behind.

    The rows are first compared with the models renumbered as an uninterrupted run would
    have numbered them, so that a failure says whether anything but the version numbers
    differs."""
    clone = _created(template, "retrain")
    kill_when(
        clone.start(*RUN),
        "c1-iter1 was registered as training",
        lambda: clone.scalar(RETRAINING, name="c1-iter1"),
        lambda status: status == "training",
    )
    assert stage_of(clone, 1) == "retrain"
    rerun_to_completion(clone)
    resumed = snapshot(clone)
    assert_same_campaign(renumbered(resumed), reference[1])
    versions = [(label, status) for label, status, *_ in resumed["model_versions"]]
    assert versions == [(label, "ready") for label, *_ in reference[1]["model_versions"]], (
        "a run killed while training must leave no version behind, and the rerun must "
        "register the versions an uninterrupted run does (c1-iter1:1, c1-iter2:1); "
        "model versions after "
        f"the rerun: {versions}"
    )
    clone.engine.dispose()


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


def test_status_show_list_report_and_errors_through_the_console_script(
    reference: tuple[Clone, Rows], tmp_path: Path
) -> None:
    import json

    clone, _ = reference
    status = clone.cli("al", "status", CAMPAIGN)
    assert (
        status.returncode == 0 and f"{ITERATIONS} of {ITERATIONS} iterations done" in status.stdout
    )
    document = json.loads(clone.cli("al", "status", CAMPAIGN, "--format", "json").stdout)
    assert [row["iteration"] for row in document["iterations"]] == [1, 2]
    assert document["pending_labels"] == [] and document["status"] == "done"
    assert all(row["selected"] == BUDGET for row in document["iterations"])
    table = clone.cli("al", "status", CAMPAIGN, "--format", "csv").stdout.splitlines()
    assert table[0].startswith("campaign,iteration,screening_model") and len(table) == 3
    shown = json.loads(clone.cli("al", "show", CAMPAIGN, "--format", "json").stdout)
    assert shown["budget"] == BUDGET and shown["model"] == "al-start:1"
    assert shown["training_set"]["keep_splits_from"] is None  # set per iteration
    listed = clone.cli("al", "list", "--format", "csv").stdout.splitlines()
    assert listed[1].startswith(f"{CAMPAIGN},al-start:1,done,{ITERATIONS},")
    report = clone.cli("al", "report", CAMPAIGN, "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert {p.name for p in (tmp_path / "report").iterdir()} >= {
        "summary.md",
        "summary.csv",
        "campaign.png",
        "candidates_iter1.csv",
        "candidates_iter2.csv",
    }

    missing = clone.cli("al", "status", "nobody")
    assert missing.returncode == 1 and "No campaign is named 'nobody'" in _one_error_line(missing)
    refused = clone.cli("al", "create", "x", "--model", "al-start", "--budget", "0")
    assert refused.returncode == 1 and "--budget 0 must be at least 1" in _one_error_line(refused)
    blocked = tmp_path / "file"
    blocked.write_text("")
    unwritable = clone.cli("al", "report", CAMPAIGN, "--out", str(blocked / "report"))
    assert unwritable.returncode == 1 and str(blocked) in _one_error_line(unwritable)
    assert clone.cli("al", "run").returncode == 2  # a usage error
