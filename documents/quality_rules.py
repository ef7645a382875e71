"""Heuristic quality rules: Gopher repetition, Gopher quality, C4, FineWeb.

Thresholds are the published ones (Gopher: Rae et al. 2021, C4: Raffel et al. 2020, FineWeb:
Penedo et al. 2024) and live in the option models, so every one is configurable. Each ``*_signals``
function measures a text; each ``*_verdict`` function compares the measures with the thresholds
and returns the first rule that fails as ``(rule, measured value)``, or ``None``.

N-gram repetition is computed with NumPy over integer word ids (rolling hashes, one argsort per n),
not with Python dictionaries of tuples: it is the costliest signal and runs on every document.
One module for the four rule families on purpose: they share the word split, the n-gram arrays and
the stop lists, and the filter and the signals scorer both read them from here.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
from pydantic import BaseModel, Field

STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "‣", "●", "▪", "◦", "-", "*", "–", "·")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？", ":", ";")
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_PUNCT_STRIP = "\"'“”‘’.,;:!?()[]{}<>«»-–—…*#/\\|"
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
_HAS_ALPHA = re.compile(r"[^\W\d_]")
_SENTENCE_END = re.compile(r"[.!?]+(?:[\"'”’)\]]*)(?:\s|$)")


# ---- shared tokenisation ------------------------------------------------------------------------


def words_of(text: str) -> list[str]:
    """Whitespace tokens with surrounding punctuation removed; pure-punctuation tokens dropped."""
    return [w for w in (tok.strip(_PUNCT_STRIP) for tok in text.split()) if w]


def lines_of(text: str) -> list[str]:
    return [l.strip() for l in text.split("\n") if l.strip()]


def paragraphs_of(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _dup_fractions(items: list[str]) -> tuple[float, float]:
    """Share of items that repeat an earlier item, and share of characters in them."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_n = dup_chars = 0
    total_chars = sum(len(x) for x in items)
    for x in items:
        if x in seen:
            dup_n += 1
            dup_chars += len(x)
        else:
            seen.add(x)
    return dup_n / len(items), (dup_chars / total_chars if total_chars else 0.0)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit rolling hash per n-gram of word ids (wrap-around multiplication is intended)."""
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * np.uint64(1_000_003) + ids[k : len(ids) - n + 1 + k].astype(np.uint64) + np.uint64(1)
    return h


class _WordIds:
    """Words as integer ids and character lengths, built once per text for every n."""

    __slots__ = ("ids", "lens", "total", "csum")

    def __init__(self, words: list[str]) -> None:
        vocab: dict[str, int] = {}
        for w in words:  # first-seen order, as the ids were always numbered
            if w not in vocab:
                vocab[w] = len(vocab)
        n = len(words)
        self.ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=n)
        self.lens = np.fromiter(map(len, words), dtype=np.int64, count=n)
        self.total = float(self.lens.sum())
        self.csum = np.concatenate([[0], np.cumsum(self.lens)])

    def top_frac(self, n: int) -> float:
        """Characters covered by the most frequent n-gram (each occurrence) / all word characters."""
        if len(self.ids) < n:
            return 0.0
        h = _ngram_hashes(self.ids, n)
        uniq, first, counts = np.unique(h, return_index=True, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] < 2:
            return 0.0
        start = int(first[best])
        gram_chars = float(self.csum[start + n] - self.csum[start])
        return min(1.0, gram_chars * int(counts[best]) / self.total)

    def dup_frac(self, n: int) -> float:
        """Characters of words covered by any n-gram occurring more than once / all word characters.

        One argsort marks every n-gram equal to a neighbour in sorted order (what ``np.unique``'s
        counts said, at a third of its cost); a word is covered when a repeated n-gram starts in the
        n positions ending at it (a prefix sum, no scatter-add)."""
        m = len(self.ids) - n + 1
        if m <= 0:
            return 0.0
        h = _ngram_hashes(self.ids, n)
        order = np.argsort(h, kind="stable")
        hs = h[order]
        eq = hs[1:] == hs[:-1]
        if not eq.any():
            return 0.0
        rep_sorted = np.zeros(m, dtype=bool)
        rep_sorted[1:] = eq
        rep_sorted[:-1] |= eq
        rep = np.empty(m, dtype=bool)
        rep[order] = rep_sorted
        starts = np.zeros(len(self.ids) + 1, dtype=np.int64)
        starts[1 : m + 1] = np.cumsum(rep)
        starts[m + 1 :] = starts[m]
        i = np.arange(len(self.ids))
        covered = starts[i + 1] - starts[np.maximum(i + 1 - n, 0)] > 0
        return float(self.lens[covered].sum()) / self.total


def ngram_repetition(words: list[str], top_ns=(2, 3, 4), dup_ns=(5, 6, 7, 8, 9, 10)) -> dict[str, float]:
    """Gopher's n-gram signals over the words' characters.

    * top_n: characters covered by the most frequent n-gram (counting each occurrence) / all word characters;
    * dup_n: characters of words covered by any n-gram that occurs more than once / all word characters.
    """
    if not words:
        return {**{f"top_{n}gram_char_frac": 0.0 for n in top_ns}, **{f"dup_{n}gram_char_frac": 0.0 for n in dup_ns}}
    w = _WordIds(words)
    out = {f"top_{n}gram_char_frac": w.top_frac(n) for n in top_ns}
    out.update({f"dup_{n}gram_char_frac": w.dup_frac(n) for n in dup_ns})
    return out


# ---- Gopher repetition -------------------------------------------------------------------------


class GopherRepetitionOptions(BaseModel):
    enabled: bool = True
    dup_line_frac: float = 0.30
    dup_para_frac: float = 0.30
    dup_line_char_frac: float = 0.20
    dup_para_char_frac: float = 0.20
    top_ngram_char_frac: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    dup_ngram_char_frac: dict[int, float] = Field(default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})


def gopher_repetition_signals(text: str, words: list[str], o: GopherRepetitionOptions) -> dict[str, float]:
    lf, lcf = _dup_fractions(lines_of(text))
    pf, pcf = _dup_fractions(paragraphs_of(text))
    sig = {"dup_line_frac": lf, "dup_line_char_frac": lcf, "dup_para_frac": pf, "dup_para_char_frac": pcf}
    sig.update(ngram_repetition(words, tuple(o.top_ngram_char_frac), tuple(o.dup_ngram_char_frac)))
    return sig


# A crossing is (reason, measured value, the bound it crossed: "> 0.3"), so that an audit can say
# "dropped at gopher_quality.mean_word_length: 2.1 < 3.0" without the run's config at hand. The rule
# table turns it into its ``rules.Verdict`` (reason, detail, value).
Crossing = tuple[str, float, str]


def _bound(op: str, limit: float) -> str:
    return f"{op} {limit:g}"


def _repetition_bounds(o: GopherRepetitionOptions) -> list[tuple[str, float, int, str]]:
    """(signal, upper bound, n, kind) in the order the verdict checks them (n = 0: not an n-gram)."""
    out = [(k, getattr(o, k), 0, "") for k in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")]
    out += [(f"top_{n}gram_char_frac", limit, n, "top") for n, limit in o.top_ngram_char_frac.items()]
    out += [(f"dup_{n}gram_char_frac", limit, n, "dup") for n, limit in o.dup_ngram_char_frac.items()]
    return out


def gopher_repetition_verdict(s: dict[str, float], o: GopherRepetitionOptions) -> Crossing | None:
    for key, limit, _, _ in _repetition_bounds(o):
        if s[key] > limit:
            return f"gopher_rep.{key}", s[key], _bound(">", limit)
    return None


def gopher_repetition_check(text: str, words: list[str], o: GopherRepetitionOptions) -> tuple[dict[str, float], Crossing | None]:
    """``gopher_repetition_signals`` then ``gopher_repetition_verdict``, measured in the verdict's
    order and stopped at the first crossing: a rejected document keeps only its reason and value, so
    the n-grams after the failing measure need not be counted. Same verdict; a kept document has
    every signal."""
    lf, lcf = _dup_fractions(lines_of(text))
    pf, pcf = _dup_fractions(paragraphs_of(text))
    sig = {"dup_line_frac": lf, "dup_line_char_frac": lcf, "dup_para_frac": pf, "dup_para_char_frac": pcf}
    ids = _WordIds(words) if words else None
    for key, limit, n, kind in _repetition_bounds(o):
        if kind:
            sig[key] = 0.0 if ids is None else ids.top_frac(n) if kind == "top" else ids.dup_frac(n)
        if sig[key] > limit:
            return sig, (f"gopher_rep.{key}", sig[key], _bound(">", limit))
    return sig, None


# ---- Gopher quality ----------------------------------------------------------------------------


class GopherQualityOptions(BaseModel):
    enabled: bool = True
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: list[str] = Field(default_factory=lambda: sorted(STOP_WORDS))


def gopher_quality_signals(text: str, words: list[str], o: GopherQualityOptions) -> dict[str, float]:
    n = len(words)
    lines = lines_of(text)
    stops = set(o.stop_words)
    symbols = text.count("#") + text.count("...") + text.count("…")
    return {
        "word_count": float(n),
        "mean_word_length": (sum(map(len, words)) / n) if n else 0.0,
        "symbol_word_ratio": symbols / n if n else 0.0,
        "bullet_lines_ratio": (sum(l.startswith(BULLETS) for l in lines) / len(lines)) if lines else 0.0,
        "ellipsis_lines_ratio": (sum(l.endswith(ELLIPSES) for l in lines) / len(lines)) if lines else 0.0,
        "alpha_words_ratio": (sum(1 for w in words if w.isalpha() or _HAS_ALPHA.search(w)) / n) if n else 0.0,
        "stop_word_count": float(sum(map(stops.__contains__, map(str.lower, words)))),
    }


def gopher_quality_verdict(s: dict[str, float], o: GopherQualityOptions) -> Crossing | None:
    def outside(key: str, lo: float, hi: float) -> str | None:
        return _bound("<", lo) if s[key] < lo else _bound(">", hi) if s[key] > hi else None

    checks = (
        ("word_count", outside("word_count", o.min_words, o.max_words)),
        ("mean_word_length", outside("mean_word_length", o.min_mean_word_length, o.max_mean_word_length)),
        ("symbol_word_ratio", _bound(">", o.max_symbol_word_ratio) if s["symbol_word_ratio"] > o.max_symbol_word_ratio else None),
        ("bullet_lines_ratio", _bound(">", o.max_bullet_lines_ratio) if s["bullet_lines_ratio"] > o.max_bullet_lines_ratio else None),
        (
            "ellipsis_lines_ratio",
            _bound(">", o.max_ellipsis_lines_ratio) if s["ellipsis_lines_ratio"] > o.max_ellipsis_lines_ratio else None,
        ),
        ("alpha_words_ratio", _bound("<", o.min_alpha_words_ratio) if s["alpha_words_ratio"] < o.min_alpha_words_ratio else None),
        ("stop_word_count", _bound("<", o.min_stop_words) if s["stop_word_count"] < o.min_stop_words else None),
    )
    for key, bound in checks:
        if bound:
            return f"gopher_quality.{key}", s[key], bound
    return None


# ---- C4 ----------------------------------------------------------------------------------------


class C4Options(BaseModel):
    enabled: bool = True
    # FineWeb keeps lines without terminal punctuation (C4's strictest rule), so off by default.
    filter_no_terminal_punct: bool = False
    min_words_per_line: int = 3
    max_word_length: int = 1000
    min_sentences: int = 5
    remove_citations: bool = True
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True


def c4_clean(text: str, o: C4Options) -> tuple[str | None, Crossing | None, dict[str, float]]:
    """C4's line filters and document rules. Returns (new text, failed rule, signals)."""
    lowered = text.lower()
    if o.filter_lorem_ipsum and "lorem ipsum" in lowered:
        return None, ("c4.lorem_ipsum", 1.0, "contains 'lorem ipsum'"), {}
    if o.filter_curly_bracket and "{" in text:
        return None, ("c4.curly_bracket", float(text.count("{")), "contains '{'"), {}
    kept: list[str] = []
    removed = 0
    for line in text.split("\n"):
        s = line.strip()
        if not s:
            kept.append("")
            continue
        low = s.lower()
        if o.remove_citations:
            s = _CITATION.sub("", s)
        words = s.split()
        drop = (
            len(words) < o.min_words_per_line
            or any(len(w) > o.max_word_length for w in words)
            or (o.filter_javascript and "javascript" in low)
            or (o.filter_policy and any(p in low for p in C4_POLICY))
            or (o.filter_no_terminal_punct and not s.endswith(TERMINAL_PUNCT))
        )
        if drop:
            removed += 1
        else:
            kept.append(s)
    new = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    sentences = len(_SENTENCE_END.findall(new))
    sig = {"c4_lines_removed": float(removed), "sentence_count": float(sentences)}
    if sentences < o.min_sentences:
        return None, ("c4.min_sentences", float(sentences), _bound("<", o.min_sentences)), sig
    return new, None, sig


