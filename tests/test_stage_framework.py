"""The stage framework and the table contract, without running a stage: code versions follow the
options, every table asset declares its contract's schema, the rules are one list, the README
documents every column, and dependencies point one way (import-linter)."""

import re
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from assets import stages
from documents.rules import RULES, SIGNAL_COLUMNS, STAGES, DocumentFilter, FilterOptions
from orchestration.config import SluiceConfig
from orchestration.definitions import build_definitions
from storage import tables as T

REPO = Path(__file__).resolve().parents[1]


def table_stages(cfg: SluiceConfig) -> list:
    """The registry's stages that write a table of their own and exist under ``cfg`` (``mixed`` only
    when a mixture is configured), in pipeline order."""
    return [spec for spec, _ in stages() if spec.table is not None and (spec.enabled is None or spec.enabled(cfg))]


def taking(section: str, cfg: SluiceConfig) -> set[str]:
    """The stages whose result is defined by the config section ``section``."""
    return {spec.name for spec, _ in stages() if section in spec.options(cfg)}


def code_versions(tmp_path, **overrides) -> dict[str, str]:
    graph = build_definitions(SluiceConfig(lakehouse_dir=tmp_path / "lh", **overrides)).resolve_asset_graph()
    return {k.to_user_string(): graph.get(k).code_version for k in graph.get_all_asset_keys()}


def test_code_version_changes_with_exactly_the_options_that_define_an_asset(tmp_path):
    base = code_versions(tmp_path)
    assert len(set(base.values())) == len(base)  # every asset has its own
    cfg = SluiceConfig()
    stricter = code_versions(tmp_path, filter={"gopher_quality": {"min_words": 80}})
    assert {k for k in base if base[k] != stricter[k]} == taking("filter", cfg) == {"filtered"}
    dedup = code_versions(tmp_path, dedup={"verify_threshold": 0.7})
    assert {k for k in base if base[k] != dedup[k]} == taking("dedup", cfg)
    scoring = code_versions(tmp_path, scoring={"batch_tokens": 4096})
    # rewritten re-scores with the scoring options, so they define it too
    assert {k for k in base if base[k] != scoring[k]} == taking("scoring", cfg) >= {"quality_scored", "rewritten"}
    assert code_versions(tmp_path, spark={"master": "local[1]"}) == base  # infrastructure is not the result
    assert code_versions(tmp_path) == base  # and it is stable


def test_table_assets_declare_the_contract_schema(tmp_path):
    cfg = SluiceConfig(lakehouse_dir=tmp_path / "lh")
    graph = build_definitions(cfg).resolve_asset_graph()
    tables = {k.to_user_string() for k in graph.get_all_asset_keys() if "dagster/table_name" in graph.get(k).metadata}
    assert tables == {spec.name for spec in table_stages(cfg)}  # the registry's view is the graph's
    for spec in table_stages(cfg):
        name, table = spec.name, T.TABLES[spec.name]
        node = graph.get(AssetKey(name))
        declared = [(c.name, c.type) for c in node.metadata["dagster/column_schema"].columns]
        opts = getattr(cfg, table.options_key) if table.options_key else None
        assert declared == [(f.name, str(f.type)) for f in table.schema(opts)], name
        assert node.owners and node.metadata["dagster/table_name"] == name
    scored = [c.name for c in graph.get(AssetKey("quality_scored")).metadata["dagster/column_schema"].columns]
    assert scored[:5] == ["doc_id", "quality", "quality_label", "classifier", "classifier_label"]


def test_filter_rules_are_one_list():
    assert list(FilterOptions.model_fields) == [r.key for r in RULES]
    assert STAGES == ["url", "extract", "language", "gopher_rep", "gopher_quality", "c4", "fineweb"]
    names = [n for n, _ in SIGNAL_COLUMNS]
    assert len(names) == len(set(names)) and [n for n, _ in T.FILTERED_COLUMNS][-len(names) :] == names
    # Every signal a rule declares is measured on a kept document (and nothing undeclared is).
    import random

    from sample_crawl import text as TX

    title, paras = TX.article(random.Random(3))
    html = ("<html><body><article><h1>" + title + "</h1>" + "".join(f"<p>{p}</p>" for p in paras) + "</article></body></html>").encode()
    row = {
        "doc_id": "d",
        "url": "https://example.org/a",
        "host": "example.org",
        "warc_date": None,
        "warc_record_id": "r",
        "warc_file": "f",
        "warc_offset": 0,
        "charset": "utf-8",
        "html": html,
    }
    kept, why = DocumentFilter(FilterOptions()).one(row)
    assert why is None, why
    assert {k for k, v in kept.items() if v is not None} >= set(names)
    assert set(kept) <= {n for n, _ in T.FILTERED_COLUMNS}


