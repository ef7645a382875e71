"""fastText supervised models (the kind DCLM and FineWeb run on CPUs)."""

from __future__ import annotations

import numpy as np

from gpu_jobs.scorers.base import Scores


class FastTextClassifier:
    """A fastText supervised model file; the score is the probability of ``label``
    (default ``__label__hq``, the DCLM convention)."""

    def __init__(self, path: str, label: str | None = None) -> None:
        import fasttext

        self.model = fasttext.load_model(path)
        self.label = label or "__label__hq"
        if self.label not in self.model.get_labels():
            raise ValueError(f"{path}: label {self.label!r} not among {self.model.get_labels()}")

    def score(self, texts: list[str], **_: int) -> Scores:
        out = np.zeros(len(texts), np.float64)
        labels: list[str | None] = []
        k = len(self.model.get_labels())
        tokens = 0
        for i, t in enumerate(texts):
            line = " ".join(t.split())
            tokens += line.count(" ") + 1
            # fasttext-wheel's predict() breaks on NumPy 2; the low-level call does not.
            pairs = self.model.f.predict(line, k, 0.0, "strict")
            probs = {lab: p for p, lab in pairs}
            out[i] = probs.get(self.label, 0.0)
            labels.append(max(probs, key=probs.get) if probs else None)
        return Scores(out, labels, tokens)
