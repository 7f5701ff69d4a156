"""The OPTIMADE API under load: ``atlas2d serve`` (the installed command, one uvicorn
process) over 100,000 synthetic materials, queried by a bounded number of concurrent
clients on localhost.

    python benchmarks/serve.py [--materials 100000] [--clients 8] [--requests 400]
                               [--page-requests 100]

Timed, each as requests/s and p50/p99 latency over ``--requests`` requests after a
warm-up: the filters ``elements HAS ALL "Mo","S" AND nelements=2`` and
``chemical_formula_reduced="MoS2"`` (first page of 20, with the match count), one
material's entry ``/v1/structures/{id}`` and one material's HTML page
``/materials/{key}`` with its plots drawn (``--page-requests`` random keys; the
synthetic data has no convex hull, so a page draws its structure and its DFT
trajectory), then the same pages again, their figures now in the server's cache. Baseline, in the same run: the
two filters again after dropping the GIN index on ``materials.elements`` and the index
on ``materials.formula_alphabetical`` (what the migration added), so PostgreSQL scans
the table; the indexes are rebuilt afterwards.

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import atexit
import json
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import make_url, text

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from tests.support.served import ServedDatabase, running_server

from _common import fresh_database, ingest_synthetic, machine, timer, workdir
from atlas2d.db.embedded import CREATE_READER_LOGIN, EMBEDDED_READER_LOGIN
from atlas2d.db.session import make_sessions

FILTERS = {
    "elements_mo_s": 'elements HAS ALL "Mo","S" AND nelements=2',
    "formula_mos2": 'chemical_formula_reduced="MoS2"',
}
INDEXES = {
    "ix_materials_elements": "CREATE INDEX ix_materials_elements ON materials USING gin (elements)",
    "ix_materials_formula_alphabetical": (
        "CREATE INDEX ix_materials_formula_alphabetical ON materials (formula_alphabetical)"
    ),
}


def load(client_urls: list[str], base: str, clients: int) -> dict[str, float]:
    """GET every URL of ``client_urls`` from ``clients`` threads sharing the list;
    returns requests/s and p50/p99 latency (ms). Every answer must be a 200."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(client_urls)
    failures: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    url = queue.pop()
                start = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        failures.append(f"{url}: {response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    with timer() as wall:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    ms = np.asarray(latencies) * 1000
    return {
        "requests_per_s": round(len(ms) / wall[0], 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--page-requests", type=int, default=100)
    args = parser.parse_args()

    folder = workdir()
    # Registered first, so it runs last: after fresh_database's server stop.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    url, engine = fresh_database(folder)
    sessions = make_sessions(engine)
    with timer() as ingest_s:
        ingest_synthetic(sessions, args.materials, steps=2)
    with engine.connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()
        keys = list(connection.execute(text("SELECT key FROM materials")).scalars())
        matches = {
            name: connection.execute(text(sql)).scalar_one()
            for name, sql in {
                "elements_mo_s": "SELECT count(*) FROM materials"
                " WHERE elements @> ARRAY['Mo','S'] AND n_elements = 2",
                "formula_mos2": "SELECT count(*) FROM materials WHERE formula = 'MoS2'",
            }.items()
        }
        password = secrets.token_hex(16)
        connection.execute(text(CREATE_READER_LOGIN))
        connection.execute(text(f"ALTER ROLE {EMBEDDED_READER_LOGIN} PASSWORD '{password}'"))
        connection.commit()
    reader_url = (
        make_url(url)
        .set(username=EMBEDDED_READER_LOGIN, password=password)
        .render_as_string(hide_password=False)
    )
    database = ServedDatabase(url, reader_url, engine, folder / "home")
    rng = np.random.default_rng(0)
    n = args.requests
    results: dict[str, dict[str, float]] = {}
    with running_server(database) as base:
        warm = [f"/v1/structures?filter={f}" for f in FILTERS.values()] * 10
        load(warm, base, args.clients)
        for name, filter_ in FILTERS.items():
            results[name] = load([f"/v1/structures?filter={filter_}"] * n, base, args.clients)
        entries = [f"/v1/structures/{keys[i]}" for i in rng.integers(len(keys), size=n)]
        results["material_entry"] = load(entries, base, args.clients)
        pages = [f"/materials/{keys[i]}" for i in rng.integers(len(keys), size=args.page_requests)]
        load(pages[:10], base, args.clients)  # matplotlib's first figure imports it
        results["material_page"] = load(pages, base, args.clients)
        results["material_page_cached"] = load(pages, base, args.clients)
        with engine.connect() as connection:
            for index in INDEXES:
                connection.execute(text(f"DROP INDEX {index}"))
            connection.commit()
        try:
            load(warm, base, args.clients)
            for name, filter_ in FILTERS.items():
                results[f"{name}_unindexed"] = load(
                    [f"/v1/structures?filter={filter_}"] * n, base, args.clients
                )
        finally:
            with engine.connect() as connection:
                for create in INDEXES.values():
                    connection.execute(text(create))
                connection.commit()

    print(f"machine: {machine()}")
    print(
        f"{args.materials} synthetic materials ingested in {ingest_s[0]:.1f} s; "
        f"{args.clients} concurrent clients, {n} requests per row "
        f"({args.page_requests} for material_page)"
    )
    print(f"{'request':<34} {'matches':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, figures in results.items():
        matched = matches.get(name.removesuffix("_unindexed"), 1)
        print(
            f"{name:<34} {matched:>8} {figures['requests_per_s']:>8} "
            f"{figures['p50_ms']:>8} {figures['p99_ms']:>8}"
        )
    ratios = {
        name: round(results[f"{name}_unindexed"]["p50_ms"] / results[name]["p50_ms"], 1)
        for name in FILTERS
    }
    print(f"p50 ratio, unindexed ÷ indexed: {ratios}")
    print(
        json.dumps(
            {
                "materials": args.materials,
                "clients": args.clients,
                "requests": n,
                "page_requests": args.page_requests,
                "matches": matches,
                **results,
                "ratio_unindexed_over_indexed_p50": ratios,
            }
        )
    )


if __name__ == "__main__":
    main()
