"""The `filtered` stage's rules, as data: one ordered list, :data:`RULES`, from which the pipeline
order, the funnel's stages, the signal columns of `filtered`, the ratio columns the gate checks and
the options under ``filter:`` in the config are all derived.

FineWeb's order: URL filter → main-text extraction → language ID → Gopher repetition → Gopher
quality → C4 → FineWeb rules → PII redaction. A document leaves at the first rule it fails, as a
rejection ``(reason, detail, measured value)``. A kept document carries every signal measured on it,
so later analysis needs no recompute. The stored ``text`` is the final one (C4 line removals and PII
placeholders applied); Gopher signals are measured on the extracted text, FineWeb signals on the
C4-cleaned text.

Adding a rule is one :class:`Rule` in the list (its options model, its signals, its ``apply``) and a
line in the README's reason table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field, create_model

from documents import quality_rules as Q
from documents.extract import ExtractCrashed, ExtractError, ExtractOptions, ExtractTimeout, dom_depth, extract_stream, make_extractor
from documents.language import LanguageIdentifier, LanguageOptions
from documents.pii import PiiOptions, redact
from documents.url_filter import UrlFilter, UrlFilterOptions

Verdict = tuple[str, "str | None", "float | None"]  # (reason, detail, measured value)


@dataclass(frozen=True)
class Signal:
    name: str
    type: pa.DataType
    ratio: bool = False  # a share in [0, 1]: the gate checks the range


class Doc:
    """One document on its way through the rules: the raw row, the current text, the signals."""

    __slots__ = ("row", "signals", "_text", "_words")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.signals: dict[str, Any] = {}
        self._text = ""
        self._words: list[str] | None = None

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        if value != self._text:
            self._text = value
            self._words = None  # words follow the text (C4 and PII change it)

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = Q.words_of(self._text)
        return self._words


@dataclass(frozen=True)
class Rule:
    key: str  # the option key under ``filter:``
    prefix: str  # the reason prefix in `rejections`: ``<prefix>.<what>``; a funnel stage
    options: type[BaseModel]
    signals: tuple[Signal, ...]
    # Measure, maybe change the text, and return the verdict (None: the document goes on).
    apply: Callable[[Doc, Any, Any], Verdict | None]
    # Per-worker state built once from the options (block lists, models).
    load: Callable[[Any], Any] = field(default=lambda o: None)
    rejects: bool = True  # False: a transform only (PII)


def _url(doc: Doc, o: UrlFilterOptions, state: UrlFilter) -> Verdict | None:
    hit = state.check(doc.row["url"])
    return (hit[0], hit[1], None) if hit else None


def _too_deep(doc: Doc, o: ExtractOptions) -> Verdict | None:
    depth = dom_depth(doc.row["html"] or b"", o.max_dom_depth)
    return ("extract.too_deep", f"> {o.max_dom_depth}", float(depth)) if depth > o.max_dom_depth else None


def _extracted(doc: Doc, o: ExtractOptions, result: tuple[str, str] | Exception) -> Verdict | None:
    """The page's extraction result (text and extractor, or the exception it ended with) → its text or verdict."""
    if isinstance(result, ExtractTimeout):
        return ("extract.timeout", str(result), o.max_seconds)
    if isinstance(result, ExtractCrashed):
        return ("extract.crashed", str(result), None)
    if isinstance(result, ExtractError):  # raised in the child: its message already names the error
        return ("extract.failed", str(result)[:300], None)
    if isinstance(result, Exception):  # an undecodable or unparseable page is explained, never fatal
        return ("extract.failed", f"{type(result).__name__}: {result}"[:300], None)
    text, path = result
    doc.text = text.strip()
    if not doc.text:
        return ("extract.no_text", None, 0.0)
    doc.signals["extractor"] = path
    return None


def _extract(doc: Doc, o: ExtractOptions, state: Any) -> Verdict | None:
    if v := _too_deep(doc, o):
        return v
    try:
        result = state.extract_with_path(doc.row["html"], doc.row.get("charset"))
    except Exception as e:  # noqa: BLE001 - every extraction error becomes the page's rejection
        result = e
    return _extracted(doc, o, result)


def _language(doc: Doc, o: LanguageOptions, state: tuple[LanguageIdentifier, frozenset[str]]) -> Verdict | None:
    ident, languages = state
    lang, score = ident.identify(doc.text)
    doc.signals["language"], doc.signals["language_score"] = lang, score
    if languages and lang not in languages:
        return ("language.not_selected", lang, score)
    if score < o.min_score:
        return ("language.low_score", lang, score)
    return None


