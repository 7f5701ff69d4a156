"""`benchmarks/scale.py` at a tiny size: every step runs through the installed command
and the last line holds the figures it promises (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMISED = (
    "materials",
    "frames",
    "ingest_s",
    "ingest_frames_per_s",
    "peak_rss_mb",
    "db_bytes_per_frame",
    "select_s",
    "verify_s",
    "export_frames_per_s",
    "hull_s",
    "total_s",
)


@pytest.mark.slow
def test_scale_benchmark_runs_the_pipeline_and_reports_its_figures() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS2D_")}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "scale.py"),
            "--materials",
            "12",
            "--files",
            "3",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(key in figures for key in PROMISED), sorted(figures)
    assert figures["materials"] == 12 and figures["files"] == 4  # 3 parts + references
    # ecut 1e6 keeps steps {0, mid, last} of every relaxation (12 layers, 11 references).
    assert figures["export_frames"] == 3 * (12 + 11)
    assert figures["frames"] > 12 * 10 and figures["db_bytes_per_frame"] > 0
    assert figures["peak_rss_mb"] == max(figures["peak_rss_mb_per_step"].values())
