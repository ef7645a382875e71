"""Document scorers, one module per kind: ``hf`` (sequence classifiers), ``fasttext``, ``signals``
(the built-in formula), ``toxicity`` (alt-profanity-check). :func:`load_scorer` is the one way in; the kinds import only ``base``.

A scorer is loaded once per process (models are the slow part of a short job: a new score job,
a rewrite job's rescoring and a gate's validation each ask for the same few), then shared: scoring
never changes a scorer. A model file rewritten at the same path is a new model (its modification
time is part of the key)."""

from __future__ import annotations

import os
from functools import lru_cache

KINDS = ("hf", "fasttext", "signals", "toxicity")


def load_scorer(kind: str, path: str, max_length: int = 512, label: str | None = None, device: str = "auto"):
    """A scorer with ``score(texts, batch_tokens=, max_batch_size=) -> Scores``; an unknown kind is
    refused with the known ones named."""
    if kind not in KINDS:
        raise ValueError(f"unknown scorer kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if kind in ("signals", "toxicity", "fasttext"):  # the arguments these kinds do not read do not split the cache
        max_length, device = 512, "auto"
        label = label if kind == "fasttext" else None
    return _load(kind, path, max_length, label, device, _stamp(path))


def _stamp(path: str) -> int | None:
    """The latest modification time of a model file, or of a model folder's files; None for a name."""
    try:
        if os.path.isdir(path):
            return max([os.stat(path).st_mtime_ns, *(e.stat().st_mtime_ns for e in os.scandir(path))])
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


@lru_cache(maxsize=16)
def _load(kind: str, path: str, max_length: int, label: str | None, device: str, stamp: int | None):
    if kind == "signals":
        from gpu_jobs.scorers.signals import SignalScorer

        return SignalScorer(path)
    if kind == "toxicity":
        from gpu_jobs.scorers.toxicity import ToxicityScorer

        return ToxicityScorer(path)
    if kind == "fasttext":
        from gpu_jobs.scorers.fasttext import FastTextClassifier

        return FastTextClassifier(path, label)
    from gpu_jobs.scorers.hf import HFClassifier

    return HFClassifier(path, max_length=max_length, label=label, device=device)
