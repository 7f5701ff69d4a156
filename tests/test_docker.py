"""docker/: the compose file and the Dockerfile, checked structurally (no Docker engine
is needed): services, environment, volumes, commands, and the database URL accepted
by atlas2d's own settings."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml
from distributed.cli.dask_scheduler import main as dask_scheduler_cli
from distributed.cli.dask_worker import main as dask_worker_cli
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from atlas2d.cli.main import typer_app
from atlas2d.config import Settings
from atlas2d.db.session import make_engine, resolve_database_url

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
TORCH_VERSION = "2.13.0"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
IMAGE_SERVICES = ("app", "scheduler", "worker")

# ---------------------------------------------------------------- helpers

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ``$$`` → ``$``, ``${X}``, ``${X:-d}``, ``${X-d}``, ``$X``."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, default = match.group("op"), match.group("default") or ""
        if op == ":-" and not env.get(name):
            return default
        if op == "-" and name not in env:
            return default
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def _compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()), env or {})


def _argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Named-volume or bind mounts of a service: target → source."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts[target] = source
    return mounts


def _option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _dockerfile():
        if keyword != "ENV":
            continue
        words = shlex.split(rest)
        if "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
        else:
            env.update(word.split("=", 1) for word in words)
    return env


def _index(instructions: list[tuple[str, str]], keyword: str, pattern: str) -> int:
    hits = [
        i for i, (kw, rest) in enumerate(instructions) if kw == keyword and re.search(pattern, rest)
    ]
    assert hits, f"no {keyword} matching {pattern!r} in {DOCKERFILE}"
    return hits[0]


def _options_of(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


# ---------------------------------------------------------------- compose.yaml


def test_compose_has_the_four_services() -> None:
    assert set(_compose()["services"]) == {"postgres", "app", "scheduler", "worker"}


def test_postgres_is_16_on_a_named_volume_with_a_healthcheck() -> None:
    compose = _compose()
    postgres = compose["services"]["postgres"]
    match = re.fullmatch(r"postgres:(\d+)(?:[.\-].*)?", postgres["image"])
    assert match and match.group(1) == "16", postgres["image"]
    source = _mounts(postgres)["/var/lib/postgresql/data"]
    assert source in (compose.get("volumes") or {}), f"volume {source!r} is not declared"
    env = _environment(postgres)
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(env)
    assert "pg_isready" in " ".join(_argv(postgres["healthcheck"]["test"]))


@pytest.mark.parametrize("password", [None, "s3cret:@/x"])
def test_app_and_workers_use_the_postgres_service(password: str | None) -> None:
    """Same user, password and database as the postgres service, with or without
    ATLAS2D_DB_PASSWORD set (special characters percent-encoded by the user)."""
    from urllib.parse import quote

    env = {} if password is None else {"ATLAS2D_DB_PASSWORD": password}
    compose = _compose(env)
    postgres = _environment(compose["services"]["postgres"])
    for name in ("app", "worker"):
        raw = _environment(compose["services"][name])["ATLAS2D_DATABASE_URL"]
        if password is not None:  # a URL needs the password encoded; compose does not do it
            raw = raw.replace(password, quote(password, safe=""))
        url = make_url(raw)
        assert url.drivername == "postgresql+psycopg"
        assert url.host == "postgres" and url.host in compose["services"]
        assert url.port == 5432
        assert url.username == postgres["POSTGRES_USER"]
        assert url.password == postgres["POSTGRES_PASSWORD"]
        assert url.database == postgres["POSTGRES_DB"]
        assert compose["services"][name]["depends_on"]["postgres"]["condition"] == (
            "service_healthy"
        )


def test_atlas2d_settings_accept_the_compose_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = _compose()
    for name in ("app", "worker"):
        service = compose["services"][name]
        env = _environment(service)
        for key in [*env, "ATLAS2D_DATABASE_URL", "ATLAS2D_HOME"]:
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        url = resolve_database_url(settings)  # an external URL: no embedded server starts
        assert url == env["ATLAS2D_DATABASE_URL"]
        engine = make_engine(url)  # psycopg driver importable; no connection is made
        try:
            assert engine.url.drivername == "postgresql+psycopg"
        finally:
            engine.dispose()
        # model files under $ATLAS2D_HOME/artifacts sit on the shared named volume
        home = PurePosixPath(str(settings.home))
        mounts = _mounts(service)
        volume = next(
            (src for target, src in mounts.items() if home.is_relative_to(target)), None
        ) or next(
            (
                src
                for target, src in mounts.items()
                if PurePosixPath(str(settings.artifacts_dir)).is_relative_to(target)
            ),
            None,
        )
        assert volume == "artifacts", f"{name}: {settings.artifacts_dir} is not on a volume"
        assert volume in compose["volumes"]
    app_env = _environment(compose["services"]["app"])
    worker_env = _environment(compose["services"]["worker"])
    assert worker_env["ATLAS2D_HOME"] == app_env["ATLAS2D_HOME"]
    assert _mounts(compose["services"]["worker"]) == _mounts(compose["services"]["app"])


def test_sql_runs_as_the_read_only_login_the_new_volume_gets() -> None:
    """`atlas2d sql` refuses the owner's login: compose names a reader login, and the
    postgres service's init script creates exactly that login, in atlas2d_reader, with
    the password the URL carries."""
    compose = _compose({"ATLAS2D_READER_PASSWORD": "r3ader"})
    postgres = compose["services"]["postgres"]
    init_dir = COMPOSE.parent / _mounts(postgres)["/docker-entrypoint-initdb.d"]
    (script,) = sorted(init_dir.glob("*.sh"))
    text_ = script.read_text()
    assert _environment(postgres)["ATLAS2D_READER_PASSWORD"] == "r3ader"
    for name in ("app", "worker"):
        url = make_url(_environment(compose["services"][name])["ATLAS2D_READER_DATABASE_URL"])
        assert (url.host, url.database, url.password) == ("postgres", "atlas2d", "r3ader")
        assert f"CREATE ROLE {url.username} LOGIN" in text_
        assert url.username != _environment(postgres)["POSTGRES_USER"]
    assert "IN ROLE atlas2d_reader" in text_ and "NOSUPERUSER" in text_
    assert 'reader_password="${ATLAS2D_READER_PASSWORD' in text_


def test_app_upgrades_the_schema_then_runs_its_command() -> None:
    app = _compose()["services"]["app"]
    entrypoint, command = _argv(app.get("entrypoint")), _argv(app.get("command"))
    argv = entrypoint + command
    script = " ".join(argv)
    assert "atlas2d db upgrade" in script
    if entrypoint[:2] in (["/bin/sh", "-c"], ["sh", "-c"], ["/bin/bash", "-c"], ["bash", "-c"]):
        # `docker compose run app atlas2d …` replaces the command: the entrypoint's
        # script must upgrade first and then exec the arguments it was given.
        body = entrypoint[2]
        assert body.index("atlas2d db upgrade") < body.index('exec "$@"'), body
        assert "&&" in body, "a failed upgrade must stop the container"
    # and the command exists in the CLI this image installs
    result = CliRunner().invoke(typer_app, ["db", "upgrade", "--help"])
    assert result.exit_code == 0, result.output
    assert "Migrate the database schema" in result.output


def test_workers_join_the_scheduler_single_threaded() -> None:
    services = _compose()["services"]
    scheduler = _argv(services["scheduler"]["command"])
    assert scheduler[:2] == ["dask", "scheduler"]
    port = _option(scheduler, "--port") if "--port" in scheduler else "8786"
    published = {str(p).split(":")[-1] for p in services["scheduler"].get("ports", [])}
    assert {port, "8787"} <= published

    worker = _argv(services["worker"]["command"])
    assert worker[:2] == ["dask", "worker"]
    assert worker[2] == f"tcp://scheduler:{port}"
    assert _option(worker, "--nthreads") == "1"
    assert int(_option(worker, "--nworkers")) >= 1
    assert services["worker"]["depends_on"]["scheduler"]

    # every option is one the installed distributed knows (e.g. not the removed --nprocs)
    for argv, cli in ((scheduler, dask_scheduler_cli), (worker, dask_worker_cli)):
        unknown = {a.split("=")[0] for a in argv if a.startswith("--")} - _options_of(cli)
        assert not unknown, f"{argv[:2]}: unknown options {unknown}"


def test_image_services_are_built_from_the_dockerfile() -> None:
    services = _compose()["services"]
    images = set()
    for name in IMAGE_SERVICES:
        build = services[name]["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT, f"{name}: build context {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
        images.add(services[name].get("image"))
    assert len(images) == 1, f"app, scheduler and worker run different images: {images}"


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_cpu_torch_before_the_package() -> None:
    instructions = _dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    torch = _index(instructions, "RUN", rf"pip install .*torch=={re.escape(TORCH_VERSION)}\b")
    assert "--index-url https://download.pytorch.org/whl/cpu" in instructions[torch][1]
    copy = _index(instructions, "COPY", r"^\. ")
    package = _index(instructions, "RUN", r"""pip install .*["']?\.\[demo\]["']?""")
    assert torch < copy < package
    # editable: migrate.py finds migrations/ and alembic.ini at the project root
    assert re.search(r"(-e|--editable) +[\"']?\.\[demo\]", instructions[package][1])


def test_dockerfile_environment_user_and_volume() -> None:
    instructions = _dockerfile()
    env = _dockerfile_env()
    assert all(env.get(name) == "1" for name in THREAD_VARIABLES), env
    assert env.get("ATLAS2D_HOME") == "/data"
    users = [i for i, (kw, _) in enumerate(instructions) if kw == "USER"]
    assert users, "the image runs as root"
    assert instructions[users[-1]][1].split(":")[0] not in ("root", "0")
    assert users[-1] > _index(instructions, "RUN", r"pip install .*\.\[demo\]")
    volumes = [
        v for kw, rest in instructions if kw == "VOLUME" for v in re.findall(r"/[\w/.-]+", rest)
    ]
    assert any(
        PurePosixPath(env["ATLAS2D_HOME"], "artifacts").is_relative_to(v) for v in volumes
    ), volumes
    # the compose volume sits where the image keeps its home
    compose = _compose()
    assert _environment(compose["services"]["app"])["ATLAS2D_HOME"] == env["ATLAS2D_HOME"]


def test_dockerignore_drops_clutter_and_keeps_what_the_build_needs() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(
            fnmatch.fnmatch(path, p)
            or fnmatch.fnmatch(path, p.removeprefix("**/"))
            or fnmatch.fnmatch(Path(path).name, p.removeprefix("**/"))
            for p in patterns
        )

    for path in (".git", "x.whl", "__pycache__", ".pytest_cache", "atlas2d.egg-info"):
        assert ignored(path), f"{path} is sent to the build"
    for path in ("pyproject.toml", "README.md", "platform", "migrations", "alembic.ini"):
        assert not ignored(path), f"{path} is needed by the build but ignored"
