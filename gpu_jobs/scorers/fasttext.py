"""fastText supervised models (the kind DCLM and FineWeb run on CPUs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpu_jobs.scorers.base import Scores, read_model_card


def fasttext_line(text: str, lowercase: bool, max_words: int | None = None) -> str:
    """One document as a fastText model reads it: one line, whitespace normalised, its first
    ``max_words`` words."""
    words = text.split()
    line = " ".join(words[:max_words] if max_words else words)
    return line.lower() if lowercase else line


class FastTextClassifier:
    """A fastText supervised model file; the score is the probability of ``label``
    (default ``__label__hq``, the DCLM convention); the label column is the argmax label without
    its ``__label__`` prefix. A model Sluice trained carries a model card
    beside it (lower-cased input); a model from elsewhere is read as given. A card's
    ``calibration`` {"a", "b"} maps the probability p to σ(a·logit(p) + b) (Platt scaling: the same
    ranking, a score whose 0.5 means something on web pages); the label follows the calibrated score."""

    def __init__(self, path: str, label: str | None = None) -> None:
        import fasttext

        fasttext.FastText.eprint = lambda *a, **k: None  # its load_model() prints an API-change notice on every load
        card = read_model_card(str(Path(path).parent)) or {}
        self.model = fasttext.load_model(path)
        self.label = label or card.get("label") or "__label__hq"
        self.lowercase = bool(card.get("lowercase", False))
        self.max_words = card.get("max_words")
        self.calibration = card.get("calibration")
        if self.label not in self.model.get_labels():
            raise ValueError(f"{path}: label {self.label!r} not among {self.model.get_labels()}")

    def score(self, texts: list[str], **_: int) -> Scores:
        lines = [fasttext_line(t, self.lowercase, self.max_words) for t in texts]
        k = len(self.model.get_labels())
        out = np.zeros(len(texts), np.float64)
        labels: list[str | None] = []
        predict = self.model.f.predict
        for i, line in enumerate(lines):
            # fasttext-wheel's predict() breaks on NumPy 2, and its batch call returns corrupted
            # probabilities there; the per-line low-level call is right (and ~15k docs/s per core).
            d = {lab: p for p, lab in predict(line, k, 0.0, "strict")}
            out[i] = d.get(self.label, 0.0)
            labels.append(max(d, key=d.get).removeprefix("__label__") if d else None)
        if self.calibration and len(out):
            p = np.clip(out, 1e-6, 1 - 1e-6)
            out = 1 / (1 + np.exp(-(self.calibration["a"] * np.log(p / (1 - p)) + self.calibration["b"])))
            high = self.label.removeprefix("__label__")
            low = next((l.removeprefix("__label__") for l in self.model.get_labels() if l != self.label), "low")
            labels = [high if v >= 0.5 else low for v in out]
        return Scores(out, labels, sum(line.count(" ") + 1 for line in lines))