# ---- FineWeb -----------------------------------------------------------------------------------


class FineWebOptions(BaseModel):
    enabled: bool = True
    min_line_punct_ratio: float = 0.12
    short_line_chars: int = 30
    max_short_line_ratio: float = 0.67
    max_char_dup_ratio: float = 0.01
    max_newline_word_ratio: float = 0.3


def fineweb_signals(text: str, words: list[str], o: FineWebOptions) -> dict[str, float]:
    lines = lines_of(text)
    n = len(lines)
    _, dup_chars = _dup_fractions(lines)
    return {
        "line_punct_ratio": (sum(l.endswith(TERMINAL_PUNCT) for l in lines) / n) if n else 0.0,
        "short_line_ratio": (sum(len(l) <= o.short_line_chars for l in lines) / n) if n else 0.0,
        "char_dup_ratio": dup_chars,
        "newline_word_ratio": text.count("\n") / len(words) if words else 0.0,
    }


def fineweb_verdict(s: dict[str, float], o: FineWebOptions) -> Crossing | None:
    if s["line_punct_ratio"] < o.min_line_punct_ratio:
        return "fineweb.line_punct_ratio", s["line_punct_ratio"], _bound("<", o.min_line_punct_ratio)
    if s["short_line_ratio"] > o.max_short_line_ratio:
        return "fineweb.short_line_ratio", s["short_line_ratio"], _bound(">", o.max_short_line_ratio)
    if s["char_dup_ratio"] > o.max_char_dup_ratio:
        return "fineweb.char_dup_ratio", s["char_dup_ratio"], _bound(">", o.max_char_dup_ratio)
    if s["newline_word_ratio"] > o.max_newline_word_ratio:
        return "fineweb.newline_word_ratio", s["newline_word_ratio"], _bound(">", o.max_newline_word_ratio)
    return None


