"""A committed database for the web pages' tests, demo-like and small: the bundled
dataset with its DFT hull, a tiny M3GNet trained on it for one epoch, its relaxations
of the test split with their evaluation, its predictions of that split, its own hull,
and a one-iteration active-learning campaign; plus the read-only login the server
reads through."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import ase.io
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from atlas2d.db.embedded import CREATE_READER_LOGIN
from atlas2d.mlff.relax import RelaxSettings
from atlas2d.services.campaigns import CampaignRequest, TrainSettings, create_campaign, run_campaign
from atlas2d.services.evaluate import evaluate_relaxations
from atlas2d.services.predictions import predict_split
from atlas2d.services.relax import RelaxRequest, relax
from atlas2d.services.stability import update_hull
from tests.support.campaigns import BASE_SET, START_MODEL, candidate_layers, make_campaign_database

MODEL = f"{START_MODEL}:1"
"""The model every page shows."""
CAMPAIGN = "pages"
"""The campaign the campaign pages show."""
READER_LOGIN = "atlas2d_pages_reader"
"""The server's login: a member of ``atlas2d_reader`` and nothing more (its own, so that
other tests resetting the embedded reader's password leave it alone)."""


@dataclass
class PagesDatabase:
    """The filled database: its owner's URL, the reader login's URL, and a home for
    ``atlas2d`` subprocesses."""

    url: str
    reader_url: str
    engine: Engine
    home: Path


def make_pages_database(admin: Engine, url: str, root: Path) -> PagesDatabase:
    """Fill the migrated database at ``url`` (see the module docstring); ``admin`` is
    the server's superuser engine, which makes the reader login."""
    made = make_campaign_database(url, root)
    sessions = made.sessions
    update_hull(sessions)
    request = RelaxRequest(
        MODEL, BASE_SET, "test", settings=RelaxSettings(max_steps=25), engine="ase"
    )
    relax(sessions, request, made.artifacts_dir)
    evaluate_relaxations(sessions, MODEL, BASE_SET, "test", request)
    predict_split(sessions, MODEL, BASE_SET, "test", made.artifacts_dir)
    update_hull(sessions, MODEL)
    layers = root / "candidates.extxyz"
    ase.io.write(layers, candidate_layers()[:4], format="extxyz")
    campaign = CampaignRequest(
        name=CAMPAIGN,
        model=MODEL,
        generator=f"file:{layers}",
        threshold_ev=1000.0,  # the one-epoch model's energies are far off
        budget=2,
        label_steps=30,
        relax_steps=15,
        engine="ase",
        train=TrainSettings(epochs=1, batch_size=4, seed=7),
    )
    create_campaign(sessions, campaign, root)
    run_campaign(sessions, CAMPAIGN, 1, made.artifacts_dir)
    password = secrets.token_hex(16)
    with admin.connect() as connection:
        connection.execute(text(CREATE_READER_LOGIN))  # makes the atlas2d_reader role
        exists = connection.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :login"), {"login": READER_LOGIN}
        ).scalar()
        if not exists:
            connection.execute(text(f"CREATE ROLE {READER_LOGIN} LOGIN IN ROLE atlas2d_reader"))
        connection.execute(text(f"ALTER ROLE {READER_LOGIN} PASSWORD '{password}'"))
    reader_url = make_url(url).set(username=READER_LOGIN, password=password)
    home = root / "home"
    home.mkdir()
    return PagesDatabase(url, reader_url.render_as_string(hide_password=False), made.engine, home)
