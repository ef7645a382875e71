"""The stage framework: one envelope around every asset's work.

An asset declares a :class:`StageSpec` (name, upstreams, output tables from the table contract, the
rejection stage, the options that define its result, preview columns) and writes a ``work``
function: read pinned inputs, stage output files, say how to gate them. :func:`stage_asset` turns the
pair into a Dagster asset, and :func:`run_stage` owns the rest, the same way for every stage:

* an MLflow run nested under the Dagster run's (params, input and output table versions, metrics,
  artifacts), ended FAILED if the work raises;
* write-audit-publish: one transaction per output table is opened before the work and staged into;
  the gate runs on exactly the staged files; only when it passes are the tables committed (with the
  Dagster run, MLflow run, code version and git sha in the Delta commit info). A failed candidate is
  moved to ``_quarantine/`` for audit and the tables' current versions do not change, so no reader
  (Dagster, DuckDB, Spark, a training job) ever sees it;
* the gate's outcome as the blocking ``gate`` asset check, and one set of metadata names for every
  asset (``delta_version``, ``tables``, ``upstream``, ``documents_in``, ``rejected``,
  ``rejections_by_reason``, ``docs_per_s``, ``preview``, ``mlflow_run``, ``gate_passed``,
  ``status``, and Dagster's ``dagster/row_count``, ``dagster/table_name``, ``dagster/uri``,
  ``dagster/column_schema``);
* ``code_version`` from the options that define the result and the output schemas, so changing a
  threshold marks exactly the affected assets unsynced.

It is longer than the other modules on purpose: the write-audit-publish sequence reads best in one
place. How metadata is laid out for the UI lives in ``assets.ui_metadata``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AllPartitionMapping,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    Backoff,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableSchema,
    asset,
)

from assets.lineage import LineageResource, StageRun
from assets.partitions import crawl_partitions
from assets.resources import GpuLauncher, LakehouseResource, SparkResource
from assets.ui_metadata import counts_table, ui_metadata
from quality.gate import GateResult, GateSpec, run_gate
from storage import tables as T
from storage.delta_table import CommitResult, DataFile, Transaction, open_table, snapshot_files, table_exists

RESOURCE_TYPES = {"lakehouse": LakehouseResource, "lineage": LineageResource, "spark": SparkResource, "gpu": GpuLauncher}
OWNERS = ["team:data-platform"]
# Up to this many staged rows a Spark stage's gate runs GX on pandas, not Spark: on Spark every
# metric is a Spark job, about 10 s of fixed cost for a 35-expectation suite, which dominated
# small crawls (a 100-page crawl's `filtered`: 5 s of work, 12 s of gate); pandas validates 20k
# rows in about a second. The suites' regexes are written to mean the same in Java and Python.
GATE_PANDAS_MAX_ROWS = 20_000


@dataclass(frozen=True)
class StageSpec:
    name: str  # the asset, and its table when it writes one
    description: str
    group: str
    kinds: tuple[str, ...]
    # cfg → the options that define the result (by config section); they are baked into the asset
    # and its code_version.
    options: Callable[[Any], dict[str, Any]]
    upstreams: tuple[str, ...] = ()
    outputs: tuple[T.TableSpec, ...] = ()  # first: the asset's own table; REJECTIONS when it rejects
    rejection_stage: str | None = None  # its `stage` partition in `rejections`
    gate_description: str = ""
    # A data gate blocks downstream and fails the run; a model's gate (blocking=False) only warns:
    # an optional model that fails is not promoted, and the data flows on without it.
    gate_blocking: bool = True
    preview_columns: tuple[str, ...] = ()
    engine: str = "spark"  # how the gate reads the staged table: spark or pandas
    resources: tuple[str, ...] = ("lakehouse", "lineage")
    pool: str | None = None
    # Bump when the code changes what the stage produces (options and schemas are hashed anyway).
    revision: str = "1"
    # options → why there is nothing to do (the asset materializes as skipped), or None.
    skip: Callable[[dict[str, Any]], str | None] | None = None
    # cfg → the asset's partitions (default: one per crawl) and the column that holds the key.
    partitions: Callable[[Any], Any] | None = None
    partition_column: str = "crawl_id"
    # cfg → whether the asset exists at all (e.g. `mixed` only when a mixture is configured).
    enabled: Callable[[Any], bool] | None = None
    # cfg → when it runs on its own: default, as soon as its upstreams of the same partition are
    # updated and their blocking gates passed; None for the entry stage (the landing sensor asks).
    automation: Callable[[Any], Any] | None = field(default=lambda cfg: follow_upstreams())

    @property
    def table(self) -> T.TableSpec | None:
        return self.outputs[0] if self.outputs and self.outputs[0] is not T.REJECTIONS else None

    def table_schema(self, t: T.TableSpec, options: dict[str, Any]) -> pa.Schema:
        return t.schema(options.get(t.options_key) if t.options_key else None)


@dataclass
class Pinned:
    """An upstream table version this materialization reads."""

    table: str
    version: int
    files: list[DataFile]

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    @property
    def rows(self) -> int:
        return sum(f.num_records or 0 for f in self.files)


@dataclass
class Outcome:
    """What a stage's work hands back to the runner."""

    gate: GateSpec
    accounting: dict[str, Any] | None = None
    documents_in: int | None = None
    reasons: dict[str, int] = field(default_factory=dict)  # rejections by reason
    metrics: dict[str, float] = field(default_factory=dict)  # more MLflow metrics
    metadata: dict[str, Any] = field(default_factory=dict)  # more Dagster metadata
    artifacts: list[tuple[Path, str]] = field(default_factory=list)  # (file, MLflow artifact folder)
    # Run after the tables are published, with their commits; may return more metadata.
    on_publish: list[Callable[[dict[str, CommitResult]], dict[str, Any] | None]] = field(default_factory=list)
    # Run after a failed gate, with the gate's failures; may return more metadata (e.g. record a
    # rejected model where people look for models).
    on_reject: list[Callable[[list[str]], dict[str, Any] | None]] = field(default_factory=list)
    # Run after publish or quarantine (e.g. a GPU job's resume folder).
    cleanup: list[Callable[[], None]] = field(default_factory=list)