# ---- signals of the final text (what the built-in quality score reads) --------------------------

# ISO 639-1 (what langid returns) → jusText stop-list name, for the languages both know.
STOPLIST_NAMES = {
    "af": "Afrikaans",
    "an": "Aragonese",
    "ar": "Arabic",
    "az": "Azerbaijani",
    "be": "Belarusian",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "br": "Breton",
    "bs": "Bosnian",
    "ca": "Catalan",
    "cs": "Czech",
    "cy": "Welsh",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "eo": "Esperanto",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "ga": "Irish",
    "gl": "Galician",
    "gu": "Gujarati",
    "he": "Hebrew",
    "hi": "Hindi",
    "hr": "Croatian",
    "ht": "Haitian",
    "hu": "Hungarian",
    "hy": "Armenian",
    "id": "Indonesian",
    "is": "Icelandic",
    "it": "Italian",
    "jv": "Javanese",
    "ka": "Georgian",
    "kk": "Kazakh",
    "kn": "Kannada",
    "ko": "Korean",
    "ku": "Kurdish",
    "ky": "Kyrgyz",
    "la": "Latin",
    "lb": "Luxembourgish",
    "lt": "Lithuanian",
    "lv": "Latvian",
    "mk": "Macedonian",
    "ml": "Malayalam",
    "mr": "Marathi",
    "ms": "Malay",
    "mt": "Maltese",
    "nb": "Norwegian_Bokmal",
    "ne": "Nepali",
    "nl": "Dutch",
    "nn": "Norwegian_Nynorsk",
    "no": "Norwegian_Bokmal",
    "oc": "Occitan",
    "pl": "Polish",
    "pt": "Portuguese",
    "qu": "Quechua",
    "ro": "Romanian",
    "ru": "Russian",
    "sk": "Slovak",
    "sl": "Slovenian",
    "sq": "Albanian",
    "sr": "Serbian",
    "sv": "Swedish",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "tl": "Tagalog",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "uz": "Uzbek",
    "vi": "Vietnamese",
    "wa": "Walloon",
    "yo": "Yoruba",
}


@cache
def stop_words(language: str) -> frozenset[str] | None:
    """jusText's stop list of an ISO 639-1 language, lower-cased; None when jusText has none."""
    import justext

    name = STOPLIST_NAMES.get(language)
    return frozenset(w.lower() for w in justext.get_stoplist(name)) if name else None


def final_text_signals(text: str, words: list[str], language: str | None) -> dict[str, float | None]:
    """Measured on the final text (C4 removals and PII placeholders applied), where a score reads a
    document: the share of its words in jusText's stop list of ``language`` (None without a list),
    its word count, and the share of its lines ending in terminal punctuation."""
    stops = stop_words(language) if language else None
    lines = lines_of(text)
    return {
        "stop_word_ratio": (sum(w.lower() in stops for w in words) / len(words) if words else 0.0) if stops else None,
        "final_word_count": len(words),
        "final_line_punct_ratio": sum(l.endswith(TERMINAL_PUNCT) for l in lines) / len(lines) if lines else 0.0,
    }
