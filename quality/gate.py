"""The gate runner: Great Expectations suites over a table version and its accounting.

A gate has two suites:

* ``<gate>.table`` — expectations on the rows of the version just written (schema, nulls,
  uniqueness, ranges), run by GX on the Spark DataFrame of that version, or on pandas for small
  data (``assets.stage.GATE_PANDAS_MAX_ROWS``);
* ``<gate>.accounting`` — expectations on one row of counts that the stage measured independently
  (records read, rows committed, rows rejected), which is how conservation is checked.

Every run is kept: the validation result as JSON and as a Data Docs page, both linked from the
asset's metadata. No Dagster import here: the asset checks in ``assets/`` call :func:`run_gate`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class GateSpec:
    name: str
    table: list[Any] = field(default_factory=list)  # gx expectations over the table rows
    accounting: list[Any] = field(default_factory=list)  # gx expectations over the counts row


@dataclass
class GateResult:
    gate: str
    success: bool
    evaluated: int
    failed: list[str]
    result_json: str
    docs_pages: list[str]
    summary: dict[str, Any]

    def describe(self) -> str:
        if self.success:
            return f"gate {self.gate}: {self.evaluated} expectations passed"
        return f"gate {self.gate}: {len(self.failed)} of {self.evaluated} failed: " + "; ".join(self.failed)


# The Data Docs index lists the newest this many validation results (two pipeline runs' gates).
# GX loads every result it lists on every rebuild, so an unbounded index made each gate slower with
# every run the lakehouse kept (about 6 ms per stored result on 2 cores: 2.3 s per gate at 240).
# Older results keep their pages, linked from each asset's metadata.
DOCS_INDEX_LIMIT = 32


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def preload() -> None:
    """Import Great Expectations ahead of the first gate (on a thread, while something else waits).
    Any failure is left for the gate itself to raise, where it is reported."""
    try:
        import great_expectations  # noqa: F401
    except Exception:  # noqa: BLE001 - the gate imports it again and reports the error
        pass


# One Data Context per quality folder per process, kept while its great_expectations.yml is the one it
# last read or wrote (another process may rewrite it: then it is read again). Opening a file context
# and re-registering each suite, validation definition and checkpoint cost about 0.8 s of a 1.9 s
# gate on 2 cores, for a configuration that changes only when the expectations do.
@dataclass
class _Gx:
    ctx: Any
    stamp: tuple = ()
    checkpoints: dict[str, tuple[str, Any]] = field(default_factory=dict)  # suite -> (fingerprint, checkpoint)
    sites: tuple[str, list[Any]] = ("", [])  # (the sites' configuration, their site builders)

    def site_builders(self) -> list[Any]:
        """The Data Docs site builders, kept while the sites' configuration is unchanged: each
        holds its page views, whose Jinja environment compiles GX's ~36 page templates on first
        use (0.3 s on 2 cores); a context's own build_data_docs makes new ones every call."""
        from great_expectations.data_context.util import instantiate_class_from_config

        sites = self.ctx.variables.data_docs_sites or {}
        key = json.dumps(sites, sort_keys=True, default=str)
        if self.sites[0] != key:
            builders = [
                instantiate_class_from_config(
                    config=cfg,
                    runtime_environment={"data_context": self.ctx, "root_directory": self.ctx.root_directory, "site_name": name},
                    config_defaults={"class_name": "SiteBuilder", "module_name": "great_expectations.render.renderer.site_builder"},
                )
                for name, cfg in sites.items()
            ]
            self.sites = (key, builders)
        return self.sites[1]


_CONTEXTS: dict[str, _Gx] = {}
_LOCK = threading.Lock()  # a kept context is not made for two gates at once (threads of one process)


def _stamp(quality_dir: Path) -> tuple:
    try:
        st = (quality_dir / "gx" / "great_expectations.yml").stat()
    except FileNotFoundError:
        return ()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _gx(quality_dir: Path) -> _Gx:
    """The folder's Data Context, opened again when its configuration file changed under it."""
    key = str(quality_dir.resolve())
    gx_ = _CONTEXTS.get(key)
    if gx_ is None or not gx_.stamp or gx_.stamp != _stamp(quality_dir):
        gx_ = _CONTEXTS[key] = _Gx(_open_context(quality_dir))
    ctx = gx_.ctx
    sites = ctx.variables.data_docs_sites or {}
    index = sites.get("local_site", {}).get("site_index_builder")
    if index is not None and index.get("validation_results_limit") != DOCS_INDEX_LIMIT:
        index["validation_results_limit"] = DOCS_INDEX_LIMIT
        ctx.variables.data_docs_sites = sites
        ctx.variables.save()
    gx_.stamp = _stamp(quality_dir)
    return gx_


def _open_context(quality_dir: Path):
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    ctx = gx.get_context(mode="file", project_root_dir=str(quality_dir))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    bars = ctx.variables.progress_bars
    if bars is None or (bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)) is not False:
        # Dagster logs and the CLI bar show progress; GX's per-metric bars would drown them.
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        ctx.variables.save()
    return ctx


