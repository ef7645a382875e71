"""The built-in document quality scorer, ``builtin:signals-v1``: no model to train or download, a
logistic score over signals the filter stage already measures.

A formula's terms are ``weight * clip((value - centre) / scale, ±3)``; the score is the logistic of
their sum plus a bias. A formula is versioned by name: changing a number is a new version, so
scores in a table stay comparable with the model URI recorded beside them. For a language without
a jusText stop list (or without spaces between words) the stop-word term is left out and the other
terms are scaled up to the same total weight.

``signals-v1``: three signals, unit weights, centres set a priori (the midpoint between typical
prose and typical boilerplate): the stop-word ratio (jusText's list of the document's language;
prose sits around 0.4–0.5, menus and listings below 0.2), log10 of the word count, and the share
of lines ending in terminal punctuation (FineWeb's signal).

The filter measures these three on every document's final text and stores them
(``stop_word_ratio``, ``final_word_count``, ``final_line_punct_ratio``, with the filter's own
``language`` choosing the stop list), so in the pipeline the score is read from those columns
(:meth:`SignalScorer.score_table`) and nothing is measured again; texts from elsewhere (the CLI, a
rewrite) are measured here, with their language identified on their first 1,000 characters.

Why no fitted ``signals-v2`` yet: ``benchmarks/quality_signal_study.py`` fits every filter signal
(:data:`DIRECTIONS`, each weight held to its rule's sign) on two label sources and scores the fit
out of fold. Neither the fit nor any equal-weight subset beat v1 on both sources after the filters;
the study prints the figures, and a formula that does is what ``signals-v2`` will be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from documents import quality_rules as Q
from gpu_jobs.scorers.base import Scores

MODEL_PREFIX = "builtin:"

# +1: more is better, -1: less is better — the direction each signal's filter rule takes (a rule
# rejecting above a bound is -1); the fit may only move a weight that way.
DIRECTIONS: dict[str, int] = {
    "stop_word_ratio": 1,
    "log10_words": 1,
    "line_punct_ratio": 1,
    "dup_line_frac": -1,
    "dup_line_char_frac": -1,
    "dup_para_frac": -1,
    "dup_para_char_frac": -1,
    **{f"top_{n}gram_char_frac": -1 for n in (2, 3, 4)},
    **{f"dup_{n}gram_char_frac": -1 for n in range(5, 11)},
    "symbol_word_ratio": -1,
    "bullet_lines_ratio": -1,
    "ellipsis_lines_ratio": -1,
    "alpha_words_ratio": 1,
    "short_line_ratio": -1,
    "char_dup_ratio": -1,
    "newline_word_ratio": -1,
    "c4_removed_frac": -1,  # share of lines C4's line filters remove
    "sentences_per_100_words": 1,  # C4 keeps pages of 5 sentences or more
}


@dataclass(frozen=True)
class Formula:
    terms: dict[str, tuple[float, float, float]]  # signal → (centre, scale, weight)
    bias: float = 0.0


FORMULAS: dict[str, Formula] = {
    "signals-v1": Formula(
        {
            "stop_word_ratio": (0.30, 0.10, 1.0),
            "log10_words": (2.0, 0.5, 1.0),
            "line_punct_ratio": (0.5, 0.25, 1.0),
        }
    ),
}
DEFAULT_FORMULA = "builtin:signals-v1"
CLIP = 3.0
LANGUAGE_CHARS = 1000  # langid sees this much of each document


@lru_cache(maxsize=1)
def _language_id():
    from documents.language import LanguageIdentifier, LanguageOptions

    return LanguageIdentifier(LanguageOptions(max_chars=LANGUAGE_CHARS))  # the filter stage's langid


def detect_language(text: str) -> str:
    return _language_id().identify(text)[0]


def measure(text: str, language: str | None = None, names: frozenset[str] | None = None) -> dict[str, float | None]:
    """The raw signals of one text (``stop_word_ratio`` is None when the language has no list);
    ``names``: only those (the filter-rule signals cost more than the three of v1)."""
    words = Q.words_of(text)
    final = Q.final_text_signals(text, words, language or detect_language(text))
    out: dict[str, float | None] = {
        "stop_word_ratio": final["stop_word_ratio"],
        "log10_words": math.log10(len(words)) if words else 0.0,
        "line_punct_ratio": final["final_line_punct_ratio"],
    }
    if names is not None and names <= out.keys():
        return out
    lines = Q.lines_of(text)
    # The filter rules' own measures, with their default options, on the text as it is.
    out.update(Q.gopher_repetition_signals(text, words, Q.GopherRepetitionOptions()))
    out.update(Q.gopher_quality_signals(text, words, Q.GopherQualityOptions()))
    fineweb = Q.fineweb_signals(text, words, Q.FineWebOptions())
    fineweb.pop("line_punct_ratio")  # the same measure as above
    out.update(fineweb)
    _, _, c4 = Q.c4_clean(text, Q.C4Options(filter_lorem_ipsum=False, filter_curly_bracket=False, min_sentences=0))
    out["c4_removed_frac"] = c4.get("c4_lines_removed", 0.0) / len(lines) if lines else 1.0
    out["sentences_per_100_words"] = 100.0 * c4.get("sentence_count", 0.0) / len(words) if words else 0.0
    return {k: v for k, v in out.items() if k in DIRECTIONS}


# The columns the filter stores for every kept document, measured on its final text with the
# filter's language (``documents.quality_rules.final_text_signals``), and how a formula's signal
# is read from them: a formula whose terms are all here scores without reading the text.
COLUMNS = ("language", "stop_word_ratio", "final_word_count", "final_line_punct_ratio")


def _column(table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), np.float64)  # null: NaN


def _log10_words(table) -> np.ndarray:
    n = _column(table, "final_word_count")
    with np.errstate(divide="ignore"):
        return np.where(n > 0, np.log10(np.maximum(n, 1.0)), 0.0)


FROM_COLUMNS = {
    "stop_word_ratio": lambda t: _column(t, "stop_word_ratio"),
    "log10_words": _log10_words,
    "line_punct_ratio": lambda t: _column(t, "final_line_punct_ratio"),
}


def logits(signals: dict[str, np.ndarray], formula: Formula, n: int) -> np.ndarray:
    """:func:`logit` over arrays of documents (NaN: a signal not measured), term by term in the
    same order, so that each document's value is the one :func:`logit` gives."""
    total = sum(abs(w) for _, _, w in formula.terms.values())
    present = np.zeros(n)
    z = np.zeros(n)
    for k, (centre, scale, weight) in formula.terms.items():
        v = signals[k]
        ok = ~np.isnan(v)
        present = present + np.where(ok, abs(weight), 0.0)
        z = z + np.where(ok, weight * np.clip((np.where(ok, v, centre) - centre) / scale, -CLIP, CLIP), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return formula.bias + np.where(present > 0, z * total / np.where(present > 0, present, 1.0), 0.0)


def logit(signals: dict[str, float | None], formula: Formula) -> float:
    total = present = z = 0.0
    for k, (centre, scale, weight) in formula.terms.items():
        total += abs(weight)
        if (v := signals[k]) is not None:
            present += abs(weight)
            z += weight * max(-CLIP, min(CLIP, (v - centre) / scale))
    return formula.bias + (z * total / present if present else 0.0)


class SignalScorer:
    """Scores texts with a ``builtin:`` formula; the score is a probability-like value in (0, 1),
    the label ``high`` at 0.5 and above. :meth:`score_table` reads the filter's columns instead of
    measuring the text, when the formula needs only those (:attr:`columns`)."""

    device = "cpu"

    def __init__(self, model: str = DEFAULT_FORMULA, language: str | None = None) -> None:
        name = model.removeprefix(MODEL_PREFIX)
        if name not in FORMULAS:
            raise ValueError(f"unknown built-in scorer {model!r}; known: {', '.join(MODEL_PREFIX + k for k in FORMULAS)}")
        self.formula = FORMULAS[name]
        self.names = frozenset(self.formula.terms)
        self.language = language  # None: identify per document
        # A fixed language would not be the filter's: then the text is measured.
        self.columns = COLUMNS if self.names <= FROM_COLUMNS.keys() and language is None else None

    def score(self, texts: list[str], **_: int) -> Scores:
        z = np.array([logit(measure(t or "", self.language, self.names), self.formula) for t in texts], np.float64)
        return self._scores(z)

    def score_table(self, table, **_: int) -> Scores:
        """Scores rows of `filtered` (or a layer after it) from :attr:`columns`; a row without a
        language (the filter's language rule was off) is measured from its ``text``."""
        if self.columns is None:
            raise ValueError(f"{self.formula} needs the text: its signals are not all stored by the filter")
        n = table.num_rows
        z = logits({k: FROM_COLUMNS[k](table) for k in self.names}, self.formula, n)
        missing = np.nonzero(table.column("language").is_null().to_numpy(zero_copy_only=False))[0]
        if len(missing):
            texts = table.column("text").take(missing).to_pylist()
            z[missing] = [logit(measure(t or "", None, self.names), self.formula) for t in texts]
        return self._scores(z)

    @staticmethod
    def _scores(z: np.ndarray) -> Scores:
        p = 1.0 / (1.0 + np.exp(-z))
        return Scores(p, ["high" if v >= 0.5 else "low" for v in p], 0)
