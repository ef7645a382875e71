"""One source of truth per table: the facts audits need (id columns, text, row key, step, trace,
takedown and funnel coverage) are declared on each ``TableSpec`` and agree with its columns and
with the stage registry (``assets.stages``); trace, takedown, history and the crawl funnel derive
their table lists from them. No Spark: these run in the fast loop."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from storage import tables as T

# What a rejection or a table that no stage writes may name as its writer.
NOT_AN_ASSET = {T.REJECTIONS.name: "every stage", T.TAKEDOWNS.name: "sluice takedown"}


def problems(tables: dict[str, T.TableSpec], stage_specs: list) -> list[str]:
    """Everything a consumer of the contract would trip on; empty when the contract is whole."""
    out: list[str] = []
    outputs: dict[str, list] = {}
    for spec in stage_specs:
        for t in spec.outputs:
            outputs.setdefault(t.name, []).append(spec)
            if tables.get(t.name) is not t:
                out.append(f"stage {spec.name} writes {t.name}, which is not the contract's TableSpec of that name")
        if spec.rejection_stage is not None:
            if spec.rejection_stage not in T.STEPS:
                out.append(f"stage {spec.name}: rejection stage {spec.rejection_stage!r} is not a step of T.STEPS")
            if spec.table is None or spec.table.step != spec.rejection_stage:
                out.append(f"stage {spec.name} rejects under {spec.rejection_stage!r} but its table's step differs")
            if T.REJECTIONS not in spec.outputs:
                out.append(f"stage {spec.name} has a rejection stage but does not write rejections")
    for t in tables.values():
        cols = {c for c, _ in t.columns} | set(t.partition_by)
        where = f"table {t.name}"
        if t.name in NOT_AN_ASSET:
            if t.stage != NOT_AN_ASSET[t.name]:
                out.append(f"{where}: written by {t.stage!r}")
        elif t.name not in outputs:
            out.append(f"{where}: no stage of the registry writes it (an asset's StageSpec.outputs)")
        elif t.stage not in {s.name for s in outputs[t.name]}:
            out.append(f"{where}: says it is written by {t.stage!r}, the registry says {[s.name for s in outputs[t.name]]}")
        if t.step is not None and t.step not in T.STEPS:
            out.append(f"{where}: step {t.step!r} is not in T.STEPS")
        if t.step is None and t.name != T.REJECTIONS.name:
            out.append(f"{where}: no step")
        for fact in ("id_columns", "ref_columns", "row_key"):
            missing = [c for c in getattr(t, fact) if c not in cols]
            if missing:
                out.append(f"{where}: {fact} names columns it does not have: {missing}")
        for fact in ("text_column", "group_by"):
            if getattr(t, fact) is not None and getattr(t, fact) not in cols:
                out.append(f"{where}: {fact} {getattr(t, fact)!r} is not a column")
        if not t.row_key:
            out.append(f"{where}: no row key (sluice diff compares rows by it)")
        # A table that holds documents is covered by takedowns, and says where their text is.
        doc_cols = [c for c in cols if c == "doc_id" or c.endswith("_doc_id")]
        if "doc_id" in cols and "doc_id" not in t.id_columns:
            out.append(f"{where}: has doc_id but a takedown would not remove its rows (id_columns)")
        undeclared = [c for c in doc_cols if c not in t.id_columns + t.ref_columns]
        if undeclared:
            out.append(f"{where}: document columns {undeclared} are neither id_columns nor ref_columns")
        texts = [c for c, typ in t.columns if c in ("text", "html") and typ in (pa.string(), pa.large_string())]
        if texts and t.text_column not in texts:
            out.append(f"{where}: holds text in {texts} but text_column is {t.text_column!r} (a takedown would leave it in other files)")
        if t.taken_down and not t.traced and t.name not in (T.DEDUP_CLUSTERS.name, T.DEDUP_SIGNATURES.name):
            out.append(f"{where}: holds documents but `sluice trace` does not read it")
        if t.funnel:
            writers = outputs.get(t.name, [])
            if not any(s.rejection_stage == t.step for s in writers):
                out.append(f"{where}: in the crawl funnel, but its stage records no rejections under {t.step!r} (conservation)")
            if t.funnel_input is not None and t.funnel_input not in tables:
                out.append(f"{where}: funnel input {t.funnel_input!r} is not a table")
    return out


def registry() -> list:
    from assets import stages

    return [spec for spec, _ in stages()]


def test_the_contract_and_the_stage_registry_agree():
    assert problems(T.TABLES, registry()) == []


def test_every_stage_table_is_in_the_contract_and_every_table_has_a_writer():
    specs = registry()
    written = {t.name for s in specs for t in s.outputs}
    assert written | set(NOT_AN_ASSET) == set(T.TABLES)
    # an asset's own table carries its name (what the CLI's `tables` pins by)
    assert all(s.table.name == s.name and s.table.stage == s.name for s in specs if s.table is not None)


def test_a_table_added_without_its_facts_is_caught():
    """The check can fail: a table declared without the facts does not even construct, and one
    declared with wrong or missing coverage is named."""
    cols = [("doc_id", pa.string()), ("source_doc_id", pa.string()), ("text", pa.string())]
    with pytest.raises(TypeError, match="id_columns|step|text_column|row_key|traced"):
        T.TableSpec("summaries", cols, ("crawl_id",), "summarized", "a new layer")
    careless = T.TableSpec(
        "summaries",
        cols,
        ("crawl_id",),
        "summarized",
        "a new layer",
        step="summarize",
        id_columns=("doc_id",),
        text_column=None,
        row_key=("doc_id",),
        traced=False,
        funnel=True,
    )
    found = problems({**T.TABLES, careless.name: careless}, registry())
    text = "\n".join(found)
    for expected in (
        "no stage of the registry writes it",
        "step 'summarize' is not in T.STEPS",
        "['source_doc_id'] are neither",
        "holds text in ['text']",
        "does not read it",
        "in the crawl funnel",
    ):
        assert expected in text, (expected, found)
    # and a stage whose table is missing from the contract
    from assets import raw_crawl

    stray = dataclasses.replace(raw_crawl.SPEC, name="summarized", outputs=(careless, T.REJECTIONS), rejection_stage="summarize")
    assert any("not the contract's TableSpec" in p for p in problems(T.TABLES, [*registry(), stray]))


def test_audits_derive_their_table_lists_from_the_contract():
    from audit import history, takedown, trace

    docs = {n for n, t in T.TABLES.items() if "doc_id" in {c for c, _ in t.columns}}
    assert set(takedown.ID_COLUMNS) == docs == {t.name for t in T.takedown_tables()}
    assert takedown.ID_COLUMNS[T.MIXED.name] == ("doc_id", "source_doc_id")
    assert set(takedown.TEXT_SOURCES) == {n for n, t in T.TABLES.items() if "text" in {c for c, _ in t.columns}}
    assert [t.name for t in T.derived_tables()] == [T.REWRITTEN.name, T.DECONTAMINATED.name, T.MIXED.name]
    # every traced table has a reader (rejections is read first, for the URL and crawl)
    assert set(trace.READERS) == {t.name for t in T.traced_tables()} - {T.REJECTIONS.name}
    assert not hasattr(history, "ROW_KEYS") and T.MIXED.row_key == ("doc_id", "repeat")
    assert [(t.step, t.name, t.funnel_input) for t in T.funnel_tables()] == [
        ("ingest", "raw_crawl", None),
        ("filter", "filtered", "raw_crawl"),
        ("dedup", "deduplicated", "filtered"),
        ("decontam", "decontaminated", None),
    ]


def test_trace_orders_steps_by_the_contract_steps():
    assert T.STEPS == ("ingest", "filter", "dedup", "quality", "rewrite", "decontam", "mixture", "export", "takedown")
    assert {t.step for t in T.traced_tables() if t.step} | {T.EXPORT} == set(T.STEPS)
