"""A Spark stage's gate runs GX on pandas up to ``GATE_PANDAS_MAX_ROWS`` staged rows and on Spark
above: both engines must give the same verdict on every expectation, passes and failures alike."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from documents.rules import FilterOptions
from quality.gate import run_gate
from quality.suites import filtered_gate
from storage import tables as T

pytestmark = pytest.mark.integration


def _filtered_rows(schema: pa.Schema) -> pa.Table:
    """Four rows: one clean, then an e-mail in the text, a word count out of bounds, a repeated id."""

    def value(f: pa.Field, i: int):
        if pa.types.is_string(f.type):
            return f"doc-{i}" if f.name == "doc_id" else "en" if f.name == "language" else "x"
        if pa.types.is_integer(f.type):
            return 200
        if pa.types.is_floating(f.type):
            return 0.9 if f.name == "language_score" else 0.5
        if pa.types.is_boolean(f.type):
            return False
        return None

    rows = [{f.name: value(f, i) for f in schema} for i in range(4)]
    for r in rows:
        r["text"] = "A plain paragraph about rivers, and the towns along them at 10.5 metres."
    rows[1]["text"] = "Write to someone@example.org for the map."
    rows[2]["word_count"] = 5
    rows[3]["doc_id"] = "doc-0"
    return pa.Table.from_pylist(rows, schema=schema)


def test_the_filtered_gate_gives_the_same_verdicts_on_spark_and_on_pandas(spark, tmp_path):
    opts = FilterOptions()
    schema = T.FILTERED.schema(opts)
    table = _filtered_rows(schema)
    spec = filtered_gate(schema.names, opts)
    on_pandas = run_gate(spec, tmp_path / "p", "pandas", table_data=table.to_pandas())
    on_spark = run_gate(spec, tmp_path / "s", "spark", table_data=spark.createDataFrame(table.to_pandas()))
    assert not on_pandas.success and on_pandas.evaluated == on_spark.evaluated > 10

    def kinds(res) -> list[str]:
        return sorted(f.split("(")[0].removeprefix("[table] ") for f in res.failed)

    assert kinds(on_pandas) == kinds(on_spark)
    assert {"expect_column_values_to_not_match_regex_list", "expect_column_values_to_be_unique"} <= set(kinds(on_spark))
    assert any("word_count" in f for f in on_spark.failed) and any("word_count" in f for f in on_pandas.failed)


def test_a_spark_gate_leaves_nothing_cached_on_the_driver(spark, tmp_path):
    """GX's Spark source caches each batch (memory-and-disk) and never releases it: the staged
    table stayed on the driver's heap through the later stages. Also on a quality folder whose
    data source was made with GX's default (a lakehouse gated before this change)."""
    import great_expectations as gx

    opts = FilterOptions()
    schema = T.FILTERED.schema(opts)
    spec = filtered_gate(schema.names, opts)
    old = gx.get_context(mode="file", project_root_dir=str(tmp_path / "old"))
    assert old.data_sources.add_spark("sluice_spark").persist  # GX's default, kept in the folder's file

    def persisted() -> set[int]:  # the session's cached RDDs (other tests on this session may leave some)
        return set(spark.sparkContext._jsc.getPersistentRDDs().keys())

    for folder in ("new", "old"):
        df = spark.createDataFrame(_filtered_rows(schema).to_pandas())
        before = persisted()
        res = run_gate(spec, tmp_path / folder, folder, table_data=df)
        assert not res.success and res.evaluated > 10
        assert not df.is_cached and persisted() <= before, folder


def test_each_gate_links_its_own_data_docs_pages_and_the_index_keeps_the_newest(tmp_path, monkeypatch):
    """Every run's pages are built and linked (one per suite); the index lists only the newest
    ``DOCS_INDEX_LIMIT`` results, so that a gate does not slow down with every run the lakehouse keeps."""
    import great_expectations as gx
    import pandas as pd

    from quality import gate as G

    monkeypatch.setattr(G, "DOCS_INDEX_LIMIT", 2)
    spec = G.GateSpec(
        "g",
        table=[gx.expectations.ExpectColumnValuesToNotBeNull(column="a")],
        accounting=[gx.expectations.ExpectColumnValuesToBeBetween(column="n", min_value=0)],
    )
    results = [G.run_gate(spec, tmp_path, f"run{i}", pd.DataFrame({"a": [1, 2]}), {"n": i}) for i in range(3)]
    pages = [p for r in results for p in r.docs_pages]
    assert len(pages) == len(set(pages)) == 6
    assert all(Path(p.removeprefix("file://")).is_file() for p in pages)
    assert {Path(p).name for p in results[-1].docs_pages} == {"sluice_pandas-g.table.html", "sluice_pandas-g.accounting.html"}
    index = (tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()
    run_dirs = [Path(p).parent.name for p in pages]  # each validation's run-time folder
    assert all(d in index for d in run_dirs[-2:]) and not any(d in index for d in run_dirs[:2])


def test_a_process_keeps_its_gx_context_until_the_expectations_or_the_config_file_change(tmp_path):
    """The gate runner keeps one Data Context per quality folder and one checkpoint per suite: new
    expectations under the same suite name must be the ones validated, and a configuration another
    process wrote in between (here, a data source of the user's) must be read, not overwritten."""
    import great_expectations as gx
    import pandas as pd
    import yaml

    from quality import gate as G

    loose = G.GateSpec("g", table=[gx.expectations.ExpectColumnValuesToNotBeNull(column="a")])
    strict = G.GateSpec("g", table=[gx.expectations.ExpectColumnValuesToBeBetween(column="a", max_value=1)])
    data = pd.DataFrame({"a": [1, 2]})
    assert G.run_gate(loose, tmp_path, "r1", data).success
    assert G.run_gate(loose, tmp_path / "another-lakehouse", "r1", data).success  # a second kept context in between
    assert not G.run_gate(strict, tmp_path, "r2", data).success  # not the checkpoint kept for `loose`
    assert G.run_gate(loose, tmp_path, "r3", data).success

    other = gx.get_context(mode="file", project_root_dir=str(tmp_path))  # as another process would
    other.data_sources.add_pandas("users_own")
    # a suite new to this folder registers a data asset, which rewrites great_expectations.yml
    assert G.run_gate(G.GateSpec("h", table=loose.table), tmp_path, "r4", data).success
    config = yaml.safe_load((tmp_path / "gx" / "great_expectations.yml").read_text())
    assert {"users_own", "sluice_pandas"} <= set(config["fluent_datasources"])
    assert {"g.table", "h.table"} <= set(config["fluent_datasources"]["sluice_pandas"]["assets"])
