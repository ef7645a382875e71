"""Dagster (run, event-log and schedule storage) and MLflow (tracking store) on a real PostgreSQL
server, configured the way infra/ describes a deployment; and the database password, planted in
the MLflow URI and in Dagster's environment, appears in none of what a run writes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import postgres_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
SECRET = "pg-Secret-7f3a9c"  # the database password: must never be written anywhere


def test_a_run_with_dagster_and_mlflow_on_postgresql(tmp_path):
    from sample_crawl import generate_crawl

    landing = tmp_path / "landing"
    generate_crawl(landing / "crawl-p", 120, seed=41, pages_per_file=60)
    with postgres_server(SECRET, ["dagster", "mlflow"]) as pg:
        home = tmp_path / "dagster-home"
        home.mkdir()
        shutil.copy(ROOT / "infra" / "dagster" / "dagster.yaml", home / "dagster.yaml")  # the deployment's file, as is
        mlflow_uri = f"postgresql://{pg['user']}:{SECRET}@{pg['host']}:{pg['port']}/mlflow"
        env = {
            **os.environ,
            "SLUICE_LAKEHOUSE_DIR": str(tmp_path / "lake"),
            "SLUICE_LANDING_DIR": str(landing),
            "SLUICE_DAGSTER__HOME": str(home),
            "SLUICE_MLFLOW__TRACKING_URI": mlflow_uri,
            "SLUICE_SPARK__MASTER": "local[2]",
            "SLUICE_SPARK__DRIVER_MEMORY": "1g",
            "DAGSTER_PG_HOST": pg["host"],
            "DAGSTER_PG_PORT": str(pg["port"]),
            "DAGSTER_PG_USER": pg["user"],
            "DAGSTER_PG_PASSWORD": SECRET,
        }
        env.pop("SLUICE_CONFIG", None)
        env.pop("DAGSTER_HOME", None)
        proc = subprocess.run(
            [
                str(Path(sys.executable).parent / "sluice"),
                "run",
                "--crawl",
                str(landing / "crawl-p"),
                "--select",
                "raw_crawl,filtered,deduplicated",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

        # Dagster kept its runs and materializations in PostgreSQL (and no SQLite of its own)
        import psycopg

        conn = psycopg.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=SECRET, dbname="dagster")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
            assert cur.fetchone()[0] >= 1
            cur.execute("SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
            keys = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT event FROM event_logs UNION ALL SELECT run_body FROM runs")
            events = [r[0] for r in cur.fetchall()]
        conn.close()
        assert {'["raw_crawl"]', '["filtered"]', '["deduplicated"]'} <= keys
        assert not list(home.rglob("*.db"))

        # MLflow: the stage runs, with their lineage, in PostgreSQL
        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_uri)
        exp = client.get_experiment_by_name("sluice")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        stages = {r.data.tags.get("dagster.asset") for r in runs}
        assert {"raw_crawl", "filtered", "deduplicated"} <= stages
        assert not (tmp_path / "lake" / "_mlflow" / "mlflow.db").exists()

        # the password is nowhere: console, run log, MLflow params and tags, Dagster events, any file
        assert SECRET not in proc.stdout + proc.stderr
        assert f"{pg['user']}:***@{pg['host']}" in proc.stdout  # the URI is shown, redacted
        for r in runs:
            assert SECRET not in repr(r.data.params) + repr(r.data.tags)
        assert not [e for e in events if SECRET in e]
        leaks = [p for p in (tmp_path / "lake").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert not leaks, leaks
