"""The built-in document quality scorer, ``builtin:signals-v1``: no model to train or download.

Why it is the default: on real web pages, the learned classifier is only as good as its
references, and the sample crawl's references are synthetic (a MiniLM head trained on them scored
ROC-AUC 0.42 against human labels on real pages, see ``benchmarks/scorer_quality.py``). Three of
the signals the filter stage already measures separate kept-worthy prose from boilerplate, link
lists, fragments and error pages far better, and they add up:

* stop-word ratio: the share of words that are function words of the document's language (jusText's
  stop lists, 100 languages; language from langid). Running prose sits around 0.4–0.5; menus,
  product grids and tables well below 0.2;
* length: log10 of the word count (Gopher's floor is 50 words; substantive documents have hundreds);
* line punctuation: the share of lines that end in terminal punctuation (FineWeb's signal); prose
  lines end in a full stop, navigation and listing lines do not.

Each signal becomes a term ``(value - centre) / scale`` clipped to ±3, and the score is the
logistic of their sum. Centres and scales are fixed a priori — the midpoint between typical prose
and typical boilerplate, not fitted to any labels — and versioned by name: a change of the formula
is a new version (``signals-v2``), so scores in a table stay comparable with their recorded model.
For a language without a stop list (or without spaces between words) the stop-word term is left
out and the other two are scaled up to the same weight.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from gpu_jobs.scorers.base import Scores
from documents.quality_rules import TERMINAL_PUNCT, lines_of, words_of

MODEL_PREFIX = "builtin:"

# name → (centre, scale) of each term; see the module docstring for where the numbers come from.
FORMULAS: dict[str, dict[str, tuple[float, float]]] = {
    "signals-v1": {
        "stop_word_ratio": (0.30, 0.10),
        "log10_words": (2.0, 0.5),
        "line_punct_ratio": (0.5, 0.25),
    },
}
CLIP = 3.0
LANGUAGE_CHARS = 1000  # langid sees this much of each document

# ISO 639-1 (what langid returns) → jusText stop-list name, for the languages both know.
_STOPLIST_NAMES = {
    "af": "Afrikaans", "an": "Aragonese", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian", "bg": "Bulgarian",
    "bn": "Bengali", "br": "Breton", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh", "da": "Danish",
    "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish", "et": "Estonian",
    "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "ga": "Irish", "gl": "Galician",
    "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian", "jv": "Javanese", "ka": "Georgian",
    "kk": "Kazakh", "kn": "Kannada", "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin",
    "lb": "Luxembourgish", "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam",
    "mr": "Marathi", "ms": "Malay", "mt": "Maltese", "nb": "Norwegian_Bokmal", "ne": "Nepali", "nl": "Dutch",
    "nn": "Norwegian_Nynorsk", "no": "Norwegian_Bokmal", "oc": "Occitan", "pl": "Polish", "pt": "Portuguese",
    "qu": "Quechua", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sq": "Albanian",
    "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "tl": "Tagalog",
    "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "wa": "Walloon",
    "yo": "Yoruba",
}


@lru_cache(maxsize=None)
def stop_words(language: str) -> frozenset[str] | None:
    import justext

    name = _STOPLIST_NAMES.get(language)
    return frozenset(w.lower() for w in justext.get_stoplist(name)) if name else None


@lru_cache(maxsize=1)
def _language_id():
    from documents.language import LanguageIdentifier, LanguageOptions

    return LanguageIdentifier(LanguageOptions(max_chars=LANGUAGE_CHARS))  # the filter stage's langid


def detect_language(text: str) -> str:
    return _language_id().identify(text)[0]


def measure(text: str, language: str | None = None) -> dict[str, float | None]:
    """The raw signals of one text (``stop_word_ratio`` is None when the language has no list)."""
    words = words_of(text)
    lines = lines_of(text)
    stops = stop_words(language or detect_language(text))
    return {
        "stop_word_ratio": (sum(w.lower() in stops for w in words) / len(words) if words else 0.0) if stops else None,
        "log10_words": math.log10(len(words)) if words else 0.0,
        "line_punct_ratio": sum(l.endswith(TERMINAL_PUNCT) for l in lines) / len(lines) if lines else 0.0,
    }


def logit(signals: dict[str, float | None], formula: dict[str, tuple[float, float]]) -> float:
    terms = [max(-CLIP, min(CLIP, (v - c) / s)) for k, (c, s) in formula.items() if (v := signals[k]) is not None]
    return sum(terms) * len(formula) / len(terms)


class SignalScorer:
    """Scores texts with a ``builtin:`` formula; the score is a probability-like value in (0, 1),
    the label ``high`` at 0.5 and above."""

    device = "cpu"

    def __init__(self, model: str = "builtin:signals-v1", language: str | None = None) -> None:
        name = model.removeprefix(MODEL_PREFIX)
        if name not in FORMULAS:
            raise ValueError(f"unknown built-in scorer {model!r}; known: {', '.join(MODEL_PREFIX + k for k in FORMULAS)}")
        self.formula = FORMULAS[name]
        self.language = language  # None: identify per document

    def score(self, texts: list[str], **_: int) -> Scores:
        z = np.array([logit(measure(t or "", self.language), self.formula) for t in texts], np.float64)
        p = 1.0 / (1.0 + np.exp(-z))
        return Scores(p, ["high" if v >= 0.5 else "low" for v in p], 0)