def _expand(token: str) -> set[str]:
    """README shorthand: ``top_{2,3,4}gram`` and ``dup_{5..10}gram``."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}|\{([\w,]+)\}", token)
    if not m:
        return {token}
    items = [str(i) for i in range(int(m.group(1)), int(m.group(2)) + 1)] if m.group(1) else m.group(3).split(",")
    return set().union(*(_expand(token[: m.start()] + i + token[m.end() :]) for i in items))


def test_readme_documents_every_contract_column():
    readme = (REPO / "README.md").read_text()
    documented = set().union(*(_expand(t) for t in re.findall(r"`([^`\s]+)`", readme)))
    for spec in T.TABLES.values():
        assert f"`{spec.name}`" in readme, spec.name
        missing = [c for c, _ in spec.columns if c not in documented]
        assert not missing, (spec.name, missing)


def test_every_column_is_described_once_and_the_readme_shows_the_same():
    """Descriptions live in storage/tables.py (COLUMN_DOCS); the README's column reference is generated
    from it, and the Dagster column schema of every table asset carries them."""
    for spec in T.TABLES.values():
        opts = SluiceConfig().scoring if spec.extra_columns else None
        undescribed = [c for c in spec.schema(opts).names if not spec.describe(c)]
        assert not undescribed, (spec.name, undescribed)
        stale = set(T.COLUMN_DOCS.get(spec.name, {})) - set(spec.schema(opts).names)
        assert not stale, (spec.name, "described but not in the schema", stale)
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- BEGIN table contract[^\n]*-->\n(.*?)<!-- END table contract -->", readme, re.S)
    assert m, "the README has no generated table contract block"
    assert m.group(1) == T.readme_contract(), "README's table contract differs from storage/tables.py: paste `python -m storage.tables`"


def test_dagster_column_schemas_carry_the_descriptions(tmp_path):
    cfg = SluiceConfig(lakehouse_dir=tmp_path / "lh")
    graph = build_definitions(cfg).resolve_asset_graph()
    for spec in table_stages(cfg):
        cols = graph.get(AssetKey(spec.name)).metadata["dagster/column_schema"].columns
        assert all(c.description for c in cols), (spec.name, [c.name for c in cols if not c.description])
    assert graph.get(AssetKey("filtered")).metadata["dagster/column_schema"].columns[0].description.startswith("stable id")


def test_a_skipped_stage_says_so_with_a_warning_and_does_not_hold_back_downstream(tmp_path):
    """A stage with nothing to do in this configuration (``rewritten`` without a rewriter) still
    materializes, for downstream pins, but its non-blocking ``ran`` check is a warning with the
    reason: in the UI it does not look like a fresh materialization. Stages that are never skipped
    have no such check."""
    from dagster import AssetCheckSeverity, DagsterInstance, materialize

    from assets.partitions import crawl_partitions
    from orchestration.resources import build_resources

    cfg = SluiceConfig(lakehouse_dir=tmp_path / "lh", rewrite={"backend": "none"})
    defs = build_definitions(cfg)
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    skippable = {spec.name for spec, _ in stages() if spec.skip is not None}
    assert "rewritten" in skippable
    assert {a for a, c in checks if c == "ran"} == skippable
    assert not checks[("rewritten", "ran")].blocking and checks[("rewritten", "gate")].blocking

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, ["c1"])
    rewritten = [a for a in defs.assets if a.key == AssetKey("rewritten")]
    res = materialize(rewritten, instance=instance, resources=build_resources(cfg), partition_key="c1")
    by_name = {c.check_name: c for c in res.get_asset_check_evaluations()}
    assert by_name["gate"].passed
    assert not by_name["ran"].passed and by_name["ran"].severity == AssetCheckSeverity.WARN
    assert by_name["ran"].description == "skipped: no rewriter model configured"
    assert res.asset_materializations_for_node("rewritten")[0].metadata["status"].value == "skipped"


def test_import_contracts():
    """orchestration → assets → (quality | gpu_jobs | spark_jobs) → lakehouse → documents; no
    Dagster below assets, no Spark in the storage, document and GPU layers; scorers without cycles."""
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and "KEPT" in out.stdout
