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


def _context(quality_dir: Path):
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
    sites = ctx.variables.data_docs_sites or {}
    index = sites.get("local_site", {}).get("site_index_builder")
    if index is not None and index.get("validation_results_limit") != DOCS_INDEX_LIMIT:
        index["validation_results_limit"] = DOCS_INDEX_LIMIT
        ctx.variables.data_docs_sites = sites
        ctx.variables.save()
    return ctx


def batch_definition(ctx, suite_name: str, engine: str) -> Any:
    """The whole-dataframe batch a suite validates, on the pandas or Spark data source (made once)."""
    if engine == "spark":
        ds = ctx.data_sources.add_or_update_spark("sluice_spark")
    else:
        ds = ctx.data_sources.add_or_update_pandas("sluice_pandas")
    try:
        asset = ds.get_asset(suite_name)
    except (LookupError, KeyError, ValueError):
        asset = ds.add_dataframe_asset(suite_name)
    try:
        return asset.get_batch_definition("whole")
    except (LookupError, KeyError, ValueError):
        return asset.add_batch_definition_whole_dataframe("whole")


def _run_suite(ctx, suite_name: str, expectations: list[Any], data: Any, engine: str) -> Any:
    import great_expectations as gx

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
    import pandas as pd

    qdir = Path(quality_dir)
    qdir.mkdir(parents=True, exist_ok=True)
    ctx = _context(qdir)
    outcomes: list[tuple[str, Any, Any]] = []
    if spec.table and table_data is not None:
        engine = "pandas" if isinstance(table_data, pd.DataFrame) else "spark"
        outcomes.append(("table", *_run_suite(ctx, f"{spec.name}.table", spec.table, table_data, engine)))
    if spec.accounting and accounting is not None:
        outcomes.append(("accounting", *_run_suite(ctx, f"{spec.name}.accounting", spec.accounting, pd.DataFrame([accounting]), "pandas")))

    failed: list[str] = []
    evaluated = 0
    payload: dict[str, Any] = {"gate": spec.name, "run_key": run_key, "accounting": accounting, "suites": {}}
    pages: list[str] = []
    if outcomes:
        # One site build for the gate's suites: each build compiles GX's page templates afresh and
        # rebuilds the index, which cost more than the validation itself.
        ctx.build_data_docs(resource_identifiers=[ident for _, ident, _ in outcomes])
    for part, ident, vr in outcomes:
        for r in vr.results:
            evaluated += 1
            if not r.success:
                failed.append(f"[{part}] {_describe_failure(r)}")
        payload["suites"][part] = vr.to_json_dict()
        pages += [site["site_url"] for site in ctx.get_docs_sites_urls(resource_identifier=ident) if site.get("site_url")][:1]
    out = qdir / "results" / _safe(spec.name) / f"{time.strftime('%Y%m%dT%H%M%S')}-{_safe(run_key)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    success = not failed
    payload["success"] = success
    out.write_text(json.dumps(payload, indent=1, default=str))
    return GateResult(spec.name, success, evaluated, failed, str(out), pages, {"evaluated": evaluated, "failed": len(failed)})