class StageContext:
    """What a stage's work sees: its options, resources, pinned inputs and staged outputs."""

    def __init__(
        self,
        spec: StageSpec,
        context: AssetExecutionContext,
        options: dict[str, Any],
        resources: dict[str, Any],
        run: StageRun,
        outputs: dict[str, Transaction],
    ) -> None:
        self.spec = spec
        self.dagster = context
        self.log = context.log
        self.options = options
        self.resources = resources
        self.lakehouse: LakehouseResource = resources["lakehouse"]
        self.lineage: LineageResource = resources["lineage"]
        self.run = run
        self.key = context.partition_key  # the crawl, or the mixture
        self.partition = {spec.partition_column: self.key}
        self.run_key = f"{spec.name}-{self.key}-{context.run_id[:8]}"
        self.inputs: dict[str, int] = {}
        self._outputs = outputs
        self._spark = None

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A folder for this run's intermediate files (a job's spilled shuffles and checkpoints),
        removed afterwards whatever happens: nothing in it is a result."""
        path = self.lakehouse.folder(T.SCRATCH, self.spec.name, f"{self.key}-{self.dagster.run_id[:8]}")
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    @property
    def crawl_id(self) -> str:
        """The crawl of a crawl-partitioned stage; a mixture's stage has a mixture name instead (``key``)."""
        if self.spec.partition_column != "crawl_id":
            raise AttributeError(f"{self.spec.name} is partitioned by {self.spec.partition_column}, not by crawl: use ctx.key")
        return self.key

    @property
    def spark(self):
        """The Spark session, with this stage's job group (the Spark UI groups jobs by stage)."""
        if self._spark is None:
            self._spark = self.resources["spark"].session()
            self._spark.sparkContext.setJobGroup(f"{self.spec.name}:{self.key}", f"sluice {self.spec.name} {self.key}")
        return self._spark

    def pin(self, table: str, optional: bool = False) -> Pinned | None:
        """The version of ``table`` recorded by its latest materialization of this partition (which must
        have passed its gate), with its files; recorded as an input. ``optional``: None when that
        materialization was skipped (e.g. `rewritten` with no rewriter configured)."""
        version = pinned_upstream(self.dagster, table, optional)
        if version is None:
            return None
        self.read_input(table, version)
        return Pinned(table, version, snapshot_files(self.lakehouse.uri(table), version, self.partition))

    def pin_current(self, table: str, optional: bool = False) -> Pinned | None:
        """The current version of a whole table (every partition). Safe to read because of
        write-audit-publish: a table's current version always passed its gate."""
        version = _current_version(self.lakehouse.uri(table))
        if version is None:
            if optional:
                return None
            raise Failure(f"{table} does not exist yet in {self.lakehouse.root}: materialize it first", allow_retries=False)
        self.read_input(table, version)
        return Pinned(table, version, snapshot_files(self.lakehouse.uri(table), version))

    def read_input(self, table: str, version: int | None) -> None:
        """Record a table version read (beyond the pinned upstreams, e.g. dedup's own index)."""
        self.inputs[table] = version  # type: ignore[assignment]
        self.run.log_table(table, self.lakehouse.uri(table), version, "input")

    def output(self, table: str) -> Transaction:
        return self._outputs[table]

    def staged(self, table: str):
        """The staged rows of an output as a Spark DataFrame (what its commit would publish)."""
        from spark_jobs.spark_io import read_staged

        return read_staged(self.spark, self._outputs[table], self.spec.table_schema(T.TABLES[table], self.options))

    def staged_arrow(self, table: str, columns: list[str] | None = None) -> pa.Table:
        """The staged rows of an output with pyarrow (GPU stages' small tables); all columns, the
        partition values included, unless ``columns`` are named."""
        txn = self._outputs[table]
        schema = self.spec.table_schema(T.TABLES[table], self.options)
        data = pa.schema([f for f in schema if f.name not in txn.partition_by])
        if columns:
            data = pa.schema([data.field(c) for c in columns])
        parts = [pq.read_table(f, columns=data.names).cast(data) for f in txn.staged_files()]
        out = pa.concat_tables(parts) if parts else data.empty_table()
        if not columns:
            for c in txn.partition_by:
                out = out.append_column(c, pa.array([txn.partition[c]] * out.num_rows, pa.string()))
        return out

    def report_path(self, suffix: str = ".png") -> Path:
        """Where this materialization's plot goes: ``_reports/<asset>/<crawl>-<run>.png``."""
        return self.lakehouse.folder(T.REPORTS, self.spec.name, f"{self.key}-{self.dagster.run_id[:8]}{suffix}")

    def gpu_job(self, module: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.resources["gpu"].run(self.dagster, module, params)


# ---- Dagster ---------------------------------------------------------------------------------------


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.model_dump(mode="json") if hasattr(v, "model_dump") else v) for k, v in options.items()}


