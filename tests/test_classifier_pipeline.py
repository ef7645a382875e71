"""quality_classifier through Dagster on crawls it cannot use: a crawl of one page and a crawl of no
page at all end cleanly (not trained / refused, with a one-line reason), and quality_scored still
publishes every document with the other scores (#21); the per-crawl reference-vs-crawl classifier
that #23 saw approved with AUC 1.0 while scoring every page near 0 is refused."""

import io
import uuid

import pytest
from dagster import AssetKey, DagsterInstance, materialize

from assets.partitions import crawl_partitions
from gpu_jobs.options import ClassifierTraining
from orchestration.resources import build_resources
from storage.delta_table import read_arrow, row_count
from tests.conftest import pipeline

pytestmark = pytest.mark.integration

UP_TO_SCORED = [AssetKey(a) for a in ("raw_crawl", "filtered", "deduplicated", "quality_classifier", "quality_scored")]


def _page() -> bytes:
    """One ordinary article page (the sample crawl's generator: it passes every filter)."""
    import random

    from sample_crawl import text as T

    title, paras = T.article(random.Random(7))
    return (
        f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
        + "".join(f"<p>{p}</p>" for p in paras)
        + "</article></body></html>"
    ).encode()


def _warc(path, pages: list[tuple[str, bytes]]) -> None:
    from warcio.warcwriter import WARCWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        w = WARCWriter(fh, gzip=True)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "sluice-tests"}))
        for url, body in pages:
            http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            w.write_record(
                w.create_warc_record(
                    url,
                    "response",
                    payload=io.BytesIO(http),
                    length=len(http),
                    warc_content_type="application/http; msgtype=response",
                    warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>"},
                )
            )


@pytest.mark.parametrize("source", ["shipped", "pseudo"])
def test_tiny_crawls_end_cleanly_and_are_scored_without_the_classifier(spark, make_config, tmp_path, source):
    landing = tmp_path / "landing"
    _warc(landing / "one-page" / "one-00000.warc.gz", [("https://mill.example/history", _page())])
    _warc(landing / "empty" / "empty-00000.warc.gz", [])  # only the warcinfo record
    cfg = make_config(landing, classifier=ClassifierTraining(source=source))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, ["one-page", "empty"])
    for crawl, docs in (("one-page", 1), ("empty", 0)):
        res = materialize(
            pipeline(cfg),
            instance=instance,
            resources=build_resources(cfg),
            partition_key=crawl,
            selection=UP_TO_SCORED,
            raise_on_error=False,
        )
        assert res.success, crawl
        md = res.asset_materializations_for_node("quality_classifier")[0].metadata
        verdict = md["verdict"].value
        if source == "pseudo":
            assert md["model_verdict"].value == "not trained" and verdict.startswith("not trained:"), verdict
        else:
            assert md["model_verdict"].value == "rejected" and verdict.startswith(
                f"refused: too few crawl documents to measure it on ({docs}, 20 needed)"
            )
        assert "\n" not in verdict
        [check] = [c for c in res.get_asset_check_evaluations() if c.asset_key == AssetKey("quality_classifier")]
        assert not check.passed and check.severity.value == "WARN" and verdict in check.description
        scored_md = res.asset_materializations_for_node("quality_scored")[0].metadata
        assert scored_md["status"].value == "published"
        assert verdict in scored_md["unavailable_scorers"].value["classifier"]
        rows = read_arrow(cfg.table_uri("quality_scored"), partition={"crawl_id": crawl}).to_pylist()
        assert len(rows) == row_count(cfg.table_uri("deduplicated"), partition={"crawl_id": crawl}) == docs
        for r in rows:
            assert r["classifier"] is None and 0 < r["quality"] < 1 and 0 <= r["toxicity"] < 0.5 and r["toxicity_label"] == "clean"


def test_the_demo_reference_classifier_is_refused_and_the_shipped_one_measured(spark, make_config, sample_landing):
    """#23: trained on the sample crawl's reference corpus vs its pages, the classifier separated the
    two perfectly and scored every page of the crawl near 0; its gate now looks at the crawl."""
    cfg = make_config(sample_landing, classifier=ClassifierTraining(source="reference"))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(crawl_partitions.name, ["crawl-t1"])
    res = materialize(
        pipeline(cfg),
        instance=instance,
        resources=build_resources(cfg),
        partition_key="crawl-t1",
        selection=UP_TO_SCORED,
        raise_on_error=False,
    )
    assert res.success
    md = res.asset_materializations_for_node("quality_classifier")[0].metadata
    verdict = md["verdict"].value
    assert md["training_split_auc"].value > 0.95  # its own task: perfect, as #23 saw
    assert verdict.startswith("refused: scores collapsed low") and "held-out fold" in verdict, verdict
    assert md["model_verdict"].value == "rejected"
    rows = read_arrow(cfg.table_uri("quality_scored")).to_pylist()
    assert rows and all(r["classifier"] is None and r["toxicity"] is not None for r in rows)

    # The default: the shipped model, measured on the same crawl (all of it: it never trained on it).
    cfg2 = make_config(sample_landing)
    res2 = materialize(
        pipeline(cfg2),
        instance=instance,
        resources=build_resources(cfg2),
        partition_key="crawl-t1",
        selection=[AssetKey("quality_classifier"), AssetKey("quality_scored")],
        raise_on_error=False,
    )
    assert res2.success
    md2 = res2.asset_materializations_for_node("quality_classifier")[0].metadata
    assert (
        md2["source"].value.startswith("shipped:quality-ref-v1")
        and "documents of deduplicated@v0, all documents" in md2["measured_on"].value
    )
    rows = read_arrow(cfg2.table_uri("quality_scored")).to_pylist()
    # The sample crawl's pages are templated good articles: nothing there shows that a model ranks pages
    # (the signals have no spread), so the shipped model is refused, says why, and scores nothing.
    assert md2["model_verdict"].value != "approved"
    assert md2["verdict"].value.startswith("refused: ") and all(r["classifier"] is None for r in rows)
