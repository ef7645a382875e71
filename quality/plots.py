"""Plots people look at instead of reading tables: stage funnels, duplicate cluster sizes."""

from __future__ import annotations

import base64
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    _pyplot().close(fig)
    return out


def funnel_png(steps: list[tuple[str, int]], title: str, out: str | Path) -> Path:
    """A horizontal bar per step: documents remaining after it, with the share of the input."""
    plt = _pyplot()
    labels = [s for s, _ in steps]
    values = [v for _, v in steps]
    top = max(values[0], 1)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(steps) + 1.2), dpi=100)
    bars = ax.barh(range(len(steps)), values, color="#3b7dd8")
    ax.set_yticks(range(len(steps)), labels)
    ax.invert_yaxis()
    for b, v in zip(bars, values):
        ax.text(b.get_width() + top * 0.01, b.get_y() + b.get_height() / 2, f"{v:,} ({v / top:.0%})", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("documents remaining")
    ax.set_title(title, fontsize=10)
    return _save(fig, out)


def markdown_image(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"


def funnel_table(steps: list[tuple[str, int]]) -> str:
    top = max(steps[0][1], 1) if steps else 1
    rows = ["| after | documents | share of input |", "|---|---:|---:|"]
    rows += [f"| {name} | {n:,} | {n / top:.1%} |" for name, n in steps]
    return "\n".join(rows)


def cluster_sizes_png(sizes: dict[int, int], title: str, out: str | Path) -> Path:
    """Number of duplicate clusters by size (log-log): a long tail means boilerplate or mirrors."""
    plt = _pyplot()
    items = sorted((s, n) for s, n in sizes.items() if s > 1)
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    if items:
        ax.bar([s for s, _ in items], [n for _, n in items], width=0.8, color="#3b7dd8")
        ax.set_yscale("log")
        if items[-1][0] > 30:
            ax.set_xscale("log")
        else:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no duplicate clusters", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("cluster size (documents)")
    ax.set_ylabel("clusters")
    ax.set_title(title, fontsize=10)
    return _save(fig, out)


def cluster_sizes_table(sizes: dict[int, int]) -> str:
    rows = ["| cluster size | clusters | documents |", "|---:|---:|---:|"]
    rows += [f"| {s} | {n:,} | {s * n:,} |" for s, n in sorted(sizes.items())]
    return "\n".join(rows)


def histogram_png(values: dict[str, list[float]], title: str, out: str | Path, bins: int = 40) -> Path:
    """One histogram per named score (e.g. each classifier of `quality_scored`)."""
    plt = _pyplot()
    # At most two panels a row, 1,000 px wide: a third panel side by side ran past the UI's dialog.
    n = max(1, len(values))
    cols = min(2, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.0 * rows + 0.4), dpi=100, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (name, v) in zip(flat, values.items()):
        ax.hist([x for x in v if x is not None], bins=bins, color="#3b7dd8")
        ax.set_xlabel(name)
        ax.set_ylabel("documents")
    for ax in flat[len(values) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out)


def shares_png(target: dict[str, float], realised: dict[str, float], title: str, out: str | Path) -> Path:
    """Target vs realised token share per source of a mixture, side by side."""
    import numpy as np

    plt = _pyplot()
    names = list(target)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(names) + 2), 3.2), dpi=100)
    ax.bar(x - 0.2, [target[n] for n in names], 0.4, label="target", color="#b9c7dc")
    bars = ax.bar(x + 0.2, [realised.get(n, 0.0) for n in names], 0.4, label="realised", color="#3b7dd8")
    for b, n in zip(bars, names):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{realised.get(n, 0.0):.1%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_ylabel("share of tokens")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out)


def reasons_png(counts: dict[str, int], title: str, out: str | Path, top: int = 25) -> Path:
    """A horizontal bar per rejection reason (the ``top`` most frequent), largest first."""
    plt = _pyplot()
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(items) + 1.2), dpi=100)
    ax.barh(range(len(items)), [v for _, v in items], color="#d8593b")
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    ax.set_title(title, fontsize=10)
    return _save(fig, out)