def batch_definition(ctx, suite_name: str, engine: str) -> Any:
    """The whole-dataframe batch a suite validates, on the pandas or Spark data source (made once)."""
    name = f"sluice_{engine}"
    try:
        ds = ctx.data_sources.get(name)
    except LookupError:
        # add, never add_or_update: that replaces the source with an empty one, dropping the data
        # assets (one per suite) that the checkpoints made earlier in this process refer to
        ds = ctx.data_sources.add_spark(name, persist=False) if engine == "spark" else ctx.data_sources.add_pandas(name)
    if getattr(ds, "persist", False):
        # GX caches a Spark batch (memory-and-disk) and never releases it: the staged table, every
        # column, filled a 1g driver's heap and stayed cached through the later stages (raw_crawl
        # at 200k pages: JVM 0.4 -> 1.4 GB). Uncached, each metric's query reads only its columns
        # from the staged Parquet: the same gate on 200k pages 23 s instead of 26 s, JVM peak
        # 0.7 GB (#26). Also set on a data source made before this, as a lakehouse's file keeps it.
        ds.persist = False
    try:
        asset = ds.get_asset(suite_name)
    except (LookupError, KeyError, ValueError):
        asset = ds.add_dataframe_asset(suite_name)
    try:
        return asset.get_batch_definition("whole")
    except (LookupError, KeyError, ValueError):
        return asset.add_batch_definition_whole_dataframe("whole")


def _run_suite(gx_: _Gx, suite_name: str, expectations: list[Any], data: Any, engine: str) -> Any:
    import great_expectations as gx

    ctx = gx_.ctx
    fingerprint = json.dumps([engine, [e.configuration.to_json_dict() for e in expectations]], sort_keys=True, default=str)
    known = gx_.checkpoints.get(suite_name)
    if known is not None and known[0] == fingerprint:
        cp = known[1]
    else:
        bd = batch_definition(ctx, suite_name, engine)
        # All expectations at construction: once the suite's name is in the store, add_expectation
        # rewrites the stored suite per expectation (35 writes for the filtered gate, every run).
        suite = gx.ExpectationSuite(name=suite_name, expectations=[e.copy() if hasattr(e, "copy") else e for e in expectations])
        suite = ctx.suites.add_or_update(suite)
        vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=suite_name, data=bd, suite=suite))
        cp = ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[vd],
                actions=[],  # Data Docs are built once per gate, for both suites (run_gate)
                result_format="SUMMARY",
            )
        )
        gx_.checkpoints[suite_name] = (fingerprint, cp)
    res = cp.run(batch_parameters={"dataframe": data})
    return next(iter(res.run_results.items()))


def _describe_failure(r: Any) -> str:
    cfg = r.expectation_config
    kw = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
    res = r.result or {}
    seen = {k: res[k] for k in ("observed_value", "unexpected_count", "partial_unexpected_list") if k in res}
    if "partial_unexpected_list" in seen:
        seen["partial_unexpected_list"] = seen["partial_unexpected_list"][:5]
    if r.exception_info and r.exception_info.get("raised_exception"):
        seen["error"] = str(r.exception_info.get("exception_message"))[:200]
    return f"{cfg.type}({json.dumps(kw, default=str)}) saw {json.dumps(seen, default=str)}"


def run_gate(
    spec: GateSpec,
    quality_dir: str | Path,
    run_key: str,
    table_data: Any = None,
    accounting: dict[str, Any] | None = None,
) -> GateResult:
    """Validate; keep the result; never raise for a failed expectation (the caller decides)."""
    with _LOCK:
        return _run_gate(spec, Path(quality_dir), run_key, table_data, accounting)


def _run_gate(spec: GateSpec, qdir: Path, run_key: str, table_data: Any, accounting: dict[str, Any] | None) -> GateResult:
    import pandas as pd

    qdir.mkdir(parents=True, exist_ok=True)
    gx_ = _gx(qdir)
    outcomes: list[tuple[str, Any, Any]] = []
    if spec.table and table_data is not None:
        engine = "pandas" if isinstance(table_data, pd.DataFrame) else "spark"
        outcomes.append(("table", *_run_suite(gx_, f"{spec.name}.table", spec.table, table_data, engine)))
    if spec.accounting and accounting is not None:
        outcomes.append(("accounting", *_run_suite(gx_, f"{spec.name}.accounting", spec.accounting, pd.DataFrame([accounting]), "pandas")))

    gx_.stamp = _stamp(qdir)  # registering a new suite's data asset rewrote the configuration file
    failed: list[str] = []
    evaluated = 0
    payload: dict[str, Any] = {"gate": spec.name, "run_key": run_key, "accounting": accounting, "suites": {}}
    pages: list[str] = []
    if outcomes:
        # One site build for the gate's suites: each build rebuilds the index, which cost more than
        # the validation itself.
        for builder in gx_.site_builders():
            builder.build(resource_identifiers=[ident for _, ident, _ in outcomes])
    for part, ident, vr in outcomes:
        for r in vr.results:
            evaluated += 1
            if not r.success:
                failed.append(f"[{part}] {_describe_failure(r)}")
        payload["suites"][part] = vr.to_json_dict()
        pages += [url for url in (b.get_resource_url(resource_identifier=ident) for b in gx_.site_builders()) if url][:1]
    out = qdir / "results" / _safe(spec.name) / f"{time.strftime('%Y%m%dT%H%M%S')}-{_safe(run_key)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    success = not failed
    payload["success"] = success
    out.write_text(json.dumps(payload, indent=1, default=str))
    return GateResult(spec.name, success, evaluated, failed, str(out), pages, {"evaluated": evaluated, "failed": len(failed)})
