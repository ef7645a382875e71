"""MLflow lineage, the resource every stage records itself with: one MLflow run per Dagster run,
one nested run per asset materialization, and the model registry.

A stage run records its config (params), its counts and rates (metrics), the Delta table versions
it read and wrote (datasets with context ``input`` / ``output``) and tags that tie it back to Dagster
(run id, partition, git sha). With these, "which table version came from which inputs, with which
parameters" is one MLflow search away.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from gpu_jobs.scorers.base import MODEL_CARD

DAGSTER_RUN_TAG = "dagster.run_id"
# Registry versions carry the gate's verdict; versions registered before the tag existed were only
# registered when they passed, hence the default.
GATE_TAG, APPROVED_ALIAS = "sluice.gate", "approved"
NOTE_TAG = "mlflow.note.content"  # the description the MLflow UI shows for an experiment or a run
EXPERIMENT_NOTE = (
    "Lineage of the Sluice pipeline (web crawl to pretraining corpus). One parent run per Dagster run "
    "(a crawl's stages, or a mixture), tagged with the crawl or mixture and the config hash, with summary "
    "metrics per stage; one nested run per stage materialization, with its options (params), counts "
    "(metrics), the Delta table versions it read and wrote (datasets) and its gate report (artifact). "
    "Audit and mixture-search runs sit beside them. Registered models: the quality classifiers."
)
# Summary metrics a parent run takes from its stage runs (per stage: <asset>.<metric>).
SUMMARY_METRICS = ("documents_in", "documents", "rejected", "seconds")


def _verdict(mv) -> str:
    return mv.tags.get(GATE_TAG, "approved")


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value, default=str) if isinstance(value, (list, tuple)) else str(value)


@dataclass
class StageRun:
    lineage: LineageResource
    run_id: str
    started: float = field(default_factory=time.time)

    @property
    def client(self):
        return self.lineage.client

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat: dict[str, str] = {}
        _flatten("", params, flat)
        items = [Param(k[:250], v[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, 0) for k, v in metrics.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_table(self, name: str, uri: str, version: int | None, context: str, rows: int | None = None) -> None:
        """Record a Delta table version read (``input``) or written (``output``)."""
        from mlflow.data.delta_dataset_source import DeltaDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        ds = MetaDataset(DeltaDatasetSource(path=uri, delta_table_version=version), name=f"{name}@v{version}")
        tags = [InputTag("mlflow.data.context", context)]
        if rows is not None:
            tags.append(InputTag("sluice.rows", str(rows)))
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(ds._to_mlflow_entity(), tags)])
        self.client.set_tag(self.run_id, f"sluice.{context}.{name}", f"{uri}@v{version}")

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.log_metrics({"duration_s": time.time() - self.started})
        self.client.set_terminated(self.run_id, status=status)

    @property
    def url(self) -> str:
        return self.lineage.run_url(self.run_id)


class LineageResource(ConfigurableResource):
    """Where lineage goes: an MLflow tracking store (SQLite in the lakehouse by default)."""

    tracking_uri: str
    experiment: str = "sluice"
    artifact_root: str = ""
    ui_url: str = "http://127.0.0.1:5000"
    _client: Any = PrivateAttr(default=None)
    _experiment_id: str | None = PrivateAttr(default=None)

    @property
    def git_sha(self) -> str:
        return git_sha()

    @property
    def client(self):
        if self._client is None:
            import mlflow
            from mlflow.tracking import MlflowClient

            logging.getLogger("alembic").setLevel(logging.WARNING)
            if self.tracking_uri.startswith("sqlite:///"):
                Path(self.tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            mlflow.set_tracking_uri(self.tracking_uri)
            with self._store_lock():
                client = MlflowClient(self.tracking_uri)
                client.search_experiments(max_results=1)  # creates or migrates the store's schema now, under the lock
            self._client = client
        return self._client

    @contextlib.contextmanager
    def _store_lock(self):
        """Serialises schema creation and experiment creation on an embedded SQLite store between
        processes: two `sluice run` started together both migrated a new store, and the second died
        on "duplicate column name". A server-backed store (PostgreSQL) does its own locking."""
        if not self.tracking_uri.startswith("sqlite:///"):
            yield
            return
        import fcntl

        with open(self.tracking_uri[len("sqlite:///") :] + ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            client = self.client
            with self._store_lock():
                exp = client.get_experiment_by_name(self.experiment)
                if exp is None:
                    self._experiment_id = client.create_experiment(
                        self.experiment, artifact_location=self.artifact_root or None, tags={NOTE_TAG: EXPERIMENT_NOTE}
                    )
                else:
                    self._experiment_id = exp.experiment_id
                    if not exp.tags.get(NOTE_TAG):
                        client.set_experiment_tag(exp.experiment_id, NOTE_TAG, EXPERIMENT_NOTE)
        return self._experiment_id

    def _find_parent(self, dagster_run_id: str) -> str | None:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{DAGSTER_RUN_TAG}` = '{dagster_run_id}' and tags.`sluice.level` = 'dagster_run'",
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def parent_run(self, dagster_run_id: str, tags: dict[str, str] | None = None) -> str:
        """The MLflow run standing for one Dagster run (found by tag, created once)."""
        found = self._find_parent(dagster_run_id)
        if found:
            return found
        tags = dict(tags or {})
        job, key = tags.get("sluice.job", ""), tags.get("sluice.partition", "")
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{job}[{key}]-{dagster_run_id[:8]}" if job else f"dagster-{dagster_run_id[:8]}",
            tags={DAGSTER_RUN_TAG: dagster_run_id, "sluice.level": "dagster_run", "sluice.git_sha": git_sha(), **tags},
        )
        params = {
            "dagster_run_id": dagster_run_id,
            "job": job,
            "partition": key,
            "config_hash": tags.get("sluice.config_hash", ""),
            "git_sha": git_sha(),
        }
        StageRun(self, run.info.run_id).log_params({k: v for k, v in params.items() if v})
        return run.info.run_id

    def start_stage(
        self,
        dagster_run_id: str,
        asset: str,
        partition: str | None,
        tags: dict[str, str] | None = None,
        description: str = "",
        parent_tags: dict[str, str] | None = None,
    ) -> StageRun:
        parent = self.parent_run(dagster_run_id, {"dagster.partition": partition or "", **(parent_tags or {})})
        if description:
            tags = {NOTE_TAG: description, **(tags or {})}
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{asset}[{partition}]" if partition else asset,
            tags={
                "mlflow.parentRunId": parent,
                DAGSTER_RUN_TAG: dagster_run_id,
                "dagster.asset": asset,
                "dagster.partition": partition or "",
                "sluice.level": "stage",
                "sluice.git_sha": git_sha(),
                **(tags or {}),
            },
        )
        return StageRun(self, run.info.run_id)

    def finish_parent(self, dagster_run_id: str, status: str = "FINISHED") -> bool:
        """End the MLflow run standing for a Dagster run, if one was opened, with its stages' summary
        metrics (``<asset>.documents`` …, ``stages``, ``stages_gate_passed``); True when it was."""
        found = self._find_parent(dagster_run_id)
        if found:
            stages = self.client.search_runs([self.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{found}'", max_results=500)
            summary: dict[str, float] = {
                "stages": len(stages),
                "stages_gate_passed": sum(r.data.metrics.get("gate_passed", 0.0) for r in stages),
            }
            for r in stages:
                asset = r.data.tags.get("dagster.asset", r.info.run_name)
                summary.update({f"{asset}.{m}": r.data.metrics[m] for m in SUMMARY_METRICS if m in r.data.metrics})
            StageRun(self, found).log_metrics(summary)
            self.client.set_terminated(found, status=status)
        return found is not None

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{self.experiment_id}/runs/{run_id}"

    def artifact_url(self, run_id: str, path: str) -> str:
        """A run's artifact as the MLflow UI serves it (``sluice mlflow-ui``): plots shown inline in Dagster."""
        from urllib.parse import quote

        return f"{self.ui_url}/get-artifact?path={quote(path)}&run_uuid={run_id}"

    # ---- the model registry ------------------------------------------------------------------

    def log_model(self, run_id: str, model_dir: str | Path) -> None:
        """Keep a model folder as the run's ``model`` artifacts (for audit, registered or not)."""
        self.client.log_artifacts(run_id, str(model_dir), "model")

    def register_model(self, run_id: str, name: str, approved: bool, tags: dict[str, str] | None = None) -> str:
        """Register the run's ``model`` artifacts (see :meth:`log_model`) as a new version of
        ``name``, tagged ``sluice.gate`` = ``approved`` or ``rejected``; returns the version. An
        approved version also takes the ``approved`` alias. A rejected one stays listed (with its
        metrics) for audit, but :meth:`resolve_model` never hands it out."""
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            client.create_registered_model(name, description="Sluice quality classifier (quality_classifier asset)")
        except MlflowException:
            pass  # exists
        source = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/model"
        mv = client.create_model_version(
            name, source=source, run_id=run_id, tags={**(tags or {}), GATE_TAG: "approved" if approved else "rejected"}
        )
        if approved:
            client.set_registered_model_alias(name, APPROVED_ALIAS, mv.version)
        return str(mv.version)

    def resolve_model(self, model: str, cache_dir: str | Path) -> tuple[str, str, str | None]:
        """(local path, canonical uri, registry version) of a model reference, downloaded once into
        ``cache_dir``: ``models:/<name>/latest`` (the newest approved version), ``models:/<name>@<alias>``
        or ``models:/<name>/<version>`` (an approved version); else a path or hub id, returned as is.
        Raises ``LookupError`` saying why when nothing approved matches."""
        if not model.startswith("models:/"):
            return model, model, None
        import mlflow

        ref = model[len("models:/") :]
        name, at, alias = ref.partition("@")
        if not at:
            name, _, version = ref.partition("/")
        client = self.client
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise LookupError(f"{model}: no registered version of {name!r} (materialize quality_classifier first)")
        approved = [v for v in versions if _verdict(v) == "approved"]
        if at:
            try:
                mv = client.get_model_version_by_alias(name, alias)
            except Exception as e:
                raise LookupError(f"{model}: {name!r} has no version with alias {alias!r}") from e
        elif version in ("", "latest"):
            if not approved:
                rejected = ", ".join(f"v{v.version} ({v.tags.get('verdict') or v.tags.get('roc_auc', '?')})" for v in versions)
                raise LookupError(f"{model}: no approved version of {name!r}; every version failed its gate: {rejected}")
            mv = max(approved, key=lambda v: int(v.version))
        else:
            matching = [v for v in versions if str(v.version) == version]
            if not matching:
                raise LookupError(f"{model}: {name!r} has no version {version}")
            mv = matching[0]
        if _verdict(mv) != "approved":
            raise LookupError(f"{model}: version {mv.version} of {name!r} failed its gate ({GATE_TAG}={_verdict(mv)})")
        dest = Path(cache_dir) / name / str(mv.version)
        # a transformers folder (config.json), a fastText .bin, or a model Sluice trained (its card says what it holds)
        if not (dest / "config.json").exists() and not any(dest.glob("*.bin")) and not (dest / MODEL_CARD).exists():
            dest.mkdir(parents=True, exist_ok=True)
            mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(dest), tracking_uri=self.tracking_uri)
            # download_artifacts puts the folder's content under its last path component
            inner = dest / Path(mv.source).name
            if inner.is_dir():
                for p in inner.iterdir():
                    p.rename(dest / p.name)
                inner.rmdir()
        return str(dest), f"models:/{name}/{mv.version}", str(mv.version)
