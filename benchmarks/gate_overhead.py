"""What a quality gate costs as a lakehouse keeps its results: Sluice's gate runner vs Great
Expectations' own recipe, the `filtered` gate on the same 200 rows, side by side, one process.

    python benchmarks/gate_overhead.py [--runs 120]

Every pipeline run validates each gate's two suites and keeps the results with their Data Docs
pages, so the number of stored results grows with every run. GX's recipe (a suite filled with
``add_expectation``, a checkpoint whose ``UpdateDataDocsAction`` rebuilds the site per suite, an
index of every result) grows in cost with that number; Sluice's runner builds the site once per
gate, keeps the index to the newest ``quality.gate.DOCS_INDEX_LIMIT`` results, and creates each
suite with its expectations. Both keep the same results and pages. Printed: seconds per gate at
each stage of growth, and the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rows(schema, n: int):
    """``n`` clean rows of the `filtered` contract, built column by column."""
    import pyarrow as pa

    fixed = {"language": "en", "language_score": 0.9, "word_count": 200, "text": "A plain paragraph about rivers."}
    cols = {}
    for f in schema:
        if f.name == "doc_id":
            cols[f.name] = pa.array([f"doc-{i}" for i in range(n)], f.type)
            continue
        v = fixed.get(f.name)
        if v is None:
            t = f.type
            v = "x" if pa.types.is_string(t) else 0.5 if pa.types.is_floating(t) else 200 if pa.types.is_integer(t) else None
            v = False if pa.types.is_boolean(t) else v
        cols[f.name] = pa.array([v] * n, f.type)
    return pa.table(cols, schema=schema).to_pandas()


def gx_recipe(spec, quality_dir: Path, table, accounting: dict) -> bool:
    """The gate as GX documents it: per suite, a suite filled expectation by expectation and a
    checkpoint with the Data Docs action."""
    import great_expectations as gx
    import pandas as pd

    from quality.gate import _open_context, batch_definition

    ctx = _open_context(quality_dir)  # a context per gate, as a script would open it
    sites = ctx.variables.data_docs_sites
    sites["local_site"]["site_index_builder"].pop("validation_results_limit", None)  # GX's default: every result
    ctx.variables.data_docs_sites = sites
    ok = True
    for suffix, expectations, data in (("table", spec.table, table), ("accounting", spec.accounting, pd.DataFrame([accounting]))):
        name = f"{spec.name}.{suffix}"
        bd = batch_definition(ctx, name, "pandas")
        suite = gx.ExpectationSuite(name=name)
        for e in expectations:
            suite.add_expectation(e.copy())
        suite = ctx.suites.add_or_update(suite)
        vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=bd, suite=suite))
        cp = ctx.checkpoints.add_or_update(
            gx.Checkpoint(name=name, validation_definitions=[vd], actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")])
        )
        ok &= cp.run(batch_parameters={"dataframe": data}).success
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=120, help="gates run on each side (each keeps two results)")
    ap.add_argument("--rows", type=int, default=200)
    args = ap.parse_args()

    from documents.rules import FilterOptions
    from quality.gate import DOCS_INDEX_LIMIT, run_gate
    from quality.suites import accounting_row, filtered_gate
    from storage import tables as T

    opts = FilterOptions()
    schema = T.FILTERED.schema(opts)
    spec = filtered_gate(schema.names, opts)
    table = rows(schema, args.rows)
    accounting = accounting_row(args.rows, documents=args.rows, rejected=0)
    work = Path(tempfile.mkdtemp(prefix="sluice-gate-bench-"))
    step = max(1, args.runs // 6)
    marks = sorted({1, 2, *range(step, args.runs + 1, step)} & set(range(1, args.runs + 1)))
    try:
        seen: dict[str, dict[int, float]] = {"sluice": {}, "gx": {}}
        run_gate(spec, work / "warm", "warm", table, accounting)  # imports and first-use costs, on neither side
        for i in range(1, args.runs + 1):
            for side in ("sluice", "gx"):
                t = time.perf_counter()
                if side == "sluice":
                    assert run_gate(spec, work / side, f"run{i}", table, accounting).success
                else:
                    assert gx_recipe(spec, work / side, table, accounting)
                seen[side][i] = time.perf_counter() - t
            if i in marks:
                print(f"gate {i:4d}: sluice {seen['sluice'][i]:6.2f}s  gx recipe {seen['gx'][i]:6.2f}s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # every result and page both sides kept

    print(f"\nthe `filtered` gate ({len(spec.table)} + {len(spec.accounting)} expectations) on {args.rows} rows, 2 results kept per gate")
    print(f"Sluice's index keeps the newest {DOCS_INDEX_LIMIT} results; GX's recipe indexes all of them")
    print(f"{'gates run':>10s} {'results kept':>13s} {'sluice s/gate':>14s} {'gx recipe s/gate':>17s} {'ratio':>7s}")
    for i in marks:
        # the mean over the gates since the previous mark: single gates vary with the machine
        lo = max(1, marks[marks.index(i) - 1] + 1) if marks.index(i) else 1
        s = sum(seen["sluice"][j] for j in range(lo, i + 1)) / (i - lo + 1)
        g = sum(seen["gx"][j] for j in range(lo, i + 1)) / (i - lo + 1)
        print(f"{i:10d} {2 * i:13d} {s:14.2f} {g:17.2f} {g / s:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
