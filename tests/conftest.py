"""Shared fixtures: one Spark session per test run (per worker under `make test`'s pytest-xdist),
generated crawls, isolated lakehouses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Rewriting is on by default (SmolLM2 on CPU, ~20 s to load): off in every test run, CLI subprocesses
# included, unless a test configures it explicitly (tests/test_rewrite.py and test_gpu_pipeline.py run the default).
os.environ.setdefault("SLUICE_REWRITE__BACKEND", "none")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# What `sluice` exports to the environment for its child processes (orchestration/cli/common.py),
# and what would point an in-process run at another configuration.
CLI_EXPORTS = ("SLUICE_LAKEHOUSE_DIR", "SLUICE_LANDING_DIR", "SLUICE_CONFIG", "DAGSTER_HOME")


def clean_cli_environment(mp: pytest.MonkeyPatch) -> None:
    """Before the CLI runs in the test process: none of its variables inherited, and each one
    recorded (an absent variable would not be), so that ``mp.undo()`` removes its exports too."""
    for k in CLI_EXPORTS:
        mp.setenv(k, "-")
        mp.delenv(k)


def pytest_collection_modifyitems(config, items):
    """Files with a `slow` test first, the order otherwise kept: `make test` hands whole files to
    two workers (pytest-xdist, ``--dist loadfile``), and a long file handed out last would run
    alone at the end while the other worker idles."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def shared_data(sub: str) -> Path:
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"{p} is absent (real third-party data lives in ../shared/data)")
    return p


@pytest.fixture(scope="session")
def spark():
    from spark_jobs.session import SparkSettings, build_spark

    s = build_spark(SparkSettings(master="local[2]", shuffle_partitions=2, show_progress=False))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def sample_landing(tmp_path_factory) -> Path:
    """A landing folder with one generated crawl of 400 pages in 3 WARC files."""
    from sample_crawl import generate_crawl

    landing = tmp_path_factory.mktemp("landing")
    generate_crawl(landing / "crawl-t1", 400, seed=11, pages_per_file=150)
    return landing


def ground_truth(crawl_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (crawl_dir / "ground_truth.jsonl").read_text().splitlines()]


@pytest.fixture
def make_config(tmp_path):
    from orchestration.config import SluiceConfig
    from spark_jobs.session import SparkSettings

    def _make(landing: Path, **kw):
        return SluiceConfig(
            lakehouse_dir=tmp_path / "lakehouse",
            landing_dir=landing,
            spark=SparkSettings(master="local[2]", shuffle_partitions=2, show_progress=False),
            **kw,
        )

    return _make


def pipeline(cfg, *assets):
    """The pipeline's assets built from ``cfg`` (names), plus any test asset passed as a definition."""
    from assets import build_assets

    built = {a.key.to_user_string(): a for a in build_assets(cfg)}
    return [built[a] if isinstance(a, str) else a for a in (assets or built)]