def code_version(spec: StageSpec, options: dict[str, Any]) -> str:
    """A hash of what defines the stage's result: its revision, options and output schemas."""
    schemas = {t.name: [f"{f.name}:{f.type}" for f in spec.table_schema(t, options)] for t in spec.outputs}
    blob = json.dumps(
        {"stage": spec.name, "revision": spec.revision, "options": _jsonable(options), "schemas": schemas}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def follow_upstreams() -> AutomationCondition:
    """Run when an upstream of the partition was updated by a run that did not also run this stage
    (a click, a backfill of that stage alone), none is missing or running, and every upstream's
    blocking gate passed (a failed gate publishes nothing, and stops the chain here).

    Not Dagster's ``eager``: its "newly missing" trigger stays armed on every stage of a new crawl
    while that crawl's whole run is going, with only "in progress" holding it back, so a failed
    step or a tick that misreads a stage's state launched stages again (three runs for one crawl in
    CI). A new crawl is the landing sensor's: one run of every stage, which sets its asset selection
    so that ``executed_with_root_target`` ignores the updates it makes."""
    A = AutomationCondition
    return (
        A.any_deps_updated().since_last_handled()
        & ~A.any_deps_missing()
        & ~A.any_deps_in_progress()
        & ~A.in_progress()
        & A.all_deps_blocking_checks_passed()
    ).with_label("an upstream re-materialized on its own, and every upstream gate passed")


def column_schema(schema: pa.Schema, table: T.TableSpec | None = None) -> TableSchema:
    """The Dagster column schema, each column described from the table contract."""
    return TableSchema(columns=[TableColumn(f.name, str(f.type), description=table.describe(f.name) if table else None) for f in schema])


def parent_run_tags(context: AssetExecutionContext) -> dict[str, str]:
    """What the MLflow run standing for the Dagster run says about it: job, crawl or mixture, config."""
    key = context.partition_key if context.has_partition_key else ""
    job = context.job_name
    # by the asset's partitions, not the job's name: the automation sensor's runs are all `__ASSET_JOB`
    mixture = bool(key) and context.assets_def.partitions_def != crawl_partitions
    what = f"mixture {key}" if mixture else f"crawl {key}" if key else "no partition"
    return {
        "sluice.job": job,
        "sluice.partition": key,
        "sluice.config_hash": context.run.tags.get("sluice/config_hash", ""),
        "mlflow.note.content": f"Dagster run {context.run_id} of job {job} for {what}: one nested MLflow run per stage "
        "(params, input and output table versions, metrics, gate report).",
    }


def plain_description(text: str) -> str:
    """A module docstring as the UIs render it (Markdown): reST ````x```` and ``:func:`x``` become `x`."""
    text = re.sub(r":(?:func|class|meth|mod|attr):`~?([^`]+)`", r"`\1`", text or "")
    text = re.sub(r"``([^`]+)``", r"`\1`", text).strip()
    # The catalog lists the first line as plain text: no code marks there.
    first, sep, rest = text.partition("\n")
    return first.replace("`", "") + sep + rest


def stage_asset(spec: StageSpec, work: Callable[[StageContext], Outcome], config: Any) -> AssetsDefinition:
    """The Dagster asset of a stage, its options taken from ``config`` (the Sluice configuration)."""
    options = spec.options(config)
    version = code_version(spec, options)
    description = plain_description(spec.description)
    kinds = set(spec.kinds)
    if spec.skip is not None and (why := spec.skip(options)):
        # It still materializes (downstream pins read that it was skipped), but the catalog and the
        # graph say at once that it does nothing in this configuration.
        description = f"Skipped in this configuration ({why}): each run records a skipped materialization.\n\n{description}"
        kinds.add("skipped")

    def body(context: AssetExecutionContext, **resources: Any) -> MaterializeResult:
        return run_stage(spec, work, options, version, context, resources)

    params = [inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=AssetExecutionContext)]
    params += [inspect.Parameter(r, inspect.Parameter.KEYWORD_ONLY, annotation=RESOURCE_TYPES[r]) for r in spec.resources]
    body.__signature__ = inspect.Signature(params)  # typed resources, injected by name
    body.__name__ = spec.name
    metadata: dict[str, Any] = {}
    if spec.table is not None:
        metadata = {
            "dagster/table_name": spec.table.name,
            "dagster/column_schema": column_schema(spec.table_schema(spec.table, options), spec.table),
        }
    return asset(
        name=spec.name,
        partitions_def=spec.partitions(config) if spec.partitions else crawl_partitions,
        # A mixture reads every crawl partition of its upstreams.
        deps=[AssetDep(u, partition_mapping=AllPartitionMapping()) if spec.partitions else AssetKey(u) for u in spec.upstreams],
        group_name=spec.group,
        kinds=kinds,
        pool=spec.pool,
        owners=OWNERS,
        code_version=version,
        metadata=metadata,
        automation_condition=spec.automation(config) if spec.automation else None,
        retry_policy=RetryPolicy(max_retries=config.dagster.retries, delay=config.dagster.retry_delay_seconds, backoff=Backoff.EXPONENTIAL),
        check_specs=[
            AssetCheckSpec("gate", asset=spec.name, blocking=spec.gate_blocking, description=plain_description(spec.gate_description)),
            *([AssetCheckSpec("ran", asset=spec.name, blocking=False, description=RAN_CHECK)] if spec.skip is not None else []),
        ],
        description=description,
    )(body)


