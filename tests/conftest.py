"""Shared fixtures: one Spark session per test run, generated crawls, isolated lakehouses."""

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


# `make test` runs on xdist workers (`-n auto --dist loadgroup`). Every integration test that runs Spark
# in the test process shares one worker (group "spark"), so a run still has one in-process Spark
# session; a module marked `child_processes` (its pipeline runs in processes it starts) and every
# unit-test module is a group of its own, whole on one worker, so a module fixture is built once.
SPARK_GROUP = "spark"


def xdist_group(item: pytest.Item) -> str:
    if item.get_closest_marker("integration") and not item.get_closest_marker("child_processes"):
        return SPARK_GROUP
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for xdist, and an order its scheduler keeps (`--no-loadscope-reorder`): the Spark
    group first, then groups with a test marked `slow`, then the rest; each worker takes the next group."""
    rank: dict[str, int] = {}
    for item in items:
        group = xdist_group(item)
        item.add_marker(pytest.mark.xdist_group(group))
        mine = 0 if group == SPARK_GROUP else 1 if item.get_closest_marker("slow") else 2
        rank[group] = min(rank.get(group, mine), mine)
    items.sort(key=lambda it: rank[xdist_group(it)])  # stable: a group's tests keep their order


def _spark_in_process() -> bool:
    import sys

    ctx = sys.modules.get("pyspark.context")
    return bool(ctx and ctx.SparkContext._active_spark_context is not None)


def pytest_runtest_setup(item):
    item.stash[_SPARK_BEFORE] = _spark_in_process()


def pytest_runtest_teardown(item):
    """A test outside the Spark group that starts Spark in this process would give the run a second
    session on another worker: it fails here, and belongs in the Spark group (no `child_processes`)."""
    if xdist_group(item) != SPARK_GROUP and not item.stash.get(_SPARK_BEFORE, True) and _spark_in_process():
        pytest.fail(f"{item.nodeid} started Spark in the test process but is not in the {SPARK_GROUP!r} xdist group")


_SPARK_BEFORE = pytest.StashKey[bool]()