def _measured(signals: Callable, verdict: Callable) -> Callable[[Doc, Any, Any], Verdict | None]:
    """A rule that measures the text and compares the measures with its thresholds."""

    def apply(doc: Doc, o: Any, state: Any) -> Verdict | None:
        s = signals(doc.text, doc.words, o)
        doc.signals.update(s)
        v = verdict(s, o)
        return (v[0], v[2], v[1]) if v else None

    return apply


def _gopher_rep(doc: Doc, o: Q.GopherRepetitionOptions, state: Any) -> Verdict | None:
    s, v = Q.gopher_repetition_check(doc.text, doc.words, o)
    doc.signals.update(s)
    return (v[0], v[2], v[1]) if v else None


def _c4(doc: Doc, o: Q.C4Options, state: Any) -> Verdict | None:
    new, v, s = Q.c4_clean(doc.text, o)
    doc.signals.update(s)
    if v:
        return (v[0], v[2], v[1])
    doc.text = new
    return None


def _pii(doc: Doc, o: PiiOptions, state: Any) -> Verdict | None:
    doc.text, counts = redact(doc.text, o)
    doc.signals.update(counts)
    return None


_F, _I = pa.float64(), pa.int64()

RULES: list[Rule] = [
    Rule("url", "url", UrlFilterOptions, (), _url, load=UrlFilter),
    Rule("extract", "extract", ExtractOptions, (Signal("extractor", pa.string()),), _extract, load=make_extractor),
    Rule(
        "language",
        "language",
        LanguageOptions,
        (Signal("language", pa.string()), Signal("language_score", _F)),
        _language,
        load=lambda o: (LanguageIdentifier(o), frozenset(o.languages)),
    ),
    Rule(
        "gopher_repetition",
        "gopher_rep",
        Q.GopherRepetitionOptions,
        (
            *[Signal(n, _F, ratio=True) for n in ("dup_line_frac", "dup_line_char_frac", "dup_para_frac", "dup_para_char_frac")],
            *[Signal(f"top_{n}gram_char_frac", _F, ratio=True) for n in (2, 3, 4)],
            *[Signal(f"dup_{n}gram_char_frac", _F, ratio=True) for n in range(5, 11)],
        ),
        _gopher_rep,
    ),
    Rule(
        "gopher_quality",
        "gopher_quality",
        Q.GopherQualityOptions,
        (
            Signal("mean_word_length", _F),
            *[Signal(n, _F, ratio=True) for n in ("symbol_word_ratio", "bullet_lines_ratio", "ellipsis_lines_ratio", "alpha_words_ratio")],
            Signal("stop_word_count", _I),
        ),
        _measured(Q.gopher_quality_signals, Q.gopher_quality_verdict),
    ),
    Rule("c4", "c4", Q.C4Options, (Signal("c4_lines_removed", _I), Signal("sentence_count", _I)), _c4),
    Rule(
        "fineweb",
        "fineweb",
        Q.FineWebOptions,
        (
            *[Signal(n, _F, ratio=True) for n in ("line_punct_ratio", "short_line_ratio", "char_dup_ratio")],
            Signal("newline_word_ratio", _F),
        ),
        _measured(Q.fineweb_signals, Q.fineweb_verdict),
    ),
    Rule("pii", "pii", PiiOptions, (Signal("pii_emails", _I), Signal("pii_ips", _I), Signal("pii_phones", _I)), _pii, rejects=False),
]

# Measured on every kept document whatever rules are on (word_count by Gopher quality when it runs);
# the final_text_signals on the final text, so that the built-in quality score reads them, not the text.
DOCUMENT_SIGNALS = (
    Signal("word_count", _I),
    Signal("char_count", _I),
    Signal("line_count", _I),
    Signal("stop_word_ratio", _F, ratio=True),
    Signal("final_word_count", _I),
    Signal("final_line_punct_ratio", _F, ratio=True),
)