def pinned_upstream(context: AssetExecutionContext, table: str, optional: bool = False) -> int | None:
    """The Delta version of ``table`` recorded by its latest materialization of this partition. A
    materialization whose gate failed published nothing; it is refused here as a second line. A
    skipped one (nothing to do) gives None when the input is ``optional``."""
    from dagster import AssetRecordsFilter

    partitions = [context.partition_key] if context.has_partition_key else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(table), asset_partitions=partitions), limit=1
    ).records
    if not records:
        raise Failure(f"{table} has no materialization for partition {context.partition_key!r}: materialize it first", allow_retries=False)
    md = records[0].asset_materialization.metadata
    if optional and md.get("status") is not None and md["status"].value == "skipped":
        return None
    if not md.get("gate_passed") or not md["gate_passed"].value:
        raise Failure(
            f"{table} (partition {context.partition_key!r}) failed its gate in its latest materialization; the "
            "candidate was quarantined and is not used downstream. Fix the input and re-materialize it.",
            allow_retries=False,
        )
    return int(md["delta_version"].value)


# ---- the envelope ----------------------------------------------------------------------------------


@contextlib.contextmanager
def stage_run(lineage: LineageResource, context: AssetExecutionContext, name: str, description: str = "") -> Iterator[StageRun]:
    """An MLflow run nested under the Dagster run's; marked FAILED if the body raises."""
    run = lineage.start_stage(
        context.run_id,
        name,
        context.partition_key if context.has_partition_key else None,
        description=description,
        parent_tags=parent_run_tags(context),
    )
    context.log.info(f"MLflow run {run.run_id} ({run.url})")
    try:
        yield run
    except BaseException:
        run.end("FAILED")
        raise
    else:
        try:
            run.end("FINISHED")
        except Exception as e:  # noqa: BLE001 - the stage is done (and maybe published): a note, not a retry
            context.log.warning(f"{name}: could not end MLflow run {run.run_id}: {type(e).__name__}: {e}")


