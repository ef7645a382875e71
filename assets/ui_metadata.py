"""How a stage's metadata reads on Dagster's asset page: Markdown tables become table values (shown
inline), local plots become links served by the MLflow UI and inline images sized to the page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dagster import MetadataValue, TableColumn, TableSchema

from assets.lineage import StageRun
from assets.resources import LakehouseResource

# Dagster's asset page shows a Markdown value inline only below this many characters (else behind
# "[Show Markdown]"); a table value always inline.
INLINE_MARKDOWN_CHARS = 1000
# The value column of the asset page's metadata table at a 1600-pixel window (measured on the screenshots).
INLINE_PLOT_WIDTH = 480
_DATA_IMAGE = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """The pipe tables of a Markdown text: (header, rows) each."""
    out: list[tuple[list[str], list[list[str]]]] = []
    lines = [line.strip() for line in text.splitlines()]
    i = 0
    while i + 1 < len(lines):
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1] or ""):
            cells = lambda line: [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]  # noqa: E731
            header, rows = cells(lines[i]), []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            out.append((header, rows))
        else:
            i += 1
    return out


def _table_value(header: list[str], rows: list[list[str]]) -> Any:
    from dagster import TableRecord

    rows = [[c[1:-1] if len(c) > 1 and c[0] == c[-1] == "`" else c for c in r] for r in rows]  # code marks: plain text in a table

    def value(cell: str) -> Any:
        plain = cell.replace(",", "")
        for cast in (int, float):
            try:
                return cast(plain)
            except ValueError:
                pass
        return cell

    if len(header) > 5 and len(rows) < len(header) and rows:
        # Wide and short (a mixture's plan: a row per source, nine columns): one row per column
        # instead, so that it fits the asset page's value cell, which clips what is wider.
        header, rows = [header[0], *[r[0] for r in rows]], [[h, *[r[i] for r in rows]] for i, h in enumerate(header) if i > 0]
    names = [h or f"column {i + 1}" for i, h in enumerate(header)]
    parsed = [[value(c) for c in r] for r in rows]
    types = []
    for i in range(len(names)):
        col = [r[i] for r in parsed if i < len(r)]
        types.append(
            "int"
            if col and all(isinstance(v, int) for v in col)
            else "float"
            if col and all(isinstance(v, (int, float)) for v in col)
            else "string"
        )
    records = [TableRecord({n: (v if t != "string" else raw) for n, t, v, raw in zip(names, types, p, r)}) for p, r in zip(parsed, rows)]
    types = dict(zip(names, types))
    return MetadataValue.table(records, schema=TableSchema(columns=[TableColumn(n, types[n]) for n in names]))


def ui_metadata(md: dict[str, Any], run: StageRun, lh: LakehouseResource) -> dict[str, Any]:
    """Metadata laid out for Dagster's asset page, which shows tables and short Markdown inline and
    everything else behind a button. A Markdown table becomes a table value (inline, every column
    shown). A plot embedded in Markdown (``<name>``, kept: it needs no server) gains ``<name>_plot``,
    the image inline as the MLflow UI serves it from the stage run's artifacts, and ``<name>_table``,
    its table inline. A local PNG path becomes the URL the MLflow UI serves it at (``<name>_file``:
    the path)."""
    import base64
    import tempfile

    out: dict[str, Any] = {}
    inline: dict[str, Any] = {}
    for key, value in md.items():
        path = getattr(value, "path", None) if type(value).__name__ == "PathMetadataValue" else None
        if path and str(path).endswith(".png") and Path(path).is_file():
            run.log_artifact(path, "plots")
            out[key] = MetadataValue.url(run.lineage.artifact_url(run.run_id, "plots/" + Path(path).name))
            out[f"{key}_file"] = value
            continue
        text = getattr(value, "md_str", None) if type(value).__name__ == "MarkdownMetadataValue" else None
        if text is None:
            out[key] = value
            continue
        images = _DATA_IMAGE.findall(text)
        tables = markdown_tables(text)
        if not images:
            only_table = len(tables) == 1 and all(line.strip().startswith("|") for line in text.strip().splitlines())
            out[key] = _table_value(*tables[0]) if only_table else value
            continue
        alt, data = images[0]
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / f"{key}.png"
            png.write_bytes(base64.b64decode(data))
            run.log_artifact(png, "plots")
            small = _fit_width(png, Path(tmp) / f"{key}-inline.png")
            run.log_artifact(small, "plots")
        url = run.lineage.artifact_url(run.run_id, f"plots/{small.name}")
        inline[f"{key}_plot"] = MetadataValue.md(f"![{alt or key}]({url})\n\nvia `sluice mlflow-ui`; full size: `{key}`")
        for i, table in enumerate(tables):
            inline[f"{key}_table" if i == 0 else f"{key}_table_{i + 1}"] = _table_value(*table)
        out[key] = value
    return {**inline, **out}


def _fit_width(png: Path, out: Path, width: int = INLINE_PLOT_WIDTH) -> Path:
    """The plot scaled down to the asset page's value column (wider images are clipped there)."""
    from PIL import Image

    with Image.open(png) as im:
        if im.width > width:
            im = im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)
        im.save(out)
    return out


def counts_table(counts: dict[str, int], key: str = "reason") -> str:
    total = sum(counts.values()) or 1
    lines = [f"| {key} | rows | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v} | {v / total:.1%} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)
