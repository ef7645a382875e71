"""How stage metadata is laid out for Dagster's asset page: tables inline as table values, plots
inline as images the MLflow UI serves (with the embedded copy kept), local files labelled."""

import base64

from dagster import MetadataValue

from assets.ui_metadata import counts_table, markdown_tables, ui_metadata


class _Lineage:
    def artifact_url(self, run_id, path):
        return f"http://127.0.0.1:5000/get-artifact?path={path}&run_uuid={run_id}"


class _Run:
    run_id = "r1"
    lineage = _Lineage()

    def __init__(self):
        self.logged = []

    def log_artifact(self, path, folder=None):
        self.logged.append((open(path, "rb").read(), folder))


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (700, 300), "white").save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


def test_markdown_tables_are_parsed_with_escaped_pipes():
    [(header, rows)] = markdown_tables("| a | b |\n|---|---:|\n| x \\| y | 1,234 |\n| z | 5 |")
    assert header == ["a", "b"] and rows == [["x | y", "1,234"], ["z", "5"]]


def test_tables_inline_plots_served_and_embedded_copy_kept(tmp_path):
    png = tmp_path / "f.png"
    png.write_bytes(PNG)
    image = f"![funnel](data:image/png;base64,{base64.b64encode(PNG).decode()})"
    md = {
        "rejections_by_reason": MetadataValue.md(counts_table({"a": 3, "b": 1})),
        "funnel": MetadataValue.md(image + "\n\n| after | documents |\n|---|---:|\n| read | 10 |\n| kept | 7 |"),
        "funnel_png": MetadataValue.path(str(png)),
        "note": MetadataValue.md("some *prose* with | a pipe"),
        "rows": 5,
    }
    run = _Run()
    out = ui_metadata(md, run, None)
    table = out["rejections_by_reason"]
    assert type(table).__name__ == "TableMetadataValue"
    assert [r.data["reason"] for r in table.records] == ["a", "b"] and table.records[0].data["rows"] == 3
    assert out["funnel"] is md["funnel"]  # the embedded plot stays (it needs no server)
    assert "get-artifact?path=plots/funnel-inline.png&run_uuid=r1" in out["funnel_plot"].value and len(out["funnel_plot"].value) < 1000
    assert [r.data["documents"] for r in out["funnel_table"].records] == [10, 7]
    assert out["funnel_png"].value.endswith("plots/f.png&run_uuid=r1") and out["funnel_png_file"].value == str(png)
    assert out["note"] is md["note"] and out["rows"] == 5
    assert [f for _, f in run.logged] == ["plots", "plots", "plots"] and run.logged[0][0] == PNG and run.logged[2][0] == PNG
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(run.logged[1][0])).size == (480, 206)  # the inline copy fits the value column
    assert list(out)[:2] == ["funnel_plot", "funnel_table"]  # what shows inline comes first


def test_a_wide_short_table_is_turned_to_fit():
    plan = (
        "| source | where | weight | documents | available tokens | target tokens | epochs | delivered tokens | share |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n| high | `q > 1` | 50.0% | 3 | 10 | 20 | 2.00 | 20 | 50.0% |\n"
        "| rest | `true` | 50.0% | 5 | 40 | 20 | 0.50 | 20 | 50.0% |"
    )
    out = ui_metadata({"plan": MetadataValue.md(plan)}, _Run(), None)["plan"]
    assert [c.name for c in out.schema.columns] == ["source", "high", "rest"]
    assert [r.data["source"] for r in out.records][-2:] == ["delivered tokens", "share"]
    assert out.records[5].data["high"] == "2.00" or out.records[5].data["high"] == 2.0
