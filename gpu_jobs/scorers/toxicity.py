"""Offensive-language scores with ``alt-profanity-check`` (PyPI: a TF-IDF vectorizer and a linear
SVM with calibrated probabilities, trained on short labelled texts: tweets and Wikipedia comments,
about 1 MB, scikit-learn only).

The model was trained on comment-length texts; a web page is hundreds of them. A document is cut
into windows of ``WINDOW_WORDS`` words and scored as its most offensive window (the max), so that
one abusive passage is not diluted by the rest of a long page.

The package's model is a scikit-learn pipeline; importing scikit-learn costs seconds per process,
more than scoring a crawl's chunk. So its numbers (vocabulary, idf, each calibrated fold's SVM
weights and sigmoid) are read out once per machine into a NumPy file beside the other converted
models (``documents.model_cache``), and a batch is scored with NumPy and PyArrow: all
windows of a batch are tokenized, looked up and weighted in one pass. The arithmetic is
scikit-learn's (``TfidfVectorizer.transform`` then ``CalibratedClassifierCV.predict_proba``);
``tests/test_scoring_speed.py`` holds the two to the same probabilities.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gpu_jobs.scorers.base import Scores

MODEL = "package:profanity_check"
WINDOW_WORDS = 64  # about a tweet's to a short comment's length (the training texts)
MAX_WINDOWS = 64  # the first 4,096 words are read, like the other scorers read a document's start


def windows(text: str, size: int = WINDOW_WORDS, limit: int = MAX_WINDOWS) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, min(len(words), size * limit), size)] or [""]


def _package_files() -> list[Path]:
    import importlib.util

    spec = importlib.util.find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"toxicity scorer {MODEL!r}: the package alt-profanity-check is not installed")
    return sorted((Path(list(spec.submodule_search_locations)[0]) / "data").glob("*.joblib"))


def model_arrays() -> dict[str, np.ndarray]:
    """The package's scikit-learn model as plain arrays; refuses a model whose arithmetic
    :class:`ToxicityScorer` does not reproduce."""
    from profanity_check import profanity_check as pc

    v, m = pc.vectorizer, pc.model
    p = v.get_params()
    expected = {
        "analyzer": "word",
        "lowercase": True,
        "ngram_range": (1, 1),
        "norm": "l2",
        "use_idf": True,
        "sublinear_tf": False,
        "binary": False,
        "preprocessor": None,
        "tokenizer": None,
        "strip_accents": None,
    }
    if any(p[k] != want for k, want in expected.items()) or m.method != "sigmoid" or len(m.classes_) != 2:
        raise ValueError(
            f"toxicity scorer: the installed alt-profanity-check model is not the TF-IDF + sigmoid-calibrated linear "
            f"model this scorer reproduces ({ {k: p[k] for k in expected} }, method {m.method})"
        )
    terms = np.empty(len(v.vocabulary_), dtype=object)
    for term, i in v.vocabulary_.items():
        terms[i] = term
    folds = m.calibrated_classifiers_
    return {
        "terms": terms.astype(str),
        "idf": v.idf_,
        "token_pattern": np.array(p["token_pattern"]),
        "coef": np.vstack([f.estimator.coef_.ravel() for f in folds]),
        "intercept": np.array([f.estimator.intercept_[0] for f in folds]),
        "a": np.array([f.calibrators[0].a_ for f in folds]),
        "b": np.array([f.calibrators[0].b_ for f in folds]),
    }


def exported_model() -> Path:
    """The arrays of the installed package's model, exported once per machine (an upgraded package
    is exported again)."""
    from documents.model_cache import exported_arrays

    return exported_arrays("profanity_check", _package_files(), model_arrays)


class ToxicityScorer:
    """The probability that a document's most offensive window is offensive; label ``toxic`` at
    0.5 and above, else ``clean``."""

    device = "cpu"

    def __init__(self, model: str = MODEL) -> None:
        if model != MODEL:
            raise ValueError(f"toxicity scorer: unknown model {model!r}; known: {MODEL}")
        import pyarrow as pa

        with np.load(exported_model(), allow_pickle=False) as z:
            self.vocabulary = pa.array(z["terms"].tolist(), pa.string())
            self.idf, self.coef, self.intercept, self.a, self.b = z["idf"], z["coef"], z["intercept"], z["a"], z["b"]
            self.token = re.compile(str(z["token_pattern"]))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """P(offensive) of each text as one window: the package's ``predict_prob``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tokens = [self.token.findall(t.lower()) for t in texts]
        lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
        flat = pa.array([w for ts in tokens for w in ts], pa.string())
        ids = pc.index_in(flat, value_set=self.vocabulary).to_numpy(zero_copy_only=False)  # OOV: NaN
        rows = np.repeat(np.arange(len(texts)), lengths)
        known = ~np.isnan(ids)
        rows, ids = rows[known], ids[known].astype(np.int64)
        # counts per (window, term), then tf-idf, l2-normalised per window (an empty window stays zero)
        pairs, counts = np.unique(rows * len(self.idf) + ids, return_counts=True)
        r, t = pairs // len(self.idf), pairs % len(self.idf)
        x = counts * self.idf[t]
        norm = np.sqrt(np.bincount(r, x * x, minlength=len(texts)))
        x = x / norm[r]
        decision = np.vstack([np.bincount(r, x * c[t], minlength=len(texts)) for c in self.coef]) + self.intercept[:, None]
        return (1.0 / (1.0 + np.exp(self.a[:, None] * decision + self.b[:, None]))).mean(axis=0)

    def score(self, texts: list[str], **_: int) -> Scores:
        parts = [windows(t or "") for t in texts]
        flat = [w for p in parts for w in p]
        probs = self.probabilities(flat) if flat else np.zeros(0)
        out = np.zeros(len(texts), np.float64)
        i = 0
        for d, p in enumerate(parts):
            out[d] = float(probs[i : i + len(p)].max())
            i += len(p)
        words = sum(len(w.split()) for w in flat)  # words read (this scorer has no tokenizer)
        return Scores(out, ["toxic" if v >= 0.5 else "clean" for v in out], words)
