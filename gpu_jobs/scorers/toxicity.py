"""Offensive-language scores with ``alt-profanity-check`` (PyPI: a TF-IDF vectorizer and a linear
SVM with calibrated probabilities, trained on short labelled texts: tweets and Wikipedia comments,
about 1 MB, scikit-learn only).

The model was trained on comment-length texts; a web page is hundreds of them. A document is cut
into windows of ``WINDOW_WORDS`` words and scored as its most offensive window (the max), so that
one abusive passage is not diluted by the rest of a long page. All windows of a batch are
vectorized in one call.
"""

from __future__ import annotations

import numpy as np

from gpu_jobs.scorers.base import Scores

MODEL = "package:profanity_check"
WINDOW_WORDS = 64  # about a tweet's to a short comment's length (the training texts)
MAX_WINDOWS = 64  # the first 4,096 words are read, like the other scorers read a document's start


def windows(text: str, size: int = WINDOW_WORDS, limit: int = MAX_WINDOWS) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, min(len(words), size * limit), size)] or [""]


class ToxicityScorer:
    """The probability that a document's most offensive window is offensive; label ``toxic`` at
    0.5 and above, else ``clean``."""

    device = "cpu"

    def __init__(self, model: str = MODEL) -> None:
        if model != MODEL:
            raise ValueError(f"toxicity scorer: unknown model {model!r}; known: {MODEL}")
        from profanity_check import profanity_check as pc  # loads the vectorizer and the SVM once

        self.vectorizer, self.model = pc.vectorizer, pc.model

    def score(self, texts: list[str], **_: int) -> Scores:
        parts = [windows(t or "") for t in texts]
        flat = [w for p in parts for w in p]
        probs = self.model.predict_proba(self.vectorizer.transform(flat))[:, 1] if flat else np.zeros(0)
        out = np.zeros(len(texts), np.float64)
        i = 0
        for d, p in enumerate(parts):
            out[d] = float(probs[i : i + len(p)].max())
            i += len(p)
        words = sum(len(w.split()) for w in flat)  # words read (this scorer has no tokenizer)
        return Scores(out, ["toxic" if v >= 0.5 else "clean" for v in out], words)
