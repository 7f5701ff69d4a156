"""Every documented exit code and every one-line operational error, through the installed
``atlas2d`` console script in a subprocess (CliRunner bypasses ``cli.main.app``, where
exit codes used to be swallowed), on a fresh embedded PostgreSQL shared by the module.

README: 0 on success; 1 for an error (one red line, no traceback unless ``--verbose``),
for ``trainset verify`` on a set that does not reproduce and for ``ingest --skip-bad``
when files were rejected; 2 for a usage error.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from atlas2d.db.session import make_engine
from tests.conftest import VASP_DATA
from tests.support.entry_point import atlas2d_script, user_environment
from tests.support.synthetic import alexandria_document, synthetic_trajectories

X_SPECIES = str(VASP_DATA / "Cl8F88Sb16X8_relax_vasprun.xml.gz")


@dataclass
class Embedded:
    """A fresh ATLAS2D_HOME whose embedded server runs, and a superuser engine on it."""

    home: Path
    url: str
    engine: Engine

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = user_environment(ATLAS2D_HOME=str(self.home), **env)
        return subprocess.run(
            [atlas2d_script(), *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def count(self, table: str) -> int:
        with self.engine.connect() as connection:
            return connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    home = tmp_path_factory.mktemp("exit_codes") / "home"
    database = Embedded(home, "", make_engine("postgresql+psycopg://unused@localhost/unused"))
    try:
        upgrade = database.run("db", "upgrade")
        assert upgrade.returncode == 0, upgrade.stderr
        database.url = database.run("db", "url", "--show-password").stdout.strip()
        database.engine = make_engine(database.url).execution_options(isolation_level="AUTOCOMMIT")
        yield database
    finally:
        database.engine.dispose()
        database.run("db", "stop")


def layers_file(folder: Path, key_prefix: str, n_materials: int = 2) -> Path:
    """A small Alexandria trajectory file whose materials are keyed ``{key_prefix}-…``."""
    trajectories = synthetic_trajectories(
        n_materials, 5, 3, seed=len(key_prefix), key_prefix=key_prefix
    )
    path = folder / f"{key_prefix}.json"
    path.write_text(json.dumps(alexandria_document(trajectories)))
    return path


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr (asserting there is exactly one and no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_usage_error_exits_2_with_one_line(embedded: Embedded) -> None:
    unknown = embedded.run("ingest", "--no-such-option", "x.json")
    assert unknown.returncode == 2
    line = one_error_line(unknown)
    assert line.startswith("error:") and "--no-such-option" in line
    missing = embedded.run("trainset", "export", "some-set")
    assert missing.returncode == 2
    assert "Missing option '--format'. Choose from: mace, matgl, extxyz" in one_error_line(missing)


def test_a_bad_file_exits_1_with_one_line_and_writes_nothing(embedded: Embedded) -> None:
    sources = embedded.count("sources")
    bad = embedded.run("ingest", X_SPECIES)
    assert bad.returncode == 1
    assert one_error_line(bad).startswith("error:") and "species 'X'" in bad.stderr
    assert embedded.count("sources") == sources


def test_user_text_in_an_error_is_printed_as_it_is(embedded: Embedded, tmp_path: Path) -> None:
    # Rich would read "[/x]" as a closing tag (an exception) and eat "[bold]": escaped.
    name = "[/x] [bold]b[/bold].json"
    result = embedded.run("ingest", str(tmp_path / name))
    assert result.returncode == 1
    assert name in one_error_line(result)


def test_skip_bad_with_rejected_files_exits_1(embedded: Embedded, tmp_path: Path) -> None:
    good = layers_file(tmp_path, "skipbad")
    sources = embedded.count("sources")
    result = embedded.run("ingest", X_SPECIES, str(good), "--skip-bad")
    assert result.returncode == 1, result.stdout + result.stderr
    assert one_error_line(result).startswith("rejected") and "species 'X'" in result.stderr
    assert embedded.count("sources") == sources + 1  # the good file is in
    again = embedded.run("ingest", str(good), "--skip-bad")
    assert again.returncode == 0 and "already present" in again.stdout


@pytest.mark.slow
def test_verify_exits_1_when_the_set_does_not_reproduce(embedded: Embedded, tmp_path: Path) -> None:
    path = layers_file(tmp_path, "verify")
    assert embedded.run("ingest", str(path)).returncode == 0
    created = embedded.run(
        "trainset", "create", "verify-set", "--ecut", "1e6", "--source", str(path)
    )
    assert created.returncode == 0, created.stderr
    untouched = embedded.run("trainset", "verify", "verify-set")
    assert untouched.returncode == 0 and "reproduced" in untouched.stdout
    with embedded.engine.connect() as connection:
        changed = connection.execute(
            text(
                "UPDATE frames SET energy = energy + 1 WHERE relaxation_id IN ("
                " SELECT t.relaxation_id FROM training_set_relaxations t"
                " JOIN training_sets s ON s.id = t.training_set_id WHERE s.name = 'verify-set')"
            )
        ).rowcount
    assert changed > 0
    result = embedded.run("trainset", "verify", "verify-set")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "does NOT reproduce" in result.stdout and "content changed" in result.stdout


def test_report_into_a_missing_folder_is_refused_before_ingesting(
    embedded: Embedded, tmp_path: Path
) -> None:
    path = layers_file(tmp_path, "report")
    sources = embedded.count("sources")
    result = embedded.run("ingest", str(path), "--report", str(tmp_path / "missing" / "r.json"))
    assert result.returncode == 1
    line = one_error_line(result)
    assert "--report" in line and str(tmp_path / "missing") in line
    assert embedded.count("sources") == sources  # nothing committed before the refusal
    result = embedded.run("ingest", str(path), "--report", str(tmp_path))
    assert result.returncode == 1 and "is a folder" in one_error_line(result)


@pytest.mark.slow
def test_export_out_pointing_at_a_file_is_refused(embedded: Embedded, tmp_path: Path) -> None:
    path = layers_file(tmp_path, "export")
    assert embedded.run("ingest", str(path)).returncode == 0
    created = embedded.run(
        "trainset", "create", "export-set", "--ecut", "1e6", "--source", str(path)
    )
    assert created.returncode == 0, created.stderr
    a_file = tmp_path / "train.xyz"
    a_file.write_text("keep me")
    for out in (a_file, a_file / "inside"):
        result = embedded.run(
            "trainset", "export", "export-set", "--format", "extxyz", "--out", str(out)
        )
        assert result.returncode == 1
        line = one_error_line(result)
        assert "--out" in line and str(a_file) in line
    assert a_file.read_text() == "keep me"
    exported = embedded.run(
        "trainset", "export", "export-set", "--format", "extxyz", "--out", str(tmp_path / "sets")
    )
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "sets" / "train.xyz").exists()


def test_an_unreachable_database_url_is_one_line_naming_it(embedded: Embedded) -> None:
    url = "postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere"
    result = embedded.run("materials", "list", ATLAS2D_DATABASE_URL=url)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "someone:***@127.0.0.1:1/nowhere" in line and "s3cret" not in result.stderr
    assert "Connection refused" in line and "ATLAS2D_DATABASE_URL" in line


def test_a_role_without_privileges_is_one_line_naming_the_privilege(
    embedded: Embedded, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    with embedded.engine.connect() as connection:
        connection.execute(text("CREATE ROLE exit_reader LOGIN IN ROLE atlas2d_reader"))
    reader_url = make_url(embedded.url).set(username="exit_reader", password=None)
    path = layers_file(tmp_path, "reader")
    sources = embedded.count("sources")
    result = embedded.run(
        "ingest", str(path), ATLAS2D_DATABASE_URL=reader_url.render_as_string(hide_password=False)
    )
    assert result.returncode == 1
    line = one_error_line(result)
    # The first write of a command is its activity's row.
    assert "exit_reader lacks the INSERT privilege on table activities" in line
    assert "GRANT INSERT ON activities TO exit_reader" in line
    assert embedded.count("sources") == sources


def test_a_connection_lost_during_copy_is_one_line_and_writes_nothing(
    embedded: Embedded, tmp_path: Path
) -> None:
    """The server ends the ingest's connection in the middle of COPY: a trigger on
    ``frames`` terminates its own backend, as a killed or restarted server would."""
    path = layers_file(tmp_path, "killed")
    sources, frames = embedded.count("sources"), embedded.count("frames")
    with embedded.engine.connect() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION end_my_connection() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5);"
                " RETURN NULL; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER end_my_connection BEFORE INSERT ON frames"
                " FOR EACH STATEMENT EXECUTE FUNCTION end_my_connection()"
            )
        )
    try:
        result = embedded.run("ingest", str(path))
    finally:
        with embedded.engine.connect() as connection:
            connection.execute(text("DROP TRIGGER end_my_connection ON frames"))
            connection.execute(text("DROP FUNCTION end_my_connection()"))
    assert result.returncode == 1
    line = one_error_line(result)
    assert "connection was lost" in line and "administrator command" in line
    assert "nothing from the file or batch in progress was written" in line
    assert (embedded.count("sources"), embedded.count("frames")) == (sources, frames)
    assert embedded.run("ingest", str(path)).returncode == 0  # running it again works


def test_verbose_lets_the_traceback_through(embedded: Embedded, tmp_path: Path) -> None:
    path = layers_file(tmp_path, "verbose")
    result = embedded.run(
        "--verbose", "ingest", str(path), "--report", str(tmp_path / "no" / "r.json")
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "InvalidInput" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --report")


def test_generate_bad_input_exits_1_with_one_line_and_writes_nothing(
    embedded: Embedded,
) -> None:
    pools, materials = embedded.count("candidate_pools"), embedded.count("materials")
    unknown = embedded.run(
        "generate", "decorate", "--pool", "x", "--prototype", "no-such-key", "--elements", "Mo,S"
    )
    assert unknown.returncode == 1
    assert "no-such-key" in one_error_line(unknown)
    not_element = embedded.run(
        "generate", "decorate", "--pool", "x", "--prototype", "k", "--elements", "Mo,Qq"
    )
    assert not_element.returncode == 1
    assert "'Qq' is not a chemical element" in one_error_line(not_element)
    assert embedded.count("candidate_pools") == pools
    assert embedded.count("materials") == materials


def test_a_closed_pipe_ends_quietly_with_0(embedded: Embedded) -> None:
    """`atlas2d … | head`: the reader leaves early; exit 0 with nothing on stderr."""
    environment = user_environment(ATLAS2D_HOME=str(embedded.home))
    command = [atlas2d_script(), "sql", "SELECT generate_series(1, 200000) AS n"]
    process = subprocess.Popen(
        [*command, "--limit", "200000", "--format", "csv"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"n\n"
    process.stdout.close()  # as `head -1` does: far more than a pipe buffer is left
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""


def test_output_starts_with_its_first_line_and_counts_agree_in_number(
    embedded: Embedded, tmp_path: Path
) -> None:
    """No stray blank line where a progress bar would be on a terminal; "1 material"."""
    path = layers_file(tmp_path, "plural", n_materials=1)
    ingest = embedded.run("ingest", str(path))
    assert ingest.returncode == 0 and ingest.stdout.splitlines()[0].strip(), ingest.stdout
    hull = embedded.run("hull", "update")
    assert hull.returncode == 0 and hull.stdout.splitlines()[0].strip(), hull.stdout
    listed = embedded.run("materials", "list", "--limit", "1")
    # The shared database holds other tests' materials too: "showing 1 of N materials",
    # or "1 material" alone; never "1 materials".
    assert re.search(r"showing 1 of [\d,]+ materials;|(?<![\d,])1 material\b", listed.stdout), (
        listed.stdout
    )
    assert not re.search(r"(?<![\d,])1 materials", listed.stdout), listed.stdout
