"""Convex hulls over 100,000 materials: a full ``hull update`` (DFT), an incremental one
after adding 1,000 materials, and pymatgen's PhaseDiagram on a sample of the same
chemical systems as the baseline (and as a check of the values).

    python benchmarks/hull.py [--materials 100000] [--added 1000] [--baseline-systems 300]

The synthetic database: ~80 elements drawn with a skewed (Zipf-like) popularity, as in
real 2D databases where chalcogens and halides dominate; chemical systems unary to
quaternary (10 % / 35 % / 40 % / 15 %); every element has bulk references; formation
energies ~ N(−0.25, 0.35) eV/atom. Energies enter as convex-hull entries.

Last line: one JSON object with materials, chemsys, full_s, incremental_s,
incremental_chemsys, baseline_s_per_system, baseline_full_s_estimate, ratio
(estimated pymatgen time ÷ ours) and max_abs_diff_ev_per_atom.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from sqlalchemy import text

# This folder (for _common) and the repository root (for tests.support: synthetic data
# and the device-wait census are test support, not part of the package).
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from _common import fresh_database, machine, stop_embedded_servers, timer, workdir
from atlas2d.db.session import driver_connection, make_sessions
from atlas2d.services.stability import update_hull

ELEMENTS = [z for z in range(1, 84) if z not in (2, 10, 18, 36, 54)][:80]
SIZE_SHARES = {1: 0.10, 2: 0.35, 3: 0.40, 4: 0.15}


def synthetic_materials(n: int, rng: np.random.Generator, start: int = 0) -> list[dict]:
    """n materials: key, species (atomic numbers), corrected energy per atom (eV/atom)."""
    popularity = 1.0 / np.arange(1, len(ELEMENTS) + 1) ** 0.8
    popularity /= popularity.sum()
    references = {z: -1.0 - 9.0 * ((z * 7919) % 97) / 97 for z in ELEMENTS}
    sizes = rng.choice(list(SIZE_SHARES), size=n, p=list(SIZE_SHARES.values()))
    materials = []
    for i, size in enumerate(sizes):
        elements = rng.choice(ELEMENTS, size=size, replace=False, p=popularity)
        counts = rng.integers(1, 5, size=size)
        fractions = counts / counts.sum()
        reference = float(fractions @ np.array([references[z] for z in elements]))
        formation = 0.0 if size == 1 else rng.normal(-0.25, 0.35)
        polymorph = rng.exponential(0.1) if size == 1 else 0.0
        materials.append(
            {
                "key": f"bench-{start + i:07d}",
                "species": np.repeat(elements, counts),
                "energy_per_atom": reference + formation + polymorph,
            }
        )
    for z in ELEMENTS:  # every element has a bulk reference
        materials.append(
            {
                "key": f"bench-ref-{z}-{start}",
                "species": np.array([z]),
                "energy_per_atom": references[z],
            }
        )
    return materials


def insert(sessions, materials: list[dict], source_tag: str) -> None:  # type: ignore[no-untyped-def]
    """Materials and their convex-hull entries, by COPY."""
    from ase.data import chemical_symbols

    with sessions.begin() as session:
        source = session.execute(
            text(
                "INSERT INTO sources (format, path, sha256, parser, versions, options,"
                " n_materials, n_relaxations, n_frames, n_entries) VALUES ('alexandria-hull',"
                " :p, :sha, 'benchmark', '{}', '{}', :n, 0, 0, :n) RETURNING id"
            ),
            {"p": source_tag, "sha": source_tag, "n": len(materials)},
        ).scalar_one()
        connection = driver_connection(session)
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY materials (key, formula, chemsys, elements, n_elements, dimensionality, info)"
                " FROM STDIN"
            ) as copy,
        ):
            for m in materials:
                symbols = sorted({chemical_symbols[z] for z in m["species"]})
                copy.write_row(
                    (m["key"], "".join(symbols), "-".join(symbols), symbols, len(symbols), 2, "{}")
                )
        ids = dict(session.execute(text("SELECT key, id FROM materials")).all())
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY energy_entries (material_id, source_id, method, energy, correction, n_sites,"
                " species, cell, positions, data, content_hash) FROM STDIN"
            ) as copy,
        ):
            cell = np.diag([3.0, 3.0, 20.0]).ravel().tolist()
            for m in materials:
                n = len(m["species"])
                copy.write_row(
                    (
                        ids[m["key"]],
                        source,
                        "dft",
                        m["energy_per_atom"] * n,
                        0.0,
                        n,
                        m["species"].tolist(),
                        cell,
                        np.zeros((n, 3)).tobytes(),
                        "{}",
                        m["key"],
                    )
                )


def pymatgen_baseline(
    materials: list[dict], systems: list[str], stored: dict[str, float]
) -> tuple[float, float]:
    """Seconds per chemical system with pymatgen (PhaseDiagram of the subsystems' entries,
    then get_e_above_hull for the system's own materials), and the largest difference
    from the stored values (eV/atom)."""
    from ase.data import chemical_symbols
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    by_system: dict[str, list[PDEntry]] = {}
    for m in materials:
        numbers, counts = np.unique(m["species"], return_counts=True)
        composition = Composition(
            {chemical_symbols[z]: int(c) for z, c in zip(numbers, counts, strict=True)}
        )
        system = "-".join(sorted(str(e) for e in composition.elements))
        by_system.setdefault(system, []).append(
            PDEntry(composition, m["energy_per_atom"] * composition.num_atoms, name=m["key"])
        )
    worst = 0.0
    start = time.perf_counter()
    for system in systems:
        elements = system.split("-")
        members = [
            e
            for r in range(1, len(elements) + 1)
            for c in combinations(elements, r)
            for e in by_system.get("-".join(c), [])
        ]
        diagram = PhaseDiagram(members)
        for entry in by_system[system]:
            worst = max(worst, abs(diagram.get_e_above_hull(entry) - stored[entry.name]))
    return (time.perf_counter() - start) / len(systems), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--materials", type=int, default=100_000)
    parser.add_argument("--added", type=int, default=1000)
    parser.add_argument("--baseline-systems", type=int, default=300)
    args = parser.parse_args()
    folder = workdir()
    rng = np.random.default_rng(7)
    try:
        _, engine = fresh_database(folder)
        sessions = make_sessions(engine)
        materials = synthetic_materials(args.materials, rng)
        with timer() as t_insert:
            insert(sessions, materials, "bench-full")
        print(f"inserted {len(materials)} materials in {t_insert[0]:.1f} s", flush=True)

        with timer() as t_full:
            full = update_hull(sessions)
        print(
            f"full update: {full.chemsys_recomputed} chemical systems, "
            f"{full.materials_written} materials, {full.stable} stable, {t_full[0]:.1f} s",
            flush=True,
        )

        added = synthetic_materials(args.added, rng, start=args.materials)[: args.added]
        insert(sessions, added, "bench-added")
        with timer() as t_incremental:
            incremental = update_hull(sessions)
        print(
            f"incremental update after {len(added)} new materials: "
            f"{incremental.chemsys_recomputed} chemical systems, "
            f"{incremental.materials_written} materials, {t_incremental[0]:.1f} s",
            flush=True,
        )

        with sessions.begin() as session:
            stored = dict(
                session.execute(
                    text(
                        "SELECT material_key, e_above_hull_ev_per_atom FROM material_stability"
                        " WHERE energy_source = 'dft'"
                    )
                ).all()
            )
            systems = sorted(
                session.execute(text("SELECT DISTINCT chemsys FROM materials")).scalars()
            )
        sample = sorted(
            rng.choice(
                systems, size=min(args.baseline_systems, len(systems)), replace=False
            ).tolist()
        )
        per_system, worst = pymatgen_baseline(materials + added, sample, stored)
        estimate = per_system * full.chemsys_recomputed
        print(
            f"pymatgen baseline: {per_system * 1000:.1f} ms per chemical system on "
            f"{len(sample)} sampled systems → {estimate:.0f} s estimated for the full update; "
            f"largest |Δ e_above_hull| = {worst:.2e} eV/atom",
            flush=True,
        )
        print(f"machine: {machine()}")
        print(
            json.dumps(
                {
                    "materials": len(materials),
                    "chemsys": full.chemsys_recomputed,
                    "full_s": round(t_full[0], 2),
                    "incremental_added": len(added),
                    "incremental_s": round(t_incremental[0], 2),
                    "incremental_chemsys": incremental.chemsys_recomputed,
                    "baseline_s_per_system": round(per_system, 5),
                    "baseline_full_s_estimate": round(estimate, 1),
                    "ratio": round(estimate / t_full[0], 1),
                    "max_abs_diff_ev_per_atom": worst,
                }
            )
        )
    finally:
        stop_embedded_servers(folder)


if __name__ == "__main__":
    main()