def _partition(spec: StageSpec, t: T.TableSpec, key: str) -> dict[str, str]:
    part = {spec.partition_column: key}
    if "stage" in t.partition_by:
        part["stage"] = spec.rejection_stage or spec.name
    return part


def run_stage(
    spec: StageSpec,
    work: Callable[[StageContext], Outcome],
    options: dict[str, Any],
    version: str,
    context: AssetExecutionContext,
    resources: dict[str, Any],
) -> MaterializeResult:
    lh: LakehouseResource = resources["lakehouse"]
    lineage: LineageResource = resources["lineage"]
    if spec.skip is not None and (why := spec.skip(options)):
        context.log.info(f"{spec.name} skipped (expected, not an error): {why}")
        return MaterializeResult(
            metadata={"status": "skipped", "skipped": why, "gate_passed": True},
            check_results=[
                AssetCheckResult(asset_key=spec.name, check_name="gate", passed=True, description=f"skipped: {why}"),
                *ran_check(spec, why),
            ],
        )
    key = context.partition_key
    if context.retry_number > 0 and (done := _published_by_run(lh, spec, key, context.run_id)):
        # Belt and braces: a retry of a step whose tables this run already committed publishes nothing again.
        context.log.warning(
            f"{spec.name}: retry {context.retry_number} of a step that already committed "
            f"{', '.join(f'{n} v{v}' for n, v in done.items())} in this run; not published again"
        )
        md = {
            "status": "published",
            "gate_passed": True,
            "tables": MetadataValue.json({n: {"version": v} for n, v in done.items()}),
            "post_commit_warnings": MetadataValue.md(
                f"- retry {context.retry_number}: the tables were committed by an earlier attempt of this run; nothing was published again"
            ),
        }
        if spec.table is not None and spec.table.name in done:
            md["delta_version"] = done[spec.table.name]
        return MaterializeResult(
            metadata=md,
            check_results=[
                AssetCheckResult(
                    asset_key=spec.name, check_name="gate", passed=True, description="passed in an earlier attempt of this run"
                ),
                *ran_check(spec, None),
            ],
        )
    warnings: list[str] = []
    commits: dict[str, CommitResult] = {}

    def after_commit(what: str, fn: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        """Work after the tables are committed cannot fail the step: a retry would publish again.
        Its failure becomes a recorded warning (log, metadata ``post_commit_warnings``, MLflow tag)."""
        if not commits:
            return fn(*args)
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - anything: the commit stands, the step must not be retried
            published = ", ".join(f"{n} v{c.version}" for n, c in commits.items())
            msg = f"{what} failed after {published} was committed (kept; not retried): {type(e).__name__}: {e}"
            context.log.warning(f"{spec.name}: {msg}")
            warnings.append(msg)
            return default

    with stage_run(lineage, context, spec.name, plain_description(spec.description)) as run, contextlib.ExitStack() as stack:
        run.log_params({spec.partition_column: key, "code_version": version, **_jsonable(options)})
        txns = {t.name: stack.enter_context(lh.transaction(t, _partition(spec, t, key))) for t in spec.outputs}
        for txn in txns.values():
            if txn.removed_stray:
                context.log.warning(f"{txn.root.name}: removed {len(txn.removed_stray)} stray files left by a killed writer")
        ctx = StageContext(spec, context, options, resources, run, txns)
        t0 = time.time()
        out = work(ctx)
        seconds = time.time() - t0
        primary = spec.table
        table_data = None
        if out.gate.table and primary is not None:
            on_spark = spec.engine == "spark" and txns[primary.name].staged_rows() > GATE_PANDAS_MAX_ROWS
            table_data = ctx.staged(primary.name) if on_spark else ctx.staged_arrow(primary.name).to_pandas()
        gate = run_gate(out.gate, lh.quality_dir, run_key=ctx.run_key, table_data=table_data, accounting=out.accounting)
        context.log.info(gate.describe())
        preview = _preview(txns[primary.name].staged_files(), list(spec.preview_columns), lh.preview_rows) if primary else None
        staged_schema = _staged_schema(txns[primary.name], spec.table_schema(primary, options)) if primary else None
        staged_rows = {n: txn.staged_rows() for n, txn in txns.items()}
        extra_md: dict[str, Any] = {}
        quarantined: dict[str, str] = {}
        try:
            if gate.success:
                info = {
                    "dagster_run_id": context.run_id,
                    "asset": spec.name,
                    "dagster_partition": key,
                    "mlflow_run_id": run.run_id,
                    "git_sha": lineage.git_sha,
                    "code_version": version,
                    "inputs": dict(ctx.inputs),
                }
                for name, txn in txns.items():
                    t_commit = time.time()
                    commits[name] = txn.commit(mode="replace", commit_info=info, empty_schema=spec.table_schema(T.TABLES[name], options))
                    context.log.info(
                        f"{name} v{commits[name].version}: {commits[name].rows} rows in {commits[name].files} files "
                        f"(commit {time.time() - t_commit:.1f}s)"
                    )
                for hook in out.on_publish:
                    extra_md.update(after_commit(f"post-commit step {_hook_name(hook)}", hook, commits) or {})
            else:
                note = {
                    "gate": gate.gate,
                    "failures": gate.failed,
                    "gate_report": gate.result_json,
                    "dagster_run_id": context.run_id,
                    "mlflow_run_id": run.run_id,
                    "code_version": version,
                }
                for name, txn in txns.items():
                    dest = lh.folder(
                        T.QUARANTINE, name, *[f"{k}={v}" for k, v in txn.partition.items()], f"{context.run_id[:8]}-{txn.txn_id[:8]}"
                    )
                    quarantined[name] = str(txn.quarantine(dest, note))
                    run.client.set_tag(run.run_id, f"sluice.quarantine.{name}", quarantined[name])
                if quarantined:
                    context.log.warning(
                        f"gate failed: nothing published; the candidate is kept for audit in {', '.join(quarantined.values())}"
                    )
                for hook in out.on_reject:
                    extra_md.update(hook(gate.failed) or {})
        finally:
            for fn in out.cleanup:
                after_commit(f"clean-up {_hook_name(fn)}", fn)

        rows = {n: (commits[n].rows if n in commits else staged_rows[n]) for n in txns}
        rejected = rows.get(T.REJECTIONS.name, 0) if T.REJECTIONS in spec.outputs else None
        after_commit("MLflow metrics", run.log_metrics, _stage_metrics(out, gate, seconds, rows, primary, rejected))
        for name, res in commits.items():
            after_commit(f"MLflow dataset {name}", run.log_table, name, lh.uri(name), res.version, "output", res.rows)
        after_commit("MLflow gate report", run.log_artifact, gate.result_json, "gates")
        for path, folder in out.artifacts:
            after_commit(f"MLflow artifact {Path(path).name}", run.log_artifact, path, folder)
        schema = staged_schema
        if primary is not None and primary.name in commits:
            schema = after_commit(
                "reading the committed schema", lambda: open_table(lh.uri(primary.name)).schema().to_arrow(), default=staged_schema
            )
        md = _stage_metadata(
            out, gate, version, seconds, ctx.inputs, lh, run, primary, commits, rows, rejected, schema, preview, quarantined, extra_md
        )
        md = after_commit("laying out metadata for the UI", lambda: ui_metadata(md, run, lh), default=md)
        if warnings:
            md["post_commit_warnings"] = MetadataValue.md("\n".join(f"- {w}" for w in warnings))
            after_commit("MLflow warning tag", run.client.set_tag, run.run_id, "sluice.post_commit_warnings", "\n".join(warnings)[:5000])
    return MaterializeResult(metadata=md, check_results=[gate_check(spec.name, gate, spec.gate_blocking), *ran_check(spec, None)])


def _stage_metrics(
    out: Outcome, gate: GateResult, seconds: float, rows: dict[str, int], primary: T.TableSpec | None, rejected: int | None
) -> dict[str, float]:
    """The stage run's MLflow metrics: time, gate, documents in and out, rejections by reason."""
    docs_in = out.documents_in
    return {
        "seconds": seconds,
        "gate_passed": float(gate.success),
        **({"documents_in": docs_in, "docs_per_s": docs_in / seconds if seconds else 0.0} if docs_in is not None else {}),
        **({"documents": rows[primary.name]} if primary else {}),
        **({"rejected": rejected} if rejected is not None else {}),
        **{f"rejected.{k}": v for k, v in out.reasons.items()},
        **out.metrics,
    }


def _stage_metadata(
    out: Outcome,
    gate: GateResult,
    version: str,
    seconds: float,
    inputs: dict[str, Any],
    lh: LakehouseResource,
    run: StageRun,
    primary: T.TableSpec | None,
    commits: dict[str, CommitResult],
    rows: dict[str, int],
    rejected: int | None,
    schema: pa.Schema | None,
    preview: str | None,
    quarantined: dict[str, str],
    published: dict[str, Any],
) -> dict[str, Any]:
    """The materialization's metadata: what was published (or quarantined), from what, its schema and
    preview, the stage's own metadata, and links to its MLflow run and gate report."""
    md: dict[str, Any] = {"status": "published" if gate.success else "quarantined", "code_version": version}
    if inputs:
        md["upstream"] = MetadataValue.json(dict(inputs))
    if primary is not None:
        current = commits[primary.name].version if primary.name in commits else _current_version(lh.uri(primary.name))
        if current is not None:
            md["delta_version"] = current
        md["dagster/table_name"] = primary.name
        md["dagster/uri"] = MetadataValue.path(lh.uri(primary.name))
        md["dagster/column_schema"] = column_schema(pa.schema(schema), primary)
        if gate.success:
            md["dagster/row_count"] = rows[primary.name]
        else:
            md["candidate_rows"] = rows[primary.name]
        md["preview"] = MetadataValue.md(preview or "(empty)")
    if rows:
        md["tables"] = MetadataValue.json(
            {n: {"version": commits[n].version if n in commits else None, "rows": r} for n, r in rows.items()}
        )
    if out.documents_in is not None:
        md["documents_in"] = out.documents_in
        md["docs_per_s"] = round(out.documents_in / seconds, 1) if seconds else 0.0
    if rejected is not None:
        md["rejected"] = rejected
        md["rejections_by_reason"] = MetadataValue.md(counts_table(out.reasons))
    if quarantined:
        md["quarantine"] = MetadataValue.json(quarantined)
    md.update(out.metadata)
    md.update(published)  # what the stage's post-commit steps returned
    md.update(
        {
            "seconds": round(seconds, 2),
            "mlflow_run": MetadataValue.url(run.url),
            "mlflow_run_id": run.run_id,
            "gate_report": MetadataValue.url(run.lineage.artifact_url(run.run_id, f"gates/{Path(gate.result_json).name}")),
            "gate_report_file": MetadataValue.path(gate.result_json),
            "gate_passed": gate.success,
        }
    )
    return md


def _hook_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _published_by_run(lh: LakehouseResource, spec: StageSpec, key: str, run_id: str) -> dict[str, int] | None:
    """Versions of every output table that this Dagster run already committed for this stage and
    partition (an earlier attempt of the step), or None when it has not committed them all."""
    found: dict[str, int] = {}
    for t in spec.outputs:
        uri = lh.uri(t.name)
        if not table_exists(uri):
            return None
        for c in open_table(uri).history(limit=50):
            meta = c.get("sluice") or {}
            meta = json.loads(meta) if isinstance(meta, str) else meta
            if meta.get("dagster_run_id") == run_id and meta.get("asset") == spec.name and meta.get("dagster_partition") == key:
                found[t.name] = int(c["version"])
                break
        else:
            return None
    return found or None


def _current_version(uri: str) -> int | None:
    return open_table(uri).version() if table_exists(uri) else None


def _staged_schema(txn: Transaction, table_schema: pa.Schema) -> pa.Schema:
    files = txn.staged_files()
    if not files:
        return table_schema
    data = pq.read_schema(files[0])
    return pa.schema([*[f for f in data if f.name not in txn.partition_by], *[(c, pa.string()) for c in txn.partition_by]])


def _preview(files: list[Path], columns: list[str], rows: int) -> str | None:
    """A Markdown table of the first rows (one file's first row group only)."""
    if not files or not columns:
        return None
    batch = next(pq.ParquetFile(files[0]).iter_batches(batch_size=rows, columns=columns), None)
    if batch is None:
        return None
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "\n".join("| " + " | ".join(T.preview_cell(r[c]) for c in columns) + " |" for r in batch.to_pylist())


RAN_CHECK = (
    "Whether the stage did its work: a warning when it was skipped (nothing to do in this configuration), so that a "
    "skipped materialization does not look like a fresh one. Not blocking: what is downstream runs on."
)


def ran_check(spec: StageSpec, skipped: str | None) -> list[AssetCheckResult]:
    """The ``ran`` check of a stage that can be skipped (none for the others): passed when it did its
    work, a warning with the reason when it was skipped."""
    if spec.skip is None:
        return []
    return [
        AssetCheckResult(
            asset_key=spec.name,
            check_name="ran",
            passed=skipped is None,
            severity=AssetCheckSeverity.WARN,
            description=f"skipped: {skipped}" if skipped else "ran",
        )
    ]


def gate_check(asset_name: str, gate_result: GateResult, blocking: bool = True) -> AssetCheckResult:
    """The gate's outcome as a Dagster asset check result (ERROR for a blocking gate, else WARN)."""
    return AssetCheckResult(
        asset_key=asset_name,
        check_name="gate",
        passed=gate_result.success,
        severity=AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN,
        description=gate_result.describe()[:2000],
        metadata={
            "evaluated": gate_result.evaluated,
            "failed": len(gate_result.failed),
            "result_json": MetadataValue.path(gate_result.result_json),
            # Great Expectations Data Docs: a local HTML file (a browser on this machine opens it; the UIs do not serve it).
            "data_docs_file": MetadataValue.path(gate_result.docs_pages[0].removeprefix("file://"))
            if gate_result.docs_pages
            else MetadataValue.text("-"),
            "failures": MetadataValue.md("\n".join(f"- {f}" for f in gate_result.failed) or "none"),
        },
    )
