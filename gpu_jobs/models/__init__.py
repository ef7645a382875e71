"""Models Sluice ships inside its own code (small, versioned, each with a model card), referenced
from configuration as ``shipped:<name>`` so that a reference works from a fresh clone and an
installed package alike. Built by the scripts beside them (e.g. ``build_quality_ref.py``)."""

from __future__ import annotations

from pathlib import Path

PREFIX = "shipped:"
FOLDER = Path(__file__).resolve().parent
QUALITY_REF = "quality-ref-v1"  # the reference-trained fastText quality classifier


def shipped_path(reference: str) -> Path:
    """The folder of ``shipped:<name>``; a clear error naming the shipped models otherwise."""
    name = reference.removeprefix(PREFIX)
    folder = FOLDER / name
    if not (folder / "sluice_model.json").is_file():
        known = sorted(p.name for p in FOLDER.iterdir() if (p / "sluice_model.json").is_file())
        raise LookupError(f"{reference}: no shipped model {name!r} (shipped: {', '.join(known) or 'none'})")
    return folder