# Derived from RULES: the funnel's stages (reason prefixes, pipeline order), the signal columns, the
# shares the gate checks, and the options model under ``filter:``.
STAGES = [r.prefix for r in RULES if r.rejects]
SIGNALS: list[Signal] = [s for r in RULES for s in r.signals] + list(DOCUMENT_SIGNALS)
SIGNAL_COLUMNS: list[tuple[str, pa.DataType]] = [(s.name, s.type) for s in SIGNALS]
RATIO_COLUMNS = [s.name for s in SIGNALS if s.ratio]
FilterOptions = create_model(
    "FilterOptions",
    __doc__="Options of the `filtered` stage, one model per rule (``filter.<rule>``); every rule has ``enabled``.",
    **{r.key: (r.options, Field(default_factory=r.options)) for r in RULES},
)

PROVENANCE = ["doc_id", "url", "host", "warc_date", "warc_record_id", "warc_file", "warc_offset"]
INPUT_COLUMNS = [*PROVENANCE, "charset", "html"]  # what the rules read of a raw_crawl row


def _enabled(o: BaseModel) -> bool:
    return getattr(o, "enabled", True)


class DocumentFilter:
    """The enabled rules with their loaded state; one per Python worker (see :func:`get_filter`)."""

    def __init__(self, o: BaseModel) -> None:
        self.o = o
        self.active = [
            (r, opts, r.load(opts)) for r in RULES if r.key == "extract" or _enabled(getattr(o, r.key)) for opts in [_rule_options(o, r)]
        ]  # no text without extraction

    def one(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, Verdict | None]:
        """(kept row, None) or (None, (reason, detail, value))."""
        return self.many([row])[0]

    def many(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, Verdict | None]]:
        """:meth:`one` of each row, with the rows' pages extracted as one stream: in the child
        process, the next page is extracted while the rules run on this one."""
        return [(kept, verdict) for kept, verdict, _ in self.judged(rows)]

    def judged(self, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, Verdict | None, int | None]]:
        """:meth:`many` plus, for a rejected page, the words of its text when it was rejected (None
        before there was text: rejected ahead of extraction, or nothing extracted), so that the
        audit can say how many words each filter removed."""
        docs = [Doc(row) for row in rows]
        out: list[tuple[dict[str, Any] | None, Verdict | None, int | None]] = [(None, None, None)] * len(rows)
        x = next(i for i, (rule, _, _) in enumerate(self.active) if rule.key == "extract")
        before, (_, xo, extractor), after = self.active[:x], self.active[x], self.active[x + 1 :]
        waiting = []
        for i, doc in enumerate(docs):
            if verdict := _first_verdict(doc, before) or _too_deep(doc, xo):
                out[i] = (None, verdict, None)
            else:
                waiting.append(i)
        # read to its end (not zip, which would leave the stream suspended after the last page)
        todo = iter(waiting)
        for result in extract_stream(extractor, [(rows[i]["html"], rows[i].get("charset")) for i in waiting]):
            doc = docs[i := next(todo)]
            verdict = _extracted(doc, xo, result) or _first_verdict(doc, after)
            out[i] = (None, verdict, len(doc.words) if doc.text else None) if verdict else (self._kept(doc), None, None)
        return out

    @staticmethod
    def _kept(doc: Doc) -> dict[str, Any]:
        sig = doc.signals
        sig["char_count"] = len(doc.text)
        sig["line_count"] = doc.text.count("\n") + 1
        sig.setdefault("word_count", len(doc.words))
        sig.update(Q.final_text_signals(doc.text, doc.words, sig.get("language")))
        out = {k: doc.row[k] for k in PROVENANCE}
        out["text"] = doc.text
        out.update(sig)
        return out


def _rule_options(o: BaseModel, rule: Rule) -> Any:
    """A rule's options. Extraction's carry the language filter's when it selects languages, so
    that the cascade skips its slow path on pages that filter drops (``ExtractOptions.language``)."""
    opts = getattr(o, rule.key)
    if rule.key != "extract":
        return opts
    lang = o.language
    return opts.model_copy(update={"language": lang if _enabled(lang) and lang.languages else None})


def _first_verdict(doc: Doc, rules: list[tuple[Rule, Any, Any]]) -> Verdict | None:
    for rule, opts, state in rules:
        if verdict := rule.apply(doc, opts, state):
            return verdict
    return None


_CACHE: dict[str, DocumentFilter] = {}


def get_filter(options_json: str) -> DocumentFilter:
    """One DocumentFilter per worker process and configuration (models load once)."""
    f = _CACHE.get(options_json)
    if f is None:
        f = _CACHE[options_json] = DocumentFilter(FilterOptions.model_validate_json(options_json))
    return f
